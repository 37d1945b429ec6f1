"""The OpenAI-compatible API in process: shapes, mapping onto datasets and runs, refusals in the
OpenAI error shape, and team scoping. (The SDK end to end: tests/worker/test_openai_sdk.py.)"""

from __future__ import annotations

import json

import pytest

from app.models import Artifact, Checkpoint, DatasetStatus, Run, RunEvent, RunStatus
from app.storage import ArtifactStore
from tests.factories import make_account, make_api_key
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir

CHAT = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'


@pytest.fixture
def team(db, tmp_path):
    account = make_account(db)
    model = register_model(db, write_model_dir(tmp_path / "tiny"), name="Tiny Llama")
    return account, {"Authorization": f"Bearer {make_api_key(db, account)}"}, model


def _error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["type"] == code and body["message"]
    return body


def test_files_upload_list_retrieve_content_delete(client, team):
    _, headers, _ = team
    r = client.post("/v1/files", headers=headers, files={"file": ("train.jsonl", CHAT)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["id"].startswith("file-") and f["object"] == "file" and f["status"] == "uploaded"
    assert f["bytes"] == len(CHAT) and f["filename"] == "train.jsonl" and isinstance(f["created_at"], int)
    listed = client.get("/v1/files", headers=headers).json()
    assert [x["id"] for x in listed["data"]] == [f["id"]] and listed["has_more"] is False
    assert client.get(f"/v1/files/{f['id']}", headers=headers).json() == f
    assert client.get(f"/v1/files/{f['id']}/content", headers=headers).content == CHAT
    deleted = client.delete(f"/v1/files/{f['id']}", headers=headers).json()
    assert deleted == {"id": f["id"], "object": "file", "deleted": True}
    _error(client.get(f"/v1/files/{f['id']}", headers=headers), 404, "not_found")


def test_file_refusals_use_the_openai_error_shape(client, team):
    _, headers, _ = team
    body = _error(client.post("/v1/files", headers=headers, files={"file": ("a.jsonl", CHAT)},
                              data={"purpose": "assistants"}), 422, "invalid_input")
    assert body["param"] == "purpose"
    _error(client.get("/v1/files/nonsense", headers=headers), 404, "not_found")
    _error(client.get("/v1/files"), 401, "unauthorized")


def test_fine_tuning_job_maps_onto_a_studio_run(client, db, settings, team):
    account, headers, model = team
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, n_train=16)
    r = client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": f"file-{dataset.id}", "suffix": "fr", "seed": 3,
        "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2},
        "method": {"type": "supervised"}})
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["object"] == "fine_tuning.job" and run["status"] == "queued" and run["model"] == model.slug
    assert run["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2, "devices": 1}
    assert run["seed"] == 3 and run["training_file"] == f"file-{dataset.id}" and run["fine_tuned_model"] is None
    listed = client.get("/v1/fine_tuning/jobs", headers=headers).json()
    assert [j["id"] for j in listed["data"]] == [run["id"]]
    events = client.get(f"/v1/fine_tuning/jobs/{run['id']}/events", headers=headers).json()["data"]
    assert events[-1]["message"].startswith("Queued") and events[-1]["object"] == "fine_tuning.job.event"
    cancelled = client.post(f"/v1/fine_tuning/jobs/{run['id']}/cancel", headers=headers).json()
    assert cancelled["status"] == "cancelled"
    _error(client.post(f"/v1/fine_tuning/jobs/{run['id']}/cancel", headers=headers), 409, "conflict")


def test_fine_tuning_job_asks_for_devices_as_a_studio_extension(client, db, settings, team):
    """devices in the hyperparameters, or top-level as the SDK's extra_body sends it; batch_size stays
    the effective batch over all devices."""
    account, headers, model = team
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, n_train=16)
    base = {"model": model.slug, "training_file": f"file-{dataset.id}"}
    r = client.post("/v1/fine_tuning/jobs", headers=headers, json={
        **base, "method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 8, "devices": 2}}}})
    assert r.status_code == 200, r.text
    assert r.json()["hyperparameters"]["devices"] == 2 and r.json()["hyperparameters"]["batch_size"] == 8
    r = client.post("/v1/fine_tuning/jobs", headers=headers, json={**base, "devices": 4,
                                                                    "hyperparameters": {"batch_size": 16}})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["hyperparameters"]["devices"] == 4 and job["hyperparameters"]["batch_size"] == 16
    config = client.get(f"/api/v1/runs/{job['id'].removeprefix('ftjob-')}", headers=headers).json()["config"]
    assert config["devices"] * config["per_device_batch_size"] * config["grad_accum"] == 16
    body = _error(client.post("/v1/fine_tuning/jobs", headers=headers, json={**base, "devices": 0}),
                  422, "invalid_input")
    assert body["param"] == "hyperparameters.devices" and "between 1 and 64" in body["message"]


def test_run_create_refusals(client, db, settings, team):
    account, headers, model = team
    pending = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, status=DatasetStatus.validating)
    broken = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, status=DatasetStatus.invalid,
                          name="broken")
    broken.report = {"errors": [{"line": 3, "kind": "invalid_json", "message": "This line is not valid JSON."}]}
    db.commit()
    body = {"model": model.slug, "training_file": f"file-{broken.id}"}
    refused = _error(client.post("/v1/fine_tuning/jobs", headers=headers, json=body), 422, "invalid_input")
    assert refused["param"] == "training_file" and "(line 3): This line is not valid JSON." in refused["message"]
    body = {"model": "no-such-model", "training_file": f"file-{pending.id}"}
    assert _error(client.post("/v1/fine_tuning/jobs", headers=headers, json=body), 404, "not_found")["param"] == "model"
    body = {"model": model.slug, "training_file": f"file-{pending.id}", "method": {"type": "dpo"}}
    _error(client.post("/v1/fine_tuning/jobs", headers=headers, json=body), 422, "invalid_input")


def _upload(client, headers, data: bytes, name: str = "train.jsonl") -> str:
    r = client.post("/v1/files", headers=headers, files={"file": (name, data)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200 and r.json()["status"] == "uploaded", r.text
    return r.json()["id"]


def test_a_job_created_right_after_the_upload_waits_for_the_check(client, db, team, sent):
    """As at OpenAI: no 422 for a file still being checked. The job is validating_files, no worker
    claims it, and the end of the check (the real task) queues it, in the same transaction."""
    from worker.tasks import runs as run_tasks
    from worker.tasks.datasets import validate_dataset

    account, headers, model = team
    data = b"".join(CHAT for _ in range(12))
    train, valid = _upload(client, headers, data), _upload(client, headers, CHAT * 4, "valid.jsonl")
    r = client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": train, "validation_file": valid,
        "hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 2}})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "validating_files" and job["validation_file"] == valid and job["error"] is None
    native = client.get(f"/api/v1/runs/{job['id'].removeprefix('ftjob-')}", headers=headers).json()
    assert native["status"] == "validating_files" and native["queue_status"].startswith("Checking your files")
    assert [t for t, *_ in sent].count("studio.train") == 0
    assert run_tasks.claim_next("w1@test") is None  # nothing a worker may take yet
    validate_dataset(int(train.removeprefix("file-")))
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=headers).json()["status"] == "validating_files"
    validate_dataset(int(valid.removeprefix("file-")))  # the last of its files: queued now
    done = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=headers).json()
    assert done["status"] == "queued" and done["hyperparameters"]["n_epochs"] == 2
    assert ("studio.train", [int(job["id"].removeprefix("ftjob-"))], "train") in sent
    run = db.get(Run, int(job["id"].removeprefix("ftjob-")))
    db.refresh(run)
    assert run.eval_dataset_id == int(valid.removeprefix("file-")) and run.config["epochs"] == 2
    plain = run.estimate["submission"]
    assert plain["learning_rate_multiplier"] == 2 and run.estimate["provisional"] is False
    messages = [e["message"] for e in client.get(f"/v1/fine_tuning/jobs/{job['id']}/events",
                                                   headers=headers).json()["data"]]
    assert messages[-1].startswith("Checking your files") and any(m.startswith("Files checked. Queued") for m in messages)


def test_a_job_whose_file_fails_its_check_fails_with_the_files_error(client, db, team, sent):
    from worker.tasks.datasets import validate_dataset

    account, headers, model = team
    train = _upload(client, headers, CHAT * 3 + b'{"messages": [\n' + CHAT)
    job = client.post("/v1/fine_tuning/jobs", headers=headers,
                      json={"model": model.slug, "training_file": train}).json()
    assert job["status"] == "validating_files"
    native_run = client.post("/api/v1/runs", headers=headers, json={  # the native API waits the same way
        "dataset_id": int(train.removeprefix("file-")), "base_model_id": model.id}).json()
    assert native_run["status"] == "validating_files"
    validate_dataset(int(train.removeprefix("file-")))
    failed = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=headers).json()
    file = client.get(f"/v1/files/{train}", headers=headers).json()
    assert failed["status"] == "failed" and file["status"] == "error"
    assert failed["error"]["param"] == "training_file" and failed["error"]["line"] == 4
    assert failed["error"]["code"] and failed["error"]["code"] != "error" and "line 4" in failed["error"]["message"]
    native = client.get(f"/api/v1/runs/{native_run['id']}", headers=headers).json()
    assert native["status"] == "failed" and native["error_kind"] == "invalid_file"
    assert "studio.train" not in [t for t, *_ in sent]
    _error(client.post(f"/api/v1/runs/{native_run['id']}/retry", headers=headers), 409, "conflict")


def test_a_waiting_job_can_be_cancelled_and_the_reconciler_moves_on_a_missed_one(client, db, settings, team, sent):
    from worker.runtime import reconciler

    account, headers, model = team
    store = ArtifactStore(settings.artifact_dir)
    pending = make_dataset(db, store, account.team_id, status=DatasetStatus.validating)
    body = {"model": model.slug, "training_file": f"file-{pending.id}"}
    first = client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()
    second = client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()
    assert client.post(f"/v1/fine_tuning/jobs/{first['id']}/cancel", headers=headers).json()["status"] == "cancelled"
    pending.status = DatasetStatus.valid  # the check ended while the job was being created: no hook saw it
    db.commit()
    assert reconciler.reconcile(settings)["checked"] == 1
    assert client.get(f"/v1/fine_tuning/jobs/{second['id']}", headers=headers).json()["status"] == "queued"
    assert client.get(f"/v1/fine_tuning/jobs/{first['id']}", headers=headers).json()["status"] == "cancelled"
    retried = client.post(f"/api/v1/runs/{first['id'].removeprefix('ftjob-')}/retry", headers=headers).json()
    assert retried["status"] == "queued"  # planned again from the checked file, then queued


def test_succeeded_run_is_a_model_with_checkpoints(client, db, settings, team):
    account, headers, model = team
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded, suffix="v1",
                   result={"data_report": {"trained_tokens": 100}, "metrics": {"epoch": 2.0}})
    db.add_all([Artifact(team_id=account.team_id, run_id=run.id, kind="adapter", path="x/adapter"),
                Checkpoint(run_id=run.id, step=2, path="x/c2", metrics={"loss": 1.5}),
                Checkpoint(run_id=run.id, step=4, path="x/c4", metrics={"loss": 1.2}),
                RunEvent(run_id=run.id, kind="status", message="Succeeded", level="info")])
    db.commit()
    name = f"ft:{model.slug}:team-{account.team_id}:v1:{run.id}"
    got = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}", headers=headers).json()
    assert got["fine_tuned_model"] == name and got["trained_tokens"] == 200
    ids = [m["id"] for m in client.get("/v1/models", headers=headers).json()["data"]]
    assert ids == [model.slug, name]
    assert client.get(f"/v1/models/{name}", headers=headers).json()["owned_by"] == f"team-{account.team_id}"
    _error(client.get(f"/v1/models/ft:{model.slug}:team-999:v1:{run.id}", headers=headers), 404, "not_found")
    # Digits that int() refuses (a superscript two) are names like any other, never a 500.
    for odd in ("²", f"ft:{model.slug}:team-{account.team_id}:v1:²"):
        _error(client.get(f"/v1/models/{odd}", headers=headers), 404, "not_found")
    _error(client.get("/v1/fine_tuning/jobs/ftjob-²", headers=headers), 404, "not_found")
    page = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}/checkpoints?limit=1", headers=headers).json()
    assert [c["step_number"] for c in page["data"]] == [4] and page["has_more"]
    assert page["data"][0]["metrics"]["train_loss"] == 1.2
    rest = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}/checkpoints?after={page['last_id']}", headers=headers)
    assert [c["step_number"] for c in rest.json()["data"]] == [2]


def test_chat_refusals_and_an_unreachable_inference_server(client, settings, team):
    _, headers, model = team
    settings.inference_url = "http://127.0.0.1:1"  # nothing listens there
    ask = {"model": model.slug, "messages": [{"role": "user", "content": "Hi"}]}
    refusals = [({"n": 9}, "n", "at most 8"),
                ({"logprobs": True}, "logprobs", "not supported"),
                ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
                ({"response_format": {"type": "json_object"}}, "response_format", "plain text"),
                ({"made_up": 1}, "made_up", "Unrecognized request argument supplied: made_up"),
                ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when 'stream'"),
                ({"stream": True, "stream_options": {"chunk": 1}}, "stream_options", "include_usage"),
                ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "up to 4")]
    for extra, param, words in refusals:
        body = _error(client.post("/v1/chat/completions", headers=headers, json={**ask, **extra}), 422, "invalid_input")
        assert body["param"] == param and words in body["message"], (extra, body)
    _error(client.post("/v1/chat/completions", headers=headers, json={**ask, "model": "ft:x:y:z:1"}), 404, "not_found")
    # defaults of unsupported fields, n > 1, seed, stop and max_completion_tokens pass the checks: the
    # request reaches the (missing) inference server
    served = {**ask, "n": 3, "seed": 5, "stop": "\n", "max_completion_tokens": 9, "logprobs": False,
              "presence_penalty": 0, "stream": True, "stream_options": {"include_usage": True}}
    body = _error(client.post("/v1/chat/completions", headers=headers, json=served), 503, "unavailable")
    assert "studio inference" in body["message"]


def test_chat_n_seed_stop_and_usage_reach_the_inference_server(client, settings, team, monkeypatch):
    """What the web sends per choice, and the OpenAI shapes it builds from the answers. The n
    choices are asked at once (so the engine can batch them): each fake call waits at a barrier
    for the other, which one-after-the-other requests would never pass."""
    import threading

    from app.inference import client as inference

    _, headers, model = team
    calls = []
    together = threading.Barrier(2, timeout=20)

    def generate(settings, target, params):  # noqa: ANN001, ANN202
        together.wait()
        calls.append(params)
        return {"text": f"answer {params['seed']}", "prompt_tokens": 7, "completion_tokens": 3, "finish_reason": "stop"}

    def open_stream(settings, target, params):  # noqa: ANN001, ANN202
        together.wait()
        calls.append(params)
        return iter([{"delta": f"s{params['seed']}"}, {"done": True, "text": "", "prompt_tokens": 7,
                                                       "completion_tokens": 2, "finish_reason": "length"}])

    monkeypatch.setattr(inference, "generate", generate)
    monkeypatch.setattr(inference, "open_stream", open_stream)
    ask = {"model": model.slug, "messages": [{"role": "user", "content": "Hi"}], "n": 2, "seed": 10,
           "stop": ["END"], "max_completion_tokens": 5, "max_tokens": 50}
    r = client.post("/v1/chat/completions", headers=headers, json=ask)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [(c["index"], c["message"]["content"]) for c in out["choices"]] == [(0, "answer 10"), (1, "answer 11")]
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
    assert sorted((c["seed"], c["stop"], c["max_tokens"]) for c in calls) == [(10, ["END"], 5), (11, ["END"], 5)]
    calls.clear()
    r = client.post("/v1/chat/completions", headers=headers,
                    json={**ask, "stream": True, "stream_options": {"include_usage": True}})
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    pieces = [(c["choices"][0]["index"], c["choices"][0]["delta"].get("content")) for c in chunks if c["choices"]]
    assert (0, "s10") in pieces and (1, "s11") in pieces and r.text.rstrip().endswith("data: [DONE]")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4


def _succeeded_run(db, settings, account, model, *, checkpoint_files=("adapter_config.json", "adapter_model.safetensors")):
    store = ArtifactStore(settings.artifact_dir)
    dataset = make_dataset(db, store, account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded, suffix="v1")
    root = f"teams/{account.team_id}/runs/{run.id}"
    store.write_bytes(f"{root}/adapter/adapter_model.safetensors", b"x")
    for name in checkpoint_files:
        store.write_bytes(f"{root}/checkpoints/checkpoint-2/{name}", b"{}")
    db.add_all([Artifact(team_id=account.team_id, run_id=run.id, kind="adapter", path=f"{root}/adapter"),
                Checkpoint(run_id=run.id, step=2, path=f"{root}/checkpoints/checkpoint-2",
                           metrics={"step": 2, "metrics": {"loss": 1.25, "eval_loss": 1.5}})])
    db.commit()
    return run, store, root


def test_checkpoint_models_are_models_of_their_job(client, db, settings, team):
    account, headers, model = team
    run, _, _ = _succeeded_run(db, settings, account, model)
    settings.inference_url = "http://127.0.0.1:1"
    page = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}/checkpoints", headers=headers).json()["data"]
    name = page[0]["fine_tuned_model_checkpoint"]
    assert name == f"ft:{model.slug}:team-{account.team_id}:v1:{run.id}:ckpt-step-2"
    assert page[0]["metrics"] == {"step": 2, "train_loss": 1.25, "valid_loss": 1.5}
    assert client.get(f"/v1/models/{name}", headers=headers).json()["id"] == name
    ask = {"model": name, "messages": [{"role": "user", "content": "Hi"}]}
    # resolved to the checkpoint's adapter: only the inference server is missing
    _error(client.post("/v1/chat/completions", headers=headers, json=ask), 503, "unavailable")
    for missing in (name.replace("ckpt-step-2", "ckpt-step-3"), name.replace(f":{run.id}:", ":999:")):
        _error(client.post("/v1/chat/completions", headers=headers, json={**ask, "model": missing}), 404, "not_found")


def test_a_checkpoint_without_safetensors_is_not_served(client, db, settings, team):
    account, headers, model = team
    run, _, _ = _succeeded_run(db, settings, account, model, checkpoint_files=("adapter_config.json",
                                                                               "adapter_model.bin"))
    name = f"ft:{model.slug}:team-{account.team_id}:v1:{run.id}:ckpt-step-2"
    body = _error(client.post("/v1/chat/completions", headers=headers,
                              json={"model": name, "messages": [{"role": "user", "content": "Hi"}]}), 404, "not_found")
    assert "safetensors" in body["message"]


def test_delete_a_fine_tuned_model(client, db, settings, team):
    account, headers, model = team
    run, store, root = _succeeded_run(db, settings, account, model)
    name = f"ft:{model.slug}:team-{account.team_id}:v1:{run.id}"
    admin = {"Authorization": f"Bearer {make_api_key(db, account, scopes=('read', 'write', 'admin'))}"}
    other = {"Authorization": f"Bearer {make_api_key(db, make_account(db), scopes=('read', 'write', 'admin'))}"}
    _error(client.delete(f"/v1/models/{name}", headers=headers), 403, "forbidden")  # needs the admin scope
    _error(client.delete(f"/v1/models/{name}", headers=other), 404, "not_found")  # another team's
    assert _error(client.delete(f"/v1/models/{model.slug}", headers=admin), 403, "forbidden")["param"] == "model"
    assert _error(client.delete(f"/v1/models/{name}:ckpt-step-2", headers=admin), 422,
                  "invalid_input")["param"] == "model"
    assert store.size(f"{root}/adapter/adapter_model.safetensors") is not None
    r = client.delete(f"/v1/models/{name}", headers=admin)
    assert r.status_code == 200 and r.json() == {"id": name, "object": "model", "deleted": True}
    assert store.size(f"{root}/adapter/adapter_model.safetensors") is None
    assert store.list_tree(f"{root}/checkpoints") == []
    _error(client.get(f"/v1/models/{name}", headers=headers), 404, "not_found")
    assert name not in [m["id"] for m in client.get("/v1/models", headers=headers).json()["data"]]
    _error(client.delete(f"/v1/models/{name}", headers=admin), 404, "not_found")
    job = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}", headers=headers).json()
    assert job["status"] == "succeeded"  # the job's record stays
    events = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}/events", headers=headers).json()["data"]
    assert "was deleted" in events[0]["message"]


def test_a_model_in_an_ab_comparison_is_not_deleted(client, db, settings, team):
    from app.models import Comparison

    account, headers, model = team
    run, _, _ = _succeeded_run(db, settings, account, model)
    db.add(Comparison(team_id=account.team_id, name="fr vs base", model_a={"kind": "run", "id": run.id},
                      model_b={"kind": "base", "id": model.id}, status="generating"))
    db.commit()
    admin = {"Authorization": f"Bearer {make_api_key(db, account, scopes=('read', 'admin'))}"}
    name = f"ft:{model.slug}:team-{account.team_id}:v1:{run.id}"
    body = _error(client.delete(f"/v1/models/{name}", headers=admin), 409, "conflict")
    assert "fr vs base" in body["message"]


def test_metric_events_are_worded_as_openai_words_them(client, db, settings, team, tmp_path):
    from worker.runtime.reporter import DatabaseReporter

    account, headers, model = team
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.running, lease_token="L")
    reporter = DatabaseReporter(run_id=run.id, attempt=1, lease_token="L", log_path=tmp_path / "training.log",
                                store_root=tmp_path)
    reporter.on_progress(2, 4, None)
    reporter.on_metrics(2, {"loss": 2.3456, "learning_rate": 1e-4})
    reporter.on_metrics(2, {"eval_loss": 2.1, "perplexity": 8.2})  # the step's evaluation, logged after it
    reporter.on_progress(4, 4, None)
    reporter.on_metrics(4, {"loss": 1.5})
    reporter.close()
    events = client.get(f"/v1/fine_tuning/jobs/ftjob-{run.id}/events", headers=headers).json()["data"]
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [e["message"] for e in metrics] == ["Step 4/4: training loss=1.500",
                                               "Step 2/4: training loss=2.346, validation loss=2.100"]
    assert metrics[1]["data"] == {"kind": "metrics", "step": 2, "total_steps": 4, "train_loss": 2.3456,
                                  "valid_loss": 2.1}


def test_another_teams_key_sees_nothing(client, db, settings, team):
    account, headers, model = team
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded)
    db.add(Artifact(team_id=account.team_id, run_id=run.id, kind="adapter", path="x/adapter"))
    db.commit()
    other = {"Authorization": f"Bearer {make_api_key(db, make_account(db))}"}
    assert client.get("/v1/files", headers=other).json()["data"] == []
    assert client.get("/v1/fine_tuning/jobs", headers=other).json()["data"] == []
    assert [m["id"] for m in client.get("/v1/models", headers=other).json()["data"]] == [model.slug]
    for path in (f"/v1/files/file-{dataset.id}", f"/v1/files/file-{dataset.id}/content",
                 f"/v1/fine_tuning/jobs/ftjob-{run.id}", f"/v1/fine_tuning/jobs/ftjob-{run.id}/events",
                 f"/v1/fine_tuning/jobs/ftjob-{run.id}/checkpoints",
                 f"/v1/models/ft:{model.slug}:team-{account.team_id}::{run.id}"):
        _error(client.get(path, headers=other), 404, "not_found")
    _error(client.delete(f"/v1/files/file-{dataset.id}", headers=other), 404, "not_found")
    _error(client.post(f"/v1/fine_tuning/jobs/ftjob-{run.id}/cancel", headers=other), 404, "not_found")
