"""Preference training (DPO, ORPO) and DoRA on a tiny model: the margin rises, resume works,
the adapters load in plain PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.worker.training.factories import pairs, probe_text, records, tiny_config
from worker.training.data import DataError
from worker.training.reporter import RecordingReporter
from worker.training.run import run

pytestmark = pytest.mark.slow  # each run takes 20-60 s on the shared 2-core machine


def pref_config(model_dir, **overrides):
    values = dict(objective="dpo", max_steps=6, per_device_batch_size=2, grad_accum=2, max_length=96,
                  learning_rate=1e-2, precision="fp32")
    values.update(overrides)
    return tiny_config(model_dir, **values)


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir, tmp_path_factory):
    reporter = RecordingReporter()
    result = run(pref_config(tiny_model_dir), pairs(16), pairs(5, offset=2), tmp_path_factory.mktemp("dpo"),
                 reporter)
    return result, reporter


def test_dpo_raises_the_chosen_over_rejected_margin_on_held_out_pairs(dpo_run):
    result, reporter = dpo_run
    assert result.status == "completed" and result.global_step == 6
    metrics = result.metrics
    assert metrics["preference_margin"] > metrics["preference_margin_before"] + 0.5, metrics
    assert metrics["preference_accuracy"] >= metrics["preference_accuracy_before"]
    assert metrics["preference_accuracy"] == 1.0
    assert metrics["eval_reward_accuracy"] == 1.0 and metrics["eval_reward_margin"] > 0
    assert reporter.series("reward_margin") and reporter.series("loss")
    assert reporter.series("tokens_per_s")[-1][1] > 0
    assert any("Before training" in line for line in reporter.lines)
    assert "perplexity" not in metrics  # a preference loss is no language-model loss


def test_dpo_adapter_loads_in_plain_peft(dpo_run, tiny_model_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = dpo_run
    adapter = Path(result.adapter_dir)
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not (adapter / "ref").exists()  # the reference is the base model, not a saved adapter
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, adapter).eval()
    batch = tokenizer([probe_text()], return_tensors="pt")
    trained = result.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, trained(**batch).logits, atol=1e-4)
        with loaded.disable_adapter():
            assert not torch.allclose(loaded(**batch).logits, trained(**batch).logits, atol=1e-4)


def test_dpo_resume_continues_from_the_checkpoint(tiny_model_dir, tmp_path):
    config = pref_config(tiny_model_dir, save_strategy="steps", save_steps=2, max_steps=4)
    stopped = run(config, pairs(12), None, tmp_path, RecordingReporter(stop_after_step=2))
    assert stopped.status == "stopped" and Path(stopped.last_checkpoint).name == "checkpoint-2"
    metadata = json.loads((Path(stopped.last_checkpoint) / "studio_checkpoint.json").read_text())
    assert metadata["objective"] == "dpo"
    second = RecordingReporter()
    resumed = run(config, pairs(12), None, tmp_path, second, resume_from=True)
    assert resumed.status == "completed" and resumed.global_step == 4
    assert sorted(dict(second.series("loss"))) == [3, 4]  # only the steps after the checkpoint
    assert any("Resuming from" in line and "checkpoint-2" in line for line in second.lines)


def test_orpo_with_dora_trains_and_loads_in_plain_peft(tiny_model_dir, tmp_path, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reporter = RecordingReporter()
    result = run(pref_config(tiny_model_dir, objective="orpo", use_dora=True, max_steps=4), pairs(12),
                 pairs(4, offset=1), tmp_path, reporter, export_merged=False)
    assert result.status == "completed"
    assert result.metrics["preference_margin"] > result.metrics["preference_margin_before"]
    config = json.loads((Path(result.adapter_dir) / "adapter_config.json").read_text())
    assert config["use_dora"] is True
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    assert any("lora_magnitude_vector" in name for name, _ in loaded.named_parameters())
    batch = tokenizer([probe_text()], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, result.model.eval()(**batch).logits, atol=1e-4)


def test_dora_sft_trains_and_loads_in_plain_peft(tiny_model_dir, tmp_path, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reporter = RecordingReporter()
    result = run(tiny_config(tiny_model_dir, use_dora=True, precision="fp32", max_steps=6), records(24), None,
                 tmp_path, reporter, export_merged=False)
    losses = [loss for _, loss in reporter.series("loss")]
    assert losses[-1] < losses[0] - 1.0, losses
    assert any(", DoRA" in line for line in reporter.lines)
    magnitudes = [p for n, p in result.model.named_parameters() if "lora_magnitude_vector" in n]
    assert magnitudes and all(p.requires_grad for p in magnitudes)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    batch = tokenizer([probe_text()], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, result.model.eval()(**batch).logits, atol=1e-4)


def test_preference_run_refuses_chat_records(tiny_model_dir, tmp_path):
    with pytest.raises(DataError, match="prompt"):
        run(pref_config(tiny_model_dir), records(4), None, tmp_path, RecordingReporter())


def test_evaluation_reports_preference_accuracy_and_margin_next_to_the_answers(dpo_run, tokenizer):
    from app.evaluations import views
    from worker.tasks import evaluation

    result, _ = dpo_run
    held_out = pairs(5, offset=2)
    out = evaluation.evaluate_pair(result.model, tokenizer, held_out, split="eval", max_length=96, samples=2,
                                   max_new_tokens=16, goal="brand_voice")
    base, tuned = out["metrics"]["base"], out["metrics"]["finetuned"]
    assert base["preference_margin"] == pytest.approx(result.metrics["preference_margin_before"], abs=1e-4)
    assert tuned["preference_margin"] == pytest.approx(result.metrics["preference_margin"], abs=1e-4)
    assert tuned["preference_margin"] > base["preference_margin"]
    assert {"eval_loss", "rougeL"} <= set(tuned)  # the usual figures, the chosen answer as the reference
    assert out["samples"][0]["reference"] == held_out[0]["chosen"][0]["content"]
    assert out["samples"][0]["prompt"] == held_out[0]["prompt"]
    rows = {row.key: row for row in views.metric_rows(out["metrics"])}
    assert rows["preference_margin"].better == "finetuned"
    assert "prefers the better answer" in views.sentence(out["metrics"])
    assert evaluation.summary(out["metrics"]).startswith("preference accuracy")
