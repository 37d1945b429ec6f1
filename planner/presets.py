"""Starting configurations: the classic LoRA recipe and the auto preset (the default).

`auto(...)` adapts learning rate, rank, target modules, batch and steps to the model's size,
the dataset's size and the hardware (and to a time budget when given), and explains each
choice in plain words. Pure Python: the web app calls it to prefill its forms.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from planner.config import TrainingConfig
from planner.defaults import (
    DEFAULT_BETA, DEFAULT_EPOCHS, DEFAULT_GRAD_ACCUM, DEFAULT_KV_HEADS_RATIO, DEFAULT_LEARNING_RATE, DEFAULT_LORA_ALPHA,
    DEFAULT_LORA_DROPOUT, DEFAULT_LORA_R, DEFAULT_MAX_GRAD_NORM, DEFAULT_METHOD, DEFAULT_PACKING,
    DEFAULT_PER_DEVICE_BATCH_SIZE, DEFAULT_PRECISION, DEFAULT_SCHEDULER, DEFAULT_TARGET_MODULES,
    DEFAULT_TIED_EMBEDDINGS, DEFAULT_WARMUP, DEFAULT_WEIGHT_DECAY,
)
from planner.estimate import estimate

# Effective FLOP/s per CPU core, used only when no throughput was measured: ~200 tokens/s for
# LoRA on a 135M model on 2 cores. On the 2-core development machines the engine measured
# 120-150 tokens/s (AMD Zen 5, default BLAS), 270-320 (same CPU, oneDNN kernels, cpu_kernels.py)
# and ~310-390 (Intel Xeon with AMX, default BLAS); the guess stays below them so a time budget
# is not overrun on a slower CPU.
CPU_FLOPS_PER_CORE = 5.5e10
GPU_FLOPS = 1.5e14
AUTO_TARGET_MODULES = "all_linear"


@dataclass
class ModelInfo:
    """What presets and estimates need to know about a base model (read without torch)."""

    parameters: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    context_length: int
    intermediate_size: int | None = None
    num_kv_heads_ratio: float = DEFAULT_KV_HEADS_RATIO
    tied_embeddings: bool = DEFAULT_TIED_EMBEDDINGS
    architecture: str = ""


@dataclass
class Preset:
    config: TrainingConfig
    reasons: list[str] = field(default_factory=list)


def classic(base_model: str) -> Preset:
    """The classic starting point of LoRA tutorials: the defaults of planner/defaults.py."""
    config = TrainingConfig(
        base_model=base_model, method=DEFAULT_METHOD, lora_r=DEFAULT_LORA_R, lora_alpha=DEFAULT_LORA_ALPHA,
        lora_dropout=DEFAULT_LORA_DROPOUT, target_modules=DEFAULT_TARGET_MODULES,
        learning_rate=DEFAULT_LEARNING_RATE, epochs=DEFAULT_EPOCHS, scheduler=DEFAULT_SCHEDULER,
        warmup=DEFAULT_WARMUP, weight_decay=DEFAULT_WEIGHT_DECAY, max_grad_norm=DEFAULT_MAX_GRAD_NORM,
        per_device_batch_size=DEFAULT_PER_DEVICE_BATCH_SIZE, grad_accum=DEFAULT_GRAD_ACCUM,
    )
    return Preset(config, [
        f"The classic LoRA recipe: r={DEFAULT_LORA_R}, alpha={DEFAULT_LORA_ALPHA}, {DEFAULT_TARGET_MODULES} "
        f"layers, LR {_scientific(DEFAULT_LEARNING_RATE)}, {DEFAULT_EPOCHS} epochs, {DEFAULT_SCHEDULER} "
        f"schedule, effective batch {DEFAULT_PER_DEVICE_BATCH_SIZE * DEFAULT_GRAD_ACCUM}."
    ])


def _scientific(number: float) -> str:
    """2e-4 as people write it, rather than 0.0002 or 2e-04."""
    mantissa, exponent = f"{number:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def read_model_info(model_dir: str | os.PathLike) -> ModelInfo:
    """Shape of a local model from config.json, parameters counted from the safetensors headers."""
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    heads = cfg.get("num_attention_heads") or 1
    return ModelInfo(
        parameters=count_safetensors_parameters(model_dir),
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        vocab_size=cfg["vocab_size"],
        context_length=cfg.get("max_position_embeddings") or 2048,
        intermediate_size=cfg.get("intermediate_size"),
        num_kv_heads_ratio=(cfg.get("num_key_value_heads") or heads) / heads,
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        architecture=cfg.get("model_type", ""),
    )


def count_safetensors_parameters(model_dir: Path) -> int:
    total = 0
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"No .safetensors weights in {model_dir}.")
    for path in files:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                total += math.prod(info["shape"])
    return total


def guess_tokens_per_second(parameters: float, device: str, cpu_cores: int | None = None) -> float:
    flops = (cpu_cores or os.cpu_count() or 1) * CPU_FLOPS_PER_CORE if device == "cpu" else GPU_FLOPS
    return flops / (4 * parameters)  # LoRA: forward + backward through frozen weights


def auto(
    *,
    base_model: str,
    model: ModelInfo,
    train_examples: int,
    train_tokens: int,
    max_example_tokens: int | None = None,
    device: str = "cpu",
    device_memory_gb: float | None = None,
    time_budget_s: float | None = None,
    tokens_per_second: float | None = None,
    objective: str = "sft",
) -> Preset:
    """A configuration adapted to this model, dataset and machine, with the reasons for it.

    train_tokens: all tokens of the training set (one epoch); time_budget_s: how long the
    training may take; tokens_per_second: a measured throughput (otherwise a rough guess).
    objective: sft, or dpo / orpo for a dataset of preference pairs (train_examples are pairs):
    beta, learning rate and epochs then follow the preference recipes (see _preference).
    """
    if train_examples < 1 or train_tokens < 1:
        raise ValueError("The dataset is empty: add conversations before choosing settings.")
    reasons: list[str] = []
    n = model.parameters
    size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"

    rank = 16 if train_examples < 2000 else 32 if train_examples < 20000 else 64
    reasons.append(f"LoRA rank {rank} (alpha {2 * rank}): enough capacity for {train_examples} examples.")
    reasons.append("Adapters on all linear layers (attention and feed-forward): they learn faster "
                   "than attention-only adapters for little extra memory.")

    lr = min(max(DEFAULT_LEARNING_RATE * (7e9 / n) ** 0.35, 5e-5), 1e-3)  # the default suits ~7B models
    reasons.append(f"Learning rate {lr:.1e}: smaller models take larger steps ({size} parameters).")

    effective = 16 if train_examples >= 1000 else 8 if train_examples >= 200 else 4
    epochs = 3.0 if train_examples < 500 else 2.0 if train_examples < 5000 else 1.0
    beta = DEFAULT_BETA
    if objective == "sft":
        why = ("a small dataset needs several passes and enough optimizer steps" if epochs > 1
               else "a large dataset is learned in one pass without over-fitting")
        reasons.append(f"{epochs:g} epoch(s) with an effective batch of {effective}: {why}.")
    else:
        lr, epochs, beta = _preference(objective, lr, train_examples, effective, reasons)

    mean_tokens = train_tokens / train_examples
    max_length = _max_length(max_example_tokens or mean_tokens * 2, model.context_length)
    method, per_device, checkpointing = _fit(model, device, device_memory_gb, effective, max_length,
                                             rank, reasons)

    steps_per_epoch = math.ceil(train_examples / effective)
    planned = math.ceil(epochs * steps_per_epoch)
    max_steps = None
    throughput = tokens_per_second or guess_tokens_per_second(n, device)
    if time_budget_s:
        affordable = int(time_budget_s * throughput / (effective * mean_tokens))
        if affordable < planned:
            max_steps = max(affordable, 1)
            reasons.append(
                f"Time budget {time_budget_s / 60:.0f} min at about {throughput:.0f} tokens/s allows "
                f"{max_steps} steps ({max_steps * effective / train_examples:.1f} epochs) instead of {planned}."
            )
            planned = max_steps
    warmup = 0.05 if planned < 300 else 0.03
    if objective != "sft" and per_device > 1:
        per_device //= 2  # both answers of a pair are in the micro-batch
        reasons.append(f"Micro-batches of {per_device} pairs ({2 * per_device} rows: each pair's two answers).")
    config = TrainingConfig(
        objective=objective, beta=beta, base_model=base_model, method=method, lora_r=rank, lora_alpha=2 * rank,
        lora_dropout=DEFAULT_LORA_DROPOUT, target_modules=AUTO_TARGET_MODULES, learning_rate=round(lr, 6),
        epochs=epochs, max_steps=max_steps, per_device_batch_size=per_device,
        grad_accum=effective // per_device, scheduler=DEFAULT_SCHEDULER, warmup=warmup, weight_decay=0.0,
        max_grad_norm=DEFAULT_MAX_GRAD_NORM, precision=DEFAULT_PRECISION, max_length=max_length,
        packing=DEFAULT_PACKING, gradient_checkpointing=checkpointing, save_strategy="steps",
        save_steps=max(planned // 4, 10), eval_strategy="epoch" if max_steps is None else "steps",
        eval_steps=None if max_steps is None else max(planned // 4, 10),
    )
    reasons.append(f"Warmup {warmup:.0%} of {planned} steps then {DEFAULT_SCHEDULER} decay; length-grouped "
                   "micro-batches, so almost no compute goes to padding.")
    return Preset(config, reasons)


def _preference(objective: str, sft_lr: float, pairs: int, effective: int,
                reasons: list[str]) -> tuple[float, float, float]:
    """Learning rate, epochs and beta of a dpo / orpo run, with their reasons.

    Published recipes train preferences with learning rates 5-20x below supervised fine-tuning
    of the same model (Zephyr's DPO: 5e-7 full weights; LoRA DPO recipes 5e-6 to 5e-5; the ORPO
    paper: 8e-6 full), beta 0.1 (DPO and ORPO's lambda), and one to three epochs: preferences
    over-fit quickly, so small datasets get more passes and large ones one.
    """
    if objective == "dpo":
        lr = min(max(sft_lr / 10, 5e-6), 1e-4)
        reasons.append(f"DPO learning rate {lr:.1e}: a tenth of supervised fine-tuning's, because DPO pushes "
                       "the two answers apart and a large step wrecks the model's fluency.")
        reasons.append(f"Beta {DEFAULT_BETA:g}: the usual DPO strength; the model may move from the base "
                       "model only as far as the pairs need (lower lets it move further).")
    else:
        lr = min(max(sft_lr / 5, 5e-6), 2e-4)
        reasons.append(f"ORPO learning rate {lr:.1e}: a fifth of supervised fine-tuning's, because ORPO "
                       "learns the better answer and the preference in the same step.")
        reasons.append(f"Beta (ORPO's lambda) {DEFAULT_BETA:g}: the weight of the preference next to learning "
                       "the better answer, as in the ORPO paper.")
    epochs = 3.0 if pairs < 300 else 2.0 if pairs < 2000 else 1.0
    reasons.append(f"{epochs:g} epoch(s) over {pairs} pairs with an effective batch of {effective}: preferences "
                   "are learned in few passes and over-fit after" + (" one" if epochs == 1 else " a few") + ".")
    return lr, epochs, DEFAULT_BETA


def _max_length(longest: float, context_length: int) -> int:
    return int(min(max(64 * math.ceil(longest / 64), 128), context_length, 4096))


def _fit(model, device, memory_gb, effective, max_length, rank, reasons) -> tuple[str, int, bool]:
    """Method, micro-batch and checkpointing that fit the device."""
    if device == "cpu" or not memory_gb:
        per_device = _largest_divisor(effective, max(1, 512 // max(max_length // 2, 1)))
        reasons.append(f"On the CPU: LoRA (bf16 where the CPU has native bf16 instructions, fp32 elsewhere), "
                       f"micro-batches of {per_device} examples (CPU cores are fastest with a few hundred "
                       "tokens per pass).")
        return "lora", per_device, False
    shape = dict(parameters=model.parameters, hidden_size=model.hidden_size, num_layers=model.num_layers,
                 vocab_size=model.vocab_size, intermediate_size=model.intermediate_size,
                 num_kv_heads_ratio=model.num_kv_heads_ratio, tied_embeddings=model.tied_embeddings,
                 context_length=max_length, device="cuda", device_memory_gb=memory_gb,
                 lora_rank=rank, target_modules=AUTO_TARGET_MODULES)
    for method in ("lora", "lora8bit", "qlora"):
        for checkpointing in (False, True):
            per_device = effective
            while per_device >= 1:
                result = estimate(method=method, batch_size=per_device, gradient_checkpointing=checkpointing, **shape)
                if result.requested.fits:
                    reasons.append(
                        f"{method} fits the {memory_gb:.0f} GB GPU with micro-batches of {per_device} "
                        f"(about {result.requested.total_gb:.1f} GB)"
                        + (" with gradient checkpointing." if checkpointing else ".")
                    )
                    return method, per_device, checkpointing
                per_device //= 2
    reasons.append("Even QLoRA with one example per pass may not fit this GPU; trying QLoRA anyway.")
    return "qlora", 1, True


def _largest_divisor(number: int, at_most: int) -> int:
    return max(d for d in range(1, number + 1) if number % d == 0 and d <= max(at_most, 1))


def spread_batch(per_device: int, grad_accum: int, devices: int) -> tuple[int, int, str | None]:
    """Micro-batch and accumulation on `devices` devices that keep the effective batch asked for.

    The asked effective batch is per_device x grad_accum (a one-device recipe, as a preset or a
    person writes it). On N devices accumulation becomes asked / (micro x N). Where micro x N does
    not divide it, the micro-batch shrinks to the largest one that does (same effective batch,
    smaller passes); where no micro-batch does (N itself does not divide the batch) the
    accumulation is rounded to the nearest whole number (at least 1) and the effective batch
    changes: the returned sentence says to what. Returns (per_device, grad_accum, sentence).
    """
    asked = per_device * grad_accum
    if devices <= 1:
        return per_device, grad_accum, None
    for micro in range(per_device, 0, -1):
        if asked % (micro * devices) == 0:
            accum = asked // (micro * devices)
            note = (f"Effective batch {asked} kept on {devices} devices: micro-batch {micro} x "
                    f"accumulation {accum} x {devices} devices")
            if micro != per_device:
                note += f" (micro-batch lowered from {per_device} so that it divides evenly)"
            return micro, accum, note + "."
    accum = max(1, round(asked / (per_device * devices)))
    effective = per_device * accum * devices
    return per_device, accum, (
        f"An effective batch of {asked} cannot be split evenly over {devices} devices; it becomes "
        f"{effective} (micro-batch {per_device} x accumulation {accum} x {devices} devices). Choose a "
        f"batch that is a multiple of {devices} to keep it exact.")
