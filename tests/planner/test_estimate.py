"""The memory estimator against published rules of thumb for 70B (a real measured run:
tests/worker/training/test_estimate.py)."""

from __future__ import annotations

import pytest

from planner.estimate import estimate, estimate_memory, ModelShape, SCALING_EFFICIENCY

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


# Llama-2-7B: 6.74B parameters, hidden 4096, 32 layers, 32k vocabulary, no GQA.
LLAMA_7B = dict(parameters=6.74e9, hidden_size=4096, num_layers=32, vocab_size=32000, intermediate_size=11008)


def test_7b_full_fine_tune_needs_several_80gb_gpus():
    """bf16, 2048 tokens, micro-batch 4 without checkpointing: ~92 GB on one device; FSDP over 8
    (or 4) devices shards the 56 GB of weights, gradients and AdamW states."""
    setup = dict(method="full", **LLAMA_7B, context_length=2048, batch_size=4, device="cuda", device_memory_gb=80)
    one = estimate(**setup)
    assert one.requested.fits is False and one.requested.strategy == "single"
    assert one.devices_needed == 2
    assert "Needs 2 GPUs of 80 GB: set devices to 2" in one.verdict
    for n in (4, 8):
        many = estimate(**setup, devices=n)
        assert many.requested.fits is True and many.requested.strategy == "fsdp"
        assert many.verdict.startswith(f"fits on {n} x cuda (80 GB)") and "per device (FSDP)" in many.verdict
        # the sharded states are 1/n of one device's; activations of a micro-batch are not sharded
        assert many.requested.optimizer_gb == pytest.approx(one.requested.optimizer_gb / n)
        assert many.requested.weights_gb == pytest.approx(one.requested.weights_gb / n)
        assert many.requested.activations_gb == pytest.approx(one.requested.activations_gb)
        assert many.requested.buffers_gb > 0  # the unsharded units being computed
    assert estimate(**setup, devices=8).requested.total_gb < estimate(**setup, devices=4).requested.total_gb


def test_fits_on_4_x_24gb():
    setup = dict(method="full", **LLAMA_7B, context_length=2048, batch_size=1, gradient_checkpointing=True,
                 device="cuda", device_memory_gb=24)
    one = estimate(**setup)
    assert one.requested.fits is False and one.devices_needed == 4
    assert "Needs 4 GPUs of 24 GB: set devices to 4" in one.verdict
    four = estimate(**setup, devices=4)
    assert four.requested.fits is True and four.requested.total_gb < 24 * 0.95
    assert four.requested.as_dict()["per_device_gb"] == four.requested.total_gb


def test_lora_memory_per_device_does_not_shrink_but_time_does():
    common = dict(method="lora", **LLAMA_7B, context_length=2048, batch_size=4, gradient_checkpointing=True,
                  device="cuda", device_memory_gb=80, train_tokens=8_000_000, tokens_per_second=2000)
    one, four = estimate(**common), estimate(**common, devices=4)
    assert four.requested.strategy == "ddp"
    assert four.requested.total_gb >= one.requested.total_gb  # the whole model on every device (+ buckets)
    assert four.requested.weights_gb == one.requested.weights_gb
    assert four.time_s == pytest.approx(one.time_s / (4 * SCALING_EFFICIENCY))
    # a LoRA run that does not fit one device fits on no count of them
    small = estimate(**{**common, "device_memory_gb": 12, "gradient_checkpointing": False})
    assert small.requested.fits is False and small.devices_needed is None


def test_70b_full_fine_tune_is_about_one_80gb_gpu_each_on_eight():
    eight = estimate(method="full", **LLAMA_70B, **RULE_SETUP, devices=8)
    assert eight.requested.total_gb == pytest.approx(80, rel=0.1)


def test_the_time_range_is_wide_without_history_and_follows_finished_runs_with_it():
    from planner.estimate import UNCALIBRATED_RANGE, time_range

    rough = time_range(600.0, [1.5])  # one finished run is not enough to learn from
    assert not rough["calibrated"] and rough["runs"] == 1
    assert (rough["low_s"], rough["high_s"]) == (600.0 * UNCALIBRATED_RANGE[0], 600.0 * UNCALIBRATED_RANGE[1])
    slow = time_range(600.0, [1.9, 2.0, 2.1, 2.2])  # this machine always took about twice the guess
    assert slow["calibrated"] and slow["runs"] == 4
    assert 600 * 1.9 / 1.2 <= slow["low_s"] < 600 * 2.0 < slow["high_s"] <= 600 * 2.2 * 1.2
    assert slow["low_s"] <= slow["likely_s"] <= slow["high_s"] and slow["likely_s"] == 600 * 2.05
    assert time_range(None, [1.0, 1.0]) is None


def test_the_time_follows_the_method_the_length_the_passes_and_the_steps():
    from planner.estimate import processed_tokens, time_factor

    base = dict(train_tokens=10_000, train_examples=100, max_length=512, epochs=1.0, max_steps=None,
                effective_batch=16)
    assert processed_tokens(**base) == 10_000
    assert processed_tokens(**{**base, "epochs": 3.0}) == 30_000
    assert processed_tokens(**{**base, "max_length": 50}) == 5_000  # 100-token examples cut at 50
    assert processed_tokens(**{**base, "max_steps": 10}) == 10 * 16 * 100
    assert time_factor("full", False) > time_factor("qlora", False) > time_factor("lora", False)
    assert time_factor("lora", True) > time_factor("lora", False)
