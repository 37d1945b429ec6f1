"""The Trainer callback that talks to the reporter: metrics, progress, checkpoints, stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from worker.training import checkpoints, distributed
from worker.training.loss import perplexity

PAIR_METRICS = {  # TRL's preference log names -> the studio's metric names
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    "eval_rewards/accuracies": "eval_reward_accuracy",
    "eval_rewards/margins": "eval_reward_margin",
}


class TokenCounter:
    """Real (non-padding) tokens seen by the training loop, shared with the callback."""

    def __init__(self) -> None:
        self.tokens = 0  # real tokens
        self.slots = 0  # positions laid out, padding included
        self.shared = 0  # positions not computed again: a shared prefix ran once for its micro-batch


def peak_memory_mb() -> float:
    """Peak accelerator memory allocated (CUDA) or peak resident memory of the process (CPU)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return process_peak_rss_mb()


def process_peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ReporterCallback(TrainerCallback):
    def __init__(self, reporter, counter: TokenCounter, run_metadata: dict, keep_checkpoints: int | None = None):
        self.reporter = reporter
        self.keep_checkpoints = keep_checkpoints
        self.counter = counter
        self.run_metadata = run_metadata
        self.stopped = False
        self.last_metrics: dict[str, float] = {}
        self.last_eval_step: int | None = None
        self.epoch_step: int | None = None  # the last step whose epoch was reported

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step:  # resumed: the checkpoint's metrics stand until new ones are logged
            resumed = checkpoints.read_metadata(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            self.last_metrics.update(resumed.get("metrics") or {})
        self.start_time = time.monotonic()
        self.start_step = state.global_step
        self.log_time, self.log_tokens, self.log_slots = self.start_time, self.counter.tokens, self.counter.slots
        self.reporter.on_progress(state.global_step, state.max_steps, None)

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self.start_step
        elapsed = time.monotonic() - self.start_time
        eta = elapsed / done * (state.max_steps - state.global_step) if done else None
        self.reporter.on_progress(state.global_step, state.max_steps, eta)
        if not self.stopped and self.reporter.should_stop():
            self.stopped = True
            self.reporter.on_log(f"Stop requested: stopping after step {state.global_step}.")
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        metrics: dict[str, float] = {}
        if "loss" in logs:
            now = time.monotonic()
            seconds = max(now - self.log_time, 1e-9)
            metrics["loss"] = float(logs["loss"])
            # the job's rate; under torch.distributed rank 0's share times the ranks (the final
            # tokens_per_s of the run adds up every rank's tokens)
            metrics["tokens_per_s"] = (self.counter.tokens - self.log_tokens) / seconds * args.world_size
            slots = self.counter.slots - self.log_slots
            metrics["padding_share"] = 1 - (self.counter.tokens - self.log_tokens) / slots if slots else 0.0
            self.log_time, self.log_tokens, self.log_slots = now, self.counter.tokens, self.counter.slots
            for key in ("learning_rate", "grad_norm", "epoch"):
                if key in logs and logs[key] is not None:
                    metrics[key] = float(logs[key])
            metrics["peak_memory_mb"] = peak_memory_mb()
        for name, metric in PAIR_METRICS.items():  # preference runs (DPO, ORPO)
            if name in logs and logs[name] is not None:
                metrics[metric] = float(logs[name])
        if "eval_loss" in logs:
            metrics["eval_loss"] = float(logs["eval_loss"])
            if "eval_rewards/accuracies" not in logs:  # a preference loss is no language-model loss
                metrics["perplexity"] = perplexity(metrics["eval_loss"])
            self.last_eval_step = state.global_step
            if self.epoch_step != state.global_step:  # a metric is one row per (step, name)
                metrics.setdefault("epoch", float(logs.get("epoch") or state.epoch or 0.0))
        if "epoch" in metrics:
            self.epoch_step = state.global_step
        if metrics:
            self.last_metrics.update(metrics)
            self.reporter.on_metrics(state.global_step, metrics)

    def on_save(self, args, state, control, **kwargs):
        if args.world_size > 1:
            # Under torch.distributed every rank writes a part (its random state; FSDP's gathered
            # weights and optimizer): rank 0 seals the checkpoint once all of them are written.
            distributed.barrier()
            if not distributed.is_main():
                return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metadata = {
            **self.run_metadata,
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": state.epoch,
            "metrics": {k: v for k, v in self.last_metrics.items()},
            "saved_at": time.time(),
        }
        if not path.is_dir():
            return
        checkpoints.write_metadata(path, metadata)
        self.reporter.on_checkpoint(state.global_step, os.fspath(path), metadata)
        deleted = checkpoints.rotate(path.parent, self.keep_checkpoints)
        if deleted:
            self.reporter.on_checkpoints_deleted(deleted)
