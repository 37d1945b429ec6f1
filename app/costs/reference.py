"""The estimator's answer for the textbook cases (7B / 13B / 70B, full / LoRA / QLoRA), computed
by the planner itself (planner/estimate.py, planner/presets.py), next to published reference
figures. Pure Python: the help page (/help/costs) and its test call ``table()``.

Setup of every case (the one the estimator's rules-of-thumb test uses, tests/planner/test_estimate.py):
Llama-2 shapes, 2,048-token sequences, a micro-batch of 1, gradient checkpointing on, bf16,
LoRA rank 16 on all linear layers, 80 GB GPUs. Time: REFERENCE_TOKENS training tokens at the
planner's uncalibrated GPU throughput guess (presets.GPU_FLOPS / 4 flops per weight and token,
slowed by the method's factor), over the devices the case needs (estimate.SCALING_EFFICIENCY).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner import estimate as estimator
from planner import presets

# Llama-2 7B / 13B / 70B: parameters, hidden size, layers, vocabulary, MLP width, KV heads / heads.
MODELS = {
    "7B": dict(parameters=6.74e9, hidden_size=4096, num_layers=32, vocab_size=32000, intermediate_size=11008,
               num_kv_heads_ratio=1.0),
    "13B": dict(parameters=13.0e9, hidden_size=5120, num_layers=40, vocab_size=32000, intermediate_size=13824,
                num_kv_heads_ratio=1.0),
    "70B": dict(parameters=69e9, hidden_size=8192, num_layers=80, vocab_size=32000, intermediate_size=28672,
                num_kv_heads_ratio=1 / 8),
}
METHODS = {"full": "Full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}
SETUP = dict(context_length=2048, batch_size=1, gradient_checkpointing=True, device="cuda", device_memory_gb=80.0,
             tied_embeddings=False, lora_rank=16, target_modules="all_linear")
REFERENCE_TOKENS = 10_000_000  # e.g. 10,000 examples of 500 tokens, 2 epochs
GPU_PRICE_KEY = "a100_80"  # the 80 GB GPU the cases are priced on (the team's price for it)

# Published figures of peak training memory, with where they come from: the rules of thumb the
# estimator is tested against (tests/planner/test_estimate.py, test_rules_of_thumb_for_70b).
# A case with no published figure here shows none.
REFERENCE = {
    ("70B", "full"): {"memory": "about 8 x 80 GB", "source": "published rule of thumb"},
    ("70B", "lora"): {"memory": "about 160 GB", "source": "published rule of thumb"},
    ("70B", "qlora"): {"memory": "about 45 GB", "source": "published rule of thumb"},
}


@dataclass
class Case:
    size: str
    method: str
    method_label: str
    memory_one_gpu_gb: float  # peak on one device
    devices: int | None  # 80 GB GPUs it needs (None: does not fit, whatever the count)
    per_device_gb: float | None
    verdict: str
    tokens_per_second: float | None
    gpu_hours: float | None
    reference: dict[str, str] | None

    def cost(self, price_per_hour: float) -> float | None:
        return None if self.gpu_hours is None else self.gpu_hours * price_per_hour

    def as_dict(self, price_per_hour: float | None = None) -> dict[str, Any]:
        data = dict(self.__dict__)
        if price_per_hour is not None:
            data["cost"] = self.cost(price_per_hour)
        return data


def case(size: str, method: str) -> Case:
    shape = MODELS[size]
    one = estimator.estimate(method=method, **shape, **SETUP)
    devices = one.devices_needed if one.requested.fits is False else 1
    per_device = None
    hours = tps = None
    verdict = one.verdict
    if devices:
        spread = estimator.estimate(method=method, **shape, **SETUP, devices=devices) if devices > 1 else one
        per_device = spread.requested.total_gb
        verdict = spread.verdict
        tps = presets.guess_tokens_per_second(shape["parameters"], "cuda") / estimator.time_factor(
            method, SETUP["gradient_checkpointing"])
        seconds = estimator.estimate_time(REFERENCE_TOKENS, tps, devices)
        hours = seconds / 3600 * devices
    return Case(size, method, METHODS[method], one.requested.total_gb, devices, per_device, verdict, tps, hours,
                REFERENCE.get((size, method)))


def table() -> list[Case]:
    return [case(size, method) for size in MODELS for method in METHODS]
