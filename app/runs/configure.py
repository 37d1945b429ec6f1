"""From a dataset, a base model, a preset and overrides to a validated TrainingConfig and an
estimate of memory and time on the workers that are online. Pure Python: the web process uses
the torch-free planner (planner/: config, presets, estimate), as the engine does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.errors import InvalidInput
from datacheck.types import PREFERENCE_FORMATS
from app.models import BaseModel, Dataset, Worker
from planner import estimate as estimator
from planner import presets
from planner.config import TrainingConfig

PRESETS = ("auto", "classic")
GiB = 1024**3


@dataclass
class Device:
    kind: str  # cpu | cuda
    memory_gb: float | None
    name: str
    known: bool  # False: no training worker is online, the device is a guess


@dataclass
class Plan:
    config: TrainingConfig
    reasons: list[str]
    estimate: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def training_device(workers: list[Worker]) -> Device:
    """The biggest device among live workers that consume the train queue."""
    train = [w for w in workers if "train" in w.queues.split(",")]
    if not train:
        return Device("cpu", None, "no training worker online", known=False)
    best = max(train, key=lambda w: (w.device == "cuda", w.device_memory_bytes))
    return Device(best.device, best.device_memory_bytes / GiB, best.device_name or best.device, known=True)


def _model_info(model: BaseModel) -> presets.ModelInfo:
    try:
        return presets.read_model_info(model.path)
    except (OSError, ValueError, KeyError):
        return presets.ModelInfo(parameters=model.parameter_count, hidden_size=model.hidden_size,
                                 num_layers=model.num_layers, vocab_size=model.vocab_size,
                                 context_length=model.context_length, architecture=model.architecture)


def _dataset_size(dataset: Dataset) -> tuple[int, int, int | None]:
    counts = (dataset.report or {}).get("counts", {})
    stats = dataset.stats or {}
    examples = int(counts.get("train_examples") or dataset.num_examples or 0)
    tokens = int(stats.get("tokens_per_epoch") or 0)
    longest = (stats.get("example_lengths") or {}).get("p99")
    return examples, tokens, int(longest) if longest else None


def objective_for(dataset: Dataset, asked: str | None) -> str:
    """The objective a dataset trains for: a preference dataset (pairs) trains with dpo unless
    orpo is asked for; any other dataset with sft. A mismatch is refused in plain words."""
    pairs = dataset.format in PREFERENCE_FORMATS
    if asked is None:
        return "dpo" if pairs else "sft"
    if pairs and asked == "sft":
        raise InvalidInput("This dataset holds preference pairs (a better and a worse answer): train it with "
                           "dpo or orpo, or choose a dataset of example answers for sft.", param="objective")
    if not pairs and asked in ("dpo", "orpo"):
        raise InvalidInput(f"{asked} learns from preference pairs, but this dataset holds example answers. "
                           'Upload pairs ({"prompt", "chosen", "rejected"} or OpenAI\'s preference format) '
                           "or train with sft.", param="objective")
    return asked


def _readable(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def plan(*, dataset: Dataset, model: BaseModel, device: Device, preset: str = "auto",
         overrides: dict[str, Any] | None = None, time_budget_s: float | None = None,
         calibration: list[float] | None = None) -> Plan:
    """calibration: actual/estimated durations of finished runs on this device kind (see
    service.calibration); they turn the time estimate into a range."""
    overrides = dict(overrides or {})
    if "base_model" in overrides:
        raise InvalidInput("Choose the base model by its id, not by a path.", param="base_model")
    if preset not in PRESETS:
        raise InvalidInput(f"Unknown preset {preset!r}: use one of {', '.join(PRESETS)}.", param="preset")
    info = _model_info(model)
    examples, tokens, longest = _dataset_size(dataset)
    objective = objective_for(dataset, overrides.get("objective"))
    overrides["objective"] = objective
    if preset == "auto":
        chosen = presets.auto(base_model=model.path, model=info, train_examples=max(examples, 1),
                              train_tokens=max(tokens, 1), max_example_tokens=longest, device=device.kind,
                              device_memory_gb=device.memory_gb, time_budget_s=time_budget_s,
                              objective=objective)
    else:
        chosen = presets.classic(model.path)
        if objective != "sft":  # the classic recipe is a supervised one: preference runs keep its
            #                     adapters, with the preference learning rate and beta
            preference = presets.auto(base_model=model.path, model=info, train_examples=max(examples, 1),
                                      train_tokens=max(tokens, 1), device="cpu", objective=objective)
            overrides = {"learning_rate": preference.config.learning_rate, **overrides}
    reasons = list(chosen.reasons)
    try:
        config = TrainingConfig.model_validate({**chosen.config.model_dump(), **overrides})
        if config.devices > 1:
            # per_device_batch_size x grad_accum is the effective batch asked for: spread it over the devices
            micro, accum, note = presets.spread_batch(config.per_device_batch_size, config.grad_accum,
                                                      config.devices)
            config = TrainingConfig.model_validate({**config.model_dump(), "per_device_batch_size": micro,
                                                    "grad_accum": accum})
            reasons.append(note)
    except ValidationError as exc:
        raise InvalidInput(f"These settings are not valid: {_readable(exc)}", param="hyperparameters") from None
    processed = estimator.processed_tokens(
        train_tokens=tokens, train_examples=examples, max_length=config.max_length, epochs=config.epochs,
        max_steps=config.max_steps, effective_batch=config.effective_batch_size)
    tps = presets.guess_tokens_per_second(info.parameters, device.kind) / estimator.time_factor(
        config.method, config.gradient_checkpointing)
    est = estimator.estimate(
        parameters=info.parameters, hidden_size=info.hidden_size, num_layers=info.num_layers,
        vocab_size=info.vocab_size, context_length=config.max_length, batch_size=config.per_device_batch_size,
        method=config.method, device=device.kind, device_memory_gb=device.memory_gb,
        intermediate_size=info.intermediate_size, num_kv_heads_ratio=info.num_kv_heads_ratio,
        tied_embeddings=info.tied_embeddings, lora_rank=config.lora_r, target_modules=config.target_modules,
        gradient_checkpointing=config.gradient_checkpointing, train_tokens=processed,
        tokens_per_second=tps, devices=config.devices, objective=config.objective, use_dora=config.use_dora,
    )
    estimate = {
        "device": device.name, "device_kind": device.kind, "device_memory_gb": device.memory_gb,
        "device_known": device.known, "memory": est.requested.as_dict(), "verdict": est.verdict,
        "recommended_method": est.recommended_method, "time_s": est.time_s,
        "effective_batch_size": config.effective_batch_size, "devices": config.devices,
        "strategy": est.requested.strategy, "per_device_gb": round(est.requested.total_gb, 2),
        "devices_needed": est.devices_needed,
        "time_range": estimator.time_range(est.time_s, calibration or []),
        "by_method": {m: round(e.total_gb, 2) for m, e in est.by_method.items()},
    }
    warnings = [] if device.known else [
        "No training worker is online: the run waits in the queue until one starts (studio worker)."]
    return Plan(config=config, reasons=reasons, estimate=estimate, warnings=warnings)
