"""Honest evaluation and the trained-token preview, as a first-time user meets them in Chromium:
a dataset with copies is split without leaking them and says so, shows which tokens are trained,
leads into the wizard with it chosen (the preview again, for the chosen model); a text file is
refused with what was expected; a finished run whose evaluation overlaps its training data says
so next to the scores, with the scores without those examples, and says general ability dropped.

The dataset check runs for real (a thread per upload) with the built-in model's real tokenizer;
the run's evaluation row is written as the evaluation task writes it (its contents are covered
on a real model by tests/worker/test_evaluation.py).
"""

from __future__ import annotations

import json
import re

import pytest

from app.models import BaseModel, Evaluation, RunStatus, utcnow
from app.models_registry.service import BUILTIN_SLUG
from app.storage import ArtifactStore
from tests.browser.conftest import shoot
from tests.browser.test_datasets import log_in, tokenizer_dir, upload, wait_for_result, worker_thread  # noqa: F401
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run

pytestmark = pytest.mark.slow


@pytest.fixture
def person(db, tokenizer_dir):  # noqa: F811
    """The built-in model's tokenizer registered with SmolLM2-135M's shape (the wizard plans from it)."""
    db.add(BaseModel(slug=BUILTIN_SLUG, display_name="SmolLM2-135M-Instruct (built-in)", source="builtin",
                     path=str(tokenizer_dir), context_length=8192, parameter_count=134_515_008, hidden_size=576,
                     num_layers=30, vocab_size=49152, architecture="LlamaForCausalLM"))
    return make_account(db, email="noor@example.com", team_name="Helpdesk")


def _chat(user: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


def test_split_without_copies_token_preview_and_into_the_wizard(live_server, page, person, worker_thread):  # noqa: F811
    rows = [_chat(f"How do I change setting number {i}?", f"Open Settings, then section {i}, and save.")
            for i in range(120)]
    copies = rows[:30:2] + [_chat(f"how do i change SETTING number {i}?", f"open settings, then section {i}, and save.")
                            for i in range(1, 8)]  # exact copies and copies in other case
    log_in(page, live_server, person.email)
    upload(page, live_server, {"name": "support.jsonl", "mimeType": "application/json",
                               "buffer": "\n".join(rows + copies).encode()}, name="Support answers")
    wait_for_result(page)
    report = page.locator(".report").inner_text()
    assert "22 examples are a copy of an earlier one" in report
    assert "no evaluation example also appears in training" in report
    assert "same prompt as a training example" not in report  # nothing leaked through the split

    preview = page.locator("#token-preview")
    assert "exactly as SmolLM2-135M-Instruct (built-in) reads them" in preview.inner_text()
    marks = preview.locator(".tok-example mark.tok-trained")
    assert marks.count() == 3
    first_trained = marks.first.inner_text()
    assert first_trained.startswith("Open Settings, then section") and first_trained.endswith("<|im_end|>")
    dimmed = preview.locator(".tok-example .tok-context").first.inner_text()
    assert "<|im_start|>user" in dimmed and "How do I change setting number" in dimmed
    assert preview.locator(".tok-example .tok-cut").count() == 0
    preview.scroll_into_view_if_needed()
    shoot(page, "honest-1-dataset-preview")

    page.click("a:has-text('Train on this dataset')")
    page.wait_for_url(re.compile(r".*/runs/new\?dataset_id=\d+$"))
    dataset_id = page.url.rsplit("=", 1)[1]
    assert page.locator("#f-dataset").input_value() == dataset_id
    assert page.locator("#token-preview .tok-example mark.tok-trained").count() == 3
    shoot(page, "honest-2-wizard-preview")
    # a training length shorter than the prompts: the cut shows and nothing can start
    page.click("summary:has-text('Advanced settings')")
    page.fill("#hp-max_length", "16")
    page.locator("#hp-max_length").dispatch_event("change")
    page.locator(".nothing-trained").wait_for(timeout=10_000)
    assert "Nothing would be trained" in page.locator(".nothing-trained").inner_text()
    assert page.locator("#token-preview .tok-example .tok-cut").count() == 3
    assert page.locator("button:has-text('Train')").last.is_disabled()
    page.locator("#token-preview").scroll_into_view_if_needed()
    shoot(page, "honest-3-wizard-preview-cut")


def test_a_text_file_named_csv_says_what_was_expected(live_server, page, person, worker_thread):  # noqa: F811
    log_in(page, live_server, person.email)
    words = "lorem ipsum dolor sit\namet consectetur adipiscing\nsed do eiusmod tempor\n"
    upload(page, live_server, {"name": "words.csv", "mimeType": "text/csv", "buffer": words.encode()}, name="Words")
    wait_for_result(page)
    text = page.locator("main").inner_text()
    assert "The file does not look like examples" in text
    assert "at least two columns (for example prompt,completion)" in text
    assert page.locator("#mapping").count() == 0  # no column mapping dead end
    shoot(page, "honest-4-not-examples")


def test_the_run_page_says_when_scores_were_measured_partly_on_training_data(live_server, page, db, settings,
                                                                               person):
    store = ArtifactStore(settings.artifact_dir)
    model = db.query(BaseModel).filter_by(slug=BUILTIN_SLUG).one()
    dataset = make_dataset(db, store, person.team_id)
    run = make_run(db, person.team_id, dataset, model, status=RunStatus.succeeded, started_at=utcnow(),
                   finished_at=utcnow(), name="Support v1")
    metrics = {"base": {"eval_loss": 2.31, "perplexity": 10.07, "rougeL": 0.21, "exact_match": 0.0,
                        "general_ability": 0.75},
               "finetuned": {"eval_loss": 0.001, "perplexity": 1.0, "rougeL": 1.0, "exact_match": 1.0,
                             "general_ability": 0.52}}
    clean = {"base": {"eval_loss": 2.40, "perplexity": 11.02, "rougeL": 0.20, "exact_match": 0.0},
             "finetuned": {"eval_loss": 1.35, "perplexity": 3.86, "rougeL": 0.46, "exact_match": 0.0}}
    general = {"questions": 52, "base_correct": 39, "finetuned_correct": 27, "base": 0.75, "finetuned": 0.52,
               "dropped": True, "by_language": {"en": {"questions": 10, "base": 9, "finetuned": 6}}, "items": []}
    db.add(Evaluation(team_id=person.team_id, run_id=run.id, kind="automatic", status="succeeded",
                      finished_at=utcnow(), metrics=metrics, samples=[
                          {"prompt": [{"role": "user", "content": "Where is my order?"}], "reference": "It ships today.",
                           "base": "I am not sure.", "finetuned": "It ships today.", "overlaps_training": True}],
                      details={"split": "eval", "samples": 8, "max_new_tokens": 96, "loss_examples": 40,
                               "general_ability": general,
                               "overlap": {"eval_examples": 40, "overlapping": 7, "loss_examples": 40,
                                           "loss_overlapping": 7, "clean_loss_examples": 33, "samples": 8,
                                           "samples_overlapping": 3, "metrics": clean}}))
    db.commit()
    log_in(page, live_server, person.email)
    page.goto(f"{live_server}/runs/{run.id}")
    section = page.locator("#run-evaluation")
    notice = section.locator(".overlap-notice")
    assert "7 evaluation examples also in training." in notice.inner_text()
    assert "7 of the 40 evaluation examples have a prompt that is also in the training data" in notice.inner_text()
    clean_table = section.locator("table.clean-metrics").inner_text()
    assert "Evaluation loss\t2.400\t1.350" in clean_table and "ROUGE-L\t0.200\t0.460" in clean_table
    assert "Without the 7 examples also in training" in section.inner_text()
    ability = section.locator(".general-ability").inner_text()
    assert "General ability dropped: the fine-tuned model answered 27 of 52 general questions right, " \
           "the base model 39 (23 points fewer)." in ability
    assert section.locator(".overlap-badge").count() == 1
    section.scroll_into_view_if_needed()
    shoot(page, "honest-5-run-evaluation")
