"""TrainingConfig validation and the light-import rule of the planner (the web app imports it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from planner.config import TrainingConfig


def test_defaults_effective_batch_and_warmup():
    config = TrainingConfig(base_model="m", per_device_batch_size=2, grad_accum=8, warmup=0.1)
    assert config.effective_batch_size == 16
    assert config.warmup_steps(95) == 10


@pytest.mark.parametrize(("values", "message"), [
    ({"lora_r": 0}, "greater than or equal to 1"),
    ({"epochs": None}, "set epochs or max_steps"),
    ({"eval_strategy": "steps"}, "set eval_steps"),
    ({"method": "full", "learning_rate": 2e-3}, "far too high for full fine-tuning"),
    ({"method": "dora"}, "'full', 'lora', 'qlora' or 'lora8bit'"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_invalid_values_are_explained(values, message):
    with pytest.raises(ValidationError, match=message):
        TrainingConfig(base_model="m", **values)


def test_every_field_is_documented():
    assert all(field.description for field in TrainingConfig.model_fields.values())


def test_json_round_trip(tmp_path):
    config = TrainingConfig(base_model="m", method="qlora", max_steps=5)
    path = config.save(tmp_path)
    assert json.loads(path.read_text())["method"] == "qlora"
    assert TrainingConfig.load(tmp_path) == config


def test_config_presets_estimate_import_without_torch():
    code = ("import sys, planner.config, planner.presets, planner.estimate; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
