"""Voting rules over the API: blind pairs, one final vote per person per pair, the reveal after
voting on every pair or after closing, who votes and who closes, and tenancy."""

from __future__ import annotations

import json

from app.ab import service
from app.models import ComparisonPair, Vote
from tests.ab.conftest import make_comparison, succeeded_run
from tests.factories import make_account, make_api_key
from tests.runs.factories import make_dataset, register_model, write_model_dir

API = "/api/v1/ab/comparisons"


def _key(db, account, scopes=("read", "write")) -> dict:  # noqa: ANN001
    return {"Authorization": f"Bearer {make_api_key(db, account, scopes=scopes)}"}


def _vote(client, headers, comparison_id: int, pair_id: int, choice: str):  # noqa: ANN001, ANN202
    return client.post(f"{API}/{comparison_id}/pairs/{pair_id}/vote", json={"choice": choice}, headers=headers)


def test_pairs_are_blind_until_the_voter_has_voted_on_every_pair(client, db, team, comparison):
    headers = _key(db, team.member)
    r = client.get(f"{API}/{comparison.id}", headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["revealed"] is False and body["results"] is None and body["can_vote"] is True
    assert "seed" not in body["prompt_source"] and "swapped" not in r.text
    assert all(p["left_model"] is None and p["votes"] is None for p in body["pairs"])
    pairs = {p.id: p for p in db.query(ComparisonPair).filter_by(comparison_id=comparison.id)}
    for shown in body["pairs"]:  # left/right really follow the stored sides
        pair = pairs[shown["id"]]
        assert (shown["left"], shown["right"]) == ((pair.answer_b, pair.answer_a) if pair.swapped
                                                   else (pair.answer_a, pair.answer_b))
    for i, shown in enumerate(body["pairs"]):
        r = _vote(client, headers, comparison.id, shown["id"], "left")
        assert r.status_code == 201, r.text
        assert r.json() == {"pair_id": shown["id"], "choice": "left", "remaining": 3 - i, "revealed": i == 3}
        if i < 3:
            assert client.get(f"{API}/{comparison.id}", headers=headers).json()["results"] is None
    body = client.get(f"{API}/{comparison.id}", headers=headers).json()
    assert body["revealed"] is True and body["your_votes"] == 4
    expected_b = sum(1 for p in pairs.values() if p.swapped)  # "left" was B exactly where swapped
    results = body["results"]
    counts = (results["b_wins"], results["a_wins"], results["ties"], results["voters"])
    assert counts == (expected_b, 4 - expected_b, 0, 1)
    assert expected_b == 2  # the sides are balanced: half the pairs show B on the left
    for shown in body["pairs"]:
        assert shown["your_vote"] == "left"
        assert shown["left_model"] == ("b" if pairs[shown["id"]].swapped else "a")
    # the other member has not voted: still blind for them
    assert client.get(f"{API}/{comparison.id}", headers=_key(db, team.owner)).json()["results"] is None


def test_votes_are_stored_in_model_terms(client, db, team, comparison):
    headers = _key(db, team.member)
    pairs = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).order_by(ComparisonPair.position).all()
    swapped = next(p for p in pairs if p.swapped)
    straight = next(p for p in pairs if not p.swapped)
    assert _vote(client, headers, comparison.id, swapped.id, "left").status_code == 201
    assert _vote(client, headers, comparison.id, straight.id, "left").status_code == 201
    tie = next(p for p in pairs if p.id not in (swapped.id, straight.id))
    assert _vote(client, headers, comparison.id, tie.id, "tie").status_code == 201
    stored = {v.pair_id: v.choice for v in db.query(Vote).filter_by(user_id=team.member.user_id)}
    assert stored == {swapped.id: "b", straight.id: "a", tie.id: "tie"}


def test_one_final_vote_per_member_per_pair(client, db, team, comparison):
    headers = _key(db, team.member)
    pair = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).first()
    assert _vote(client, headers, comparison.id, pair.id, "right").status_code == 201
    again = _vote(client, headers, comparison.id, pair.id, "left")
    assert again.status_code == 409
    assert "already voted on this pair" in again.json()["error"]["message"]
    assert db.query(Vote).filter_by(pair_id=pair.id).count() == 1
    # another member votes on the same pair: fine
    assert _vote(client, _key(db, team.owner), comparison.id, pair.id, "left").status_code == 201
    assert _vote(client, headers, comparison.id, pair.id, "sideways").status_code == 422


def test_an_api_key_votes_as_the_person_who_created_it(client, db, team, comparison):
    pair = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).first()
    assert _vote(client, _key(db, team.member), comparison.id, pair.id, "tie").status_code == 201
    assert db.query(Vote).filter_by(pair_id=pair.id).one().user_id == team.member.user_id
    # a second key of the same person is still the same person
    assert _vote(client, _key(db, team.member), comparison.id, pair.id, "tie").status_code == 409
    read_only = _key(db, team.owner, scopes=("read",))
    assert _vote(client, read_only, comparison.id, pair.id, "tie").status_code == 403


def test_viewers_do_not_vote_and_see_results_once_closed(client, db, team, comparison):
    viewer = _key(db, team.viewer, scopes=("read", "write"))  # even a write key: the person is a viewer
    pair = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).first()
    r = _vote(client, viewer, comparison.id, pair.id, "left")
    assert r.status_code == 403 and "Only owners and members vote" in r.json()["error"]["message"]
    assert client.get(f"{API}/{comparison.id}", headers=viewer).json()["can_vote"] is False
    assert _vote(client, _key(db, team.member), comparison.id, pair.id, "right").status_code == 201
    assert client.post(f"{API}/{comparison.id}/close", headers=_key(db, team.owner)).status_code == 200
    body = client.get(f"{API}/{comparison.id}", headers=viewer).json()
    assert body["status"] == "closed" and body["revealed"] is True
    assert body["results"]["votes"] == 1 and body["results"]["voters"] == 1


def test_closing_the_comparison(client, db, team, comparison):
    member = _key(db, team.member)
    r = client.post(f"{API}/{comparison.id}/close", headers=member)
    assert r.status_code == 403 and "created this comparison or a team owner" in r.json()["error"]["message"]
    mine = make_comparison(db, None, team.team_id, team.member.user_id, *_models(db, comparison))
    assert client.post(f"{API}/{mine.id}/close", headers=member).status_code == 200  # its creator
    r = client.post(f"{API}/{comparison.id}/close", headers=_key(db, team.owner))
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["closed_at"]
    assert r.json()["revealed"] is True and r.json()["results"]["verdict"] == "No votes yet."
    pair = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).first()
    r = _vote(client, member, comparison.id, pair.id, "left")
    assert r.status_code == 409 and "closed" in r.json()["error"]["message"]
    assert client.post(f"{API}/{comparison.id}/close", headers=_key(db, team.owner)).status_code == 409


def _models(db, comparison):  # noqa: ANN001, ANN202
    from app.models import BaseModel, Run

    return db.get(BaseModel, comparison.model_a["id"]), db.get(Run, comparison.model_b["id"])


def test_no_votes_before_the_answers_exist(client, db, team, model, run, sent):
    pending = make_comparison(db, None, team.team_id, team.owner.user_id, model, run, status=service.GENERATING)
    headers = _key(db, team.member)
    body = client.get(f"{API}/{pending.id}", headers=headers).json()
    assert body["pairs"] == [] and body["can_vote"] is False and body["pairs_total"] == 4
    pair = db.query(ComparisonPair).filter_by(comparison_id=pending.id).first()
    r = _vote(client, headers, pending.id, pair.id, "left")
    assert r.status_code == 409 and "still being generated" in r.json()["error"]["message"]


def test_another_team_cannot_see_list_vote_or_close(client, db, team, comparison):
    other = make_account(db, email="intruder@example.com")
    headers = _key(db, other, scopes=("read", "write", "admin"))
    pair = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).first()
    assert client.get(API, headers=headers).json() == {"data": []}
    assert client.get(f"{API}/{comparison.id}", headers=headers).status_code == 404
    assert _vote(client, headers, comparison.id, pair.id, "left").status_code == 404
    assert client.post(f"{API}/{comparison.id}/close", headers=headers).status_code == 404
    assert db.query(Vote).count() == 0
    # a pair of one comparison cannot be voted through another of the same team
    second = make_comparison(db, None, team.team_id, team.owner.user_id, *_models(db, comparison))
    assert _vote(client, _key(db, team.member), second.id, pair.id, "left").status_code == 404


# -- creating over the API ------------------------------------------------------------------

def test_create_with_prompts_queues_generation_on_the_train_queue(client, db, team, model, run, sent):
    body = {"model_a": {"kind": "base", "id": model.id}, "model_b": {"kind": "run", "id": run.id},
            "prompts": ["How do I reset my password?", "Line one\nline two"], "system": "Be brief."}
    r = client.post(API, json=body, headers=_key(db, team.member))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "pending" and out["pairs_total"] == 2 and out["pairs"] == []
    assert out["name"] == f"Tiny Base vs support v1 (run #{run.id})"
    assert out["model_b"] == {"kind": "run", "id": run.id, "label": f"support v1 (run #{run.id})"}
    assert out["prompt_source"] == {"kind": "custom", "count": 2, "system": "Be brief.", "max_new_tokens": 256}
    assert out["progress"] == {"done": 0, "total": 4}
    assert sent == [(service.GENERATE_TASK, [out["id"]], "train")]
    prompts = [p.prompt for p in db.query(ComparisonPair).filter_by(comparison_id=out["id"]).order_by("position")]
    assert prompts == ["How do I reset my password?", "Line one\nline two"]
    listed = client.get(API, headers=_key(db, team.viewer, scopes=("read",))).json()["data"]
    assert [c["id"] for c in listed] == [out["id"]]


def test_create_from_a_dataset_uses_its_eval_split_then_its_train_split(client, db, store, team, model, run,
                                                                         dataset, sent):
    headers = _key(db, team.owner)
    base = {"model_a": {"kind": "base", "id": model.id}, "model_b": {"kind": "run", "id": run.id}}
    r = client.post(API, json={**base, "dataset_id": dataset.id, "count": 3}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["prompt_source"]["kind"] == "eval_split" and r.json()["pairs_total"] == 3
    pairs = db.query(ComparisonPair).filter_by(comparison_id=r.json()["id"]).all()
    assert all(p.prompt.startswith("Question 10") and "Answer 10" in p.reference for p in pairs)  # eval records
    no_eval = make_dataset(db, store, team.team_id, n_eval=0, name="no-eval")
    r = client.post(API, json={**base, "dataset_id": no_eval.id, "count": 50}, headers=headers)
    assert r.status_code == 201 and r.json()["prompt_source"]["kind"] == "train_split"
    assert r.json()["pairs_total"] == 24  # all of them: fewer than asked


def test_create_refuses_what_cannot_be_compared(client, db, store, team, model, run, dataset, sent):
    headers = _key(db, team.owner)
    a, b = {"kind": "base", "id": model.id}, {"kind": "run", "id": run.id}

    def error(body: dict) -> tuple[int, str]:
        r = client.post(API, json=body, headers=headers)
        return r.status_code, r.json()["error"]["message"]

    same = (422, "Choose two different models: A and B are the same.")
    assert error({"model_a": a, "model_b": a, "prompts": ["x"]}) == same
    assert error({"model_a": a, "model_b": b, "prompts": ["  ", ""]})[0] == 422
    assert error({"model_a": a, "model_b": b})[1] == "Give either prompts or a dataset_id to sample prompts from."
    assert error({"model_a": a, "model_b": b, "prompts": ["x"] * 201})[0] == 422
    too_long = (422, "Prompt 1 is longer than 4,000 characters.")
    assert error({"model_a": a, "model_b": b, "prompts": ["x" * 4001]}) == too_long
    unknown = (404, "Your team has no run #999.")
    assert error({"model_a": a, "model_b": {"kind": "run", "id": 999}, "prompts": ["x"]}) == unknown
    from app.models import RunStatus
    from tests.runs.factories import make_run

    running = make_run(db, team.team_id, dataset, model, status=RunStatus.running)
    status, message = error({"model_a": a, "model_b": {"kind": "run", "id": running.id}, "prompts": ["x"]})
    assert status == 422 and "has no fine-tuned model to compare" in message
    assert error({"model_a": a, "model_b": b, "dataset_id": 999})[0] == 404
    viewer = client.post(API, json={"model_a": a, "model_b": b, "prompts": ["x"]},
                         headers=_key(db, team.owner, scopes=("read",)))
    assert viewer.status_code == 403
    assert sent == []


def test_run_against_run_and_another_teams_models_are_refused(client, db, store, team, model, run, dataset, sent,
                                                               tmp_path):
    other = make_account(db)
    their_model = register_model(db, write_model_dir(tmp_path / "theirs"), team_id=other.team_id, name="Theirs")
    their_run = succeeded_run(db, other.team_id, make_dataset(db, store, other.team_id), their_model)
    second = succeeded_run(db, team.team_id, dataset, model, name="support v2")
    headers = _key(db, team.owner)
    ok = client.post(API, json={"model_a": {"kind": "run", "id": run.id}, "model_b": {"kind": "run", "id": second.id},
                                "prompts": ["x"]}, headers=headers)
    assert ok.status_code == 201
    for ref in ({"kind": "run", "id": their_run.id}, {"kind": "base", "id": their_model.id}):
        r = client.post(API, json={"model_a": {"kind": "base", "id": model.id}, "model_b": ref, "prompts": ["x"]},
                        headers=headers)
        assert r.status_code == 404 and "Theirs" not in json.dumps(r.json())
