"""`studio train CONFIG DATASET`: fine-tune from the command line, progress on stdout.

    python -m worker.training.cli CONFIG.json DATASET.jsonl [--output DIR] [--model DIR]

CONFIG is either a full TrainingConfig as JSON (`training_config.json` of an earlier run), or
`{"preset": "auto" | "classic", ...}` with optional `time_budget_s` and any TrainingConfig
fields to override. The base model is --model, else the config's base_model; the name
"builtin" (or SmolLM2-135M-Instruct) converts the built-in model into $STUDIO_MODELS_DIR
(default data/models) first. Ctrl-C stops after the current step and leaves a checkpoint;
running the same command again resumes from it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from planner.config import TrainingConfig
from worker.training.builtin import BUILTIN_NAME, convert_builtin
from worker.training.data import DataError, read_jsonl, tokenize_records
from worker.training.reporter import PrintReporter

BUILTIN_ALIASES = ("builtin", BUILTIN_NAME)
EVAL_FRACTION = 0.05


class _InterruptibleReporter(PrintReporter):
    def __init__(self):
        super().__init__()
        self.interrupted = False

    def should_stop(self) -> bool:
        return self.interrupted


def train_command(config: Path, dataset: Path, output: Path, model: Path | None = None) -> int:
    """Run one training from files; prints progress lines. Exit code: 0 done, 2 bad input, 130 stopped."""
    try:
        records = read_jsonl(dataset)
        training_config = _load_config(Path(config), records, model)
    except (DataError, ValidationError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train, evaluation = _split(records, training_config)
    reporter = _InterruptibleReporter()
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(reporter, "interrupted", True))
    try:
        from worker.training.run import CHECKPOINTS, run

        resume = any((Path(output) / CHECKPOINTS).glob("checkpoint-*"))
        if training_config.devices > 1:  # one process per device under torchrun, as a worker does
            from worker.training.launcher import RankFailed, launch

            try:
                result = launch(training_config, train, evaluation, output, reporter, resume=resume)
            except RankFailed as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
        else:
            result = run(training_config, train, evaluation, output, reporter, resume_from=resume or None)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.status == "stopped":
        print(f"stopped at step {result.global_step}; run the same command again to resume")
        return 130
    for key, value in result.metrics.items():
        print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    for name in ("adapter_dir", "merged_dir", "model_dir"):
        if getattr(result, name):
            print(f"{name.replace('_dir', '')}: {getattr(result, name)}")
    return 0


def main(
    config_path: str | Path, dataset_path: str | Path, output_dir: str | Path, model: str | Path | None = None
) -> int:
    """Same as train_command, accepting plain strings."""
    return train_command(Path(config_path), Path(dataset_path), Path(output_dir), Path(model) if model else None)


def resolve_model(name: str) -> str:
    if name in BUILTIN_ALIASES:
        return str(convert_builtin(os.environ.get("STUDIO_MODELS_DIR", "data/models")))
    if not Path(name).is_dir():
        raise FileNotFoundError(f"Base model directory {name} does not exist (nothing is downloaded).")
    return name


def _load_config(path: Path, records: list[dict], model: Path | None) -> TrainingConfig:
    raw = json.loads(path.read_text(encoding="utf-8"))
    base_model = resolve_model(str(model) if model else raw.get("base_model", "builtin"))
    preset = raw.pop("preset", None)
    if preset is None:
        return TrainingConfig.model_validate({**raw, "base_model": base_model})
    budget = raw.pop("time_budget_s", None)
    overrides = {k: v for k, v in raw.items() if k != "base_model"}
    chosen = _preset(preset, base_model, records, budget)
    for line in chosen.reasons:
        print(f"preset: {line}")
    return TrainingConfig.model_validate({**chosen.config.model_dump(), **overrides})


def _preset(name: str, base_model: str, records: list[dict], budget: float | None):
    from planner import presets

    if name == "classic":
        return presets.classic(base_model)
    if name != "auto":
        raise ValueError(f"Unknown preset {name!r}: use 'auto' or 'classic'.")
    from worker.training.modeling import detect_device, load_tokenizer

    examples, report = tokenize_records(records, load_tokenizer(base_model), 1 << 16)
    device = detect_device()
    return presets.auto(
        base_model=base_model, model=presets.read_model_info(base_model), train_examples=report.kept,
        train_tokens=report.total_tokens, max_example_tokens=max(len(e.input_ids) for e in examples),
        device=device.kind, device_memory_gb=device.memory_gb, time_budget_s=budget,
    )


def _split(records: list[dict], config: TrainingConfig) -> tuple[list[dict], list[dict] | None]:
    """Hold out 5% for evaluation (seeded) when the config evaluates and there is enough data."""
    if config.eval_strategy == "no" or len(records) < 20:
        return records, None
    order = list(range(len(records)))
    random.Random(config.seed).shuffle(order)
    cut = max(1, int(len(records) * EVAL_FRACTION))
    held = set(order[:cut])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fine-tune a model from a config and a JSONL dataset.")
    parser.add_argument("config")
    parser.add_argument("dataset")
    parser.add_argument("--output", default="data/runs/cli")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    sys.exit(main(args.config, args.dataset, args.output, args.model))
