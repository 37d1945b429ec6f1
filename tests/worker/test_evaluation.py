"""End-of-run evaluation on a tiny real model: both sides measured (the base with the adapter
disabled, or loaded beside a full fine-tune), the row stored with events, a failure that leaves the
run succeeded, a re-run from the stored outputs, and interrupted rows repaired."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from app.evaluations import service
from app.models import Artifact, Evaluation, Run, RunEvent, RunStatus, Worker, utcnow
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.runs.factories import chat, make_dataset, make_run, register_model
from tests.worker.training.factories import tiny_config
from worker.tasks import evaluation, general_ability

TRAIN = [chat(i) for i in range(16)]
EVAL = [chat(1000 + i) for i in range(4)]  # what make_dataset stores as the eval split

pytestmark = pytest.mark.one_database  # evaluation is the point; its rows are plain inserts covered on both elsewhere


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """A LoRA run on the tiny model (its adapter saved), shared by the tests of this module."""
    from worker.training.reporter import NullReporter
    from worker.training.run import run as run_engine

    config = tiny_config(tiny_model_dir, max_steps=16, max_length=96)
    result = run_engine(config, TRAIN, EVAL, tmp_path_factory.mktemp("run"), NullReporter(), export_merged=False)
    return config, result


def _fresh_loss(model_dir, config, records):  # noqa: ANN001, ANN202
    from transformers import AutoModelForCausalLM

    from worker.training.loss import evaluate_loss
    from worker.training.modeling import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    return evaluate_loss(model, evaluation.loss_batches(records, load_tokenizer(str(model_dir)), config.max_length))


def test_adapter_run_measures_the_base_with_the_adapter_disabled(trained, tiny_model_dir, tokenizer):
    config, result = trained
    out = evaluation.evaluate_pair(result.model, tokenizer, EVAL, split="eval", max_length=config.max_length,
                                   samples=3, max_new_tokens=24, goal="support_answers")
    base, tuned = out["metrics"]["base"], out["metrics"]["finetuned"]
    assert base["eval_loss"] == pytest.approx(_fresh_loss(tiny_model_dir, config, EVAL)["eval_loss"], rel=1e-4)
    assert tuned["eval_loss"] < base["eval_loss"] and tuned["rougeL"] > base["rougeL"]
    for side in (base, tuned):
        assert {"eval_loss", "perplexity", "bleu", "rouge1", "rouge2", "rougeL", "exact_match"} <= set(side)
        assert "accuracy" not in side and side["samples"] == 3
    assert [s["reference"] for s in out["samples"]] == [EVAL[i]["messages"][-1]["content"] for i in (0, 1, 2)]
    assert out["samples"][0]["prompt"] == EVAL[0]["messages"][:-1]
    assert all(isinstance(s["base"], str) and isinstance(s["finetuned"], str) for s in out["samples"])
    general = out["details"].pop("general_ability")
    assert out["details"] == {"split": "eval", "samples": 3, "max_new_tokens": 24, "goal": "support_answers",
                              "loss_examples": 4}
    # every run answers the general-ability set, base and fine-tuned, scored by the set's rule
    assert general["questions"] == len(general["items"]) >= 40
    assert {i["language"] for i in general["items"]} >= {"en", "fr", "de", "ja", "ar", "hi"}
    for item in general["items"]:
        q = next(q for q in general_ability.questions() if q["id"] == item["id"])
        assert item["finetuned_correct"] == general_ability.is_correct(item["finetuned"], q["answers"])
    assert base["general_ability"] == general["base"] == general["base_correct"] / general["questions"]
    assert tuned["general_ability"] == general["finetuned"]


def test_eval_examples_that_overlap_training_are_counted_and_left_out_of_the_clean_scores(
        trained, tiny_model_dir, tokenizer):
    """A validation file that repeats two training prompts (one with other case and punctuation):
    the evaluation says how many, and gives every metric again on the rest."""
    config, result = trained
    copy = {"messages": [{**TRAIN[3]["messages"][0], "content": TRAIN[3]["messages"][0]["content"].upper() + " !!"},
                         TRAIN[3]["messages"][1]]}
    evals = [TRAIN[0], *EVAL, copy]
    out = evaluation.evaluate_pair(result.model, tokenizer, evals, split="eval", max_length=config.max_length,
                                   samples=6, max_new_tokens=8, goal="other", train_records=TRAIN)
    overlap = out["details"]["overlap"]
    assert (overlap["eval_examples"], overlap["overlapping"]) == (6, 2)
    assert (overlap["samples"], overlap["samples_overlapping"], overlap["clean_loss_examples"]) == (6, 2, 4)
    assert [s["overlaps_training"] for s in out["samples"]] == [True, False, False, False, False, True]
    clean_base, clean_tuned = overlap["metrics"]["base"], overlap["metrics"]["finetuned"]
    assert clean_base["eval_loss"] == pytest.approx(_fresh_loss(tiny_model_dir, config, EVAL)["eval_loss"], rel=1e-4)
    assert clean_base["samples"] == clean_tuned["samples"] == 4
    assert clean_tuned["eval_loss"] != out["metrics"]["finetuned"]["eval_loss"]


def test_no_overlap_is_said_too(trained, tokenizer):
    config, result = trained
    out = evaluation.evaluate_pair(result.model, tokenizer, EVAL, split="eval", max_length=config.max_length,
                                   samples=2, max_new_tokens=4, goal="other", train_records=TRAIN)
    assert out["details"]["overlap"]["overlapping"] == 0 and "metrics" not in out["details"]["overlap"]


def test_the_general_ability_rule():
    assert general_ability.is_correct("The answer is 12.", ["12", "twelve"])
    assert not general_ability.is_correct("120", ["12"])
    assert general_ability.is_correct("Twelve", ["12", "twelve"])
    assert general_ability.is_correct("La capitale est Rome.", ["Rome"])
    assert not general_ability.is_correct("Romeo", ["Rome"])
    assert general_ability.is_correct("日本の首都は東京です。", ["東京", "Tokyo"])
    assert general_ability.is_correct("Столица России — Москва.", ["Москва"])
    assert not general_ability.is_correct("I do not know.", ["Paris"])
    scored = general_ability.score(["12"] * 52, ["no"] * 52)
    assert scored["dropped"] and scored["base_correct"] >= 1 and scored["finetuned_correct"] == 0


def test_classification_goal_adds_accuracy_and_training_prompts_are_marked(trained, tokenizer):
    config, result = trained
    out = evaluation.evaluate_pair(result.model, tokenizer, TRAIN, split="train", max_length=config.max_length,
                                   samples=2, max_new_tokens=8, goal="classification")
    assert "accuracy" in out["metrics"]["base"] and "accuracy" in out["metrics"]["finetuned"]
    assert out["details"]["split"] == "train" and out["details"]["loss_examples"] == 2


def test_full_fine_tune_loads_the_base_beside_it(tiny_model_dir, tokenizer, tmp_path):
    from worker.training.reporter import NullReporter
    from worker.training.run import run as run_engine

    config = tiny_config(tiny_model_dir, method="full", learning_rate=1e-3, max_steps=4, max_length=96)
    result = run_engine(config, TRAIN, EVAL, tmp_path, NullReporter())
    base = evaluation.load_plain(config, config.base_model)
    out = evaluation.evaluate_pair(result.model, tokenizer, EVAL, split="eval", max_length=96, samples=2,
                                   max_new_tokens=8, goal="other", base=base)
    assert out["metrics"]["base"]["eval_loss"] == pytest.approx(
        _fresh_loss(tiny_model_dir, config, EVAL)["eval_loss"], rel=1e-4)
    assert out["metrics"]["finetuned"]["eval_loss"] < out["metrics"]["base"]["eval_loss"]


def test_split_and_sample_choice():
    conversation = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0},
                                 {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    prompt = evaluation.split_last_answer(conversation)
    assert prompt.reference == "d" and [m["content"] for m in prompt.messages] == ["a", "b", "c"]
    assert "weight" not in prompt.messages[1]
    assert evaluation.split_last_answer({"messages": [{"role": "assistant", "content": "hi"}]}) is None
    assert evaluation.evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evaluation.evenly_spaced([1, 2], 4) == [1, 2]


# -- the stored evaluation -------------------------------------------------------------------

@pytest.fixture
def run(db, settings, tiny_model_dir, trained) -> Run:
    account = make_account(db)
    model = register_model(db, tiny_model_dir)
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, n_train=16, n_eval=4)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded, goal="support_answers",
                   finished_at=utcnow())
    run.config = trained[0].model_dump()
    db.commit()
    return run


def _events(db, run_id: int) -> list[str]:  # noqa: ANN001
    db.expire_all()
    return [e.message for e in db.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))]


def test_evaluation_after_a_run_is_stored_with_both_sides(db, run, trained, settings, monkeypatch):
    monkeypatch.setattr(settings, "eval_samples", 3)
    monkeypatch.setattr(settings, "eval_max_new_tokens", 24)
    monkeypatch.setattr("worker.tasks.evaluation.get_settings", lambda: settings)
    assert evaluation.evaluate_after_run(run.id, trained[1], TRAIN, EVAL)
    db.expire_all()
    [row] = db.scalars(select(Evaluation).where(Evaluation.run_id == run.id)).all()
    assert row.kind == "automatic" and row.status == "succeeded" and row.team_id == run.team_id
    assert row.metrics["finetuned"]["eval_loss"] < row.metrics["base"]["eval_loss"]
    assert len(row.samples) == 3 and set(row.samples[0]) == {"prompt", "reference", "base", "finetuned",
                                                                     "overlaps_training"}
    assert row.details["split"] == "eval" and row.details["samples"] == 3 and row.details["max_new_tokens"] == 24
    assert row.details["seconds"] >= 0 and row.details["worker"] and row.finished_at is not None
    events = _events(db, run.id)
    assert row.details["overlap"]["overlapping"] == 0 and row.details["general_ability"]["questions"] >= 40
    assert "Evaluating: base model on 3 eval prompts and the general-ability questions…" in events and "Evaluating: fine-tuned model…" in events
    assert events[-1].startswith("Evaluation done: ROUGE-L ") and "eval loss" in events[-1]
    assert "general questions right" in events[-1]
    assert db.get(Run, run.id).status == RunStatus.succeeded


def test_failed_evaluation_leaves_the_run_succeeded(db, run, trained, monkeypatch):
    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("generation exploded")

    monkeypatch.setattr(evaluation, "evaluate_pair", boom)
    assert not evaluation.evaluate_after_run(run.id, trained[1], TRAIN, EVAL)
    db.expire_all()
    row = db.scalar(select(Evaluation).where(Evaluation.run_id == run.id))
    assert row.status == "failed" and "RuntimeError: generation exploded" in row.error_message
    assert row.finished_at is not None
    assert db.get(Run, run.id).status == RunStatus.succeeded
    assert _events(db, run.id)[-1].startswith("Evaluation failed: RuntimeError: generation exploded")


def test_no_evaluation_for_a_run_that_did_not_succeed(db, run, trained):
    run.status = RunStatus.cancelled
    db.commit()
    assert not evaluation.evaluate_after_run(run.id, trained[1], TRAIN, EVAL)
    assert db.scalar(select(Evaluation).where(Evaluation.run_id == run.id)) is None


def test_rerun_evaluates_the_stored_adapter(db, run, trained, settings, monkeypatch, sent):
    monkeypatch.setattr(settings, "eval_samples", 2)
    monkeypatch.setattr(settings, "eval_max_new_tokens", 8)
    monkeypatch.setattr("worker.tasks.evaluation.get_settings", lambda: settings)
    store = ArtifactStore(settings.artifact_dir)
    key = f"teams/{run.team_id}/jobs/{run.id}/run/adapter"
    shutil.copytree(trained[1].adapter_dir, store.path(key))
    db.add(Artifact(team_id=run.team_id, run_id=run.id, kind="adapter", path=key))
    row = service.rerun(db, run=run, alive={})
    db.commit()
    assert sent == [("studio.evaluate", [row.id], run.queue)]
    assert evaluation.evaluate_again(row.id)
    assert not evaluation.evaluate_again(row.id)  # a duplicated message does nothing
    db.expire_all()
    row = db.get(Evaluation, row.id)
    assert row.status == "succeeded" and row.details["source"] == "rerun" and len(row.samples) == 2
    assert row.metrics["finetuned"]["eval_loss"] < row.metrics["base"]["eval_loss"]


def test_rerun_without_saved_outputs_fails_clearly(db, run, sent):
    row = service.rerun(db, run=run, alive={})
    db.commit()
    assert not evaluation.evaluate_again(row.id)
    db.expire_all()
    assert "no saved adapter or model" in db.get(Evaluation, row.id).error_message


def test_interrupted_evaluations_are_marked_failed(db, run):
    db.add(Worker(name="alive@host", last_seen_at=utcnow(), queues="train", info={"pid": 7}))
    rows = {name: Evaluation(team_id=run.team_id, run_id=run.id, status="running", details=details)
            for name, details in {"gone": {"worker": "gone@host", "worker_pid": 1},
                                  "alive": {"worker": "alive@host", "worker_pid": 7},
                                  "restarted": {"worker": "alive@host", "worker_pid": 6},
                                  "mine": {"worker": "me@host", "worker_pid": 9}}.items()}
    db.add_all(rows.values())
    db.commit()
    assert evaluation.fail_interrupted("me@host") == 3
    db.expire_all()
    assert {name: db.get(Evaluation, r.id).status for name, r in rows.items()} == {
        "gone": "failed", "alive": "running", "restarted": "failed", "mine": "failed"}
    assert db.get(Evaluation, rows["gone"].id).error_message == service.INTERRUPTED
