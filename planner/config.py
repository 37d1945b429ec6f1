"""TrainingConfig: one small typed object that says how a run trains.

Every field is documented (the web app shows the descriptions as help text) and validated
with messages a person understands; the default values live in planner/defaults.py. No torch or
transformers here: the web process imports this module to validate configs and must stay light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.defaults import (
    DEFAULT_BETA, DEFAULT_DEVICES, DEFAULT_EPOCHS, DEFAULT_EVAL_STRATEGY, DEFAULT_GRAD_ACCUM, DEFAULT_GRADIENT_CHECKPOINTING,
    DEFAULT_LEARNING_RATE, DEFAULT_LOGGING_STEPS, DEFAULT_LORA_ALPHA, DEFAULT_LORA_BIAS, DEFAULT_LORA_DROPOUT,
    DEFAULT_LORA_R, DEFAULT_MAX_GRAD_NORM, MAX_DEVICES, DEFAULT_MAX_LENGTH, DEFAULT_METHOD, DEFAULT_OBJECTIVE, DEFAULT_PACKING,
    DEFAULT_PER_DEVICE_BATCH_SIZE, DEFAULT_PRECISION, DEFAULT_SAVE_STRATEGY, DEFAULT_SAVE_TOTAL_LIMIT,
    DEFAULT_SCHEDULER, DEFAULT_SEED, DEFAULT_TARGET_MODULES, DEFAULT_USE_DORA, DEFAULT_WARMUP, DEFAULT_WEIGHT_DECAY,
)

Method = Literal["full", "lora", "qlora", "lora8bit"]
Objective = Literal["sft", "dpo", "orpo"]
TargetModules = Literal["attention", "attention_mlp", "all_linear"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]
Cadence = Literal["no", "steps", "epoch"]

CONFIG_FILENAME = "training_config.json"
ADAPTER_METHODS = ("lora", "qlora", "lora8bit")
PREFERENCE_OBJECTIVES = ("dpo", "orpo")


class TrainingConfig(BaseModel):
    """How one fine-tuning run trains. Saved as JSON beside the run's artifacts."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_model: str = Field(
        description="Local directory of the base model (safetensors weights, config.json, tokenizer "
        "files). Nothing is downloaded: the directory must already be on disk.",
        min_length=1,
    )
    method: Method = Field(
        default=DEFAULT_METHOD,
        description="full: train every weight (most memory). lora: freeze the model and train small "
        "low-rank adapters. qlora: LoRA on a 4-bit (NF4) copy of the model, the least memory. "
        "lora8bit: LoRA on an 8-bit copy of the model.",
    )
    objective: Objective = Field(
        default=DEFAULT_OBJECTIVE,
        description="What the run learns from. sft: example answers (copy how they answer). dpo: pairs "
        "of a better and a worse answer to the same prompt (teach it which of two answers is better), "
        "kept close to the base model. orpo: the same pairs, learning the better answer and the "
        "preference in one pass without a reference model (cheaper than dpo). dpo and orpo need a "
        "preference dataset (prompt, chosen, rejected).",
    )
    beta: float = Field(
        default=DEFAULT_BETA, gt=0, le=10,
        description="Preference strength. dpo: how far the model may move from the base model "
        "(0.1 is usual; lower lets it move further). orpo: the weight of the preference term next to "
        "learning the better answer (0.1 is usual). Ignored for sft.",
    )
    use_dora: bool = Field(
        default=DEFAULT_USE_DORA,
        description="DoRA: split each adapted weight into a size and a direction and train both "
        "(PEFT use_dora). Often closer to full fine-tuning than plain LoRA at the same rank, for "
        "somewhat more time and memory. LoRA methods only.",
    )
    lora_r: int = Field(
        default=DEFAULT_LORA_R, ge=1, le=1024,
        description="LoRA rank: the size of the adapters. Higher learns more detail and uses more "
        "memory; 8 to 64 is usual. Ignored for full fine-tuning.",
    )
    lora_alpha: float = Field(
        default=DEFAULT_LORA_ALPHA, gt=0, le=4096,
        description="LoRA scaling: adapter updates are multiplied by alpha / rank. Twice the rank is "
        "a common choice.",
    )
    lora_dropout: float = Field(
        default=DEFAULT_LORA_DROPOUT, ge=0, lt=1,
        description="Dropout applied to the adapters' input during training (0 to turn it off).",
    )
    target_modules: TargetModules = Field(
        default=DEFAULT_TARGET_MODULES,
        description="Which layers get adapters: attention (query/key/value/output projections), "
        "attention_mlp (also the feed-forward layers), or all_linear (every linear layer except "
        "the output head).",
    )
    lora_bias: Literal["none", "all", "lora_only"] = Field(
        default=DEFAULT_LORA_BIAS,
        description="Which bias terms to train along with the adapters. 'none' keeps the adapter "
        "small and loadable everywhere.",
    )
    learning_rate: float = Field(
        default=DEFAULT_LEARNING_RATE, gt=0, le=1,
        description="Peak learning rate. LoRA usually uses 1e-4 to 1e-3, full fine-tuning 1e-6 to 5e-5.",
    )
    epochs: float | None = Field(
        default=DEFAULT_EPOCHS, gt=0, le=1000,
        description="How many passes over the training data. Ignored when max_steps is set.",
    )
    max_steps: int | None = Field(
        default=None, ge=1,
        description="Stop after this many optimizer steps (overrides epochs). Leave empty to train "
        "for the given number of epochs.",
    )
    per_device_batch_size: int = Field(
        default=DEFAULT_PER_DEVICE_BATCH_SIZE, ge=1, le=4096,
        description="Examples processed together in one forward/backward pass on one device.",
    )
    grad_accum: int = Field(
        default=DEFAULT_GRAD_ACCUM, ge=1, le=4096,
        description="Gradient accumulation: passes summed before each optimizer step. The effective "
        "batch is per_device_batch_size x grad_accum x devices.",
    )
    devices: int = Field(
        default=DEFAULT_DEVICES, ge=1, le=MAX_DEVICES,
        description="How many GPUs the run trains on at once, all on one worker host. 1 trains in "
        "the worker's own process; more starts one process per device under torch.distributed "
        "(DDP for LoRA methods, fully sharded FSDP for full fine-tuning). The effective batch is "
        "per_device_batch_size x grad_accum x devices.",
    )
    scheduler: Scheduler = Field(
        default=DEFAULT_SCHEDULER,
        description="How the learning rate changes over the run after warmup: cosine or linear decay "
        "to zero, or constant.",
    )
    warmup: float = Field(
        default=DEFAULT_WARMUP, ge=0, le=0.5,
        description="Fraction of the optimizer steps (0 to 0.5) during which the learning rate rises "
        "from zero to its peak.",
    )
    weight_decay: float = Field(
        default=DEFAULT_WEIGHT_DECAY, ge=0, le=1,
        description="AdamW weight decay (a gentle pull of trained weights towards zero).",
    )
    max_grad_norm: float = Field(
        default=DEFAULT_MAX_GRAD_NORM, ge=0,
        description="Gradient clipping: the gradient norm is scaled down to this value when larger "
        "(0 turns clipping off).",
    )
    precision: Precision = Field(
        default=DEFAULT_PRECISION,
        description="Number format for training. auto: bf16 on GPUs that support it, fp16 on other "
        "CUDA GPUs; on a CPU, bf16 where it has native bf16 matrix instructions (AMX or AVX512-BF16, "
        "where bf16 is faster) and fp32 elsewhere (where bf16 is many times slower).",
    )
    max_length: int = Field(
        default=DEFAULT_MAX_LENGTH, ge=16, le=262144,
        description="Longest example in tokens; longer ones are cut (and counted in the data report).",
    )
    packing: bool = Field(
        default=DEFAULT_PACKING,
        description="Off (default): each example is its own row and micro-batches are grouped by "
        "length, so rows are padded by a few tokens at most and attention never spans two examples "
        "(the fastest layout on CPUs and with standard attention kernels). On: the examples of a "
        "micro-batch are laid end to end in one row with no padding at all (position_ids keep "
        "attention inside each example); best with variable-length attention kernels on GPUs.",
    )
    seed: int = Field(
        default=DEFAULT_SEED, ge=0, description="Random seed: the same seed and data give the same run."
    )
    eval_strategy: Cadence = Field(
        default=DEFAULT_EVAL_STRATEGY,
        description="When to measure loss on the evaluation data: no, every eval_steps steps, or at "
        "the end of each epoch (skipped when there is no evaluation data).",
    )
    eval_steps: int | None = Field(
        default=None, ge=1, description="Evaluate every this many steps when eval_strategy is 'steps'."
    )
    save_strategy: Cadence = Field(
        default=DEFAULT_SAVE_STRATEGY,
        description="When to write a checkpoint that a run can resume from: no, every save_steps steps, "
        "or at the end of each epoch.",
    )
    save_steps: int | None = Field(
        default=None, ge=1, description="Write a checkpoint every this many steps when save_strategy is 'steps'."
    )
    save_total_limit: int | None = Field(
        default=DEFAULT_SAVE_TOTAL_LIMIT, ge=1,
        description="How many checkpoints to keep on disk (the oldest are deleted). Empty keeps all.",
    )
    logging_steps: int = Field(
        default=DEFAULT_LOGGING_STEPS, ge=1, description="Report training metrics every this many steps."
    )
    gradient_checkpointing: bool = Field(
        default=DEFAULT_GRADIENT_CHECKPOINTING,
        description="Recompute activations during the backward pass instead of storing them: much "
        "less memory for about 30% more time.",
    )

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step, over all devices."""
        return self.per_device_batch_size * self.grad_accum * self.devices

    @property
    def uses_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def is_preference(self) -> bool:
        """True for the objectives that learn from (prompt, chosen, rejected) pairs."""
        return self.objective in PREFERENCE_OBJECTIVES

    @model_validator(mode="after")
    def _check_consistency(self) -> "TrainingConfig":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("Say how long to train: set epochs or max_steps.")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ValueError("eval_strategy is 'steps': set eval_steps (evaluate every how many steps).")
        if self.save_strategy == "steps" and self.save_steps is None:
            raise ValueError("save_strategy is 'steps': set save_steps (checkpoint every how many steps).")
        if self.use_dora and not self.uses_adapter:
            raise ValueError("use_dora adds DoRA to LoRA adapters: choose lora, qlora or lora8bit, or turn DoRA off.")
        if self.is_preference and self.devices > 1:
            raise ValueError(f"{self.objective} runs train on one device; set devices to 1.")
        if self.is_preference and self.packing:
            raise ValueError(f"{self.objective} compares two whole answers row by row; turn packing off.")
        if self.method == "full" and self.learning_rate > 1e-3:
            raise ValueError(
                f"learning_rate {self.learning_rate:g} is far too high for full fine-tuning "
                "(it would wreck the model); use 1e-6 to 1e-4, or choose a LoRA method."
            )
        return self

    def warmup_steps(self, total_steps: int) -> int:
        """transformers 5 takes warmup as a step count; the config keeps it as a fraction."""
        return int(round(self.warmup * max(total_steps, 0)))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TrainingConfig":
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILENAME
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def field_help() -> dict[str, str]:
    """Field name -> description, for forms and CLI help."""
    return {name: f.description or "" for name, f in TrainingConfig.model_fields.items()}
