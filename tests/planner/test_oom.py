"""The out-of-memory rule: halve the micro-batch, keep the effective batch, at most 3 retries."""

from __future__ import annotations

from planner import oom
from planner.config import TrainingConfig
from planner.presets import ModelInfo

LLAMA_8B = ModelInfo(parameters=8.0e9, hidden_size=4096, num_layers=32, vocab_size=128256, context_length=8192,
                     intermediate_size=14336, num_kv_heads_ratio=0.25, tied_embeddings=False)


def config(**values) -> TrainingConfig:
    return TrainingConfig(base_model="/models/x", max_steps=10, **values)


def test_each_retry_halves_the_micro_batch_and_keeps_the_effective_batch():
    cfg, seen = config(per_device_batch_size=8, grad_accum=2), []
    for done in range(3):
        retry = oom.next_retry(cfg, done)
        seen.append((retry.config.per_device_batch_size, retry.config.grad_accum, retry.number))
        assert retry.config.effective_batch_size == 16
        cfg = retry.config
    assert seen == [(4, 4, 1), (2, 8, 2), (1, 16, 3)]
    assert oom.next_retry(cfg, 3) is None  # retries spent
    assert oom.next_retry(config(per_device_batch_size=1), 0) is None  # nothing left to halve


def test_an_odd_micro_batch_drops_to_a_divisor_so_the_effective_batch_is_exact():
    assert [oom.smaller_micro_batch(b) for b in (1, 2, 3, 5, 6, 9, 12)] == [None, 1, 1, 1, 3, 3, 6]
    retry = oom.next_retry(config(per_device_batch_size=3, grad_accum=2), 0)
    assert (retry.config.per_device_batch_size, retry.config.grad_accum) == (1, 6)
    message = oom.retry_message(config(per_device_batch_size=3, grad_accum=2), retry, step=40, resume_step=30)
    assert message == ("Out of memory at step 40 with 3 examples at once: retrying from step 30 with 1 example at "
                       "once and three times the accumulation (same effective batch of 6). Retry 1 of 3.")


def test_the_advice_says_which_change_would_fit_by_the_estimator():
    cfg = config(method="lora", per_device_batch_size=1, max_length=8192)
    advice = oom.advice(cfg, LLAMA_8B, device="cuda", memory_gb=24)
    assert advice.startswith("The estimator puts this run at about")
    assert "What would fit: switch to QLoRA (4-bit)" in advice or "What would fit: turn on gradient checkpointing" in advice
    assert advice.endswith("Then retry the run.")
    tiny_device = oom.advice(cfg, LLAMA_8B, device="cuda", memory_gb=4)
    assert "What would fit" not in tiny_device and "more devices" in tiny_device
    assert oom.advice(cfg, None, device="cpu", memory_gb=None) == oom.GENERIC_ADVICE
