"""Real (non-padding) training tokens per second: the engine vs the seed-article recipe.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py [--steps 4] [--rounds 3] [--data FILE.jsonl]
        [--precision fp32|bf16|both]

Same machine, same process, same model (the built-in SmolLM2-135M-Instruct, converted from
the GGUF into data/models), same data (default: examples/support_fr_brand_voice.jsonl), same
LoRA (r=16, alpha=32, dropout 0.05 on q/k/v/o), same effective batch of 16 (4 x 4
accumulation), same number of optimizer steps; the baseline in fp32.

- baseline, the seed-article recipe: plain transformers Trainer + PEFT LoRA, every example
  rendered with the chat template and padded (or cut) to a fixed 128 tokens, loss on every
  non-padding token.
- engine: worker.training.run() - length-grouped rows (a few padding tokens at most), loss and
  output head only on answer tokens (a chunk of positions at a time), no truncation below
  max_length, and on CPUs where oneDNN beats the default BLAS its matrix multiplies, LoRA layers
  as one function each and dropout masks drawn by gaps (worker/training/cpu_kernels.py).

With --precision both (the default) the engine is measured in fp32 and in bf16 (base weights in
bf16, LoRA adapters in fp32 under bf16 autocast, as precision auto runs it on a CPU with native
bf16 instructions): both rates, each one's ratio to the padded fp32 baseline, and bf16 / fp32 -
the figure that decides precision auto on CPUs (worker/training/modeling.py: bf16 where the CPU
has amx_bf16 or avx512_bf16, fp32 elsewhere, where bf16 is emulated and many times slower).

Both count only real tokens (padding excluded; the baseline's truncated tail is not counted
either). Each measurement runs in a fresh process, as a worker's run does (the engine tunes the
C allocator for the process it runs in; measured in one process, the baseline's later rounds
ran on the engine's tuning). The two sides alternate for --rounds rounds and each keeps its best
rate, so a passing load on the machine does not decide the ratio. Prints the CPU, the rates,
the ratio and the goal (>= 2.0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from planner.config import TrainingConfig  # noqa: E402
from worker.training.builtin import convert_builtin  # noqa: E402
from worker.training.data import read_jsonl  # noqa: E402
from worker.training.modeling import (  # noqa: E402
    cpu_bf16_flags,
    detect_device,
    load_tokenizer,
    resolve_precision,
)
from worker.training.reporter import NullReporter  # noqa: E402
from worker.training.run import run  # noqa: E402


class KernelLog(NullReporter):
    """Prints the engine's choice of CPU kernels (the probe decides per machine)."""

    def on_log(self, message: str) -> None:
        if message.startswith("Faster CPU kernels"):
            print(f"  {message}", flush=True)


LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
PER_DEVICE, ACCUM, LR, SEED = 4, 4, 2e-4, 0
GOAL = 2.0


def baseline(model_dir: str, records: list[dict], steps: int, workdir: Path) -> float:
    """The seed article: fixed 128-token padding, plain Trainer, PEFT LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    tokenizer = load_tokenizer(model_dir)
    rows = []
    for record in records[: steps * PER_DEVICE * ACCUM]:
        text = tokenizer.apply_chat_template(record["messages"], tokenize=False)
        enc = tokenizer(text, padding="max_length", truncation=True, max_length=128, add_special_tokens=False)
        labels = [t if m else -100 for t, m in zip(enc["input_ids"], enc["attention_mask"])]
        rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    real = sum(sum(r["attention_mask"]) for r in rows)

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    args = TrainingArguments(
        output_dir=str(workdir / "baseline"), per_device_train_batch_size=PER_DEVICE,
        gradient_accumulation_steps=ACCUM, learning_rate=LR, max_steps=steps, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, seed=SEED, disable_tqdm=True,
        train_sampling_strategy="sequential",
    )
    collate = lambda feats: {k: torch.tensor([f[k] for f in feats]) for k in feats[0]}  # noqa: E731
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    started = time.monotonic()
    trainer.train()
    return real / (time.monotonic() - started)


def engine(model_dir: str, records: list[dict], steps: int, workdir: Path, packing: bool,
           precision: str = "fp32") -> float:
    config = TrainingConfig(
        base_model=model_dir, method="lora", lora_r=16, lora_alpha=32, lora_dropout=0.05,
        target_modules="attention", learning_rate=LR, epochs=None, max_steps=steps,
        per_device_batch_size=PER_DEVICE, grad_accum=ACCUM, precision=precision, max_length=512,
        save_strategy="no", eval_strategy="no", seed=SEED, packing=packing,
    )
    result = run(config, records[: steps * PER_DEVICE * ACCUM], None, workdir / "engine", KernelLog(),
                 export_merged=False)
    return result.metrics["tokens_per_s"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(side: str, args: argparse.Namespace, workdir: Path) -> tuple[float, list[str]]:
    """One side's rate, measured in a fresh Python process, and the CPU kernels it chose."""
    command = [sys.executable, __file__, "--side", side, "--steps", str(args.steps), "--data", str(args.data),
               "--workdir", str(workdir), "--packing" if args.packing else "--no-packing"]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    lines = out.stdout.rstrip().splitlines()  # the kernel lines are indented: keep their spaces
    kernels = [line for line in lines if line.startswith("  Faster CPU kernels")]
    return json.loads(lines[-1])["tokens_per_s"], kernels


def _precision(side: str) -> str:
    return "bf16" if side == "engine-bf16" else "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description="Engine vs seed-article recipe, real tokens/s.")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--data", type=Path, default=ROOT / "examples" / "support_fr_brand_voice.jsonl")
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both",
                        help="the engine's precision(s); the baseline stays the fp32 recipe")
    parser.add_argument("--side", choices=["baseline", "engine", "engine-bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = str(convert_builtin(ROOT / "data" / "models"))
    if args.side:
        records = read_jsonl(args.data)
        precision = "bf16" if args.side == "engine-bf16" else "fp32"
        side = baseline if args.side == "baseline" else lambda *a: engine(*a, args.packing, precision)
        print(json.dumps({"tokens_per_s": side(model_dir, records, args.steps, args.workdir)}))
        return
    workdir = Path(tempfile.mkdtemp(prefix="throughput-"))
    try:
        print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads", flush=True)
        flags = cpu_bf16_flags()
        auto = resolve_precision("auto", detect_device())
        print(f"native bf16 instructions: {', '.join(flags) or 'none'}; precision auto picks {auto} here", flush=True)
        sides = {"fp32": ["engine"], "bf16": ["engine-bf16"], "both": ["engine", "engine-bf16"]}[args.precision]
        print(f"model: SmolLM2-135M-Instruct (built-in), data: {args.data.name}, {args.steps} steps of "
              f"{PER_DEVICE * ACCUM} examples, engine in {' and '.join(map(_precision, sides))}, "
              "each measurement in a fresh process", flush=True)
        bases, rates = [], {side: [] for side in sides}
        # alternate the sides and keep each one's best, so that other load on the machine
        # during one measurement does not decide the ratio
        for round_ in range(args.rounds):
            bases.append(measure("baseline", args, workdir / f"b{round_}")[0])
            print(f"baseline (Trainer + PEFT, padded to 128, fp32): {bases[-1]:.1f} real tokens/s", flush=True)
            for side in sides:
                rate, kernels = measure(side, args, workdir / f"{side}{round_}")
                rates[side].append(rate)
                for line in kernels if round_ == 0 else []:  # the first process's choice (each one probes)
                    print(line, flush=True)
                print(f"engine {_precision(side)} ({'packed rows' if args.packing else 'length-grouped rows'}, "
                      f"answer-only head, CPU kernels): {rate:.1f} real tokens/s", flush=True)
        best = {side: max(values) for side, values in rates.items()}
        print(f"best of {args.rounds}: baseline {max(bases):.1f}, "
              + ", ".join(f"engine {_precision(side)} {rate:.1f}" for side, rate in best.items()) + " real tokens/s")
        for side, rate in best.items():
            ratio = rate / max(bases)
            print(f"ratio engine {_precision(side)} / padded baseline: {ratio:.2f}x "
                  f"(goal >= {GOAL}: {'met' if ratio >= GOAL else 'not met'})")
        if len(best) == 2:
            print(f"ratio bf16 / fp32 (engine): {best['engine-bf16'] / best['engine']:.2f}x "
                  f"({'bf16' if best['engine-bf16'] > best['engine'] else 'fp32'} is faster on this CPU; "
                  f"precision auto picks {auto})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
