"""Fixtures for the training engine: the real SmolLM2 tokenizer and tiny models built from a config.

The built-in GGUF is converted once per session (the real conversion path); tiny Llama
models reuse its tokenizer so chat templates and masking are exercised for real.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from tests.worker.training.factories import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory):
    from worker.training.builtin import convert_builtin

    return convert_builtin(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tokenizer(builtin_dir):
    from worker.training.modeling import load_tokenizer

    return load_tokenizer(str(builtin_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), tokenizer)


@pytest.fixture(scope="session")
def tool_tokenizer(builtin_dir):
    """The real SmolLM2 tokenizer with a chat template that has tool support (its own has none)."""
    from tests.worker.training.factories import TOOL_TEMPLATE
    from worker.training.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(builtin_dir))
    tokenizer.chat_template = TOOL_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tool_trained(tmp_path_factory, tool_tokenizer):
    """One short full fine-tune on tool-calling conversations, then the end-of-run evaluation (base
    vs fine-tuned) on held-out ones; "merged" is the fine-tuned model's directory."""
    from transformers import AutoModelForCausalLM

    from tests.worker.training.factories import tiny_config, tool_records
    from worker.tasks.evaluation import evaluate_pair
    from worker.training.reporter import RecordingReporter
    from worker.training.run import run

    model_dir = build_tiny_model(tmp_path_factory.mktemp("tool-tiny"), tool_tokenizer)
    train, held = tool_records()
    config = tiny_config(model_dir, method="full", learning_rate=1e-3, max_steps=80, max_length=256,
                         per_device_batch_size=8, grad_accum=1)
    result = run(config, train, None, tmp_path_factory.mktemp("tool-run"), RecordingReporter())
    outcome = evaluate_pair(result.model, tool_tokenizer, held, split="eval", max_length=256, samples=8,
                            max_new_tokens=40, goal=None, base=AutoModelForCausalLM.from_pretrained(model_dir))
    return {**outcome, "merged": result.model_dir, "base": str(model_dir)}
