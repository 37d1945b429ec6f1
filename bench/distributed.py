"""Real training tokens per second of one process against two under torch.distributed.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/distributed.py [--steps 6] [--methods lora full] [--model builtin|tiny]

Each run goes through the worker's own launcher (worker/training/launcher.py: torchrun, one
process per device, gloo on the CPU, nccl on GPUs), the one-process run included, so both
sides pay the same start-up; the rate is the engine's own (real tokens of every rank over the
training loop's time, start-up and saving excluded). Same model, data and effective batch on
both sides: 1 process x micro-batch 4 x accumulation 2 against 2 processes x 4 x 1 (8 examples
per optimizer step), LoRA under DDP and full fine-tuning under FSDP full sharding.

On a CPU both sides use the same cores (one process with all of them as threads, or each of two
with half), so the ratio is the distributed machinery's cost or gain on this machine. With CUDA and two or more GPUs the same pair runs on GPUs 0 and 0,1 and the ratio is the
scaling (goal >= 1.8x for DDP on two GPUs); with one GPU the GPU pair is skipped, saying so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from planner.config import TrainingConfig  # noqa: E402
from worker.training.launcher import launch  # noqa: E402
from worker.training.builtin import convert_builtin  # noqa: E402
from worker.training.data import read_jsonl  # noqa: E402
from worker.training.reporter import NullReporter  # noqa: E402

GPU_GOAL = 1.8
LEARNING_RATE = {"lora": 2e-4, "full": 2e-5}


def tiny_model(directory: Path, builtin: str) -> str:
    """A 4-layer, 256-wide Llama with the built-in tokenizer (a quick run; the figures of the
    docs come from the built-in model)."""
    from tests.worker.training.factories import build_tiny_model
    from worker.training.modeling import load_tokenizer

    return str(build_tiny_model(directory, load_tokenizer(builtin), hidden=256, layers=4))


def rate(model_dir: str, method: str, processes: int, steps: int, records: list[dict], workdir: Path,
         device_ids: list[int] | None) -> float:
    config = TrainingConfig(
        base_model=model_dir, method=method, lora_r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all_linear",
        learning_rate=LEARNING_RATE[method], epochs=None, max_steps=steps, per_device_batch_size=4,
        grad_accum=2 // processes, devices=processes, max_length=512, save_strategy="no", eval_strategy="no",
        warmup=0.0, scheduler="constant", seed=0)
    result = launch(config, records[: steps * 8], None, workdir, NullReporter(), resume=False,
                    device_ids=device_ids, export_merged=False)
    shutil.rmtree(workdir, ignore_errors=True)
    return result.metrics["tokens_per_s"]


def pair(label: str, model_dir: str, method: str, args: argparse.Namespace, records: list[dict], workdir: Path,
         gpus: bool) -> float:
    """The two sides alternate for --rounds rounds and each keeps its best rate, so that a passing
    load on the machine does not decide the ratio."""
    ones, twos = [], []
    for round_ in range(args.rounds):
        ones.append(rate(model_dir, method, 1, args.steps, records, workdir / f"{method}-1-{round_}",
                         [0] if gpus else None))
        twos.append(rate(model_dir, method, 2, args.steps, records, workdir / f"{method}-2-{round_}",
                         [0, 1] if gpus else None))
    one, two = max(ones), max(twos)
    mode = "DDP" if method != "full" else "FSDP full sharding"
    print(f"{label} {method} ({mode}), best of {args.rounds}: 1 process {one:.1f}, 2 processes {two:.1f} real "
          f"tokens/s; scaling 2 / 1: {two / one:.2f}x", flush=True)
    return two / one


def main() -> None:
    parser = argparse.ArgumentParser(description="tokens/s of 1 vs 2 processes under torch.distributed")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", nargs="+", choices=["lora", "full"], default=["lora", "full"])
    parser.add_argument("--model", choices=["builtin", "tiny"], default="builtin")
    parser.add_argument("--data", type=Path, default=ROOT / "examples" / "support_fr_brand_voice.jsonl")
    args = parser.parse_args()
    builtin = str(convert_builtin(ROOT / "data" / "models"))
    records = read_jsonl(args.data)
    while len(records) < args.steps * 8:
        records = records + records
    workdir = Path(tempfile.mkdtemp(prefix="distributed-"))
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    try:
        model_dir = builtin if args.model == "builtin" else tiny_model(workdir / "tiny", builtin)
        print(f"model: {'SmolLM2-135M-Instruct (built-in)' if args.model == 'builtin' else 'tiny Llama 4x256'}, "
              f"{args.steps} steps of 8 examples (1 x 4 x 2 against 2 x 4 x 1), fp32 on the CPU; "
              f"{os.cpu_count()} CPU cores, {threads} torch threads per process when 1, "
              f"{max(1, threads // 2)} when 2; load average {os.getloadavg()[0]:.1f}", flush=True)
        for method in args.methods:
            pair("CPU (gloo)", model_dir, method, args, records, workdir, gpus=False)
        if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
            print(f"GPUs: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}", flush=True)
            for method in args.methods:
                ratio = pair("GPU (nccl)", model_dir, method, args, records, workdir, gpus=True)
                print(f"  goal >= {GPU_GOAL}x: {'met' if ratio >= GPU_GOAL else 'not met'}")
        elif torch.cuda.is_available():
            print(f"one GPU ({torch.cuda.get_device_name(0)}): the 2-process GPU pair needs two; skipped")
        else:
            print("no CUDA device: GPU figures not measured")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
