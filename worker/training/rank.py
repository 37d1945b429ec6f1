"""One rank of a job on several devices: `python -m worker.training.rank WORK_DIR`, started by
torchrun (worker/training/launcher.py). What changes under torch.distributed: worker/training/distributed.py."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from datetime import timedelta
from pathlib import Path

from worker.training.distributed import ERROR, SPEC, MainRankReporter, RankReporter, is_main, rank


def die_with_parent() -> None:
    """SIGKILL this process when its parent (torchrun's agent) dies, even by SIGKILL: torchrun
    starts each rank in a session of its own, out of reach of a signal to its process group."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent went before the line above
            os._exit(1)


def _collateral(exc: BaseException) -> bool:
    """An error a rank gets because another rank went away or hangs, not from its own work."""
    import torch.distributed as dist

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, getattr(dist, "DistError", ())):
            return True
        text = str(exc).lower()
        if any(m in text for m in ("connection closed by peer", "connection reset by peer", "timed out",
                                   "broken pipe", "nccl communicator was aborted", "socket closed")):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _read_records(path: str | None) -> list[dict]:
    if not path:
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(work_dir: str) -> int:
    die_with_parent()
    work = Path(work_dir)
    spec = json.loads((work / SPEC).read_text())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timedelta(seconds=spec["timeout_s"]),
                                device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo", timeout=timedelta(seconds=spec["timeout_s"]))
    (work / f"rank-{rank()}.pid").write_text(str(os.getpid()))  # for people (and tests) looking for a rank
    reporter = MainRankReporter(work) if is_main() else RankReporter(work)
    try:
        from planner.config import TrainingConfig
        from worker.training.run import run

        config = TrainingConfig.model_validate(spec["config"])
        result = run(config, _read_records(spec["train"]), _read_records(spec["eval"]), spec["output_dir"],
                     reporter, resume_from=True if spec["resume"] else None, export_merged=spec["export_merged"],
                     liger_kernels=spec.get("liger_kernels", False),
                     dist_timeout_s=spec["timeout_s"])
        if isinstance(reporter, MainRankReporter):
            reporter.send({"result": result.as_dict()})
    except BaseException as exc:
        if not _collateral(exc):
            error = {"rank": rank(), "type": type(exc).__name__, "message": str(exc)[:2000],
                     "traceback": traceback.format_exc()[-6000:]}
            tmp = work / f".{ERROR.format(rank=rank())}.tmp"
            tmp.write_text(json.dumps(error))
            os.replace(tmp, work / ERROR.format(rank=rank()))
        raise
    finally:
        if isinstance(reporter, MainRankReporter):
            reporter.close()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
