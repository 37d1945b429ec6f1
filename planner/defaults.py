"""Default values of a training run: the one place each of them is written.

TrainingConfig's field defaults, the classic preset (which is the first group below), the auto
preset where it keeps a default rather than adapting it, the model descriptions and the
estimator's parameters all read them from here. Fields whose default is "not set" (max_steps,
eval_steps, save_steps) have no entry; the auto preset's own rules (rank 16/32/64 by dataset
size, ...) stay in presets.py.
"""

from __future__ import annotations

# The classic LoRA recipe of the tutorials.
DEFAULT_METHOD = "lora"
DEFAULT_LORA_R = 16
DEFAULT_LORA_ALPHA = 32  # twice the rank
DEFAULT_LORA_DROPOUT = 0.05
DEFAULT_TARGET_MODULES = "attention"
DEFAULT_LEARNING_RATE = 2e-4  # made for ~7B models; the auto preset scales it to the model's size
DEFAULT_EPOCHS = 3
DEFAULT_SCHEDULER = "cosine"
DEFAULT_WARMUP = 0.1
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_PER_DEVICE_BATCH_SIZE = 4
DEFAULT_GRAD_ACCUM = 4  # an effective batch of 16

# The rest of a run.
DEFAULT_LORA_BIAS = "none"
DEFAULT_PRECISION = "auto"
DEFAULT_MAX_LENGTH = 1024
DEFAULT_PACKING = False
DEFAULT_SEED = 42
DEFAULT_EVAL_STRATEGY = "epoch"
DEFAULT_SAVE_STRATEGY = "epoch"
DEFAULT_SAVE_TOTAL_LIMIT = 2
DEFAULT_LOGGING_STEPS = 1
DEFAULT_GRADIENT_CHECKPOINTING = False
DEFAULT_OBJECTIVE = "sft"  # learn from example answers; "dpo" / "orpo" learn from pairs of answers
DEFAULT_BETA = 0.1  # DPO: how far from the base model the run may move; ORPO: weight of the preference term
DEFAULT_USE_DORA = False
DEFAULT_DEVICES = 1  # one GPU (or the CPU); more runs the job under torch.distributed
MAX_DEVICES = 64

# What the presets and the estimator assume where a description leaves it out.
DEFAULT_KV_HEADS_RATIO = 1.0  # as many key/value heads as attention heads (no grouped-query attention)
DEFAULT_TIED_EMBEDDINGS = False
DEFAULT_ESTIMATE_DEVICE = "cuda"
