"""Which model directories the studio will load: safetensors weights, and no code of their own.

Pickled weights (``pytorch_model.bin``, ``.pt``, ...) can run any code when they are unpickled,
and a config that names classes of its own (``auto_map``, loaded by ``trust_remote_code``) runs
the Python files beside it. The registry refuses such a directory when it is added
(``app/models_registry``), and every loader checks again right before loading (training, the
export, the inference process, the dataset check's tokenizer, A/B generation): a directory can
change after it was registered. Torch-free, so the web and the engine share the one rule.

    check_model_dir("/models/smol")          # raises UnsafeModel with what to do
"""

from __future__ import annotations

import json
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Files whose "auto_map" points transformers at Python code in the model directory.
CODE_CONFIGS = ("config.json", "tokenizer_config.json", "processor_config.json",
                "preprocessor_config.json", "generation_config.json")


class UnsafeModel(ValueError):
    """A model directory the studio refuses to load; the message says why and what to do."""


def pickled_only(model_dir: Path) -> bool:
    """True when the directory's weights are pickles only (no ``*.safetensors``)."""
    files = [p for p in model_dir.iterdir() if p.is_file()]
    has_safetensors = any(p.name.endswith(".safetensors") for p in files)
    return not has_safetensors and any(p.suffix in PICKLE_SUFFIXES for p in files)


def custom_code(model_dir: Path) -> str | None:
    """The config file that asks for the directory's own code, or None."""
    for name in CODE_CONFIGS:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(errors="replace"))
        except ValueError:
            continue  # not this check's business: the loader says the file is broken
        if isinstance(config, dict) and (config.get("auto_map") or config.get("trust_remote_code")):
            return name
    return None


def unsafe_reason(model_dir: str | Path, *, allow_pickled: bool = False) -> str | None:
    """Why the studio will not load ``model_dir``, in plain words, or None."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return None  # the loader says it is missing
    config = custom_code(model_dir)
    if config is not None:
        return (f"{model_dir} asks for its own Python code ({config} has \"auto_map\"), and the "
                "studio never runs code from a model directory (trust_remote_code stays off). "
                "Use a model whose architecture transformers supports natively.")
    if not allow_pickled and pickled_only(model_dir):
        return (f"{model_dir} holds only pickled weights (.bin/.pt), which can run code when "
                "they are loaded, so the studio refuses them. Convert the model to safetensors "
                "(for example `model.save_pretrained(dir, safe_serialization=True)` on a trusted "
                "machine) and add it again.")
    return None


def check_model_dir(model_dir: str | Path) -> None:
    """Raise UnsafeModel unless the studio may load ``model_dir`` (its loaders read
    safetensors only, so pickled weights are refused whatever the registry allowed)."""
    reason = unsafe_reason(model_dir)
    if reason is not None:
        raise UnsafeModel(reason)
