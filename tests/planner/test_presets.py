"""The presets: the classic recipe and the auto preset adapted to model, data, hardware and time."""

from __future__ import annotations

from planner.presets import ModelInfo, auto, classic


def test_classic_preset_is_the_tutorial_recipe():
    config = classic("m").config
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)
    assert (config.target_modules, config.learning_rate, config.epochs, config.scheduler) == (
        "attention", 2e-4, 3, "cosine")
    assert (config.warmup, config.weight_decay, config.max_grad_norm, config.effective_batch_size) == (
        0.1, 0.01, 1.0, 16)


SMALL = ModelInfo(parameters=135_000_000, hidden_size=576, num_layers=30, vocab_size=49152,
                  context_length=8192, intermediate_size=1536, num_kv_heads_ratio=1 / 3, tied_embeddings=True)
BIG = ModelInfo(parameters=70_000_000_000, hidden_size=8192, num_layers=80, vocab_size=32000,
                context_length=4096, intermediate_size=28672, num_kv_heads_ratio=1 / 8)


def test_auto_adapts_to_model_size_data_and_time():
    small = auto(base_model="m", model=SMALL, train_examples=360, train_tokens=45_000, device="cpu")
    big = auto(base_model="m", model=BIG, train_examples=50_000, train_tokens=15_000_000,
               device="cuda", device_memory_gb=80)
    assert small.config.learning_rate > 3 * big.config.learning_rate
    assert small.config.lora_r < big.config.lora_r
    assert small.config.target_modules == "all_linear"
    assert small.config.effective_batch_size < big.config.effective_batch_size
    assert small.config.precision == "auto" and small.config.method == "lora"
    assert big.config.method in ("lora8bit", "qlora")  # bf16 LoRA of 70B needs ~150 GB
    assert small.reasons and big.reasons


def test_auto_fits_the_time_budget():
    unlimited = auto(base_model="m", model=SMALL, train_examples=360, train_tokens=45_000, device="cpu")
    budget = auto(base_model="m", model=SMALL, train_examples=360, train_tokens=45_000, device="cpu",
                  time_budget_s=300, tokens_per_second=200)
    assert unlimited.config.max_steps is None
    tokens = budget.config.max_steps * budget.config.effective_batch_size * 125
    assert tokens <= 300 * 200
    assert any("Time budget" in reason for reason in budget.reasons)


def test_spread_batch_keeps_the_effective_batch_over_devices():
    from planner.presets import spread_batch

    assert spread_batch(4, 4, 1) == (4, 4, None)
    micro, accum, note = spread_batch(4, 4, 4)
    assert (micro, accum) == (4, 1) and "Effective batch 16 kept on 4 devices" in note
    assert spread_batch(4, 8, 2)[:2] == (4, 4)
    micro, accum, note = spread_batch(8, 1, 4)  # 8 x 4 > 8: the micro-batch shrinks to 2
    assert (micro, accum) == (2, 1) and "lowered from 8" in note
    micro, accum, note = spread_batch(4, 4, 3)  # 3 does not divide 16
    assert micro * accum * 3 == 12 and "becomes 12" in note and "multiple of 3" in note
