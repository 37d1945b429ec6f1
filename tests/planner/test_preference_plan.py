"""Preference objectives and DoRA in the planner: config rules, the auto preset's choices and the estimate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from planner.config import TrainingConfig
from planner.estimate import DORA_TIME_FACTOR, TIME_FACTOR, estimate
from planner.presets import auto
from tests.planner.test_presets import BIG, SMALL

SHAPE = dict(parameters=135e6, hidden_size=576, num_layers=30, vocab_size=49152, intermediate_size=1536,
             num_kv_heads_ratio=1 / 3, tied_embeddings=True, context_length=512, batch_size=4, device="cuda",
             device_memory_gb=24, train_tokens=1e6, tokens_per_second=1e3)


def test_config_rules_for_preference_and_dora():
    config = TrainingConfig(base_model="m", objective="dpo", beta=0.2, use_dora=True)
    assert config.is_preference and config.beta == 0.2
    with pytest.raises(ValidationError, match="use_dora adds DoRA to LoRA adapters"):
        TrainingConfig(base_model="m", method="full", learning_rate=1e-5, use_dora=True)
    with pytest.raises(ValidationError, match="dpo runs train on one device"):
        TrainingConfig(base_model="m", objective="dpo", devices=2)
    with pytest.raises(ValidationError, match="turn packing off"):
        TrainingConfig(base_model="m", objective="orpo", packing=True)
    assert TrainingConfig(base_model="m").objective == "sft"


def test_auto_preset_picks_beta_learning_rate_and_epochs_for_pairs_with_reasons():
    sft = auto(base_model="m", model=SMALL, train_examples=200, train_tokens=20_000, device="cpu")
    dpo = auto(base_model="m", model=SMALL, train_examples=200, train_tokens=20_000, device="cpu", objective="dpo")
    orpo = auto(base_model="m", model=SMALL, train_examples=200, train_tokens=20_000, device="cpu", objective="orpo")
    assert dpo.config.objective == "dpo" and dpo.config.beta == 0.1
    assert dpo.config.learning_rate == pytest.approx(sft.config.learning_rate / 10, rel=0.01)
    assert dpo.config.learning_rate < orpo.config.learning_rate < sft.config.learning_rate
    assert dpo.config.epochs == 3 and dpo.config.per_device_batch_size <= sft.config.per_device_batch_size
    text = " ".join(dpo.reasons)
    assert "DPO learning rate" in text and "Beta 0.1" in text and "over 200 pairs" in text
    assert "ORPO" in " ".join(orpo.reasons)
    many = auto(base_model="m", model=BIG, train_examples=5000, train_tokens=5_000_000, device="cuda",
                device_memory_gb=80, objective="dpo")
    assert many.config.epochs == 1 and many.config.learning_rate >= 5e-6


def test_estimate_counts_pair_rows_the_dpo_reference_and_dora():
    sft = estimate(method="lora", **SHAPE)
    dpo = estimate(method="lora", objective="dpo", **SHAPE)
    orpo = estimate(method="lora", objective="orpo", **SHAPE)
    assert dpo.requested.activations_gb == pytest.approx(2 * sft.requested.activations_gb, rel=0.1)
    assert dpo.requested.weights_gb == sft.requested.weights_gb  # adapters off: no second copy
    assert dpo.time_s == pytest.approx(sft.time_s * TIME_FACTOR["dpo"]) and orpo.time_s == pytest.approx(2 * sft.time_s)
    full_sft = estimate(method="full", **SHAPE)
    full_dpo = estimate(method="full", objective="dpo", **SHAPE)
    assert full_dpo.requested.weights_gb == pytest.approx(2 * full_sft.requested.weights_gb)
    dora = estimate(method="lora", use_dora=True, **SHAPE)
    assert dora.requested.trainable_params > sft.requested.trainable_params  # the magnitude vectors
    assert dora.requested.activations_gb > sft.requested.activations_gb
    assert dora.time_s == pytest.approx(sft.time_s * DORA_TIME_FACTOR)
    assert any("DoRA" in note for note in dora.requested.notes)
    qdora = estimate(method="qlora", use_dora=True, **SHAPE)
    assert qdora.requested.total_gb > estimate(method="qlora", **SHAPE).requested.total_gb
