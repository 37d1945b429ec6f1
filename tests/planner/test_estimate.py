"""The memory estimator against published rules of thumb for 70B (a real measured run:
tests/worker/training/test_estimate.py)."""

from __future__ import annotations

import pytest

from planner.estimate import estimate, estimate_memory, ModelShape

# Llama-2-70B: 69B parameters, hidden 8192, 80 layers, 32k vocabulary, GQA with 8 KV heads.
LLAMA_70B = dict(parameters=69e9, hidden_size=8192, num_layers=80, vocab_size=32000,
                 intermediate_size=28672, num_kv_heads_ratio=1 / 8)
RULE_SETUP = dict(context_length=2048, batch_size=1, gradient_checkpointing=True, device="cuda",
                  device_memory_gb=80)


@pytest.mark.parametrize(("method", "rule_gb"), [
    ("full", 8 * 80),      # full fine-tuning: about 8 x 80 GB GPUs
    ("lora8bit", 80),      # LoRA: about one 80 GB GPU (on an 8-bit base)
    ("lora", 160),         # LoRA on a 16-bit base: about 2 x 80 GB
    ("qlora", 45),         # QLoRA: about 45 GB
])
def test_rules_of_thumb_for_70b(method, rule_gb):
    result = estimate(method=method, **LLAMA_70B, **RULE_SETUP)
    assert result.requested.total_gb == pytest.approx(rule_gb, rel=0.25)


def test_verdict_and_recommendation():
    full = estimate(method="full", **LLAMA_70B, **RULE_SETUP)
    assert full.requested.fits is False
    assert full.recommended_method == "lora8bit"
    assert full.verdict.startswith("does not fit on cuda (80 GB)")
    small = estimate(method="qlora", **LLAMA_70B, **{**RULE_SETUP, "device_memory_gb": 48})
    assert small.requested.fits and small.verdict.startswith("fits on cuda (48 GB)")
    none = estimate(method="full", **LLAMA_70B, **{**RULE_SETUP, "device_memory_gb": 24})
    assert none.recommended_method is None and "even" in none.verdict


def test_gradient_checkpointing_and_time():
    shape = ModelShape(7e9, 4096, 32, 32000, 11008)
    common = dict(batch_size=8, context_length=2048, precision="bf16")
    with_ckpt = estimate_memory(shape, "lora", gradient_checkpointing=True, **common)
    without = estimate_memory(shape, "lora", gradient_checkpointing=False, **common)
    assert without.activations_gb > 5 * with_ckpt.activations_gb
    timed = estimate(method="lora", parameters=7e9, hidden_size=4096, num_layers=32, vocab_size=32000,
                     context_length=512, batch_size=4, train_tokens=1_000_000, tokens_per_second=2000)
    assert timed.time_s == pytest.approx(500)
