"""Peak memory and time of a fine-tuning run, before running it. Pure Python (no torch).

Memory = weights at their storage precision + adapters + gradients + optimizer state +
activations (with or without gradient checkpointing) + one chunk of the output head's logits
+ a fixed runtime overhead on GPUs. The numbers follow what the engine actually does:
the model is loaded in its training precision (so AdamW states share that dtype for full
fine-tuning), LoRA adapters are kept in fp32 with fp32 AdamW states, QLoRA stores linear
weights as NF4 with double quantization (~4.13 bits), lora8bit as int8.

It reproduces the usual rules of thumb for a 70B model (tested): full fine-tuning in bf16
~8x80 GB, LoRA on a 16-bit base ~160 GB, LoRA on an 8-bit base ~one 80 GB GPU, QLoRA ~45 GB.

On several devices (``devices`` N > 1) every figure is PER DEVICE, for the strategy the engine
uses (``strategy_for``):

- DDP for the adapter methods: every device holds the whole (frozen) model, its own adapters,
  their gradients and AdamW states, the activations of its own micro-batch, plus DDP's gradient
  buckets (one more copy of the trainable gradients). More devices do not lower the memory of a
  device; they divide the time.
- FSDP with full sharding for full fine-tuning: weights, gradients and optimizer state are
  divided by N; each device also holds the unsharded copy of the wrapped unit being computed and
  of the next one (prefetch), and the unsharded gradient of one unit before its reduce-scatter.
  The wrapped units are the decoder layers and the root (embeddings, output head and final norm),
  so the largest unit is the bigger of one layer and the root. Activations are those of the
  device's own micro-batch.

Preference objectives (``objective``): dpo and orpo run both answers of each pair, so a
micro-batch of B pairs lays out 2B rows (twice the activations of B examples). dpo also needs
the reference model's log-probabilities: with adapters that is the same model with its adapters
switched off (no memory beyond one layer's transient activations under no_grad), with full
weights a frozen second copy of the weights. Time per pair: orpo 2x an example (two rows), dpo
2x plus a no-grad reference forward over both rows, about 1/3 of a training step: 2 x 4/3.

DoRA (``use_dora``) keeps a magnitude vector per adapted layer (its output width), the output
of each adapted layer once more for the magnitude rescaling, and forms B @ A as a full weight
of the layer being computed (one at a time, fp32) to take its norm. PEFT documents it as slower
than LoRA; the estimate counts DORA_TIME_FACTOR.

Time: N devices process ``SCALING_EFFICIENCY`` x N times the tokens per second of one device
(gradient all-reduce / all-gather / reduce-scatter traffic that the compute does not hide), so a
run on N > 1 devices takes train_tokens / (tokens_per_second x N x SCALING_EFFICIENCY).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.defaults import (
    DEFAULT_ESTIMATE_DEVICE, DEFAULT_KV_HEADS_RATIO, DEFAULT_LORA_R, DEFAULT_METHOD, DEFAULT_TARGET_MODULES,
    DEFAULT_TIED_EMBEDDINGS,
)

GB = 1e9
BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}
NF4_DOUBLE_QUANT_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit values + 8-bit absmax per 64 + fp32 per 256 blocks
INT8_BYTES = 1.0 + 4 / 4096  # int8 values + an fp32 scale per row (rows are thousands wide)
CUDA_OVERHEAD_GB = 1.0  # CUDA context, kernels, allocator slack
METHODS = ("full", "lora", "qlora", "lora8bit")
# Logits the output-head loss holds at once, per device kind: 16 MB / 128 MB in fp32. A chunk of
# 16 MB stays on the C heap (glibc maps blocks over 32 MiB afresh each time) and mostly in cache.
HEAD_CHUNK_ELEMENTS = {"cpu": 4 * 2**20, "cuda": 32 * 2**20}
TARGETS = ("attention", "attention_mlp", "all_linear")
OBJECTIVES = ("sft", "dpo", "orpo")
ROWS_PER_EXAMPLE = {"sft": 1, "dpo": 2, "orpo": 2}  # rows laid out per training example (pair)
TIME_FACTOR = {"sft": 1.0, "dpo": 2 * 4 / 3, "orpo": 2.0}  # compute per example, relative to sft
DORA_TIME_FACTOR = 1.3  # DoRA's extra weight norm and rescaling per adapted layer (PEFT: slower than LoRA)
# Share of linear scaling N devices reach (0.9: 8 devices run 7.2x as fast as one). Published DDP
# and FSDP runs within one host (NVLink or PCIe) reach 85-95%; the estimate takes the middle.
SCALING_EFFICIENCY = 0.9
# FSDP holds the unsharded parameters of this many wrapped units at once (the one computing and
# the one prefetched) and the unsharded gradient of one unit before its reduce-scatter.
FSDP_GATHERED_UNITS = 2
FSDP_GRADIENT_UNITS = 1
# Device counts the planner proposes: a run's devices are all on one worker host, hosts hold up
# to 8 GPUs, and effective batches are usually powers of two, so micro-batch x accumulation x
# devices divides evenly. (A config may still ask for up to MAX_DEVICES on a bigger host.)
DEVICE_CHOICES = (1, 2, 4, 8)


def strategy_for(method: str, devices: int) -> str:
    """How the engine spreads a run over `devices`: single (one device), ddp (adapter methods:
    replicate the model, average adapter gradients) or fsdp (full fine-tuning: shard everything)."""
    if devices <= 1:
        return "single"
    return "fsdp" if method == "full" else "ddp"


@dataclass(frozen=True)
class ModelShape:
    parameters: float
    hidden_size: int
    num_layers: int
    vocab_size: int
    intermediate_size: int | None = None
    num_kv_heads_ratio: float = DEFAULT_KV_HEADS_RATIO  # key/value heads / attention heads (GQA < 1)
    tied_embeddings: bool = DEFAULT_TIED_EMBEDDINGS

    @property
    def embedding_params(self) -> float:
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def intermediate(self) -> float:
        if self.intermediate_size:
            return float(self.intermediate_size)
        # solve layer params = attention + 3 * hidden * intermediate (gated MLP)
        per_layer = (self.parameters - self.embedding_params) / self.num_layers
        return max((per_layer - self._attention_params()) / (3 * self.hidden_size), self.hidden_size)

    @property
    def layer_params(self) -> float:
        """Weights of one decoder layer (attention + gated MLP; norms are negligible)."""
        return self._attention_params() + 3 * self.hidden_size * self.intermediate

    def _attention_params(self) -> float:
        h = self.hidden_size
        return 2 * h * h + 2 * h * h * self.num_kv_heads_ratio

    def linear_shapes(self, targets: str) -> list[tuple[float, float]]:
        """(in, out) of the linear layers in one transformer block that LoRA targets."""
        h, kv, i = self.hidden_size, self.hidden_size * self.num_kv_heads_ratio, self.intermediate
        attention = [(h, h), (h, kv), (h, kv), (h, h)]
        mlp = [(h, i), (h, i), (i, h)]
        return attention if targets == "attention" else attention + mlp


@dataclass
class MemoryEstimate:
    method: str
    weights_gb: float
    adapters_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    trainable_params: float
    device: str = "cpu"
    device_memory_gb: float | None = None
    notes: list[str] = field(default_factory=list)
    devices: int = 1
    strategy: str = "single"  # single | ddp | fsdp (strategy_for)
    # DDP's gradient buckets, or FSDP's unsharded copies of the wrapped units being computed
    buffers_gb: float = 0.0

    @property
    def total_gb(self) -> float:
        """Peak memory of ONE device (with N devices: per device, for the strategy)."""
        return (self.weights_gb + self.adapters_gb + self.gradients_gb + self.optimizer_gb
                + self.activations_gb + self.overhead_gb + self.buffers_gb)

    @property
    def fits(self) -> bool | None:
        return None if self.device_memory_gb is None else self.total_gb <= self.device_memory_gb * 0.95

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in (
            "method", "weights_gb", "adapters_gb", "gradients_gb", "optimizer_gb", "activations_gb",
            "overhead_gb", "trainable_params", "device", "device_memory_gb", "notes", "devices",
            "strategy", "buffers_gb")}
        data.update(total_gb=self.total_gb, per_device_gb=self.total_gb, fits=self.fits)
        return data


@dataclass
class Estimate:
    """The estimate for the requested method, every method, and what to use."""

    requested: MemoryEstimate
    by_method: dict[str, MemoryEstimate]
    recommended_method: str | None
    verdict: str
    time_s: float | None = None
    # The fewest devices (of DEVICE_CHOICES) of this memory on which the requested method fits
    # (full fine-tuning shards over them); None when memory is unknown or no count helps.
    devices_needed: int | None = None


def lora_params(shape: ModelShape, rank: int, targets: str) -> float:
    if targets == "all_linear":
        targets = "attention_mlp"
    return shape.num_layers * sum(rank * (i + o) for i, o in shape.linear_shapes(targets))


def head_chunk_rows(vocab_size: int, device: str) -> int:
    """Positions the chunked output-head loss projects at once (worker/training/head_loss.py)."""
    return max(1, HEAD_CHUNK_ELEMENTS.get(device, HEAD_CHUNK_ELEMENTS["cuda"]) // vocab_size)


def activation_bytes(
    shape: ModelShape, tokens: int, dtype_bytes: float, gradient_checkpointing: bool,
    loss_tokens: int | None = None, device: str = DEFAULT_ESTIMATE_DEVICE,
) -> float:
    """Memory held for the backward pass, for `tokens` tokens in one micro-batch.

    Per layer and token a gated-MLP block keeps about 6 hidden-sized and 4 intermediate-sized
    tensors (norm inputs, q/k/v, attention output, gate, up, activation, product) with a
    memory-efficient attention kernel. With checkpointing only each layer's input is kept,
    plus one layer's activations during its recomputation. The output head runs a chunk of
    positions at a time: one chunk of fp32 logits and their log-probabilities, plus the
    gradient of the hidden states at the positions that enter the loss.
    """
    per_token_layer = (6 * shape.hidden_size + 4 * shape.intermediate) * dtype_bytes
    if gradient_checkpointing:
        layers = shape.num_layers * shape.hidden_size * dtype_bytes * tokens + per_token_layer * tokens
    else:
        layers = shape.num_layers * per_token_layer * tokens
    loss_tokens = tokens if loss_tokens is None else loss_tokens
    chunk = min(loss_tokens, head_chunk_rows(shape.vocab_size, device))
    head = chunk * shape.vocab_size * 4 * 2 + loss_tokens * shape.hidden_size * dtype_bytes
    return layers + head


def estimate_memory(
    shape: ModelShape,
    method: str,
    *,
    batch_size: int,
    context_length: int,
    precision: str = "bf16",
    lora_rank: int = DEFAULT_LORA_R,
    target_modules: str = DEFAULT_TARGET_MODULES,
    gradient_checkpointing: bool = False,
    device: str = DEFAULT_ESTIMATE_DEVICE,
    device_memory_gb: float | None = None,
    devices: int = 1,
    objective: str = "sft",
    use_dora: bool = False,
) -> MemoryEstimate:
    """Peak memory of one device; batch_size is the micro-batch of one device (pairs for dpo/orpo)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if devices < 1:
        raise ValueError("devices must be at least 1")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    dtype_bytes = BYTES[precision]
    tokens = batch_size * context_length * ROWS_PER_EXAMPLE[objective]
    embeddings = shape.embedding_params
    linear = shape.parameters - embeddings
    notes: list[str] = []
    if method == "full":
        weights = shape.parameters * dtype_bytes
        trainable = shape.parameters
        adapters, gradients, optimizer = 0.0, trainable * dtype_bytes, 2 * trainable * dtype_bytes
        if precision != "fp32":
            notes.append(f"weights, gradients and AdamW states all in {precision} (pure {precision} training)")
    else:
        if method == "qlora":
            weights = linear * NF4_DOUBLE_QUANT_BITS / 8 + embeddings * dtype_bytes
        elif method == "lora8bit":
            weights = linear * INT8_BYTES + embeddings * dtype_bytes
        else:
            weights = shape.parameters * dtype_bytes
        trainable = lora_params(shape, lora_rank, target_modules)
        dora_activations = 0.0
        if use_dora:
            widths = [o for _, o in shape.linear_shapes("attention_mlp" if target_modules == "all_linear"
                                                        else target_modules)]
            trainable += shape.num_layers * sum(widths)  # one magnitude per output feature
            largest = max(i * o for i, o in shape.linear_shapes("attention_mlp"))
            dora_activations = shape.num_layers * sum(widths) * tokens * 4 + largest * 4
            notes.append("DoRA: a magnitude vector per adapted layer, each adapted output kept once more "
                         "and one layer's full B @ A weight at a time")
        adapters, gradients, optimizer = trainable * 4, trainable * 4, trainable * 8
    activations = activation_bytes(shape, tokens, dtype_bytes, gradient_checkpointing, device=device)
    if method != "full":
        activations += dora_activations
    if objective == "dpo":
        if method == "full":
            weights += shape.parameters * dtype_bytes
            notes.append("dpo with full weights: a frozen copy of the base model as the reference")
        else:
            notes.append("dpo with adapters: the reference is the same model with its adapters off")
    if objective != "sft":
        notes.append(f"{objective}: both answers of each pair in one micro-batch ({batch_size} pairs = "
                     f"{2 * batch_size} rows)")
    if method == "full":
        # the chunked loss accumulates the trained head's gradient in fp32 from the forward pass on,
        # and a tied embedding forms its own gradient densely before adding it to the head's
        activations += shape.vocab_size * shape.hidden_size * (4 + (dtype_bytes if shape.tied_embeddings else 0))
    overhead = CUDA_OVERHEAD_GB * GB if device == "cuda" else 0.0
    strategy = strategy_for(method, devices)
    buffers = 0.0
    if strategy == "fsdp":
        weights, gradients, optimizer = weights / devices, gradients / devices, optimizer / devices
        unit = max(shape.layer_params, shape.embedding_params)
        buffers = unit * dtype_bytes * (FSDP_GATHERED_UNITS + FSDP_GRADIENT_UNITS)
        notes.append(f"FSDP over {devices} devices: weights, gradients and optimizer state are 1/{devices} "
                     f"per device, plus the unsharded copy of {FSDP_GATHERED_UNITS} wrapped units "
                     f"({unit / 1e6:.0f}M weights each)")
    elif strategy == "ddp":
        buffers = gradients  # DDP's bucketed copy of the trainable gradients for the all-reduce
        notes.append(f"DDP over {devices} devices: every device holds the whole model and its own "
                     "adapters; more devices divide the time, not the memory")
    return MemoryEstimate(
        method=method,
        weights_gb=weights / GB,
        adapters_gb=adapters / GB,
        gradients_gb=gradients / GB,
        optimizer_gb=optimizer / GB,
        activations_gb=activations / GB,
        overhead_gb=overhead / GB,
        trainable_params=trainable,
        device=device,
        device_memory_gb=device_memory_gb,
        notes=notes,
        devices=devices,
        strategy=strategy,
        buffers_gb=buffers / GB,
    )


def estimate(
    *,
    parameters: float,
    hidden_size: int,
    num_layers: int,
    vocab_size: int,
    context_length: int,
    batch_size: int,
    method: str = DEFAULT_METHOD,
    device: str = DEFAULT_ESTIMATE_DEVICE,
    device_memory_gb: float | None = None,
    intermediate_size: int | None = None,
    num_kv_heads_ratio: float = DEFAULT_KV_HEADS_RATIO,
    tied_embeddings: bool = DEFAULT_TIED_EMBEDDINGS,
    precision: str | None = None,
    lora_rank: int = DEFAULT_LORA_R,
    target_modules: str = DEFAULT_TARGET_MODULES,
    gradient_checkpointing: bool = False,
    train_tokens: float | None = None,
    tokens_per_second: float | None = None,
    devices: int = 1,
    objective: str = "sft",
    use_dora: bool = False,
) -> Estimate:
    """Estimate the peak memory of every method on each of `devices` devices (batch_size is one
    device's micro-batch), say whether `method` fits, which method to use, and how many devices
    of this memory it would need.

    train_tokens (all tokens the run will process, epochs included) and a measured
    tokens_per_second of ONE device give the time estimate, scaled to `devices`. For dpo/orpo,
    train_tokens counts each pair once (prompt and chosen answer, as the dataset statistics do)
    and TIME_FACTOR adds the second answer (and dpo's reference forward); DoRA adds DORA_TIME_FACTOR.
    """
    shape = ModelShape(parameters, hidden_size, num_layers, vocab_size, intermediate_size,
                       num_kv_heads_ratio, tied_embeddings)
    precision = precision or ("fp32" if device == "cpu" else "bf16")
    common = dict(batch_size=batch_size, context_length=context_length, precision=precision,
                  lora_rank=lora_rank, target_modules=target_modules,
                  gradient_checkpointing=gradient_checkpointing, device=device,
                  device_memory_gb=device_memory_gb, objective=objective, use_dora=use_dora)
    by_method = {m: estimate_memory(shape, m, devices=devices, **common) for m in METHODS}
    requested = by_method[method]
    recommended = _recommend(by_method, method, device)
    needed = devices_needed(shape, method, **common)
    verdict = _verdict(requested, recommended, by_method, device, device_memory_gb, needed)
    time_s = estimate_time(train_tokens, tokens_per_second, devices)
    if time_s is not None:
        time_s *= TIME_FACTOR[objective] * (DORA_TIME_FACTOR if use_dora and method != "full" else 1.0)
    return Estimate(requested, by_method, recommended, verdict, time_s, needed)


def devices_needed(shape: ModelShape, method: str, *, device_memory_gb: float | None, **common) -> int | None:
    """The fewest devices of DEVICE_CHOICES with `device_memory_gb` each on which `method` fits
    (per device, for its strategy), or None: memory unknown, or it fits on none of them (an
    adapter method under DDP needs as much per device on 64 as on one)."""
    if not device_memory_gb:
        return None
    for n in DEVICE_CHOICES:
        if estimate_memory(shape, method, devices=n, device_memory_gb=device_memory_gb, **common).fits:
            return n
        if method != "full":
            return None  # DDP replicates: if one device is too small, every count is
    return None


def estimate_time(train_tokens: float | None, tokens_per_second: float | None, devices: int = 1) -> float | None:
    """Seconds to process train_tokens at one device's measured throughput on `devices` devices
    (SCALING_EFFICIENCY of linear beyond one); None when either is unknown."""
    if not train_tokens or not tokens_per_second:
        return None
    speedup = 1.0 if devices <= 1 else devices * SCALING_EFFICIENCY
    return train_tokens / (tokens_per_second * speedup)


# Relative cost of one token by method, LoRA = 1: full fine-tuning also computes the weight
# gradients (6N against 4N flops per token); 4-bit and 8-bit bases dequantise on every pass.
METHOD_TIME_FACTOR = {"full": 1.5, "lora": 1.0, "lora8bit": 1.2, "qlora": 1.3}
RECOMPUTE_TIME_FACTOR = 4 / 3  # gradient checkpointing runs the forward pass twice
# Without finished runs to learn from, the range around the estimate: a guess from flops alone.
UNCALIBRATED_RANGE = (0.5, 2.0)
MIN_CALIBRATION_RUNS = 2


def processed_tokens(*, train_tokens: int, train_examples: int, max_length: int, epochs: float | None,
                     max_steps: int | None, effective_batch: int) -> float:
    """Tokens the run will process: each example cut at max_length, times the passes over the
    data, or max_steps x effective batch examples when a step limit is set."""
    per_example = min(train_tokens / max(train_examples, 1), max_length) if train_tokens else max_length
    if max_steps:
        return max_steps * effective_batch * per_example
    return per_example * max(train_examples, 1) * (epochs or 1.0)


def time_factor(method: str, gradient_checkpointing: bool) -> float:
    return METHOD_TIME_FACTOR.get(method, 1.0) * (RECOMPUTE_TIME_FACTOR if gradient_checkpointing else 1.0)


def time_range(time_s: float | None, ratios: list[float]) -> dict | None:
    """The likely range around a time estimate. `ratios` are actual/estimated durations of
    finished runs on the same kind of worker: with MIN_CALIBRATION_RUNS or more, the estimate is
    corrected by their median and the range spans their spread; otherwise a wide default range."""
    if not time_s:
        return None
    ratios = sorted(r for r in ratios if r and r > 0)
    if len(ratios) < MIN_CALIBRATION_RUNS:
        low, high = UNCALIBRATED_RANGE
        return {"low_s": time_s * low, "high_s": time_s * high, "likely_s": time_s, "runs": len(ratios),
                "calibrated": False}
    n = len(ratios)
    median = ratios[n // 2] if n % 2 else (ratios[n // 2 - 1] + ratios[n // 2]) / 2
    # the 10th to 90th percentile of what earlier runs did, widened a little for few runs
    lo = ratios[int(0.1 * (n - 1))]
    hi = ratios[int(round(0.9 * (n - 1)))]
    widen = 1.0 + 0.5 / n
    return {"low_s": time_s * lo / widen, "high_s": time_s * hi * widen, "likely_s": time_s * median,
            "runs": n, "calibrated": True}


def _recommend(by_method: dict[str, MemoryEstimate], method: str, device: str) -> str | None:
    if by_method[method].fits in (True, None):
        return method
    # 4-bit and 8-bit bases need bitsandbytes' GPU kernels to be practical
    order = ["lora", "lora8bit", "qlora"] if device == "cuda" else ["lora"]
    return next((m for m in order if by_method[m].fits), None)


def _verdict(requested, recommended, by_method, device, memory_gb, needed=None) -> str:
    n = requested.devices
    where = f"{device} ({memory_gb:.0f} GB)" if memory_gb else device
    if n > 1:
        where = f"{n} x {where}"
    per = f" per device ({requested.strategy.upper()})" if n > 1 else ""
    need = f"{requested.total_gb:.1f} GB{per}"
    if requested.fits is None:
        return f"{requested.method} needs about {need}; device memory unknown."
    if requested.fits:
        return f"fits on {where}: {requested.method} needs about {need}."
    if needed and needed > n:
        return (f"does not fit on {where}: {requested.method} needs about {need}. Needs {needed} GPUs "
                f"of {memory_gb:.0f} GB: set devices to {needed} (FSDP shards the weights, gradients "
                "and optimizer state over them).")
    if recommended:
        return (f"does not fit on {where}: {requested.method} needs about {need}; "
                f"{recommended} needs about {by_method[recommended].total_gb:.1f} GB and fits.")
    smallest = min(by_method.values(), key=lambda e: e.total_gb)
    return (f"does not fit on {where}: {requested.method} needs about {need}, and even "
            f"{smallest.method} needs {smallest.total_gb:.1f} GB. Shorten max_length, lower the batch "
            "or turn on gradient checkpointing.")
