"""What a run leaves behind: the PEFT adapter, a merged model, a model card, a parameter report.

The adapter directory is plain PEFT (adapter_model.safetensors + adapter_config.json), loaded
by `PeftModel.from_pretrained(base, dir)`; the merged directory is a plain transformers model
(safetensors) loaded by `AutoModelForCausalLM.from_pretrained(dir)`.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import torch

from planner.config import TrainingConfig
from planner.weights import check_model_dir

LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "safetensors")


def dataset_sha256(records: Iterable[dict]) -> str:
    """A stable hash of the training records (canonical JSON lines)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save_adapter(model, tokenizer, directory: str | Path) -> Path:
    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def save_full_model(model, tokenizer, directory: str | Path, state_dict: dict | None = None) -> Path:
    """`state_dict`: the full weights when the model itself holds shards (FSDP, gathered on rank 0)."""
    directory = Path(directory)
    model.config.use_cache = True
    model.save_pretrained(directory, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(directory)
    return directory


def save_merged(
    base_model_dir: str, adapter_dir: str | Path, directory: str | Path, dtype: torch.dtype = torch.float32
) -> Path:
    """Merge the adapter into a fresh, unquantized copy of the base model and save it.

    For QLoRA and 8-bit runs the adapter was trained against a quantized base; merging into
    the full-precision base is the usual practice (the merged weights are exact in that base).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_dir(base_model_dir)
    base = AutoModelForCausalLM.from_pretrained(
        base_model_dir, dtype=dtype, trust_remote_code=False, use_safetensors=True
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    directory = Path(directory)
    merged.save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(directory)
    return directory


def adapter_serving_warnings(adapter_dir: str | Path) -> list[str]:
    """Things in an adapter that serving engines such as vLLM refuse to load."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    warnings = []
    if config.get("modules_to_save"):
        warnings.append(
            f"The adapter also stores full copies of {config['modules_to_save']} (modules_to_save); "
            "vLLM and other LoRA servers refuse such adapters: serve the merged model instead."
        )
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    if any(name in ("lm_head", "embed_tokens") for name in targets):
        warnings.append(
            "The adapter targets the embedding or output head, which many LoRA servers do not "
            "support: serve the merged model instead."
        )
    return warnings


def write_model_card(
    directory: str | Path,
    *,
    config: TrainingConfig,
    dataset_hash: str,
    metrics: dict[str, Any],
    parameters: dict[str, Any],
    data_report: dict[str, Any],
) -> Path:
    directory = Path(directory)
    versions = library_versions()
    lines = [
        "---",
        "library_name: peft" if config.uses_adapter else "library_name: transformers",
        f"base_model: {Path(config.base_model).name}",
        "tags: [fine-tuned, finetune-studio]",
        "---",
        "",
        f"# Fine-tuned {Path(config.base_model).name} ({config.method})",
        "",
        "## Training data",
        f"- dataset sha256: `{dataset_hash}`",
        *(f"- {key}: {value}" for key, value in data_report.items()),
        "",
        "## Parameters",
        *(f"- {key}: {value}" for key, value in parameters.items()),
        "",
        "## Metrics",
        *(f"- {key}: {_fmt(value)}" for key, value in metrics.items()),
        "",
        "## Configuration",
        "```json",
        config.model_dump_json(indent=2),
        "```",
        "",
        "## Library versions",
        *(f"- {name}: {version}" for name, version in versions.items()),
        "",
    ]
    path = directory / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
