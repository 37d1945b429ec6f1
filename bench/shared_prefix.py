"""What running a micro-batch's shared prompt prefix once saves: the same step with and without it.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/shared_prefix.py [--rounds 4] [--data FILE.jsonl]

One process, the built-in model with the engine's LoRA (r=16 on q/k/v/o, fp32, the engine's CPU
kernels), 4 micro-batches of 4 length-grouped examples: the time of one optimizer step's forward
and backward passes (`answer_loss_sum`), with the prefix computed once per micro-batch and with
every row computed in full, alternating, best of --rounds each. Run on the data as it is (its
system prompt and the chat template's opening) and on the same data with a longer system prompt,
the kind of house rules a support team writes. Prints tokens skipped, the two times and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.config import TrainingConfig  # noqa: E402
from worker.training.builtin import convert_builtin  # noqa: E402
from worker.training.cpu_speedup import speed_up_for_cpu  # noqa: E402
from worker.training.data import PaddedCollator, read_jsonl, tokenize_records  # noqa: E402
from worker.training.loss import answer_loss_sum, real_tokens, shared_prefix_length  # noqa: E402
from worker.training.modeling import detect_device, load_model, load_tokenizer  # noqa: E402

HOUSE_RULES = (
    "Tu es l'assistant du support client de Nuage, le service de stockage en ligne. Règles : réponds toujours en "
    "français, vouvoie le client, commence par « Bonjour et merci de votre message ! », donne des étapes précises "
    "avec les menus exacts de l'application (Réglages, Compte, Partage, Corbeille), ne promets jamais de "
    "remboursement sans validation d'un conseiller, ne demande jamais de mot de passe, et renvoie vers "
    "nuage.example/aide pour tout ce qui concerne la facturation. Termine par la signature de l'équipe."
)


def with_system(records: list[dict], system: str) -> list[dict]:
    out = []
    for record in records:
        messages = [m for m in record["messages"] if m["role"] != "system"]
        out.append({**record, "messages": [{"role": "system", "content": system}, *messages]})
    return out


def compare(model, tokenizer, records: list[dict], rounds: int, label: str) -> float:
    examples, _ = tokenize_records(records[:16], tokenizer, 512)
    examples.sort(key=lambda e: len(e.input_ids))  # length-grouped, as the engine's sampler does
    collate = PaddedCollator(tokenizer.pad_token_id)
    batches = [collate([{"input_ids": e.input_ids, "labels": e.labels} for e in examples[i : i + 4]])
               for i in range(0, 16, 4)]
    prefixes = [shared_prefix_length(model, b) for b in batches]
    positions = sum(real_tokens(b) for b in batches)
    skipped = sum(p * (len(b["input_ids"]) - 1) for p, b in zip(prefixes, batches))

    def step(share: bool) -> float:
        started = time.perf_counter()
        for batch, prefix in zip(batches, prefixes):
            loss, _ = answer_loss_sum(model, batch, prefix if share else 0)
            loss.backward()
        model.zero_grad()
        return time.perf_counter() - started

    step(True), step(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(rounds):
        for share in (False, True):
            times[share].append(step(share))
    full, shared = min(times[False]), min(times[True])
    print(f"{label}: shared prefix {prefixes} tokens per micro-batch, {skipped} of {positions} tokens "
          f"({skipped / positions:.0%}) not computed again", flush=True)
    print(f"  every row in full: {full:.2f} s a step, prefix once: {shared:.2f} s a step -> {full / shared:.2f}x",
          flush=True)
    return full / shared


def main() -> None:
    parser = argparse.ArgumentParser(description="Shared prompt prefix once vs every row in full.")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--data", type=Path, default=ROOT / "examples" / "support_fr_brand_voice.jsonl")
    args = parser.parse_args()
    model_dir = str(convert_builtin(ROOT / "data" / "models"))
    config = TrainingConfig(
        base_model=model_dir, method="lora", lora_r=16, lora_alpha=32, lora_dropout=0.05,
        target_modules="attention", learning_rate=2e-4, epochs=None, max_steps=1, per_device_batch_size=4,
        grad_accum=4, precision="fp32", max_length=512, save_strategy="no", eval_strategy="no",
    )
    model = load_model(config, detect_device(), "fp32")
    for line in speed_up_for_cpu(model):
        print(f"  CPU kernels: {line}", flush=True)
    model.train()
    tokenizer = load_tokenizer(model_dir)
    records = read_jsonl(args.data)
    compare(model, tokenizer, records, args.rounds, f"{args.data.name} as it is")
    compare(model, tokenizer, with_system(records, HOUSE_RULES), args.rounds,
            f"{args.data.name} with a {len(tokenizer(HOUSE_RULES)['input_ids'])}-token system prompt")


if __name__ == "__main__":
    main()
