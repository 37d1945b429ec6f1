"""Every method trains for real on a tiny model: loss falls, the right weights move, exports load."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.worker.training.factories import records, tiny_config
from worker.training.reporter import RecordingReporter
from worker.training.run import run

METHODS = ["full", "lora", "qlora", "lora8bit"]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """One short run per method, shared by the tests of this module."""
    done = {}
    for method in METHODS:
        reporter = RecordingReporter()
        lr = 1e-3 if method == "full" else 1e-2
        config = tiny_config(tiny_model_dir, method=method, learning_rate=lr, max_steps=10)
        result = run(config, records(40), records(5), tmp_path_factory.mktemp(method), reporter)
        done[method] = (result, reporter)
    return done


def probe_batch(tokenizer):
    return tokenizer(["<|im_start|>user\nBonjour, une question sur ma facture<|im_end|>\n"], return_tensors="pt")


def canonical_4bit_kernel(model):
    """bitsandbytes repacks 4-bit weights for a bf16 CPU kernel on the first no-grad forward in
    eval mode (only on CPUs with AVX512-BF16), which changes the numbers slightly; compare
    models on the same, canonical kernel that training used."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    return model


def logits(model, batch):
    canonical_4bit_kernel(model)
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.mark.parametrize("method", METHODS)
def test_loss_is_logged_and_falls(runs, method):
    result, reporter = runs[method]
    losses = [loss for _, loss in reporter.series("loss")]
    assert result.status == "completed" and result.global_step == 10
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < losses[0] - 1.5, losses
    for name in ("learning_rate", "grad_norm", "tokens_per_s", "epoch", "peak_memory_mb", "padding_share"):
        assert reporter.series(name), f"{name} was not reported"
    assert reporter.series("tokens_per_s")[-1][1] > 0
    assert "eval_loss" in result.metrics and result.metrics["perplexity"] > 1
    assert reporter.progress[-1][:2] == (10, 10)


@pytest.mark.parametrize("method", ["lora", "qlora", "lora8bit"])
def test_lora_weights_change_and_base_weights_do_not(runs, method, tiny_model_dir):
    result, _ = runs[method]
    model = result.model
    base = load_file(tiny_model_dir / "model.safetensors")
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it moved
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    embed = model.get_base_model().model.embed_tokens.weight
    assert torch.equal(embed.detach().float(), base["model.embed_tokens.weight"].float())
    if method == "lora":
        q = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
        assert torch.equal(q.detach(), base["model.layers.0.self_attn.q_proj.weight"])


def test_qlora_base_is_really_4bit(runs):
    import bitsandbytes as bnb

    model = runs["qlora"][0].model
    layer = model.get_base_model().model.layers[0].mlp.down_proj.base_layer
    assert isinstance(layer, bnb.nn.Linear4bit)
    assert layer.weight.__class__.__name__ == "Params4bit"
    assert layer.weight.quant_state.quant_type == "nf4"
    assert layer.weight.quant_state.nested  # double quantization
    eight = runs["lora8bit"][0].model.get_base_model().model.layers[0].mlp.down_proj.base_layer
    assert isinstance(eight, bnb.nn.Linear8bitLt) and eight.weight.dtype == torch.int8


@pytest.mark.parametrize("method", ["lora", "qlora", "lora8bit"])
def test_adapter_loads_in_plain_peft_with_the_same_logits(runs, method, tiny_model_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    result, _ = runs[method]
    quantization = {
        "qlora": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32),
        "lora8bit": BitsAndBytesConfig(load_in_8bit=True),
    }.get(method)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quantization)
    loaded = PeftModel.from_pretrained(base, result.adapter_dir)
    batch = probe_batch(tokenizer)
    assert torch.allclose(logits(loaded, batch), logits(result.model, batch), atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "qlora", "lora8bit"])
def test_merged_model_equals_base_plus_adapter(runs, method, tiny_model_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = runs[method]
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), result.adapter_dir)
    batch = probe_batch(tokenizer)
    assert torch.allclose(logits(merged, batch), logits(reference, batch), atol=1e-4)


def test_full_fine_tuning_saves_a_plain_model(runs, tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    result, _ = runs["full"]
    saved = AutoModelForCausalLM.from_pretrained(result.model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = probe_batch(tokenizer)
    assert torch.allclose(logits(saved, batch), logits(result.model, batch), atol=1e-5)
    assert not torch.allclose(logits(saved, batch), logits(base, batch), atol=1e-3)
    assert result.parameters["trainable_params"] == result.parameters["total_params"]


def test_model_card_and_reports(runs):
    result, reporter = runs["lora"]
    card = (result.adapter_dir + "/README.md")
    text = open(card, encoding="utf-8").read()
    assert "dataset sha256" in text and "transformers:" in text and '"lora_r": 8' in text
    assert 0 < result.parameters["trainable_params"] < result.parameters["total_params"]
    assert result.data_report["kept"] == 40
    assert any("Trainable parameters" in line for line in reporter.lines)


def test_export_warns_about_adapters_that_servers_refuse(runs, tmp_path):
    import json
    import shutil

    result, _ = runs["lora"]
    assert result.warnings == []
    adapter = shutil.copytree(result.adapter_dir, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["modules_to_save"] = ["lm_head"]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    from worker.training.export import adapter_serving_warnings

    (warning,) = adapter_serving_warnings(adapter)
    assert "vLLM" in warning and "merged model" in warning
