"""The generation task end to end on a tiny real model (the real SmolLM2 tokenizer and chat
template): a base model against a LoRA run, called directly (no Celery worker process)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from app.ab import service  # noqa: E402
from app.models import Artifact, Comparison, ComparisonPair  # noqa: E402
from tests.ab.conftest import succeeded_run  # noqa: E402
from tests.runs.factories import register_model, write_model_dir  # noqa: E402

PROMPTS = ["J'ai une question sur ma facture.", "Mon mot de passe ne marche plus.", "Comment synchroniser ?"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.worker.training.factories import build_tiny_model
    from worker.training.builtin import load_builtin_tokenizer

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), load_builtin_tokenizer())


def _adapter(base_dir, out_dir) -> None:  # noqa: ANN001
    """A random, strong LoRA adapter (saved with its tokenizer, as a run's export is)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)


@pytest.fixture
def tiny_run(db, store, team, dataset, tiny_dir):
    model = register_model(db, tiny_dir, name="Tiny Base")
    run = succeeded_run(db, team.team_id, dataset, model)
    artifact = db.query(Artifact).filter_by(run_id=run.id).one()
    _adapter(tiny_dir, store.path(artifact.path))
    return model, run


def _create(db, store, team, a: dict, b: dict, *, prompts=PROMPTS, system="Réponds brièvement."):  # noqa: ANN001
    new = service.NewComparison(team_id=team.team_id, user_id=team.owner.user_id, model_a=a, model_b=b,
                                prompts=list(prompts), system=system, max_new_tokens=16)
    comparison = service.create(db, new=new, store=store)
    db.commit()
    return comparison.id


def _reload(db, comparison_id: int) -> tuple[Comparison, list[ComparisonPair]]:  # noqa: ANN001
    db.expire_all()
    return db.get(Comparison, comparison_id), service.repo.pairs(db, comparison_id=comparison_id)


def test_base_against_its_fine_tuned_run(db, store, team, tiny_run, sent):
    from worker.tasks.ab import generate_comparison

    model, run = tiny_run
    cid = _create(db, store, team, {"kind": "base", "id": model.id}, {"kind": "run", "id": run.id})
    assert sent == [(service.GENERATE_TASK, [cid], "train")]
    assert generate_comparison(cid) == service.OPEN
    comparison, pairs = _reload(db, cid)
    assert comparison.status == "open" and comparison.error_message is None
    progress = comparison.prompt_source["progress"]
    assert (progress["done"], progress["total"]) == (6, 6) and progress["started_at"] > 0  # the pace is known
    assert [p.prompt for p in pairs] == PROMPTS
    assert all(p.answer_a and p.answer_b for p in pairs)
    assert any(p.answer_a != p.answer_b for p in pairs), "the adapter must change the answers"
    assert sum(p.swapped for p in pairs) in (1, 2)  # balanced sides for 3 pairs
    # deterministic: greedy answers and seeded sides are the same when it runs again
    first = [(p.answer_a, p.answer_b, p.swapped) for p in pairs]
    comparison.status = service.PENDING
    db.commit()
    assert generate_comparison(cid) == service.OPEN
    assert [(p.answer_a, p.answer_b, p.swapped) for p in _reload(db, cid)[1]] == first
    # a message delivered again once it is open changes nothing
    assert generate_comparison(cid) == service.OPEN


def test_a_model_that_cannot_load_fails_with_a_clear_reason(db, store, team, tiny_run, tmp_path, sent):
    from worker.tasks.ab import generate_comparison

    model, run = tiny_run
    broken = register_model(db, write_model_dir(tmp_path / "no-tokenizer"), name="Broken Model")
    cid = _create(db, store, team, {"kind": "run", "id": run.id}, {"kind": "base", "id": broken.id})
    assert generate_comparison(cid) == service.FAILED
    comparison, pairs = _reload(db, cid)
    assert comparison.status == "failed"
    assert comparison.error_message.startswith("Model B (Broken Model) could not answer the prompts (")
    assert "Generate again" in comparison.error_message
    assert all(p.answer_a for p in pairs)  # A's answers were kept; a retry starts over


def test_a_run_without_weights_any_more_fails_before_loading(db, store, team, tiny_run, sent):
    from worker.tasks.ab import generate_comparison

    model, run = tiny_run
    cid = _create(db, store, team, {"kind": "base", "id": model.id}, {"kind": "run", "id": run.id})
    db.query(Artifact).filter_by(run_id=run.id).delete()
    db.commit()
    assert generate_comparison(cid) == service.FAILED
    comparison, _ = _reload(db, cid)
    assert comparison.error_message == (f"support v1 (run #{run.id}): This fine-tuned model has no trained "
                                        "weights to serve.")


def test_a_comparison_that_is_gone_is_a_no_op(db):
    from worker.tasks.ab import generate_comparison

    assert generate_comparison(987654) == "gone"


def test_the_reconciler_resends_a_comparison_whose_message_was_lost(db, store, team, model, run, sent, settings):
    from datetime import timedelta

    from app.models import Worker, utcnow
    from tests.ab.conftest import make_comparison
    from worker.runtime import reconciler

    lost = make_comparison(db, store, team.team_id, team.owner.user_id, model, run, status=service.PENDING)
    lost.created_at = utcnow() - timedelta(seconds=settings.requeue_after_s + 5)
    fresh = make_comparison(db, store, team.team_id, team.owner.user_id, model, run, status=service.PENDING)
    make_comparison(db, store, team.team_id, team.owner.user_id, model, run, status=service.OPEN)
    db.commit()
    sent.clear()
    assert reconciler.reconcile(settings)["comparisons"] == 0  # no training worker: nothing would take it
    db.add(Worker(name="train@host", queues="train", last_seen_at=utcnow()))
    db.commit()
    assert reconciler.reconcile(settings)["comparisons"] == 1
    assert sent == [(service.GENERATE_TASK, [lost.id], service.GENERATE_QUEUE)]
    assert fresh.id != lost.id
