"""The quality gate: a promotion waits for the golden-set evaluations that the worker makes, then
moves the alias or is refused with both scores; an owner's override is logged with its reason."""

from __future__ import annotations

from app.models import Comparison, ComparisonPair, Evaluation, Release, Vote
from app.registry import gate as gates
from tests.factories import log_in
from tests.registry.conftest import bearer, tuned
from worker.tasks import evaluation as worker_eval


def _outcome(eval_loss: float, rouge: float) -> dict:
    metrics = {"eval_loss": eval_loss, "rougeL": rouge, "exact_match": 0.0}
    return {"metrics": {"base": dict(metrics), "finetuned": metrics}, "samples": [],
            "details": {"split": "eval", "samples": 0}}


def _finish(evaluation_id: int, eval_loss: float, rouge: float = 0.5) -> None:
    """What the worker does with a golden-set evaluation it finished (worker/tasks/evaluation.py)."""
    assert worker_eval._start(evaluation_id, "test-worker") is not None
    worker_eval._succeed(evaluation_id, _outcome(eval_loss, rouge), 1.0)


def _setup(client, db, store, team, dataset, model, golden, owner_key, *, metric="eval_loss", margin=0.05):  # noqa: ANN001, ANN202
    first = tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    second = tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    h = bearer(owner_key)
    body = {"dataset_id": golden.id if metric != "ab_win_rate" else None, "metric": metric, "margin": margin}
    assert client.put("/api/v1/registry/gate", json=body, headers=h).status_code == 200
    first_release = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 1},
                                headers=h)
    assert first_release.status_code == 201  # nothing to compare with: moves at once
    return first, second, h


def test_a_worse_version_is_refused_and_an_owner_override_is_logged(client, db, store, team, dataset, model, golden,
                                                                    owner_key, member_key, sent, make_client):
    first, second, h = _setup(client, db, store, team, dataset, model, golden, owner_key)
    r = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2}, headers=h)
    assert r.status_code == 202 and r.json()["status"] == "pending", r.text
    pending = r.json()
    queued = [args[0] for task, args, _ in sent if task == "studio.evaluate"]
    assert sorted(queued) == sorted([pending["candidate_evaluation_id"], pending["holder_evaluation_id"]])
    for eid, run in ((pending["candidate_evaluation_id"], second), (pending["holder_evaluation_id"], first)):
        row = db.get(Evaluation, eid)
        assert (row.kind, row.run_id, row.details["golden_dataset_id"]) == ("golden", run.id, golden.id)
    # the page says the release waits
    browser = make_client()
    log_in(browser, team.owner)
    page = browser.get("/models").text
    assert "Releases waiting for their evaluation" in page and "support-bot v2 → support-bot:prod" in page

    _finish(pending["holder_evaluation_id"], eval_loss=1.50)
    db.expire_all()
    assert db.get(Release, pending["id"]).status == "pending"  # one score is not enough
    _finish(pending["candidate_evaluation_id"], eval_loss=2.00)  # worse by 0.5 > margin 0.05
    db.expire_all()
    refused = db.get(Release, pending["id"])
    assert (refused.status, refused.candidate_score, refused.holder_score) == ("refused", 2.0, 1.5)
    assert "does worse" in refused.message
    aliases = client.get("/api/v1/registry/aliases", headers=h).json()
    assert aliases[0]["version"] == "support-bot v1"
    page = browser.get("/models").text
    assert "Refused by the gate" in page and "support-bot v2: 2" in page and "support-bot v1: 1.5" in page

    # a member cannot override; an owner can, with a reason that stays in the log
    body = {"name": "support-bot", "alias": "prod", "version": 2, "override_reason": "Legal asked for the new wording today."}
    assert client.post("/api/v1/registry/releases", json=body, headers=bearer(member_key)).status_code == 403
    assert client.post("/api/v1/registry/releases", json={**body, "override_reason": "ok"}, headers=h).status_code == 422
    moved = client.post("/api/v1/registry/releases", json=body, headers=h)
    assert moved.status_code == 201 and moved.json()["status"] == "moved"
    log = client.get("/api/v1/registry/releases", headers=h).json()
    assert log[0]["override_reason"] == "Legal asked for the new wording today."
    assert (log[0]["candidate_score"], log[0]["holder_score"]) == (2.0, 1.5)
    assert aliases[0]["id"] and client.get("/api/v1/registry/aliases", headers=h).json()[0]["version"] == "support-bot v2"
    assert "Legal asked for the new wording today." in browser.get("/models").text


def test_a_version_within_the_margin_is_released_when_its_evaluation_ends(client, db, store, team, dataset, model,
                                                                          golden, owner_key, sent):
    _, second, h = _setup(client, db, store, team, dataset, model, golden, owner_key, metric="rougeL", margin=0.05)
    pending = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "staging", "version": 2},
                          headers=h).json()
    assert pending["status"] == "moved"  # staging had no holder yet
    pending = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2},
                          headers=h).json()
    _finish(pending["holder_evaluation_id"], eval_loss=1.0, rouge=0.50)
    _finish(pending["candidate_evaluation_id"], eval_loss=1.1, rouge=0.47)  # 0.03 worse: within the margin
    db.expire_all()
    done = db.get(Release, pending["id"])
    assert (done.status, done.to_label) == ("moved", "support-bot v2") and "Passed" in done.message
    # a second promotion reuses the evaluations already made on this golden set version
    sent.clear()
    client.post(f"/api/v1/registry/aliases/{done.alias_id}/rollback", headers=h)
    again = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2},
                        headers=h).json()
    assert again["status"] == "moved" and not [s for s in sent if s[0] == "studio.evaluate"]


def test_a_failed_evaluation_refuses_the_release_with_its_reason(client, db, store, team, dataset, model, golden,
                                                                 owner_key, sent):
    _setup(client, db, store, team, dataset, model, golden, owner_key)
    pending = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2},
                          headers=bearer(owner_key)).json()
    assert worker_eval._start(pending["candidate_evaluation_id"], "test-worker") is not None
    worker_eval._fail(pending["candidate_evaluation_id"], RuntimeError("out of memory"))
    db.expire_all()
    failed = db.get(Release, pending["id"])
    assert failed.status == "failed" and "out of memory" in failed.message


def test_ab_win_rate_gate_reads_the_votes_of_closed_tests(client, db, store, team, dataset, model, golden, owner_key):
    first, second, h = _setup(client, db, store, team, dataset, model, golden, owner_key, metric="ab_win_rate",
                              margin=0.1)
    from app.models import utcnow

    comparison = Comparison(team_id=team.team_id, name="v1 vs v2", model_a={"kind": "run", "id": first.id},
                            model_b={"kind": "run", "id": second.id}, status="closed", closed_at=utcnow())
    db.add(comparison)
    db.flush()
    for i, choice in enumerate(["a", "a", "a", "b"]):  # v2 (model b) wins 1 of 4: 0.25 < 0.5 - 0.1
        pair = ComparisonPair(comparison_id=comparison.id, position=i, prompt=f"q{i}")
        db.add(pair)
        db.flush()
        db.add(Vote(pair_id=pair.id, user_id=team.owner.user_id, choice=choice))
    db.commit()
    r = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2}, headers=h)
    assert r.status_code == 409 and r.json()["status"] == "refused"
    assert (r.json()["candidate_score"], r.json()["holder_score"]) == (0.25, 0.75)


def test_the_gate_needs_a_checked_dataset_and_a_known_metric(client, db, store, team, golden, owner_key, member_key):
    h = bearer(owner_key)
    assert client.put("/api/v1/registry/gate", json={"dataset_id": golden.id, "metric": "bleu"}, headers=h).status_code == 422
    assert client.put("/api/v1/registry/gate", json={"metric": "eval_loss"}, headers=h).status_code == 422
    assert client.put("/api/v1/registry/gate", json={"dataset_id": golden.id, "metric": "eval_loss"},
                      headers=bearer(member_key)).status_code == 403
    assert gates.is_worse("eval_loss", 1.2, 1.0, 0.1) and not gates.is_worse("eval_loss", 1.05, 1.0, 0.1)
    assert gates.is_worse("rougeL", 0.3, 0.5, 0.1) and not gates.is_worse("rougeL", 0.45, 0.5, 0.1)


def test_the_worker_evaluates_a_golden_set_on_its_examples(db, store, team, golden, settings):
    records = worker_eval._golden_records(store, {"team_id": team.team_id, "golden_dataset_id": golden.id})
    assert len(records) == 8  # its training and eval splits together


def test_a_lost_worker_fails_the_release_waiting_on_its_evaluation(client, db, store, team, dataset, model, golden,
                                                                   owner_key, sent):
    _setup(client, db, store, team, dataset, model, golden, owner_key)
    pending = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2},
                          headers=bearer(owner_key)).json()
    assert worker_eval._start(pending["candidate_evaluation_id"], "gone-worker") is not None
    assert worker_eval.fail_interrupted() >= 1  # no live worker named gone-worker
    db.expire_all()
    failed = db.get(Release, pending["id"])
    assert failed.status == "failed" and "worker stopped" in failed.message


def test_judge_score_gate_judges_the_golden_answers_then_decides(client, db, store, team, dataset, model, golden,
                                                                 owner_key, sent, monkeypatch):
    from app import config
    from app.evaluations import judge

    _setup(client, db, store, team, dataset, model, golden, owner_key, metric="judge_score", margin=0.5)
    pending = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2},
                          headers=bearer(owner_key)).json()
    monkeypatch.setenv("STUDIO_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("STUDIO_JUDGE_MODEL", "judge")
    config.get_settings.cache_clear()
    _finish(pending["holder_evaluation_id"], eval_loss=1.0)
    _finish(pending["candidate_evaluation_id"], eval_loss=1.0)
    judged = [args[0] for task, args, _ in sent if task == judge.JUDGE_TASK]
    assert len(judged) == 2  # each golden-set evaluation is judged next
    db.expire_all()
    assert db.get(Release, pending["id"]).status == "pending"
    scores = {pending["holder_evaluation_id"]: 8.0, pending["candidate_evaluation_id"]: 6.0}
    for judge_id in judged:  # what worker/tasks/judge.py::run_judging records, then settles
        work = judge.start(db, judge_id)
        score = scores[work.details["source_evaluation_id"]]
        judge.record(db, work, judge.Graded([{"base_score": 5, "finetuned_score": score}], None, 0.1))
        gates.settle(db, judge_id, config.get_settings())
    db.commit()
    refused = db.get(Release, pending["id"])
    assert (refused.status, refused.candidate_score, refused.holder_score) == ("refused", 6.0, 8.0)
    config.get_settings.cache_clear()
