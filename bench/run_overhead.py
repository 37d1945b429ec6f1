"""What the studio costs on top of the engine: the same training through the studio (queue,
worker process, database metrics, checkpoints, artifacts) and through the engine alone.

    .venv/bin/python bench/run_overhead.py [--steps 120] [--broker redis://127.0.0.1:6379/14]

Prints the wall time of both, their ratio (goal <= 1.05) and the time from submit to running
on an idle worker (goal < 2 s). Uses a small Llama built from a config with the built-in
model's real tokenizer; a temporary data directory (SQLite database, embedded broker unless
--broker is given) is created and removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HYPER = {"method": "lora", "per_device_batch_size": 4, "grad_accum": 1, "save_strategy": "steps",
         "eval_strategy": "no", "max_length": 128, "warmup": 0.0, "scheduler": "constant", "learning_rate": 1e-3,
         "lora_r": 8, "lora_alpha": 16, "target_modules": "all_linear", "packing": True, "epochs": None}


def build_model(tmp: Path) -> Path:
    from tests.worker.training.factories import build_tiny_model
    from worker.training.builtin import convert_builtin
    from worker.training.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(convert_builtin(tmp / "models")))
    return build_tiny_model(tmp / "small", tokenizer, hidden=256, layers=4)


def records(n: int) -> list[dict]:
    from tests.worker.training.factories import records as make

    return make(n)


def engine_alone(model_dir: Path, data: list[dict], steps: int, out: Path) -> tuple[float, float]:
    from planner.config import TrainingConfig
    from worker.training.reporter import NullReporter
    from worker.training.run import run as run_engine

    config = TrainingConfig(base_model=str(model_dir), max_steps=steps, save_steps=max(steps // 4, 1), **HYPER)
    started = time.perf_counter()
    result = run_engine(config, data, None, out, NullReporter())
    return time.perf_counter() - started, result.metrics["train_runtime_s"]


def through_studio(model_dir: Path, data: list[dict], steps: int, data_dir: Path, broker: str | None) -> tuple[float, float, float]:
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir)}
    if broker:
        env["STUDIO_BROKER_URL"] = broker
    os.environ.update({k: v for k, v in env.items() if k.startswith("STUDIO_")})
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    from sqlalchemy import select

    from app.config import get_settings
    from app.db import session_scope
    from app.runs import service
    from app.models import Worker
    from app.storage import ArtifactStore
    from tests.factories import make_account
    from tests.runs.factories import make_dataset, register_model

    settings = get_settings()
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--queues", "train", "--name", "bench@local"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with session_scope() as s:
            account = make_account(s)
            model = register_model(s, model_dir)
            store = ArtifactStore(settings.artifact_dir)
            dataset = make_dataset(s, store, account.team_id, n_train=1, n_eval=1)
            store.write_bytes(dataset.normalized_path, b"".join(__import__("json").dumps(r).encode() + b"\n" for r in data))
        while True:  # the worker is up and idle before the clock starts
            with session_scope() as s:
                if s.scalar(select(Worker).where(Worker.name == "bench@local")):
                    break
            time.sleep(0.2)
        _submit_and_wait(service, settings, account, dataset, model, 3)  # warm-up, as for the engine
        return _submit_and_wait(service, settings, account, dataset, model, steps)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def _submit_and_wait(service, settings, account, dataset, model, steps: int) -> tuple[float, float, float]:  # noqa: ANN001
    """Submit one run and wait: (submit -> succeeded, submit -> running) in seconds."""
    from app.db import session_scope
    from app.models import Run, RunStatus

    with session_scope() as s:
        sub = service.Submission(team_id=account.team_id, user_id=account.user_id, dataset_id=dataset.id,
                                 base_model_id=model.id, preset="classic",
                                 hyperparameters={**HYPER, "max_steps": steps, "save_steps": max(steps // 4, 1)})
        run_id = service.submit(s, sub=sub, settings=settings)[0].id
    while True:  # polled slowly: a busy poller would steal CPU from the training it measures
        time.sleep(0.5)
        with session_scope() as s:
            run = s.get(Run, run_id)
            if run.status.is_final:
                break
    if run.status != RunStatus.succeeded:
        raise SystemExit(f"the studio run ended {run.status.value}")
    # The worker evaluates the run after marking it succeeded (not part of the run's time): wait
    # for that, so the next run starts on an idle worker as the engine-alone run does.
    from app.models import Evaluation

    while True:
        with session_scope() as s:
            busy = s.query(Evaluation).filter(Evaluation.run_id == run_id,
                                              Evaluation.status.in_(("pending", "running"))).count()
        if not busy:
            break
        time.sleep(0.5)
    # The row's own clocks: created at submit (web), started at claim and finished at the outcome (worker).
    return ((run.finished_at - run.created_at).total_seconds(), (run.started_at - run.created_at).total_seconds(),
            run.result["metrics"]["train_runtime_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--broker", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="run-overhead-"))
    try:
        model_dir = build_model(tmp)
        data = records(args.steps * 4)
        engine_alone(model_dir, data, 3, tmp / "warmup")  # first-run costs (allocator, kernels) paid once
        alone, alone_loop = engine_alone(model_dir, data, args.steps, tmp / "alone")
        studio, to_running, studio_loop = through_studio(model_dir, data, args.steps, tmp / "data", args.broker)
        print(f"steps: {args.steps} (small Llama, hidden 256, 4 layers, LoRA r=8, batch 4)")
        print(f"engine alone:         {alone:7.2f} s")
        print(f"through the studio:   {studio:7.2f} s  (submit -> succeeded: queue, worker, DB metrics, artifacts)")
        print(f"ratio studio/engine:  {studio / alone:7.3f}  (goal <= 1.05)")
        print(f"training loop alone:  {alone_loop:7.2f} s engine, {studio_loop:7.2f} s in the worker "
              f"(ratio {studio_loop / alone_loop:.3f})")
        print(f"submit -> running:    {to_running:7.2f} s  (goal < 2 s; broker: {args.broker or 'embedded SQLite'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
