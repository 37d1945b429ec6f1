"""The playground's API and stream: transcripts saved for the team (list, create, get), turned
into an A/B test and into a validated dataset; each model's own conversation sent to the
inference process; bad input answered clearly; other teams and viewers kept out."""

from __future__ import annotations

import json

import orjson
import pytest

from app import queue
from app.ab import repository as ab_repo
from app.inference import client as inference
from app.models import Dataset, DatasetStatus
from tests.factories import log_in, make_account, make_api_key
from worker.tasks.datasets import validate_dataset

API = "/api/v1/playground/transcripts"


def _key(db, account, scopes=("read", "write")) -> dict:  # noqa: ANN001
    return {"Authorization": f"Bearer {make_api_key(db, account, scopes=scopes)}"}


def _transcript(names: dict, **extra) -> dict:
    return {"models": [names["base"], names["tuned"]], "system": "Answer in French.", "temperature": 0.3,
            "max_tokens": 64, "title": "Login trouble",
            "turns": [{"prompt": "Je n'arrive plus à me connecter.", "answers": ["Base one.", "Tuned one."]},
                      {"prompt": "Et mon mot de passe ?", "answers": ["Base two.", "Tuned two."]}], **extra}


def test_a_transcript_is_saved_listed_and_read_within_the_team(client, db, team, model_names):
    headers = _key(db, team.member)
    r = client.post(API, json=_transcript(model_names), headers=headers)
    assert r.status_code == 201, r.text
    saved = r.json()
    assert saved["models"] == [model_names["base"], model_names["tuned"]]
    assert saved["turns"][1]["answers"] == ["Base two.", "Tuned two."]
    assert saved["created_by"] == team.member.email and saved["url"] == f"/playground/transcripts/{saved['id']}"
    viewer = _key(db, team.viewer, scopes=("read",))
    assert client.get(f"{API}/{saved['id']}", headers=viewer).json() == saved  # shared with the whole team
    listed = client.get(API, headers=viewer).json()
    assert listed["total"] == 1 and listed["data"][0]["title"] == "Login trouble" and listed["data"][0]["turns"] == 2

    stranger = _key(db, make_account(db))
    assert client.get(f"{API}/{saved['id']}", headers=stranger).status_code == 404
    assert client.get(API, headers=stranger).json() == {"data": [], "total": 0}
    assert client.post(f"{API}/{saved['id']}/dataset", json={"chosen": [0, 0]}, headers=stranger).status_code == 404
    assert client.post(API, json=_transcript(model_names), headers=viewer).status_code == 403


@pytest.mark.parametrize(("change", "param", "said"), [
    (lambda n: {"models": ["no-such-model"]}, "models[0]", "does not exist"),
    (lambda n: {"models": [n["tuned"], n["tuned"]]}, "models[1]", "chosen twice"),
    (lambda n: {"turns": [{"prompt": "Hi", "answers": ["only one"]}]}, "turns", "1 answers for 2 models"),
    (lambda n: {"models": ["a", "b", "c", "d"]}, None, "at most 3"),
    (lambda n: {"temperature": 3}, None, "less than or equal to 2"),
])
def test_bad_transcripts_are_refused_clearly(client, db, team, model_names, change, param, said):
    body = {**_transcript(model_names), **change(model_names)}
    r = client.post(API, json=body, headers=_key(db, team.owner))
    assert r.status_code == 422 and said in r.text, r.text
    if param:
        assert r.json()["error"]["param"] == param


def test_a_transcript_becomes_an_ab_test_on_its_prompts(client, db, team, model_names):
    headers = _key(db, team.owner)
    saved = client.post(API, json=_transcript(model_names), headers=headers).json()
    r = client.post(f"{API}/{saved['id']}/ab", json={"model_a": 0, "model_b": 1}, headers=headers)
    assert r.status_code == 201, r.text
    comparison = ab_repo.get(db, team_id=team.team_id, comparison_id=r.json()["comparison_id"])
    assert comparison.name == "Playground: Login trouble" and comparison.status == "pending"
    assert comparison.model_a["kind"] == "base" and comparison.model_b["kind"] == "run"
    assert comparison.prompt_source["system"] == "Answer in French." and comparison.prompt_source["max_new_tokens"] == 64
    assert [p.prompt for p in ab_repo.pairs(db, comparison_id=comparison.id)] == [
        "Je n'arrive plus à me connecter.", "Et mon mot de passe ?"]
    r = client.post(f"{API}/{saved['id']}/ab", json={"model_a": 1, "model_b": 1}, headers=headers)
    assert r.status_code == 422 and "two different models" in r.text
    r = client.post(f"{API}/{saved['id']}/ab", json={"model_a": 0, "model_b": 2}, headers=headers)
    assert r.status_code == 422 and "has 2 model(s)" in r.text


def test_a_checkpoint_column_cannot_go_into_an_ab_test(client, db, team, model_names):
    headers = _key(db, team.owner)
    body = _transcript(model_names, models=[model_names["base"], model_names["checkpoint"]])
    saved = client.post(API, json=body, headers=headers).json()
    r = client.post(f"{API}/{saved['id']}/ab", json={"model_a": 0, "model_b": 1}, headers=headers)
    assert r.status_code == 422 and "is a checkpoint" in r.text and r.json()["error"]["param"] == "model_b"


@pytest.fixture
def validations(monkeypatch) -> list:
    """The validation task runs in-process right after the commit that queued it."""
    ran = []

    def send(task, args, queue):  # noqa: ANN001, ANN202
        if task == "studio.validate_dataset":
            ran.append(validate_dataset(*args))

    monkeypatch.setattr(queue, "send", send)
    return ran


def test_chosen_answers_become_a_validated_dataset(client, db, team, model_names, store, validations):
    headers = _key(db, team.member)
    body = _transcript(model_names, turns=[
        {"prompt": "Je n'arrive plus à me connecter.", "answers": ["Base one.", "Tuned one."]},
        {"prompt": "Et mon mot de passe ?", "answers": ["Base two.", "Tuned two."]},
        {"prompt": "Merci !", "answers": ["De rien.", ""]}])
    saved = client.post(API, json=body, headers=headers).json()
    r = client.post(f"{API}/{saved['id']}/dataset", json={"chosen": [1, 0, None], "name": "From chats"},
                    headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["examples"] == 2 and validations == ["valid"]
    db.expire_all()
    dataset = db.get(Dataset, r.json()["dataset_id"])
    assert dataset.team_id == team.team_id and dataset.name == "From chats" and dataset.status == DatasetStatus.valid
    assert dataset.num_examples == 2 and dataset.original_filename == f"playground-transcript-{saved['id']}.jsonl"
    rows = [orjson.loads(line) for line in store.path(dataset.raw_path).read_bytes().splitlines()]
    system = {"role": "system", "content": "Answer in French."}
    assert rows == [
        {"messages": [system, {"role": "user", "content": "Je n'arrive plus à me connecter."},
                      {"role": "assistant", "content": "Tuned one."}]},
        {"messages": [system, {"role": "user", "content": "Je n'arrive plus à me connecter."},
                      {"role": "assistant", "content": "Tuned one."},  # the earlier turn keeps its chosen answer
                      {"role": "user", "content": "Et mon mot de passe ?"},
                      {"role": "assistant", "content": "Base two."}]}]

    for chosen, said in (([None, None, None], "at least one answer"), ([0, 0], "each of the 3 turns"),
                         ([0, 0, 1], "the chosen answer is empty"), ([0, 5, None], "no column 6")):
        r = client.post(f"{API}/{saved['id']}/dataset", json={"chosen": chosen}, headers=headers)
        assert r.status_code == 422 and said in r.text, (chosen, r.text)


class FakeInference:
    """Stands in for the inference process (a separate server): records what each model was asked."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def open_stream(self, settings, target, params):  # noqa: ANN001, ANN201
        self.asked.append({"target": target, **params})
        column = len(self.asked) - 1

        def items():  # noqa: ANN202
            yield {"note": "Waiting: a run is training on this machine."}
            for word in (f"Answer {column}", " done."):
                yield {"delta": word}
            yield {"done": True, "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 2}

        return items()


def test_the_stream_sends_each_model_its_own_conversation(client, db, team, model_names, monkeypatch):
    fake = FakeInference()
    monkeypatch.setattr(inference, "open_stream", fake.open_stream)
    csrf = log_in(client, team.member)
    body = {"models": [model_names["base"], model_names["tuned"], model_names["checkpoint"]], "system": "Be brief.",
            "temperature": 0.7, "max_tokens": 32, "prompt": "Et ensuite ?",
            "turns": [{"prompt": "Bonjour", "answers": ["Salut (base)", "Salut (tuned)", "Salut (ckpt)"]}]}
    assert client.post("/playground/stream", json=body).status_code == 403  # no CSRF token
    r = client.post("/playground/stream", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    for who in ("0", "1", "2"):
        mine = [x for x in lines if x["who"] == who]
        assert mine[0] == {"who": who, "note": "Waiting: a run is training on this machine."}
        assert "".join(x.get("delta", "") for x in mine) == f"Answer {who} done." and mine[-1]["done"] is True
    by_adapter = {a["target"].adapter is not None for a in fake.asked}
    assert by_adapter == {False, True}  # the base model alone, the run and the checkpoint with their adapter
    for asked, own in zip(fake.asked, ("Salut (base)", "Salut (tuned)", "Salut (ckpt)"), strict=True):
        assert asked["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bonjour"},
                                     {"role": "assistant", "content": own}, {"role": "user", "content": "Et ensuite ?"}]
        assert (asked["temperature"], asked["max_tokens"]) == (0.7, 32)

    bad = client.post("/playground/stream", json={**body, "models": [model_names["base"], "ft:nope:team-9:x:1"]},
                      headers={"X-CSRF-Token": csrf, "Accept": "application/json"})  # as the page's script asks
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "models[1]"
    assert "Column 2" in bad.json()["error"]["message"]


def test_the_pages_save_share_and_convert_a_transcript(client, db, team, model_names, validations):
    csrf = log_in(client, team.member)
    body = _transcript(model_names)
    r = client.post("/playground/transcripts", data={"csrf_token": csrf, "title": "Shared chat",
                                                     "transcript": json.dumps(body)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/playground/transcripts/")
    url = r.headers["location"]
    page = client.get(url)
    assert page.status_code == 200 and "Shared chat" in page.text and "Tuned two." in page.text
    assert client.get("/playground/transcripts").text.count(url) >= 1
    assert "Login trouble" not in client.get("/playground").text  # a fresh chat starts empty
    assert "Tuned two." in client.get(f"/playground?transcript={url.rsplit('/', 1)[1]}").text  # continued

    r = client.post(f"{url}/dataset", data={"csrf_token": csrf, "turn_0": "2", "turn_1": "none"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/datasets/") and validations == ["valid"]
    r = client.post(f"{url}/ab", data={"csrf_token": csrf, "model_a": "1", "model_b": "2"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ab/")
    r = client.post(f"{url}/ab", data={"csrf_token": csrf, "model_a": "2", "model_b": "2"})
    assert r.status_code == 422 and "two different models" in r.text
    assert client.post(f"{url}/dataset", data={"turn_0": "1"}).status_code == 403  # no CSRF token

    r = client.post("/playground/transcripts", data={"csrf_token": csrf, "transcript": "{not json"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/playground"


def test_the_choices_are_those_of_v1_models_plus_checkpoints(client, db, team, model_names):
    listed = {m["id"] for m in client.get("/v1/models", headers=_key(db, team.owner)).json()["data"]}
    log_in(client, team.viewer)
    page = client.get("/playground")
    assert page.status_code == 200
    for name in [*listed, model_names["checkpoint"]]:
        assert f'<option value="{name}"' in page.text
    assert "Save transcript" not in page.text  # a viewer chats but does not save


def test_a_transcript_is_renamed_and_deleted_by_writers_of_its_team_only(client, db, team, model_names):
    member, viewer = _key(db, team.member), _key(db, team.viewer, scopes=("read",))
    saved = client.post(API, json=_transcript(model_names), headers=_key(db, team.owner)).json()
    url = f"{API}/{saved['id']}"

    r = client.patch(url, json={"title": "  Login   trouble,\nFrench "}, headers=member)  # any writer of the team
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Login trouble, French" and r.json()["turns"] == saved["turns"]
    assert client.get(url, headers=viewer).json()["title"] == "Login trouble, French"
    for body, said in (({"title": "   "}, "Give the transcript a title."), ({"title": "x" * 201}, "200 characters"),
                       ({}, "Field required")):
        r = client.patch(url, json=body, headers=member)
        assert r.status_code == 422 and said in r.text, r.text
    assert r.json()["error"]["param"] == "title"

    stranger = _key(db, make_account(db))
    assert client.patch(url, json={"title": "mine"}, headers=stranger).status_code == 404
    assert client.delete(url, headers=stranger).status_code == 404
    assert client.patch(url, json={"title": "viewer's"}, headers=viewer).status_code == 403
    assert client.delete(url, headers=viewer).status_code == 403
    assert client.get(url, headers=viewer).json()["title"] == "Login trouble, French"

    r = client.delete(url, headers=member)
    assert r.status_code == 200 and r.json()["id"] == saved["id"] and r.json()["title"] == "Login trouble, French"
    assert client.get(url, headers=member).status_code == 404
    assert client.get(API, headers=member).json() == {"data": [], "total": 0}
    assert client.delete(url, headers=member).status_code == 404
    assert client.patch(url, json={"title": "back"}, headers=member).status_code == 404


def test_deleting_a_transcript_keeps_the_ab_test_and_dataset_made_from_it(client, db, team, model_names, validations):
    headers = _key(db, team.member)
    saved = client.post(API, json=_transcript(model_names), headers=headers).json()
    ab = client.post(f"{API}/{saved['id']}/ab", json={"model_a": 0, "model_b": 1}, headers=headers).json()
    made = client.post(f"{API}/{saved['id']}/dataset", json={"chosen": [1, 0]}, headers=headers).json()
    comparison_before = client.get(f"/api/v1/ab/comparisons/{ab['comparison_id']}", headers=headers).json()
    dataset_before = client.get(f"/api/v1/datasets/{made['dataset_id']}", headers=headers).json()

    assert client.delete(f"{API}/{saved['id']}", headers=headers).status_code == 200
    r = client.get(f"/api/v1/ab/comparisons/{ab['comparison_id']}", headers=headers)
    assert r.status_code == 200 and r.json() == comparison_before
    assert [p.prompt for p in ab_repo.pairs(db, comparison_id=ab["comparison_id"])] == [
        "Je n'arrive plus à me connecter.", "Et mon mot de passe ?"]
    r = client.get(f"/api/v1/datasets/{made['dataset_id']}", headers=headers)
    assert r.status_code == 200 and r.json() == dataset_before and r.json()["status"] == "valid"
    log_in(client, team.member)
    assert client.get(f"/ab/{ab['comparison_id']}").status_code == 200
    assert client.get(f"/datasets/{made['dataset_id']}").status_code == 200


def test_the_page_renames_and_deletes_with_a_confirm_step(client, db, team, model_names):
    saved = client.post(API, json=_transcript(model_names), headers=_key(db, team.owner)).json()
    url = f"/playground/transcripts/{saved['id']}"
    csrf = log_in(client, team.member)
    page = client.get(url).text
    assert f'action="{url}/title"' in page
    # the delete button sits behind a "Delete this transcript" disclosure that says what happens
    assert "<summary>Delete this transcript</summary>" in page and f'action="{url}/delete"' in page
    assert page.index("<summary>Delete this transcript</summary>") < page.index(f'action="{url}/delete"')

    assert client.post(f"{url}/title", data={"title": "No token"}).status_code == 403
    assert client.post(f"{url}/delete").status_code == 403  # no CSRF token
    r = client.post(f"{url}/title", data={"csrf_token": csrf, "title": "Password reset"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == url
    assert "<h1>Password reset</h1>" in client.get(url).text
    assert "Password reset" in client.get("/playground/transcripts").text
    r = client.post(f"{url}/title", data={"csrf_token": csrf, "title": " "})
    assert r.status_code == 422 and "Give the transcript a title." in r.text and "<h1>Password reset</h1>" in r.text

    r = client.post(f"{url}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/playground/transcripts"
    listing = client.get("/playground/transcripts").text
    assert "deleted" in listing and url not in listing
    assert client.get(url).status_code == 404
    assert client.post(f"{url}/delete", data={"csrf_token": csrf}).status_code == 404


def test_a_viewer_sees_no_rename_or_delete_and_cannot_post_them(client, db, team, model_names):
    saved = client.post(API, json=_transcript(model_names), headers=_key(db, team.owner)).json()
    url = f"/playground/transcripts/{saved['id']}"
    csrf = log_in(client, team.viewer)
    page = client.get(url)
    assert page.status_code == 200 and "Login trouble" in page.text
    assert f"{url}/title" not in page.text and f"{url}/delete" not in page.text
    assert client.post(f"{url}/title", data={"csrf_token": csrf, "title": "mine"}).status_code == 403
    assert client.post(f"{url}/delete", data={"csrf_token": csrf}).status_code == 403
    assert client.get(f"{API}/{saved['id']}", headers=_key(db, team.owner)).json()["title"] == "Login trouble"
