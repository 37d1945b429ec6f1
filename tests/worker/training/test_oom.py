"""Out of memory, for real: the worker's task edge trains a claimed run in a child process whose
address space is limited (RLIMIT_AS), so torch's CPU allocator fails ("can't allocate memory")
on the activations of a large micro-batch. The run retries from its last checkpoint with the
micro-batch halved and the accumulation doubled, or, when nothing fits, fails with kind `oom` and
advice after at most 3 retries (planner/oom.py).

A 4-layer, 256-wide Llama with 1024-token examples, one torch thread and one malloc arena (the
process's other mappings then stay put). With 430 MB of headroom 16 examples at once never fit;
how many halvings the run then needs depends on what the failed attempt left mapped (measured: 1
to 3), so the first test asserts the first halving exactly and the chain after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import Dataset, DatasetStatus, Run, RunEvent, RunStatus
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.runs.factories import make_run, register_model
from tests.worker.training.factories import build_tiny_model, tiny_config
from worker.tasks import runs as run_tasks

ROOT = Path(__file__).resolve().parents[3]
LENGTH = 1024
pytestmark = [pytest.mark.slow, pytest.mark.one_database]  # the retry is the point, not the database


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory, tokenizer):
    return build_tiny_model(tmp_path_factory.mktemp("wide"), tokenizer, hidden=256, layers=4)


def long_records(n: int) -> list[dict]:
    """Long prompts and short answers: big activations, little work for the output head."""
    prompt = " ".join(f"mot{j % 50}" for j in range(LENGTH // 3))
    return [{"messages": [{"role": "user", "content": f"{i}: {prompt}"},
                          {"role": "assistant", "content": f"Oui {i}."}]} for i in range(n)]


def claimed_run(db, settings, model_dir: Path, **config) -> tuple[int, str]:  # noqa: ANN001
    team = make_account(db).team_id
    store = ArtifactStore(settings.artifact_dir)
    blob = store.write_bytes(f"teams/{team}/datasets/long/train.jsonl",
                             b"".join(json.dumps(r).encode() + b"\n" for r in long_records(32)))
    dataset = Dataset(team_id=team, name="long", status=DatasetStatus.valid, sha256=blob.sha256,
                      size_bytes=blob.size, raw_path=blob.key, normalized_path=blob.key, num_examples=32,
                      format="chat", goal="support", report={}, stats={})
    db.add(dataset)
    db.commit()
    model = register_model(db, model_dir, team_id=team)
    cfg = tiny_config(model_dir, max_steps=2, max_length=LENGTH, save_strategy="steps", save_steps=1, **config)
    run = make_run(db, team, dataset, model)
    run.config = cfg.model_dump()
    db.commit()
    claimed = run_tasks.claim_next("oom@test")
    assert claimed is not None
    return claimed.run_id, claimed.lease


def train_limited(run_id: int, lease: str, headroom_mb: int, tmp_path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.worker.training.oom_child", str(run_id), lease,
                           str(headroom_mb)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def oom_events(db, run_id: int) -> list[RunEvent]:  # noqa: ANN001
    db.expire_all()
    return list(db.scalars(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind == "oom_retry")
                           .order_by(RunEvent.id)))


def test_out_of_memory_retries_with_half_the_micro_batch_and_succeeds(db, settings, wide_model_dir, tmp_path):
    run_id, lease = claimed_run(db, settings, wide_model_dir, per_device_batch_size=16, grad_accum=1)
    output = train_limited(run_id, lease, 430, tmp_path)

    db.expire_all()
    run = db.get(Run, run_id)
    assert run.status == RunStatus.succeeded, (run.error_message, output[-3000:])
    events = oom_events(db, run_id)
    assert 1 <= len(events) <= 3
    assert events[0].message == ("Out of memory at step 1 with 16 examples at once: retrying from the "
                                 "beginning (no checkpoint yet) with 8 examples at once and twice the accumulation "
                                 "(same effective batch of 16). Retry 1 of 3.")
    assert events[0].data["from"] == {"per_device_batch_size": 16, "grad_accum": 1}
    assert events[0].data["to"] == {"per_device_batch_size": 8, "grad_accum": 2}
    for before, after in zip(events, events[1:]):
        assert after.data["from"] == before.data["to"]
    final = events[-1].data["to"]
    assert final["per_device_batch_size"] * final["grad_accum"] == 16  # the same effective batch throughout
    # the row carries the micro-batch the run finished with, for the page, the API and any resume
    assert {k: run.config[k] for k in final} == final
    log = (Path(settings.artifact_dir) / f"teams/{run.team_id}/jobs/{run_id}/run/training.log").read_text()
    assert "can't allocate memory" in log  # a real allocation failure in torch's CPU allocator
    assert run.result["global_step"] == 2
    saved = json.loads((Path(run.result["output_dir"]) / "training_config.json").read_text())
    assert {k: saved[k] for k in final} == final


def test_a_run_that_never_fits_fails_with_advice_after_at_most_three_retries(db, settings, wide_model_dir, tmp_path):
    run_id, lease = claimed_run(db, settings, wide_model_dir, per_device_batch_size=8, grad_accum=1)
    train_limited(run_id, lease, 200, tmp_path)  # returns: it never loops

    db.expire_all()
    run = db.get(Run, run_id)
    assert run.status == RunStatus.failed and run.error_kind == "oom"
    events = oom_events(db, run_id)
    assert [(e.data["to"]["per_device_batch_size"], e.data["to"]["grad_accum"]) for e in events] == [(4, 2), (2, 4), (1, 8)]
    assert [e.message.rsplit(". ", 1)[-1] for e in events] == ["Retry 1 of 3.", "Retry 2 of 3.", "Retry 3 of 3."]
    assert "even with 1 example at once after 3 retries" in run.error_message
    assert "gradient checkpointing" in run.error_message and "max_length" in run.error_message
    assert "The estimator puts this run at about" in run.error_message and run.error_message.endswith("Then retry the run.")
    assert run.lease_token is None and run.finished_at is not None  # the worker is free for the next run
