"""The built-in model conversion and the `studio train` entry point."""

from __future__ import annotations

import json
import os

from tests.worker.training.factories import records
from worker.training.builtin import convert_builtin, find_builtin_gguf, is_converted
from worker.training.cli import train_command


def test_builtin_gguf_is_found_in_the_installed_wheel():
    path = find_builtin_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_builtin_conversion_is_a_plain_safetensors_model_and_idempotent(builtin_dir):
    from transformers import AutoConfig

    assert is_converted(builtin_dir)
    config = json.loads((builtin_dir / "config.json").read_text())
    assert "quantization_config" not in config  # no trace of the GGUF left
    assert AutoConfig.from_pretrained(builtin_dir).model_type == "llama"
    assert (builtin_dir / "chat_template.jinja").read_text().startswith("{% for message in messages %}")
    weights = builtin_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert convert_builtin(builtin_dir.parent) == builtin_dir
    assert weights.stat().st_mtime_ns == before  # second call did nothing
    assert not [p for p in os.listdir(builtin_dir.parent) if p.startswith(".")]  # no temp dirs left


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_train_command_runs_and_prints_progress(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "base_model": str(tiny_model_dir), "method": "lora", "max_steps": 3, "epochs": None,
        "per_device_batch_size": 4, "grad_accum": 1, "learning_rate": 1e-2, "save_strategy": "no",
        "eval_strategy": "steps", "eval_steps": 3, "target_modules": "all_linear",
    }))
    dataset = write_jsonl(tmp_path / "data.jsonl", records(24))
    assert train_command(config, dataset, tmp_path / "out", None) == 0
    out = capsys.readouterr().out
    assert "progress 3/3" in out and "step 1: loss=" in out and "eval_loss" in out
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "out" / "training_config.json").read_text())["max_steps"] == 3


def test_train_command_with_auto_preset(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"preset": "auto", "max_steps": 2, "save_strategy": "no",
                                  "eval_strategy": "no"}))
    dataset = write_jsonl(tmp_path / "data.jsonl", records(16))
    assert train_command(config, dataset, tmp_path / "out", tiny_model_dir) == 0
    out = capsys.readouterr().out
    assert "preset: LoRA rank" in out and "progress 2/2" in out


def test_train_command_explains_bad_input(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"base_model": str(tiny_model_dir), "lora_r": -1}))
    dataset = write_jsonl(tmp_path / "data.jsonl", records(4))
    assert train_command(config, dataset, tmp_path / "out", None) == 2
    assert "lora_r" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    assert train_command(config, bad, tmp_path / "out", None) == 2
    assert "Line 1" in capsys.readouterr().err
