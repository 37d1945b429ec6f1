"""What a run does when it runs out of memory: the one place for the rule. Pure Python (no torch).

A training step that runs out of memory is retried from the run's last checkpoint with a smaller
micro-batch and more gradient accumulation, so each optimizer step still sees the same examples
(the same effective batch, the same learning curve):

- the micro-batch is halved (when it is odd, it drops to its largest divisor below half, so the
  effective batch stays exactly the same: 6 -> 3, 9 -> 3, 5 -> 1) and the accumulation is
  multiplied by the same factor;
- at most MAX_RETRIES times per run (a retry asked for by a person starts a fresh count); once
  the micro-batch is already 1, or the retries are spent, the run fails with error kind `oom`
  and `advice()` says, with the estimator, which change would fit.

The worker applies it to an out-of-memory error raised in the training process
(worker/tasks/runs.py); the reconciler applies it to a worker lost twice at the same checkpoint,
which is what a kernel OOM kill (SIGKILL) looks like (worker/runtime/reconciler.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner import estimate as estimator
from planner.config import TrainingConfig

MAX_RETRIES = 3
KIND = "oom"  # the run's error_kind once it gives up
EVENT = "oom_retry"  # the run event of each retry (counted to enforce MAX_RETRIES)
TIMES = {2: "twice", 3: "three times"}


@dataclass(frozen=True)
class Retry:
    config: TrainingConfig
    factor: int  # the micro-batch was divided by it, the accumulation multiplied by it
    number: int  # 1-based: this is retry `number` of MAX_RETRIES

    @property
    def change(self) -> dict:
        return {"per_device_batch_size": self.config.per_device_batch_size, "grad_accum": self.config.grad_accum}


def smaller_micro_batch(batch: int) -> int | None:
    """The largest divisor of `batch` that is at most half of it (None for 1)."""
    return next((d for d in range(batch // 2, 0, -1) if batch % d == 0), None)


def next_retry(config: TrainingConfig, retries_done: int) -> Retry | None:
    """The configuration to retry with, or None when the run must fail."""
    if retries_done >= MAX_RETRIES:
        return None
    smaller = smaller_micro_batch(config.per_device_batch_size)
    if smaller is None:
        return None
    factor = config.per_device_batch_size // smaller
    changed = config.model_copy(update={"per_device_batch_size": smaller, "grad_accum": config.grad_accum * factor})
    return Retry(config=TrainingConfig.model_validate(changed.model_dump()), factor=factor, number=retries_done + 1)


def _examples(n: int) -> str:
    return "1 example" if n == 1 else f"{n} examples"


def where(step: int | None) -> str:
    return f"at step {step}" if step else "in the first step"


def resuming(resume_step: int | None) -> str:
    return f"from step {resume_step}" if resume_step else "from the beginning (no checkpoint yet)"


def retry_message(old: TrainingConfig, retry: Retry, *, step: int | None, resume_step: int | None,
                  cause: str = "Out of memory") -> str:
    """E.g. "Out of memory at step 40 with 8 examples at once: retrying from step 30 with 4
    examples at once and twice the accumulation (same effective batch of 16). Retry 1 of 3." """
    times = TIMES.get(retry.factor, f"{retry.factor} times")
    return (f"{cause} {where(step)} with {_examples(old.per_device_batch_size)} at once: retrying "
            f"{resuming(resume_step)} with {_examples(retry.config.per_device_batch_size)} at once and {times} "
            f"the accumulation (same effective batch of {old.effective_batch_size}). "
            f"Retry {retry.number} of {MAX_RETRIES}.")


def failure_message(config: TrainingConfig, *, step: int | None, retries_done: int, advice_text: str) -> str:
    if config.per_device_batch_size == 1:
        tried = "even with 1 example at once"
    else:
        tried = f"with {_examples(config.per_device_batch_size)} at once"
    retried = f" after {retries_done} retr{'y' if retries_done == 1 else 'ies'} with smaller micro-batches" \
        if retries_done else ""
    return f"The run ran out of memory {where(step)} {tried}{retried}. {advice_text}"


GENERIC_ADVICE = ("Shorten max_length, turn on gradient checkpointing, switch to QLoRA (4-bit, the least memory) "
                  "or train on a device with more memory.")


def advice(config: TrainingConfig, model, *, device: str, memory_gb: float | None) -> str:  # noqa: ANN001
    """Which change would fit, by the estimator. `model` is a planner.presets.ModelInfo (None when
    the model's shape cannot be read: then the generic advice)."""
    if model is None:
        return GENERIC_ADVICE

    def total(cfg: TrainingConfig, method: str | None = None) -> float:
        return estimator.estimate(
            parameters=model.parameters, hidden_size=model.hidden_size, num_layers=model.num_layers,
            vocab_size=model.vocab_size, context_length=cfg.max_length, batch_size=cfg.per_device_batch_size,
            method=method or cfg.method, device=device, intermediate_size=model.intermediate_size,
            num_kv_heads_ratio=model.num_kv_heads_ratio, tied_embeddings=model.tied_embeddings,
            lora_rank=cfg.lora_r, target_modules=cfg.target_modules,
            gradient_checkpointing=cfg.gradient_checkpointing).requested.total_gb

    now = total(config)
    options: list[tuple[str, float]] = []
    if not config.gradient_checkpointing:
        options.append(("turn on gradient checkpointing",
                        total(config.model_copy(update={"gradient_checkpointing": True}))))
    if config.max_length >= 32:
        shorter = max(16, config.max_length // 2)
        options.append((f"shorten max_length to {shorter}", total(config.model_copy(update={"max_length": shorter}))))
    if device == "cuda" and config.method != "qlora":
        options.append(("switch to QLoRA (4-bit)", total(config, "qlora")))
    options.sort(key=lambda option: option[1])
    if memory_gb:
        # It did not fit, so the run needs more than the device has: where the estimate was lower,
        # every option is scaled up by the same factor before it is compared with the device.
        calibration = max(1.0, memory_gb / max(now, 1e-9))
        fitting = [(what, gb) for what, gb in options if gb * calibration <= 0.9 * memory_gb]
        head = (f"The estimator puts this run at about {now:.1f} GB on a device of {memory_gb:.0f} GB, "
                "and it did not fit.")
    else:
        fitting, head = [], f"The estimator puts this run at about {now:.1f} GB."
    listed = "; ".join(f"{what} (about {gb:.1f} GB)" for what, gb in options)
    if fitting:
        best = fitting[0]
        text = f"{head} What would fit: {best[0]} (about {best[1]:.1f} GB)."
        if len(fitting) > 1:
            text += " Also: " + "; ".join(f"{what} (about {gb:.1f} GB)" for what, gb in fitting[1:]) + "."
    else:
        text = f"{head} Options, least memory first: {listed}." if listed else head
        text += " If none is enough, combine them or use more devices (or a device with more memory)."
    return text + " Then retry the run."
