"""A run on several devices, for real: torchrun, the gloo backend, 2 processes on a tiny Llama
built from a config with the real tokenizer (worker/training/launcher.py, worker/training/rank.py).

(a) DDP with 2 processes trains on the same examples per step as one process with the same
    effective batch, and gives the same per-step losses;
(b) FSDP full fine-tuning trains, stops on request, resumes, and its saved model loads in plain
    transformers with the function the trainer ended with;
(c) a rank killed with SIGKILL ends the job within a bound, and the run is back in the queue.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import RunEvent, RunStatus
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run, register_model
from tests.worker.training.factories import records, tiny_config
from worker.training import launcher
from worker.training import checkpoints, distributed
from worker.training.reporter import RecordingReporter

pytestmark = [pytest.mark.slow, pytest.mark.one_database]  # the ranks are the point, not the database

# fp32 on both sides; the sums differ only in order: the gradient of a step is one process's
# accumulation of two micro-batches against two processes' all-reduce of one each (the same
# micro-batches, the same normalisation by the step's answer tokens), and the matrix products
# run with a different thread count. Measured: identical here (0.0); a wrong
# sharding (other examples, or gradients summed instead of averaged) moves them by >1e-2.
LOSS_RTOL = 1e-5


def test_ddp_two_processes_match_one_with_the_same_effective_batch(tiny_model_dir, tmp_path):
    from worker.training.run import run

    data, evals = records(16), records(4)
    one = RecordingReporter()
    single = run(tiny_config(tiny_model_dir, max_steps=4, per_device_batch_size=2, grad_accum=2),
                 data, evals, tmp_path / "one", one, export_merged=False)
    two = RecordingReporter()
    started = time.monotonic()
    config = tiny_config(tiny_model_dir, max_steps=4, per_device_batch_size=2, grad_accum=1, devices=2)
    double = launcher.launch(config, data, evals, tmp_path / "two", two, resume=False, export_merged=False)
    print(f"\n2 processes: {time.monotonic() - started:.1f} s")
    assert double.status == "completed" and double.global_step == single.global_step == 4
    losses_one, losses_two = [v for _, v in one.series("loss")], [v for _, v in two.series("loss")]
    assert len(losses_two) == 4 and losses_two[-1] < losses_two[0]
    print("largest relative loss difference:", max(abs(a - b) / abs(b) for a, b in zip(losses_two, losses_one)))
    assert losses_two == pytest.approx(losses_one, rel=LOSS_RTOL)
    assert double.metrics["eval_loss"] == pytest.approx(single.metrics["eval_loss"], rel=LOSS_RTOL)
    assert any("2 x 1 x 2 = 4 examples per optimizer step" in line for line in two.lines)
    assert (Path(double.adapter_dir) / "adapter_model.safetensors").is_file()
    # the evaluation that follows a run reads the trained model back from the outputs
    from worker.tasks.evaluation import trained_model

    assert double.model is None and trained_model(config, double).peft_config["default"].r == config.lora_r


def test_fsdp_full_fine_tuning_resumes_and_saves_a_plain_model(tiny_model_dir, tmp_path, tokenizer):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from worker.training.data import TorchDataset, make_collator, tokenize_records
    from worker.training.loss import evaluate_loss

    config = tiny_config(tiny_model_dir, method="full", learning_rate=1e-4, max_steps=4, per_device_batch_size=2,
                         grad_accum=1, devices=2, save_strategy="steps", save_steps=1)
    data, evals, out = records(16), records(4), tmp_path / "full"
    first = launcher.launch(config, data, evals, out, RecordingReporter(stop_after_step=1), resume=False,
                            export_merged=False)
    assert first.status == "stopped" and first.global_step < 4
    stopped_at = first.global_step
    assert checkpoints.read_metadata(Path(first.last_checkpoint))["world_size"] == 2
    reporter = RecordingReporter()
    result = launcher.launch(config, data, evals, out, reporter, resume=True, export_merged=False)
    assert result.status == "completed" and result.global_step == 4
    assert any(f"Resuming from {out / 'checkpoints'}/checkpoint-{stopped_at}" in line for line in reporter.lines)
    assert [step for step, _ in reporter.series("loss")] == list(range(stopped_at + 1, 5))

    # The exported model is a plain safetensors directory, read on one device by transformers...
    model_dir = Path(result.model_dir)
    assert (model_dir / "model.safetensors").is_file() and not list(model_dir.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    # ... whose weights are the trainer's final ones (its last checkpoint, saved through FSDP) ...
    final = load_file(str(out / "checkpoints" / "checkpoint-4" / "model.safetensors"))
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    reference.load_state_dict(final, strict=False)
    reference.tie_weights()
    ids = tokenizer("Bonjour, j'ai une question sur ma facture.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
        assert not torch.allclose(loaded(ids).logits, base(ids).logits)  # it did train
    # ... and it scores the eval set as the sharded model did inside the ranks at the end.
    examples, _ = tokenize_records(evals, tokenizer, config.max_length)
    loader = torch.utils.data.DataLoader(TorchDataset(examples), batch_size=2,
                                         collate_fn=make_collator(config.packing, tokenizer.pad_token_id))
    assert evaluate_loss(loaded, loader)["eval_loss"] == pytest.approx(result.metrics["eval_loss"], rel=1e-5)


def test_resume_needs_the_world_size_of_the_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="written by 2 process.*this run has 1.*devices=2"):
        distributed.check_resume(str(tmp_path / "checkpoint-4"), {"step": 4, "world_size": 2})
    distributed.check_resume(str(tmp_path / "checkpoint-4"), {"step": 4})  # older ones: one process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waits for its reaper only
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _queued_two_device_run(db, settings, tiny_model_dir, *, n_eval: int, **config):  # noqa: ANN001, ANN202
    """A queued run of a new team asking for 2 devices (micro-batch 2, no accumulation); returns (team, run)."""
    team = make_account(db).team_id
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), team, n_train=16, n_eval=n_eval)
    run = make_run(db, team, dataset, register_model(db, tiny_model_dir, team_id=team))
    run.config = tiny_config(tiny_model_dir, per_device_batch_size=2, grad_accum=1, devices=2,
                             save_strategy="steps", **config).model_dump()
    db.commit()
    return team, run


def test_a_killed_rank_ends_the_job_fast_and_the_run_goes_back_to_the_queue(settings, db, tiny_model_dir):
    from worker.tasks import runs as run_tasks

    team, run = _queued_two_device_run(db, settings, tiny_model_dir, n_eval=0, max_steps=500, save_steps=2)
    run_id, lease, device_ids = run_tasks.claim_next("dist@test", device_count=2)  # a worker with 2 gloo devices
    assert device_ids == [0, 1]
    work = settings.artifact_dir / f"teams/{team}/jobs/{run_id}/run" / launcher.WORK_DIR
    done = threading.Event()
    threading.Thread(target=lambda: (run_tasks.run_training(run_id, lease, device_ids), done.set()), daemon=True).start()

    def checkpointed() -> bool:
        db.expire_all()
        return (work / "rank-1.pid").is_file() and (db.get(type(run), run_id).current_step or 0) >= 3

    deadline = time.monotonic() + 120
    while not checkpointed():
        assert time.monotonic() < deadline and not done.is_set(), "the job did not reach step 3"
        time.sleep(0.2)
    pids = [int((work / f"rank-{r}.pid").read_text()) for r in (0, 1)]
    killed = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)
    assert done.wait(30), "the job did not end within 30 s of a rank's death"
    print(f"\nkilled rank -> run back in the queue in {time.monotonic() - killed:.1f} s")
    assert not any(_alive(pid) for pid in pids)
    db.expire_all()
    row = db.get(type(run), run_id)
    assert row.status == RunStatus.queued and row.lease_token is None and row.worker_id is None
    assert row.attempt == 1  # the claim counted it; the next claim makes it attempt 2
    event = db.scalars(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind == "status")
                       .order_by(RunEvent.id.desc())).first()
    assert "lost one of its processes" in event.message and event.data["reason"] == "worker_lost"
    assert event.data["resume_step"] is not None and event.data["resume_step"] >= 2


CHILD = """
import sys
from tests.worker.training.factories import records, tiny_config
from worker.training.launcher import launch
from worker.training.reporter import NullReporter
config = tiny_config(sys.argv[1], max_steps=500, per_device_batch_size=2, grad_accum=1, devices=2)
launch(config, records(16), None, sys.argv[2], NullReporter(), resume=False)
"""


def test_no_rank_outlives_a_killed_task(tiny_model_dir, tmp_path):
    """The task's process killed with SIGKILL (the worker's host OOM killer, kill -9): torchrun and
    both ranks die with it (PR_SET_PDEATHSIG), and hold no device for a run that is gone."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    task = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_model_dir), str(tmp_path / "out")], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    work = tmp_path / "out" / launcher.WORK_DIR
    deadline = time.monotonic() + 120
    while not ((work / "rank-1.pid").is_file() and (work / "rank-0.pid").is_file()):
        assert time.monotonic() < deadline and task.poll() is None, "the ranks did not start"
        time.sleep(0.2)
    ranks = [int((work / f"rank-{r}.pid").read_text()) for r in (0, 1)]
    torchrun = int(Path(f"/proc/{ranks[0]}/stat").read_text().split(")")[-1].split()[1])
    assert torchrun != task.pid and _alive(torchrun)  # the ranks' parent is torchrun, the task's child
    task.kill()
    task.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in (torchrun, *ranks)):
        assert time.monotonic() < deadline, "a process of the job outlived the task that started it"
        time.sleep(0.1)


def test_studio_train_runs_a_config_on_two_processes(tiny_model_dir, tmp_path, capsys):
    import json

    from worker.training.cli import train_command

    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "base_model": str(tiny_model_dir), "method": "lora", "max_steps": 2, "epochs": None, "devices": 2,
        "per_device_batch_size": 2, "grad_accum": 1, "learning_rate": 1e-2, "save_strategy": "no",
        "eval_strategy": "no", "target_modules": "all_linear"}))
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records(16)), encoding="utf-8")
    assert train_command(config, dataset, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "Starting 2 processes with torchrun" in out and "progress 2/2" in out and "2 x 1 x 2 = 4 examples" in out
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_a_run_on_two_processes_succeeds_through_the_task(settings, db, tiny_model_dir, monkeypatch):
    """The task's whole path: metrics, checkpoints and outputs recorded by the task from rank 0's
    reports, and the automatic evaluation on the model read back from the outputs."""
    from app.models import Artifact, Checkpoint, Evaluation, Metric
    from worker.tasks import runs as run_tasks

    from app.config import get_settings

    monkeypatch.setenv("STUDIO_EVAL_SAMPLES", "2")  # a short evaluation: the tiny model's answers
    monkeypatch.setenv("STUDIO_EVAL_MAX_NEW_TOKENS", "8")
    get_settings.cache_clear()
    _team, run = _queued_two_device_run(db, settings, tiny_model_dir, n_eval=4, max_steps=2, save_steps=1)
    run_tasks.run_training(*run_tasks.claim_next("dist@test", device_count=2))
    db.expire_all()
    row = db.get(type(run), run.id)
    assert row.status == RunStatus.succeeded, row.error_message
    assert row.result["global_step"] == 2 and row.current_step == 2
    assert sorted(db.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run.id))) == [1, 2]
    assert len(db.scalars(select(Metric.value).where(Metric.run_id == run.id, Metric.name == "loss")).all()) == 2
    kinds = set(db.scalars(select(Artifact.kind).where(Artifact.run_id == run.id)))
    assert {"adapter", "log"} <= kinds and "merged" not in kinds  # a merged copy is built when asked for
    evaluation = db.scalar(select(Evaluation).where(Evaluation.run_id == run.id))
    assert evaluation.status == "succeeded", evaluation.error_message


def test_an_error_in_the_ranks_fails_the_job_with_its_own_words(tiny_model_dir, tmp_path):
    """A rank that raises (here: a record with no answer) is a failure of the run, not a lost
    process: the task gets the rank's error, of its kind."""
    bad = records(8) + [{"messages": [{"role": "user", "content": "Bonjour ?"}]}]
    reporter = RecordingReporter()
    with pytest.raises(launcher.DataError, match="no assistant answer"):
        launcher.launch(tiny_config(tiny_model_dir, devices=2), bad, None, tmp_path / "out", reporter, resume=False)
    assert any(line.startswith(("Rank 0 failed", "Rank 1 failed")) and "DataError" in line for line in reporter.lines)
