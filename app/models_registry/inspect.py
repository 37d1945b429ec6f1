"""Reads a model directory without torch: config.json, safetensors headers, chat template,
licence. Used by the registry to describe a model and to refuse unsafe weights."""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from app.errors import InvalidInput
from planner.weights import pickled_only

MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass
class ModelInfo:
    architecture: str
    parameter_count: int
    context_length: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    chat_template: str
    license: str
    has_pickled_weights: bool

    def as_dict(self) -> dict:
        return asdict(self)


def safetensors_parameters(path: Path) -> int:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise InvalidInput(f"{path.name} is not a safetensors file (too short).")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES:
            raise InvalidInput(f"{path.name} has an implausible safetensors header.")
        header = json.loads(fh.read(length))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def _chat_template(model_dir: Path) -> str:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    cfg = model_dir / "tokenizer_config.json"
    if cfg.is_file():
        template = json.loads(cfg.read_text()).get("chat_template") or ""
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), "")
        return template
    return ""


def _license(model_dir: Path) -> str:
    card = model_dir / "README.md"
    if card.is_file():
        match = re.search(r"^license:\s*(\S+)", card.read_text(errors="replace")[:4000], re.MULTILINE)
        if match:
            return match.group(1)
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (model_dir / name).is_file():
            return (model_dir / name).read_text(errors="replace").strip().splitlines()[0][:120]
    return "unknown"


def inspect_model_dir(model_dir: Path) -> ModelInfo:
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InvalidInput(f"{model_dir} has no config.json: it is not a transformers model directory.")
    config = json.loads(config_path.read_text())
    text_cfg = config.get("text_config", config)
    weights = sorted(model_dir.glob("*.safetensors"))
    return ModelInfo(
        architecture=(config.get("architectures") or [config.get("model_type", "unknown")])[0],
        parameter_count=sum(safetensors_parameters(p) for p in weights),
        context_length=int(text_cfg.get("max_position_embeddings") or 0),
        hidden_size=int(text_cfg.get("hidden_size") or 0),
        num_layers=int(text_cfg.get("num_hidden_layers") or 0),
        vocab_size=int(text_cfg.get("vocab_size") or 0),
        chat_template=_chat_template(model_dir),
        license=_license(model_dir),
        has_pickled_weights=pickled_only(model_dir),
    )
