"""A job with the artifact store on a real S3-protocol server (moto's standalone server, started
by the suite) and no directory shared between the web side and the worker side: the worker
process has a data directory of its own, reads its dataset from the bucket, uploads its
checkpoints (manifest last), adapter and log; the web streams the adapter and the merged model
(built on demand by the worker's studio.merge task) back from the bucket."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile

import pytest
import torch
from sqlalchemy import select

from app.models import Artifact, Checkpoint, Evaluation, Run, RunStatus
from app.runs import merged, retention
from app.storage.checkpoints import trusted
from tests.factories import log_in, make_account, make_api_key
from tests.runs.factories import make_dataset, register_model
from tests.services import s3_env, s3_server  # noqa: F401  (fixtures)

HYPER = {"method": "lora", "precision": "fp32", "max_steps": 4, "per_device_batch_size": 2, "grad_accum": 1, "save_strategy": "steps",
         "save_steps": 2, "eval_strategy": "no", "max_length": 64, "warmup": 0.0, "save_total_limit": None}


def _worker(env: dict, code: str) -> None:
    """The worker's code path in a process of its own (another host, as far as files go)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    print(f"worker process: {time.monotonic() - started:.1f}s for {code[:60]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def _unzip(data: bytes, target) -> None:  # noqa: ANN001
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(target)


def _merge_on_the_worker_host(run_id: int, worker_host, monkeypatch) -> None:  # noqa: ANN001
    """The studio.merge task's code, in this process but with the worker host's settings (its
    own data directory): torch is loaded here already, a second process would only add seconds."""
    from app import config
    from worker.tasks.merge import build_merged

    with monkeypatch.context() as m:
        m.setenv("STUDIO_DATA_DIR", str(worker_host))
        config.get_settings.cache_clear()
        assert build_merged(run_id)
    config.get_settings.cache_clear()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # hosts that share no directory share Postgres
def test_a_job_on_s3_with_no_shared_directory(s3_env, settings, db, client, sent, tiny_model_dir, tmp_path,
                                             monkeypatch):
    store = client.app.state.store
    assert store.remote
    account = make_account(db)
    headers = {"Authorization": f"Bearer {make_api_key(db, account)}"}
    model = register_model(db, tiny_model_dir)
    dataset = make_dataset(db, store, account.team_id, n_train=8, n_eval=2)
    answer = client.post("/api/v1/runs", headers=headers, json={
        "dataset_id": dataset.id, "base_model_id": model.id, "hyperparameters": HYPER})
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["id"]

    worker_host = tmp_path / "worker-host"  # its own data directory: nothing in common with the web's
    env = {**os.environ, **s3_env, "STUDIO_DATA_DIR": str(worker_host), "STUDIO_EVAL_SAMPLES": "1",
           "STUDIO_EVAL_MAX_NEW_TOKENS": "4", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    _worker(env, "from worker.tasks.runs import claim_next, run_training; run_training(*claim_next('s3@test'))")

    db.expire_all()
    run = db.get(Run, run_id)
    assert run.status == RunStatus.succeeded, run.error_message
    checkpoints = db.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)).all()
    assert [c.step for c in checkpoints] == [2, 4]
    for c in checkpoints:  # each row names a checkpoint whose manifest vouches for every file
        manifest = trusted(store, c.path)
        assert manifest is not None and "adapter_model.safetensors" in manifest["files"]
    artifacts = {a.kind: a for a in db.scalars(select(Artifact).where(Artifact.run_id == run_id))}
    assert set(artifacts) == {"adapter", "model_card", "log"}  # no merged copy beside the adapter
    assert dict(store.list_tree(artifacts["adapter"].path))["adapter_model.safetensors"] > 0
    assert not any(p.is_file() for p in settings.artifact_dir.rglob("*"))  # the web's directory stayed empty
    assert not (worker_host / "work" / artifacts["adapter"].path).exists()  # the worker's scratch copy is gone
    evaluation = db.scalar(select(Evaluation).where(Evaluation.run_id == run_id))
    assert evaluation.status == "succeeded", evaluation.error_message  # the end-of-run evaluation, from memory
    assert "Finished: 4 steps" in client.get(f"/api/v1/runs/{run_id}/log", headers=headers).text

    adapter_zip = client.get(f"/api/v1/runs/{run_id}/artifacts/{artifacts['adapter'].id}/download", headers=headers)
    assert adapter_zip.status_code == 200 and "content-length" not in adapter_zip.headers  # streamed zip
    _unzip(adapter_zip.content, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()

    # The merged model: asked for, built by the worker (not the web), then streamed.
    csrf = log_in(client, account)
    assert "Merged model" in client.get(f"/runs/{run_id}").text  # a link to the page that prepares it
    page = client.get(f"/runs/{run_id}/merged").text
    assert "Prepare the merged model" in page and not [m for m in sent if m[0] == merged.MERGE_TASK]  # looking builds nothing
    first = client.get(f"/api/v1/runs/{run_id}/merged/download", headers=headers)
    assert first.status_code == 202 and first.json()["status"] == "preparing"
    assert client.get(f"/api/v1/runs/{run_id}/merged", headers=headers).json()["status"] == "preparing"
    assert client.post(f"/api/v1/runs/{run_id}/merged", headers=headers).status_code == 202
    asked = client.post(f"/runs/{run_id}/merged", data={"csrf_token": csrf})
    assert asked.status_code == 200 and "The merged model is built by a training worker" in asked.text  # the page
    assert [m for m in sent if m[0] == merged.MERGE_TASK] == [(merged.MERGE_TASK, [run_id], "train")]  # once
    _merge_on_the_worker_host(run_id, worker_host, monkeypatch)
    state = client.get(f"/api/v1/runs/{run_id}/merged", headers=headers).json()
    assert state["status"] == "ready" and state["size_bytes"] > 0
    merged_zip = client.get(state["download_url"], headers=headers)
    assert merged_zip.status_code == 200 and "content-length" not in merged_zip.headers
    _unzip(merged_zip.content, tmp_path / "merged")

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tokens = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        whole = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(tokens).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        parts = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()(tokens).logits
    assert torch.allclose(whole, parts, atol=1e-4)

    used = client.get("/api/v1/team/storage", headers=headers).json()
    assert {"adapter", "merged", "checkpoint", "dataset"} <= set(used["by_kind"]) and used["total_bytes"] > 0
    team = client.get("/team").text
    assert "Storage used" in team and "Merged models (cached)" in team
    assert "The merged model is ready" in client.get(f"/runs/{run_id}/merged").text

    # Retention: one checkpoint kept, the merged copy evicted (built again when asked for).
    assert retention.after_run(store, run_id, keep=1) == [2]
    assert trusted(store, checkpoints[0].path) is None and trusted(store, checkpoints[1].path) is not None
    assert retention.evict_merged(store, account.team_id, keep=0) == [run_id]
    assert not store.exists(merged.merged_key(run))
    db.expire_all()
    assert client.get(f"/api/v1/runs/{run_id}/merged", headers=headers).json()["status"] == "absent"

    # Resume on yet another host trusts the newest whole checkpoint in the bucket.
    from worker.runtime.sync import restore_checkpoint

    assert restore_checkpoint(store, checkpoints[1].path.rsplit("/", 1)[0], tmp_path / "third" / "checkpoints") == 4
