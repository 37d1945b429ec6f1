"""The engine inside one rank of a job on several devices (one process per device, torchrun).

The train task (worker/training/launcher.py) starts `python -m torch.distributed.run` with one
process per device; each runs `python -m worker.training.rank WORK_DIR` (worker/training/rank.py), which calls the
same `worker.training.run.run` as a one-device run. What differs under torch.distributed:

- the process group is set up here, before the Trainer, with the timeout the task passes
  (STUDIO_DIST_TIMEOUT_S): a collective that waits longer than that on a stuck rank raises,
  so no job hangs for ever. nccl on CUDA (CUDA_VISIBLE_DEVICES holds the job's devices, rank
  r uses the r-th), gloo on a CPU;
- adapters (LoRA, QLoRA, DoRA...) train under DDP, full fine-tuning under FSDP2 full sharding
  (`training_arguments`); the Trainer shards the data (each rank takes every N-th micro-batch
  of the one sampler order), so an optimizer step sees micro-batch x accumulation x N examples;
- rank 0 alone reports: its reporter writes each call as a JSON line to a file the task reads
  and forwards to its database reporter. The other ranks report nothing and never touch the
  database. Stopping: the task creates a stop file; every rank looks for it after each step
  and they agree through an all_reduce, so all stop after the same step and save together;
- a failure is written to `error-<rank>.json` (type, message), except the errors a rank gets
  because another rank went away (a closed connection, a collective's timeout): those say
  nothing about the run, and a job whose ranks died without an error of their own was lost,
  like a killed worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC = "spec.json"
EVENTS = "events.jsonl"
STOP = "stop"
ERROR = "error-{rank}.json"
REPORTED = ("on_metrics", "on_checkpoint", "on_checkpoints_deleted", "on_progress", "on_log")


# -- where this process stands (1 and 0 outside torch.distributed) -----------------------------
def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if _initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if _initialized() else 0


def is_main() -> bool:
    return rank() == 0


def _device():
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    import torch.distributed as dist

    if _initialized():
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """The sums over ranks of each value (fp64 on the wire)."""
    import torch
    import torch.distributed as dist

    if not _initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def any_rank(flag: bool) -> bool:
    return all_reduce_sum([1.0 if flag else 0.0])[0] > 0


# -- what the engine changes under torch.distributed --------------------------------------------
def training_arguments(method: str, device_kind: str, timeout_s: int) -> dict[str, Any]:
    """TrainingArguments for a world of several ranks ({} for one process)."""
    if world_size() == 1:
        return {}
    args: dict[str, Any] = {"ddp_backend": "nccl" if device_kind == "cuda" else "gloo", "ddp_timeout": timeout_s,
                            "ddp_find_unused_parameters": False}
    if method == "full":
        # FSDP2 (torch's fully_shard through accelerate): parameters, gradients and optimizer
        # state sharded over the ranks, each decoder layer its own unit; checkpoints hold the
        # full state dict, gathered on rank 0, so any world size can read its weights.
        args.update(fsdp=True, fsdp_config={"version": 2, "state_dict_type": "FULL_STATE_DICT",
                                                    "reshard_after_forward": True})
    return args


def call_through(model, inner, function, *args):  # noqa: ANN001, ANN201
    """`function(*args)` run as the forward of the wrapped model.

    DDP arms its gradient all-reduce in its forward, and FSDP2 gathers the root's parameters (the
    embeddings and the tied output head) in the root module's forward hooks; the engine's loss
    calls the decoder and the head itself, so it must run inside that forward, never beside it.
    """
    inner.forward = lambda: function(*args)  # an instance attribute: nn.Module.__call__ finds it first
    try:
        return model()
    finally:
        del inner.forward


def check_resume(checkpoint: str | None, metadata: dict[str, Any]) -> None:
    """Resuming needs the world size the checkpoint was written with (one for older ones): the
    Trainer skips `steps x accumulation` micro-batches of each rank's share, and each rank's
    random state and (under FSDP) the optimizer's sharding were saved for that world size."""
    if not checkpoint:
        return
    written = int(metadata.get("world_size") or 1)
    if written != world_size():
        raise ValueError(
            f"{Path(checkpoint).name} was written by {written} process(es) and this run has {world_size()}: "
            f"a run resumes only with the device count it was checkpointed with. Retry it with devices="
            f"{written}, or start a new run from the beginning.")


def full_state_dict(trainer) -> dict | None:  # noqa: ANN001
    """The trained weights gathered from every rank's shard (on CPU, on rank 0; None elsewhere).
    A collective: every rank calls it."""
    state = trainer.accelerator.get_state_dict(trainer.model)
    return state if is_main() else None


# -- the reporters of the ranks ---------------------------------------------------------------
class RankReporter:
    """Reports nothing (ranks other than 0); should_stop is agreed by all ranks."""

    def __init__(self, work_dir: Path):
        self.stop_file = Path(work_dir) / STOP
        self._stopped = False

    def _report(self, call: str, *args: Any) -> None:
        pass

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._report("on_metrics", step, metrics)

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        self._report("on_checkpoint", step, path, metadata)

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        self._report("on_checkpoints_deleted", steps)

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        self._report("on_progress", step, total, eta_s)

    def on_log(self, line: str) -> None:
        self._report("on_log", line)

    def should_stop(self) -> bool:
        """Called by every rank after every step (the callback does): one small all_reduce."""
        if not self._stopped:
            self._stopped = any_rank(self.stop_file.exists())
        return self._stopped


class MainRankReporter(RankReporter):
    """Rank 0: each reporter call becomes a JSON line for the task to forward."""

    def __init__(self, work_dir: Path):
        super().__init__(work_dir)
        self._out = open(Path(work_dir) / EVENTS, "a", encoding="utf-8")

    def _report(self, call: str, *args: Any) -> None:
        self.send({"call": call, "args": list(args)})

    def send(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, default=str) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.close()
