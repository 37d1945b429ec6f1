"""The must-show of the automatic evaluation: the built-in SmolLM2-135M-Instruct, fine-tuned with
LoRA for a few steps on the demo dataset (examples/support_fr_brand_voice.jsonl), is evaluated on
the studio's eval split of that dataset; the fine-tuned model has a lower eval loss and a higher
ROUGE-L than the base model, and the run page shows both.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m slow -s tests/worker/test_builtin_evaluation.py
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import Evaluation, RunStatus, utcnow
from app.storage import ArtifactStore
from datacheck.split import eval_picker
from tests.factories import log_in, make_account
from tests.runs.factories import make_dataset, make_run, register_model

DEMO = Path(__file__).resolve().parents[2] / "examples" / "support_fr_brand_voice.jsonl"


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the model is the point, not the database
def test_builtin_model_fine_tuned_on_the_demo_beats_its_base(builtin_dir, db, settings, client, tmp_path):
    from planner.config import TrainingConfig
    from worker.tasks.evaluation import evaluate_after_run
    from worker.training.data import read_jsonl
    from worker.training.reporter import NullReporter
    from worker.training.run import run as run_engine

    started = time.monotonic()
    records = read_jsonl(DEMO)
    is_eval = eval_picker(0, 0.1)  # the split a default upload of the demo gets (seed 0, 10%)
    train = [r for i, r in enumerate(records) if not is_eval(i)]
    evals = [r for i, r in enumerate(records) if is_eval(i)]
    # A short LoRA run: the brand greeting and signature are learned in a few steps.
    config = TrainingConfig(base_model=str(builtin_dir), method="lora", lora_r=16, lora_alpha=32, lora_dropout=0.0,
                            target_modules="all_linear", learning_rate=2e-3, epochs=None, max_steps=6,
                            per_device_batch_size=6, grad_accum=1, warmup=0.0, scheduler="constant",
                            max_length=160, packing=True, gradient_checkpointing=False, save_strategy="no",
                            eval_strategy="no", save_total_limit=None,
                            precision="fp32")  # the numbers this test was tuned on, whatever the CPU's bf16

    result = run_engine(config, train, None, tmp_path / "run", NullReporter(), export_merged=False)
    trained_s = time.monotonic() - started

    account = make_account(db)
    model = register_model(db, builtin_dir, name="SmolLM2-135M-Instruct")
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded, goal="brand_voice",
                   finished_at=utcnow(), name="Brand voice")
    run.config = config.model_dump()
    db.commit()
    assert evaluate_after_run(run.id, result, train, evals)
    evaluated_s = time.monotonic() - started - trained_s

    db.expire_all()
    row = db.scalar(select(Evaluation).where(Evaluation.run_id == run.id))
    assert row.status == "succeeded", row.error_message
    base, tuned = row.metrics["base"], row.metrics["finetuned"]
    print(f"\nbuilt-in model, {result.global_step} LoRA steps in {trained_s:.0f}s, evaluation in {evaluated_s:.0f}s "
          f"({len(evals)} eval examples, {row.details['samples']} generations per model)\n"
          f"  eval loss {base['eval_loss']:.3f} -> {tuned['eval_loss']:.3f}\n"
          f"  ROUGE-L   {base['rougeL']:.3f} -> {tuned['rougeL']:.3f}\n"
          f"  BLEU      {base['bleu']:.1f} -> {tuned['bleu']:.1f}\n"
          f"  sample: {row.samples[0]['finetuned'][:160]!r}")
    assert row.details["split"] == "eval" and row.details["loss_examples"] == len(evals)
    assert tuned["eval_loss"] < base["eval_loss"]
    assert tuned["rougeL"] > base["rougeL"]

    log_in(client, account)
    page = client.get(f"/runs/{run.id}").text
    assert (f"The fine-tuned model&#39;s answers overlap the references more: ROUGE-L {tuned['rougeL']:.2f} vs "
            f"{base['rougeL']:.2f} for the base model.") in page
    assert f"evaluation loss {tuned['eval_loss']:.3f} vs {base['eval_loss']:.3f}" in page
    assert f"{base['eval_loss']:.3f}" in page and f"{tuned['eval_loss']:.3f}" in page
    assert "Bonjour et merci de votre message" in page  # the references (and, learned, the answers)
    print(f"  whole test {time.monotonic() - started:.0f}s")
