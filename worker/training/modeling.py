"""Load a base model for a training method and put LoRA (or DoRA) adapters on it.

full: the model at the training precision. lora: the same, frozen, with adapters. qlora: a
4-bit NF4 copy (double quantization, compute dtype = training precision) with adapters.
lora8bit: an 8-bit copy with adapters. Safetensors only, never remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from planner.config import TrainingConfig
from planner.weights import check_model_dir

# Module names per architecture (model_type). Unknown architectures fall back to looking for
# the usual names among the model's linear layers.
_LLAMA_LIKE = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
}
TARGETS_BY_ARCHITECTURE: dict[str, dict[str, list[str]]] = {
    **{name: _LLAMA_LIKE for name in (
        "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
        "granite", "olmo", "olmo2", "smollm3", "cohere", "starcoder2_llama",
    )},
    "phi3": {"attention": ["qkv_proj", "o_proj"], "mlp": ["gate_up_proj", "down_proj"]},
    "phi": {"attention": ["q_proj", "k_proj", "v_proj", "dense"], "mlp": ["fc1", "fc2"]},
    "gpt2": {"attention": ["c_attn", "c_proj"], "mlp": ["c_fc"]},
    "gpt_neox": {"attention": ["query_key_value", "dense"], "mlp": ["dense_h_to_4h", "dense_4h_to_h"]},
    "falcon": {"attention": ["query_key_value", "dense"], "mlp": ["dense_h_to_4h", "dense_4h_to_h"]},
}


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "cuda"
    name: str
    memory_gb: float | None
    bf16_supported: bool

    @property
    def torch_device(self) -> torch.device:
        """The current CUDA device: 0 in one process, the rank's own under torch.distributed
        (worker/training/rank.py sets it before anything is loaded)."""
        return torch.device("cuda", torch.cuda.current_device()) if self.kind == "cuda" else torch.device("cpu")


# CPU flags (Linux /proc/cpuinfo) of native bf16 matrix instructions: Intel AMX tiles, or the
# AVX512-BF16 dot products (Intel Cooper Lake and later, AMD Zen 4 and later). Without either,
# torch emulates bf16 and training in it runs many times slower than fp32.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native bf16 flags this CPU has (empty off Linux or without them)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in CPU_BF16_FLAGS if flag in flags]
    return []


def detect_device() -> Device:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return Device("cuda", props.name, props.total_memory / 1e9, torch.cuda.is_bf16_supported())
    return Device("cpu", "CPU", None, bool(cpu_bf16_flags()))


def resolve_precision(precision: str, device: Device) -> str:
    """auto: bf16 where the GPU supports it, fp16 on other CUDA GPUs; on the CPU bf16 where it has
    native bf16 matrix instructions (bench/train_throughput.py --precision measures both), else fp32."""
    if precision != "auto":
        if device.kind == "cpu" and precision == "fp16":
            raise ValueError("fp16 training needs a CUDA GPU; use fp32 (or bf16, slowly) on a CPU.")
        return precision
    if device.kind == "cuda":
        return "bf16" if device.bf16_supported else "fp16"
    return "bf16" if device.bf16_supported else "fp32"


def torch_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    check_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ValueError(
            f"The model in {model_dir} has no chat template, so conversations cannot be turned "
            "into its prompt format. Choose an instruct/chat model."
        )
    return tokenizer


def load_model(config: TrainingConfig, device: Device, precision: str) -> nn.Module:
    """The base model for config.method, with adapters applied for the LoRA methods."""
    model = prepare_base(config, device, precision)
    if config.method == "full":
        return model
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, config))


def prepare_base(config: TrainingConfig, device: Device, precision: str) -> nn.Module:
    """The base model ready for adapters (k-bit preparation, gradient checkpointing), no adapters yet."""
    model = _load_base(config, device, precision)
    model.config.use_cache = False  # the KV cache is useless (and costly) during training
    if config.method == "full":
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    if config.method in ("qlora", "lora8bit"):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def _load_base(config: TrainingConfig, device: Device, precision: str) -> nn.Module:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    check_model_dir(config.base_model)
    dtype = torch_dtype(precision)
    # fp16 mixed precision needs fp32 master weights for the trained parameters: full
    # fine-tuning keeps the model in fp32 under fp16 autocast (LoRA adapters are fp32 anyway).
    load_dtype = torch.float32 if (config.method == "full" and precision == "fp16") else dtype
    kwargs = dict(trust_remote_code=False, use_safetensors=True, dtype=load_dtype)
    if config.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    elif config.method == "lora8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if config.method in ("qlora", "lora8bit"):
        kwargs["device_map"] = {"": device.torch_device}
    model = AutoModelForCausalLM.from_pretrained(config.base_model, **kwargs)
    if config.method == "qlora":
        keep_4bit_layout(model)
    if config.method not in ("qlora", "lora8bit"):
        model.to(device.torch_device)
    return model


def keep_4bit_layout(model: nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its bf16 CPU inference kernel.

    On CPUs with AVX512-BF16 it repacks a layer on its first no-grad forward in eval mode (our
    evaluation), trains on the repacked layout afterwards, and unpacks it again on save - a
    lossy round trip that changes the quantization constants of the frozen base. Training and
    evaluation must see the same base the adapter is saved against.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def target_module_names(model: nn.Module, choice: str) -> list[str] | str:
    """Map attention / attention_mlp / all_linear to this architecture's module names."""
    if choice == "all_linear":
        return "all-linear"  # PEFT: every linear layer except the output head
    model_type = getattr(model.config, "model_type", "")
    names = TARGETS_BY_ARCHITECTURE.get(model_type) or _guess_targets(model)
    chosen = list(names["attention"])
    if choice == "attention_mlp":
        chosen += names["mlp"]
    return chosen


def _guess_targets(model: nn.Module) -> dict[str, list[str]]:
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for candidate in TARGETS_BY_ARCHITECTURE.values():
        if set(candidate["attention"]) <= present:
            return candidate
    raise ValueError(
        f"Unknown architecture {getattr(model.config, 'model_type', '?')!r}: cannot tell which "
        "layers are attention layers. Use target_modules='all_linear'."
    )


def apply_lora(model: nn.Module, config: TrainingConfig) -> nn.Module:
    """Adapters on a base model that prepare_base already prepared."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, config))


def lora_config(model: nn.Module, config: TrainingConfig):
    """The PEFT LoraConfig of a run (DoRA when config.use_dora)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_module_names(model, config.target_modules),
        bias=config.lora_bias,
        use_dora=config.use_dora,
        task_type="CAUSAL_LM",
    )


def parameter_report(model: nn.Module) -> dict[str, float]:
    """Trainable and total parameters (4-bit weights count as the parameters they stand for)."""
    trainable, total = 0, 0
    for param in model.parameters():
        count = param.numel()
        if param.__class__.__name__ == "Params4bit":
            count *= 2  # two 4-bit values are packed in each stored byte
        total += count
        if param.requires_grad:
            trainable += count
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100.0 * trainable / total, 4) if total else 0.0,
    }
