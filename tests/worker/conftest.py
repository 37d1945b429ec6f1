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
