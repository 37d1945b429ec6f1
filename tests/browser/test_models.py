"""The Models page in Chromium: a team sets its quality gate, releases support-bot v1 to prod,
asks for v2 (pending while the golden-set evaluations run), sees it refused with both scores
when the worker reports a worse eval loss, overrides as owner with a reason, rolls back. Every
step is a screenshot in test-artifacts/screenshots/models-*.png.

    .venv/bin/python -m pytest tests/browser/test_models.py -q
"""

from __future__ import annotations

import pytest

from app.models import Artifact, Release, RunStatus
from app.storage import ArtifactStore
from tests.browser.conftest import shoot
from tests.browser.test_datasets import log_in
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir
from worker.tasks import evaluation as worker_eval

pytestmark = pytest.mark.slow


def _tuned(db, team_id: int, dataset, model, rank: int):  # noqa: ANN001, ANN202
    run = make_run(db, team_id, dataset, model, status=RunStatus.succeeded, suffix="support-bot", name="Support bot",
                   config={"base_model": model.path, "lora_r": rank, "target_modules": "attention_mlp",
                           "learning_rate": 2e-4, "epochs": 2, "precision": "bf16"})
    db.add(Artifact(team_id=team_id, run_id=run.id, kind="adapter", path=f"teams/{team_id}/jobs/{run.id}/run/adapter"))
    db.commit()
    return run


def _finish(evaluation_id: int, loss: float) -> None:
    assert worker_eval._start(evaluation_id, "test-worker") is not None
    metrics = {"eval_loss": loss, "rougeL": 0.4, "exact_match": 0.0}
    worker_eval._succeed(evaluation_id, {"metrics": {"base": metrics, "finetuned": metrics}, "samples": [],
                                         "details": {"split": "eval"}}, 1.0)


def test_release_behind_the_gate(db, settings, tmp_path, live_server, page, sent):
    owner = make_account(db, email="camille@example.com", team_name="Nuage Support")
    store = ArtifactStore(settings.artifact_dir)
    model = register_model(db, write_model_dir(tmp_path / "tiny"), name="SmolLM2 135M")
    train = make_dataset(db, store, owner.team_id, name="support-tickets")
    golden = make_dataset(db, store, owner.team_id, n_train=6, n_eval=2, name="golden-questions")
    _tuned(db, owner.team_id, train, model, 16)
    _tuned(db, owner.team_id, train, model, 64)
    log_in(page, live_server, owner.email)

    page.click("nav >> text=Models")
    page.wait_for_url(live_server + "/models")
    assert page.locator("article.version").count() == 2
    assert "support-bot v2" in page.inner_text("#tuned-title + p + .model-group")
    assert "--max-lora-rank 64" in page.inner_text("article[aria-label='support-bot v2']")  # the serving check
    page.select_option("#f-dataset", str(golden.id))
    page.select_option("#f-metric", "eval_loss")
    page.fill("#f-margin", "0.05")
    page.click("button:has-text('Save the gate')")
    page.wait_for_url("**/models#gate-title")
    assert "golden-questions" in page.inner_text("section[aria-labelledby='gate-title']")

    for version in ("1", "2"):
        page.select_option("#f-name", "support-bot")
        page.fill("#f-version", version)
        page.fill("#f-alias", "prod")
        page.click("button:has-text('Release')")
        page.wait_for_url("**/models#releases-title")
    assert "is being evaluated on the golden set" in page.inner_text(".toast, .alert-success, main")
    pending = page.inner_text("section[aria-labelledby='pending-title']")
    assert "support-bot v2 → support-bot:prod" in pending and "still points at support-bot v1" in pending
    shoot(page, "models-pending")

    release = db.query(Release).filter(Release.status == "pending").one()
    _finish(release.holder_evaluation_id, 1.20)
    _finish(release.candidate_evaluation_id, 1.90)
    page.reload()
    log = page.inner_text("section[aria-labelledby='releases-title'] tbody tr:first-child")
    assert "Refused by the gate" in log and "support-bot v2: 1.9" in log and "support-bot v1: 1.2" in log
    assert page.locator("section[aria-labelledby='pending-title']").count() == 0
    shoot(page, "models-refused")

    page.fill("#f-version", "2")
    page.fill("#f-alias", "prod")
    page.fill("#f-override", "Legal asked for the new greeting today; judged by hand.")
    page.click("button:has-text('Release')")
    page.wait_for_url("**/models#releases-title")
    log = page.inner_text("section[aria-labelledby='releases-title'] tbody tr:first-child")
    assert "Moved" in log and "Override: Legal asked for the new greeting today" in log
    assert "support-bot:prod" in page.inner_text("article[aria-label='support-bot v2']")

    page.click("button:has-text('Roll back to support-bot v1')")
    page.wait_for_url("**/models#aliases-title")
    assert "support-bot v1" in page.inner_text("section[aria-labelledby='aliases-title'] tbody")
    shoot(page, "models-rolled-back")
    page.set_viewport_size({"width": 390, "height": 860})
    shoot(page, "models-phone")
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right >
        document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.' + e.className)""")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0, wide
