"""The GGUF converter on a tiny Llama with the real SmolLM2 tokenizer: what is inside the files
(llama.cpp's tensor names and types, the chat template, the tokenizer), and the same logits from
the original model, from transformers' GGUF loader and from llama.cpp (llama-cpp-python)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.worker.training.factories import build_tiny_model

PROMPT = [{"role": "user", "content": "Bonjour, comment réinitialiser mon mot de passe ?"}]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    from worker.training.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("gguf")
    seen = []
    result = export_gguf(tiny_model_dir, out, name="tiny", progress=lambda f, m: seen.append((f, m)))
    return result, seen


def _hf_logits(model_dir, ids, **kwargs):  # noqa: ANN001, ANN202
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, **kwargs).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _prompt_ids(tokenizer) -> list[int]:  # noqa: ANN001
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_files_hold_llama_cpp_names_types_and_the_chat_template(exported, tokenizer):
    import gguf

    from app.runs import gguf as web_side
    from worker.training.gguf_export import VARIANTS

    result, seen = exported
    assert tuple(result.files) == VARIANTS == web_side.VARIANTS  # the web names what the worker writes
    assert seen[-1][0] == pytest.approx(1.0) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    want = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0"}
    for variant, path in result.files.items():
        reader = gguf.GGUFReader(path)
        fields = reader.fields
        assert fields["general.architecture"].contents() == "llama"
        assert fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
        assert fields["tokenizer.ggml.pre"].contents() == "smollm"  # llama.cpp's name for this pre-tokenizer
        assert fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id
        assert fields["llama.attention.head_count_kv"].contents() == 2
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        assert types["blk.0.attn_norm.weight"] == "F32" and types["output_norm.weight"] == "F32"
        assert types["blk.1.attn_q.weight"] == want[variant] and types["token_embd.weight"] == want[variant]
        assert "output.weight" not in types  # tied: llama.cpp reuses the embedding
        assert len(types) == 2 + 2 * 9  # embedding, final norm, 9 tensors per block
    modelfile = result.modelfile.read_text()
    assert modelfile.startswith("FROM ./tiny-q8_0.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "<|im_start|>{{ .Role }}" in modelfile
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile  # the template's default


@pytest.mark.slow  # transformers reads a GGUF tokenizer of 49k tokens slowly (about a minute on 2 busy cores)
def test_transformers_gguf_loader_gives_the_original_logits(exported, tiny_model_dir, tokenizer):
    result, _ = exported
    ids = _prompt_ids(tokenizer)
    original = _hf_logits(tiny_model_dir, ids)
    scale = np.abs(original).max()
    f16 = _hf_logits(result.files["f16"].parent, ids, gguf_file=result.files["f16"].name)
    q8 = _hf_logits(result.files["q8_0"].parent, ids, gguf_file=result.files["q8_0"].name)
    # f16 rounds each weight to 11 significant bits; q8_0 to 8 bits per block of 32.
    assert np.abs(f16 - original).max() < 2e-3 * scale
    assert np.abs(q8 - original).max() < 3e-2 * scale
    assert (q8.argmax(-1) == original.argmax(-1)).mean() >= 0.9


def test_llama_cpp_gives_the_original_logits(exported, tiny_model_dir, tokenizer):
    from llama_cpp import Llama

    result, _ = exported
    ids = _prompt_ids(tokenizer)
    original = _hf_logits(tiny_model_dir, ids)
    scale = np.abs(original).max()
    for variant, tolerance in (("f16", 1e-2), ("q8_0", 4e-2)):
        llm = Llama(model_path=str(result.files[variant]), n_ctx=128, logits_all=True, verbose=False, n_threads=2)
        text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids  # llama.cpp's tokenizer agrees
        llm.eval(ids)
        got = np.asarray(llm.scores[: len(ids)])
        assert np.abs(got - original).max() < tolerance * scale, variant
        assert (got.argmax(-1) == original.argmax(-1)).mean() >= 0.9, variant
        llm.close()


def test_a_model_with_another_vocabulary_is_refused_with_the_reason(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from worker.training.gguf_export import GGUFExportError, write_gguf

    other = AutoTokenizer.from_pretrained(str(tiny_model_dir))  # a copy: the session's tokenizer stays as it is
    other.add_tokens(["<|studio_extra|>"])
    model_dir = build_tiny_model(tmp_path / "other", other, hidden=32, layers=1)
    with pytest.raises(GGUFExportError, match="vocabulary is not the one of the built-in model"):
        write_gguf(model_dir, tmp_path / "x.gguf", "f16", name="x")
    assert not (tmp_path / "x.gguf").exists()


def test_an_architecture_llama_cpp_layout_does_not_cover_is_refused(tmp_path, tiny_model_dir):
    import shutil

    from worker.training.gguf_export import GGUFExportError, write_gguf

    model_dir = tmp_path / "other"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(GGUFExportError, match="supports LlamaForCausalLM models; this one is GPT2LMHeadModel"):
        write_gguf(model_dir, tmp_path / "x.gguf", "f16", name="x")
