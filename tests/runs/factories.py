"""Factories for run tests: a model directory, a registered base model, a validated dataset."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from app.models import BaseModel, Dataset, DatasetStatus, Run, RunStatus, utcnow
from app.models_registry import service as models_service
from app.storage import ArtifactStore


def write_model_dir(path: Path, *, hidden: int = 64, layers: int = 2, vocab: int = 49152) -> Path:
    """config.json plus a safetensors file whose header declares the tensors (zero-filled),
    enough for the registry and the estimator; real training tests use a real tiny model."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": hidden * 2, "num_hidden_layers": layers, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": 2048,
        "tie_word_embeddings": True}))
    tensors = {"model.embed_tokens.weight": [vocab, hidden]}
    for i in range(layers):
        tensors[f"model.layers.{i}.mlp.up_proj.weight"] = [hidden * 2, hidden]
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * shape[0] * shape[1]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


def register_model(db, model_dir: Path, *, team_id: int | None = None, name: str = "Tiny Llama") -> BaseModel:  # noqa: ANN001
    row = models_service.register(db, model_dir=model_dir, display_name=name, source="local", team_id=team_id)
    db.commit()
    return row


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {i}: how do I reset my password?"},
                         {"role": "assistant", "content": f"Bonjour ! Answer {i}: use the reset link. — L'équipe"}]}


def make_dataset(db, store: ArtifactStore, team_id: int, *, n_train: int = 24, n_eval: int = 4,  # noqa: ANN001
                 status: DatasetStatus = DatasetStatus.valid, name: str = "support") -> Dataset:
    base = f"teams/{team_id}/datasets/{name}-{n_train}"
    train = store.write_bytes(f"{base}/train.jsonl", b"".join(json.dumps(chat(i)).encode() + b"\n" for i in range(n_train)))
    evals = store.write_bytes(f"{base}/eval.jsonl", b"".join(json.dumps(chat(1000 + i)).encode() + b"\n" for i in range(n_eval)))
    row = Dataset(team_id=team_id, name=name, status=status, sha256=train.sha256, size_bytes=train.size,
                  raw_path=train.key, normalized_path=train.key, normalized_eval_path=evals.key,
                  num_examples=n_train + n_eval, format="chat", goal="support",
                  report={"counts": {"train_examples": n_train, "eval_examples": n_eval}},
                  stats={"tokens_per_epoch": n_train * 30, "example_lengths": {"p99": 40}})
    db.add(row)
    db.commit()
    return row


def make_run(db, team_id: int, dataset: Dataset, model: BaseModel, *, status: RunStatus = RunStatus.queued,  # noqa: ANN001
             **values) -> Run:
    config = values.pop("config", None) or {"base_model": model.path, "max_steps": 4, "epochs": None}
    run = Run(team_id=team_id, dataset_id=dataset.id, base_model_id=model.id, method="lora", config=config,
              status=status, enqueued_at=utcnow(), **values)
    db.add(run)
    db.commit()
    return run


def pair(i: int) -> dict:
    return {"prompt": [{"role": "user", "content": f"Question {i}: how do I reset my password?"}],
            "chosen": [{"role": "assistant", "content": f"Bonjour ! Answer {i}: use the reset link. — L'équipe"}],
            "rejected": [{"role": "assistant", "content": f"Answer {i}: use the link."}]}


def make_pair_dataset(db, store: ArtifactStore, team_id: int, *, n_train: int = 24, n_eval: int = 4,  # noqa: ANN001
                      name: str = "support pairs") -> Dataset:
    """A validated dataset of preference pairs (as datacheck normalises them)."""
    base = f"teams/{team_id}/datasets/pairs-{n_train}"
    train = store.write_bytes(f"{base}/train.jsonl", b"".join(json.dumps(pair(i)).encode() + b"\n" for i in range(n_train)))
    evals = store.write_bytes(f"{base}/eval.jsonl", b"".join(json.dumps(pair(1000 + i)).encode() + b"\n" for i in range(n_eval)))
    row = Dataset(team_id=team_id, name=name, status=DatasetStatus.valid, sha256=train.sha256, size_bytes=train.size,
                  raw_path=train.key, normalized_path=train.key, normalized_eval_path=evals.key,
                  num_examples=n_train + n_eval, format="preference", goal="brand_voice",
                  report={"counts": {"train_examples": n_train, "eval_examples": n_eval}},
                  stats={"tokens_per_epoch": n_train * 30, "example_lengths": {"p99": 40}})
    db.add(row)
    db.commit()
    return row
