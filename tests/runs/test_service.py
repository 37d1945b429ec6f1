"""Submitting, cancelling and retrying runs through the API; every refusal is clear."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Artifact, DatasetStatus, Run, RunEvent, RunStatus, Worker, utcnow
from app.runs import service
from tests.factories import make_account, make_api_key
from tests.runs.factories import make_dataset


def _create(client, headers, **body):
    return client.post("/api/v1/runs", json=body, headers=headers)


def test_submit_queues_after_commit_with_events_and_estimate(client, team, dataset, model, sent, db):
    acc, headers = team
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"max_steps": 5})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "queued" and run["config"]["max_steps"] == 5 and run["method"] == "lora"
    assert run["config"]["base_model"] == model.path
    assert run["estimate"]["memory"]["total_gb"] > 0 and run["estimate"]["reasons"]
    assert sent == [("studio.train", [run["id"]], "train")]
    events = client.get(f"/api/v1/runs/{run['id']}/events", headers=headers).json()
    assert events[0]["message"].startswith("Queued: LoRA of Tiny Llama on support")
    assert any("No training worker is online" in e["message"] for e in events)


def test_idempotency_key_returns_the_first_run(client, team, dataset, model, sent, db):
    _, headers = team
    body = {"dataset_id": dataset.id, "base_model_id": model.id}
    first = client.post("/api/v1/runs", json=body, headers={**headers, "Idempotency-Key": "abc"})
    again = client.post("/api/v1/runs", json=body, headers={**headers, "Idempotency-Key": "abc"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"] and len(sent) == 1
    assert db.scalar(select(Run).where(Run.idempotency_key == "abc")) is not None


def test_refusals_are_clear(client, team, dataset, model, db, store, sent):
    acc, headers = team
    invalid = make_dataset(db, store, acc.team_id, status=DatasetStatus.invalid, name="broken")
    r = _create(client, headers, dataset_id=invalid.id, base_model_id=model.id)
    assert r.status_code == 422 and "did not pass validation" in r.json()["error"]["message"]
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id,
                hyperparameters={"learning_rate": -1, "lora_r": 0})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "learning_rate" in message and "lora_r" in message
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id,
                hyperparameters={"base_model": "/etc"})
    assert r.status_code == 422 and "by its id" in r.json()["error"]["message"]
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, preset="turbo")
    assert r.status_code == 422 and "Unknown preset" in r.json()["error"]["message"]
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=9999)
    assert r.status_code == 404
    other = make_account(db)
    theirs = make_dataset(db, store, other.team_id, name="theirs")
    r = _create(client, headers, dataset_id=theirs.id, base_model_id=model.id)
    assert r.status_code == 404
    assert sent == [] and db.scalar(select(Run)) is None


def test_a_run_that_cannot_fit_any_worker_is_refused(client, team, dataset, model, db, sent):
    _, headers = team
    db.add(Worker(name="train@small", queues="train", device="cuda", device_name="Tiny GPU",
                  device_memory_bytes=16 * 1024**2, last_seen_at=utcnow()))
    db.commit()
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"method": "full"})
    assert r.status_code == 422
    assert "would not fit on Tiny GPU" in r.json()["error"]["message"]
    assert r.json()["error"]["details"]["estimate"]["memory"]["fits"] is False
    assert sent == []



def test_a_run_waiting_for_its_file_that_cannot_fit_fails_when_the_check_ends(client, team, model, db, store, sent):
    """The memory check waits for the checked file; it then fails the run with the verdict."""
    acc, headers = team
    db.add(Worker(name="train@small", queues="train", device="cuda", device_name="Tiny GPU",
                  device_memory_bytes=16 * 1024**2, last_seen_at=utcnow()))
    pending = make_dataset(db, store, acc.team_id, status=DatasetStatus.validating, name="pending")
    r = _create(client, headers, dataset_id=pending.id, base_model_id=model.id, hyperparameters={"method": "full"})
    assert r.status_code == 201 and r.json()["status"] == "validating_files"
    pending.status = DatasetStatus.valid
    assert service.files_checked(db, dataset_id=pending.id) == 1
    db.commit()
    run = client.get(f"/api/v1/runs/{r.json()['id']}", headers=headers).json()
    assert run["status"] == "failed" and run["error_kind"] == "config"
    assert "would not fit on Tiny GPU" in run["error_message"] and sent == []


def test_estimate_endpoint_queues_nothing(client, team, dataset, model, sent):
    _, headers = team
    r = client.post("/api/v1/runs/estimate", json={"dataset_id": dataset.id, "base_model_id": model.id}, headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["config"]["method"] in ("lora", "qlora", "full", "lora8bit") and body["reasons"]
    assert set(body["estimate"]["by_method"]) == {"full", "lora", "qlora", "lora8bit"}
    assert sent == []


def test_cancel_queued_at_once_running_by_flag_and_retry(client, team, dataset, model, sent, db):
    _, headers = team
    run_id = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id).json()["id"]
    r = client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers).status_code == 409

    r = client.post(f"/api/v1/runs/{run_id}/retry", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert sent[-1] == ("studio.train", [run_id], "train")
    assert client.post(f"/api/v1/runs/{run_id}/retry", headers=headers).status_code == 409

    run = db.get(Run, run_id)
    run.status, run.attempt = RunStatus.running, 1
    db.commit()
    r = client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    kinds = [e.kind for e in db.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))]
    assert kinds == ["status", "warning", "status", "status", "cancel"]


def test_list_filters_and_cursor(client, team, dataset, model, sent, db):
    _, headers = team
    ids = [_create(client, headers, dataset_id=dataset.id, base_model_id=model.id).json()["id"] for _ in range(5)]
    client.post(f"/api/v1/runs/{ids[0]}/cancel", headers=headers)
    page1 = client.get("/api/v1/runs?limit=2", headers=headers).json()
    assert [j["id"] for j in page1["data"]] == ids[::-1][:2]
    page2 = client.get(f"/api/v1/runs?limit=2&before={page1['next_cursor']}", headers=headers).json()
    page3 = client.get(f"/api/v1/runs?limit=2&before={page2['next_cursor']}", headers=headers).json()
    assert [j["id"] for j in page2["data"] + page3["data"]] == ids[::-1][2:] and page3["next_cursor"] is None
    cancelled = client.get("/api/v1/runs?status=cancelled", headers=headers).json()["data"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    read_only = {"Authorization": f"Bearer {make_api_key(db, team[0], scopes=('read',))}"}
    assert client.post(f"/api/v1/runs/{ids[1]}/cancel", headers=read_only).status_code == 403


def test_the_team_limit_on_active_runs_is_clear(client, team, dataset, model, sent, db, settings, store):
    _, headers = team
    settings.max_active_runs_per_team = 2
    body = {"dataset_id": dataset.id, "base_model_id": model.id}
    ids = [_create(client, headers, **body).json()["id"] for _ in range(2)]
    r = _create(client, headers, **body)
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["type"] == "rate_limited" and error["details"] == {"active_runs": 2, "limit": 2}
    assert "already has 2 runs queued or running, and the limit is 2" in error["message"]
    assert "cancel those you no longer need" in error["message"]
    assert len(sent) == 2
    # Another team is not affected; a finished run frees its slot.
    other = make_account(db)
    other_headers = {"Authorization": f"Bearer {make_api_key(db, other)}"}
    theirs = make_dataset(db, store, other.team_id, name="theirs")
    assert _create(client, other_headers, dataset_id=theirs.id, base_model_id=model.id).status_code == 201
    assert client.post(f"/api/v1/runs/{ids[0]}/cancel", headers=headers).status_code == 200
    assert _create(client, headers, **body).status_code == 201
    # A retry counts as a new active run too.
    r = client.post(f"/api/v1/runs/{ids[0]}/retry", headers=headers)
    assert r.status_code == 429 and "limit is 2" in r.json()["error"]["message"]


def test_the_team_limit_on_the_runs_page_keeps_the_form(client, team, dataset, model, sent, db, settings):
    from tests.factories import log_in

    acc, headers = team
    settings.max_active_runs_per_team = 1
    assert _create(client, headers, dataset_id=dataset.id, base_model_id=model.id).status_code == 201
    token = log_in(client, acc)
    r = client.post("/runs", data={"dataset_id": dataset.id, "base_model_id": model.id, "csrf_token": token})
    assert r.status_code == 429 and "already has 1 run queued or running" in r.text
    assert len(sent) == 1


def test_devices_keep_the_effective_batch_and_are_validated(client, team, dataset, model, sent):
    _, headers = team
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id,
                hyperparameters={"devices": 4, "per_device_batch_size": 4, "grad_accum": 4, "max_steps": 5})
    assert r.status_code == 201, r.text
    run = r.json()
    assert (run["config"]["per_device_batch_size"], run["config"]["grad_accum"], run["config"]["devices"]) == (4, 1, 4)
    assert run["estimate"]["effective_batch_size"] == 16 and run["estimate"]["devices"] == 4
    assert run["estimate"]["strategy"] == "ddp"
    assert any("Effective batch 16 kept on 4 devices" in reason for reason in run["estimate"]["reasons"])
    # 3 devices cannot split 16: the plan says what the batch becomes
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id,
                hyperparameters={"devices": 3, "per_device_batch_size": 4, "grad_accum": 4, "max_steps": 5})
    assert r.status_code == 201, r.text
    assert r.json()["estimate"]["effective_batch_size"] == 12
    assert any("cannot be split evenly over 3 devices; it becomes 12" in reason
               for reason in r.json()["estimate"]["reasons"])
    for bad in (0, 65, "two"):
        r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"devices": bad})
        assert r.status_code == 422 and "devices" in r.json()["error"]["message"], r.text


def test_a_full_fine_tune_too_big_for_one_gpu_is_told_how_many_it_needs(client, team, db, tmp_path, dataset, sent):
    from tests.runs.factories import register_model, write_model_dir

    _, headers = team
    big = register_model(db, write_model_dir(tmp_path / "big", hidden=4096, layers=32, vocab=32000), name="Big Llama")
    db.add(Worker(name="train@gpu", queues="train", device="cuda", device_name="GPU 8 GB",
                  device_memory_bytes=8 * 1024**3, last_seen_at=utcnow()))
    db.commit()
    full = {"method": "full", "learning_rate": 1e-5, "per_device_batch_size": 2, "grad_accum": 8,
            "max_length": 512, "gradient_checkpointing": True, "max_steps": 5}
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=big.id, hyperparameters=full)
    assert r.status_code == 422
    estimate = r.json()["error"]["details"]["estimate"]
    needed = estimate["devices_needed"]
    assert needed and needed > 1 and f"set devices to {needed}" in r.json()["error"]["message"]
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=big.id, hyperparameters={**full, "devices": needed})
    assert r.status_code == 201, r.text
    assert r.json()["estimate"]["strategy"] == "fsdp" and r.json()["estimate"]["memory"]["fits"] is True
    assert r.json()["estimate"]["effective_batch_size"] == 16


def _with_token_preview(db, dataset, model, first_trained_min, complete=True):  # noqa: ANN001, ANN202
    """What the dataset check stores (worker/tasks/datasets.py token_preview), for this model."""
    dataset.report = {**(dataset.report or {}), "token_preview": {
        "examples_scanned": 24, "complete": complete, "models": {str(model.id): {
            "model_name": model.display_name, "examples": [], "first_trained_min": first_trained_min,
            "untrained_examples": 0}}}}
    db.commit()


def test_a_run_that_would_train_nothing_cannot_start(client, team, dataset, model, db, sent):
    """Every answer starts past the training length: refused with the reason, nothing queued;
    a longer training length (or a check that did not see every example) lets it start."""
    _, headers = team
    _with_token_preview(db, dataset, model, first_trained_min=40)
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"max_length": 32})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert message.startswith("Nothing would be trained: with a training length of 32 tokens every example is cut "
                              "before its answer starts (the earliest answer starts at token 40).")
    assert sent == [] and db.scalar(select(Run)) is None
    _with_token_preview(db, dataset, model, first_trained_min=None)
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"max_length": 64})
    assert r.status_code == 422 and "every assistant answer has weight 0" in r.json()["error"]["message"]
    _with_token_preview(db, dataset, model, first_trained_min=40, complete=False)
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"max_length": 32})
    assert r.status_code == 201  # not every example was seen: the trainer checks it as it starts
    _with_token_preview(db, dataset, model, first_trained_min=40)
    r = _create(client, headers, dataset_id=dataset.id, base_model_id=model.id, hyperparameters={"max_length": 64})
    assert r.status_code == 201


def test_calibration_compares_finished_runs_with_their_estimates_on_the_same_kind_of_worker(db, team, dataset,
                                                                                            model):
    from datetime import timedelta

    from app.models import RunStatus, utcnow
    from app.runs import service
    from tests.runs.factories import make_run

    now = utcnow()
    for kind, minutes, known in (("cpu", 10, True), ("cpu", 20, True), ("cuda", 1, True), ("cpu", 99, False)):
        make_run(db, team[0].team_id, dataset, model, status=RunStatus.succeeded, started_at=now - timedelta(minutes=minutes),
                 finished_at=now, estimate={"time_s": 300.0, "device_kind": kind, "device_known": known})
    make_run(db, team[0].team_id, dataset, model, status=RunStatus.failed, started_at=now - timedelta(minutes=5),
             finished_at=now, estimate={"time_s": 300.0, "device_kind": "cpu", "device_known": True})
    assert sorted(service.calibration(db, team_id=team[0].team_id, device_kind="cpu")) == [2.0, 4.0]
    assert service.calibration(db, team_id=team[0].team_id, device_kind="cuda") == [0.2]
    assert service.calibration(db, team_id=team[0].team_id + 1, device_kind="cpu") == []  # another team's runs


def test_a_run_waits_for_the_near_duplicate_check_which_moves_crossing_examples_into_training(
        client, team, model, db, store, sent):
    """Validation keeps case, spacing and punctuation variants on one side; reworded near copies
    that crossed the split are moved into training by the scan, and a run submitted in between
    waits for it (never starting on the pre-scan split)."""
    import orjson

    from datacheck.cleaning import scan
    from datacheck.near_duplicates import example_text, near_duplicates_between
    from app.models import Dataset
    from tests.datacheck.factories import jsonl, near_duplicate_families
    from tests.datasets.test_service import create
    from worker.tasks.cleaning import scan_dataset
    from worker.tasks.datasets import validate_dataset

    acc, headers = team
    d = create(db, store, acc.team_id, data=jsonl(*near_duplicate_families()), name="families", eval_fraction=0.3).dataset
    task, args, _ = sent.pop(0)
    assert task == "studio.validate_dataset" and validate_dataset(*args) == "valid"
    assert [m[0] for m in sent] == ["studio.scan_dataset"]
    db.expire_all()
    d = db.get(Dataset, d.id)
    pre_scan = (d.normalized_path, d.normalized_eval_path)

    def crossing(train_key, eval_key):
        with store.open(train_key) as train, store.open(eval_key) as evals:
            return scan(train, evals)["near_duplicates"]

    assert crossing(*pre_scan)["between"] > 0  # reworded near copies crossed the first split

    r = _create(client, headers, dataset_id=d.id, base_model_id=model.id, hyperparameters={"max_steps": 5})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "validating_files" and [m[0] for m in sent] == ["studio.scan_dataset"]
    events = client.get(f"/api/v1/runs/{run['id']}/events", headers=headers).json()
    assert "being checked for near duplicates" in events[-1]["message"]
    assert service.files_checked(db) == 0  # the reconciler's pass leaves it waiting too
    db.commit()

    task, args, _ = sent.pop(0)
    assert scan_dataset(*args) == "done"
    db.expire_all()
    d = db.get(Dataset, d.id)
    moved = d.cleaning["resplit"]["moved"]
    assert moved > 0 and (d.normalized_path, d.normalized_eval_path) != pre_scan
    assert d.cleaning["near_duplicates"]["between"] == 0 and d.cleaning["near_duplicates"]["crossing"] == []
    assert crossing(d.normalized_path, d.normalized_eval_path)["between"] == 0

    def texts(key):
        return [example_text(orjson.loads(x)) for x in store.path(key).read_bytes().splitlines()]

    train, evals = texts(d.normalized_path), texts(d.normalized_eval_path)
    train_key = d.normalized_path
    assert near_duplicates_between(train, evals) == []
    assert len(train) + len(evals) == 480 and d.report["counts"]["eval_examples"] == len(evals)
    paths = {a.path for a in db.scalars(select(Artifact).where(Artifact.dataset_id == d.id))}
    assert {d.normalized_path, d.normalized_eval_path} <= paths and not set(pre_scan) & paths

    after = client.get(f"/api/v1/runs/{run['id']}", headers=headers).json()
    assert after["status"] == "queued" and sent == [("studio.train", [run["id"]], "train")]
    events = [e["message"] for e in client.get(f"/api/v1/runs/{run['id']}/events", headers=headers).json()]
    assert any(f"moved {moved} evaluation examples" in m for m in events)

    # "Check again" finds nothing crossing any more, moves nothing and keeps saying what moved
    from app.datasets import derive
    derive.request_scan(db, d)
    db.commit()
    task, args, _ = sent.pop()
    assert task == "studio.scan_dataset" and scan_dataset(*args) == "done"
    db.expire_all()
    d = db.get(Dataset, d.id)
    assert d.cleaning["resplit"]["moved"] == moved and d.normalized_path == train_key
    assert f"moved {moved:,} evaluation examples" in d.report["explanation"]

    # a second run starts at once: the check has ended
    r = _create(client, headers, dataset_id=d.id, base_model_id=model.id, hyperparameters={"max_steps": 5})
    assert r.status_code == 201 and r.json()["status"] == "queued"


def test_a_run_of_a_dataset_whose_near_duplicate_check_failed_starts_with_a_warning(
        client, team, model, db, store, sent):
    acc, headers = team
    d = make_dataset(db, store, acc.team_id, name="split")
    if not d.normalized_eval_path:
        d.normalized_eval_path = d.normalized_path
    d.eval_fraction, d.cleaning = 0.1, {"status": "running"}
    db.commit()
    r = _create(client, headers, dataset_id=d.id, base_model_id=model.id)
    assert r.status_code == 201 and r.json()["status"] == "validating_files"
    d.cleaning = {"status": "failed", "message": "The check stopped: OSError"}
    assert service.files_checked(db, dataset_id=d.id) == 1
    db.commit()
    run_id = r.json()["id"]
    assert client.get(f"/api/v1/runs/{run_id}", headers=headers).json()["status"] == "queued"
    events = client.get(f"/api/v1/runs/{run_id}/events", headers=headers).json()
    assert any(e["level"] == "warning" and "near-duplicate check of 'split' failed" in e["message"] for e in events)


def test_a_lost_scan_that_runs_wait_for_is_sent_again(client, team, model, db, store, sent, settings):
    from datetime import timedelta

    from worker.runtime import reconciler

    acc, headers = team
    d = make_dataset(db, store, acc.team_id, name="split")
    if not d.normalized_eval_path:
        d.normalized_eval_path = d.normalized_path
    long_ago = (utcnow() - timedelta(seconds=settings.requeue_after_s + 60)).isoformat()
    d.eval_fraction, d.cleaning = 0.1, {"status": "queued", "queued_at": long_ago}
    db.commit()
    r = _create(client, headers, dataset_id=d.id, base_model_id=model.id)
    assert r.json()["status"] == "validating_files" and sent == []
    assert reconciler.reconcile(settings)["scans"] == 1
    assert sent == [("studio.scan_dataset", [d.id], "default")]
    assert reconciler.reconcile(settings)["scans"] == 0  # sent once, not at every pass
    db.expire_all()
    d = db.get(type(d), d.id)
    d.cleaning = {"status": "running", "started_at": utcnow().isoformat()}
    db.commit()
    assert reconciler.reconcile(settings)["scans"] == 0  # a scan running now is left alone
