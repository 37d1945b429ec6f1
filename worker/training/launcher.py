"""A run on several devices: the train task starts torchrun and stays the run's only voice.

    result = launch(config, train_records, eval_records, output_dir, reporter, resume=..., device_ids=[0, 1])

The task (the Celery process, which holds the run's lease through its DatabaseReporter) starts

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts 0
        --monitor-interval 0.5 -m worker.training.rank <output_dir>/.distributed

with one process per device (worker/training/rank.py and distributed.py: the ranks' side). Then it
waits, and every 0.2 s:
- forwards what rank 0 reported (JSON lines in `events.jsonl`: metrics, progress, checkpoints,
  log lines) to its reporter, which writes them to the database: the ranks never touch it;
- asks its reporter whether to stop (cancelled, lease lost) and if so creates the `stop` file,
  which the ranks agree on after their next step: they stop together and save a checkpoint.

How a job ends:
- rank 0 sends the result: the RunResult, as from a one-device run;
- a rank raised (a bug, a data error, out of memory): RankFailed, with the rank's error, which
  the task classifies like any failure (out of memory retries with a smaller micro-batch);
- a rank died without an error of its own (kill -9, the kernel's OOM killer, a lost GPU): torchrun's
  monitor sees it within --monitor-interval and stops the others (the survivors' collectives
  fail at once on a closed connection, or after STUDIO_DIST_TIMEOUT_S at worst): JobLost, and
  the task gives the run back to the queue like a lost worker's.
torchrun gets PR_SET_PDEATHSIG (SIGKILL) and so does each rank, so a killed task leaves no rank
behind to hold its devices.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from worker.training import distributed
from worker.training.reporter import Reporter

WORK_DIR = ".distributed"
POLL_S = 0.2
MONITOR_S = 0.5
ROOT = Path(__file__).resolve().parents[2]


class RankFailed(RuntimeError):
    """A rank raised: its error, in its words."""


class DataError(RankFailed):
    """A rank found the dataset unusable (named like the engine's, so the task classifies it alike)."""


class JobLost(RuntimeError):
    """A rank died without an error of its own (killed): the run goes back to the queue."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def command(nproc: int, work: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "--max-restarts=0", f"--monitor-interval={MONITOR_S}", "-m", "worker.training.rank", str(work)]


def environment(nproc: int, device_ids: list[int] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if device_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in device_ids)  # rank r uses the r-th
    # torchrun would pin each rank to one thread; the ranks share the threads one process would
    # have (OMP_NUM_THREADS, or the cores) instead
    threads = int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    env["OMP_NUM_THREADS"] = str(max(1, threads // nproc))
    env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timed-out collective ends the rank
    return env


def _write_jsonl(path: Path, records: list[dict] | None) -> str | None:
    if not records:
        return None
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return str(path)


class _Events:
    """Reads rank 0's JSON lines as they come (a line counts once it ends)."""

    def __init__(self, path: Path, reporter: Reporter):
        self.path, self.reporter, self.offset, self.result = path, reporter, 0, None

    def forward(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            record = json.loads(line)
            if "result" in record:
                self.result = record["result"]
            elif record.get("call") in distributed.REPORTED:
                getattr(self.reporter, record["call"])(*record["args"])


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def launch(config, train_records: list[dict], eval_records: list[dict] | None, output_dir: str | Path,  # noqa: ANN001
           reporter: Reporter, *, resume: bool, device_ids: list[int] | None = None, timeout_s: int = 300,
           export_merged: bool = True, liger_kernels: bool = False):  # noqa: ANN201
    """Trains `config` on config.devices processes; returns the RunResult (its `model` is None:
    the trained model is in the ranks' outputs)."""
    from worker.training.run import RunResult

    nproc = config.devices
    if device_ids is not None and len(device_ids) != nproc:
        raise ValueError(f"The run asks for {nproc} devices and was given {len(device_ids)}: {device_ids}.")
    output_dir = Path(output_dir)
    work = output_dir / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)  # what an earlier attempt left
    work.mkdir(parents=True)
    spec = {"config": config.model_dump(), "output_dir": str(output_dir), "resume": bool(resume),
            "train": _write_jsonl(work / "train.jsonl", train_records),
            "eval": _write_jsonl(work / "eval.jsonl", eval_records),
            "timeout_s": int(timeout_s), "export_merged": export_merged,
            "liger_kernels": bool(liger_kernels)}
    (work / distributed.SPEC).write_text(json.dumps(spec))
    events = _Events(work / distributed.EVENTS, reporter)
    log_path = work / "ranks.log"
    reporter.on_log(f"Starting {nproc} processes with torchrun"
                    + (f" on devices {', '.join(map(str, device_ids))}" if device_ids else "") + ".")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command(nproc, work), cwd=ROOT, env=environment(nproc, device_ids),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
    try:
        stopping = False
        while proc.poll() is None:
            events.forward()
            if not stopping and reporter.should_stop():
                stopping = True
                (work / distributed.STOP).touch()
            time.sleep(POLL_S)
        events.forward()
    finally:
        if proc.poll() is None:  # this thread was interrupted: no rank outlives it
            proc.kill()
            proc.wait()
        for name in ("train.jsonl", "eval.jsonl"):  # copies of the dataset: not kept in the run's files
            (work / name).unlink(missing_ok=True)
    if proc.returncode == 0 and events.result is not None:
        values = {f.name: events.result[f.name] for f in fields(RunResult) if f.name in events.result}
        result = RunResult(**values)
        shutil.rmtree(work, ignore_errors=True)  # everything in it was forwarded (a failed job's stays)
        return result
    errors = sorted(work.glob(distributed.ERROR.format(rank="*")), key=lambda p: p.stat().st_mtime)
    if errors:
        error = json.loads(errors[0].read_text())
        reporter.on_log(f"Rank {error['rank']} failed:\n{error['traceback']}")
        raise (DataError if error["type"] == "DataError" else RankFailed)(f"{error['type']}: {error['message']}")
    tail = _tail(log_path)
    reporter.on_log(f"torchrun exited with status {proc.returncode}; its last lines:\n{tail}")
    raise JobLost(_lost_reason(proc.returncode, tail))


def _lost_reason(returncode: int, tail: str) -> str:
    for line in tail.splitlines():
        line = line.strip()
        if line.startswith("exitcode") or "Signal" in line and "received" in line:
            return f"a process of the job died ({line})"
    return f"a process of the job died (torchrun exited with status {returncode})"
