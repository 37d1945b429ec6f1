"""The guided new fine-tune on a dataset of preference pairs: offered in plain words, reasons, guidance."""

from __future__ import annotations

from app.models import Run
from tests.runs.factories import make_pair_dataset
from tests.runs.test_pages import browser  # noqa: F401 (the fixture)


def test_wizard_offers_preference_training_in_plain_words(browser, db, store, team, model):  # noqa: F811
    pairs = make_pair_dataset(db, store, team[0].team_id)
    r = browser.get(f"/runs/new?dataset_id={pairs.id}&goal=brand_voice")
    assert r.status_code == 200
    text = r.text
    assert "Teach it which of two answers is better" in text and 'value="dpo" checked' in text
    assert "DPO learning rate" in text and "Beta 0.1" in text
    assert "You have 24 preference pairs. For writing in your brand&#39;s voice we advise at least 300" in text
    orpo = browser.get(f"/runs/new?dataset_id={pairs.id}&objective=orpo").text
    assert 'value="orpo" checked' in orpo and "ORPO learning rate" in orpo


def test_wizard_posts_the_chosen_preference_objective(browser, db, store, team, model, sent):  # noqa: F811
    pairs = make_pair_dataset(db, store, team[0].team_id)
    r = browser.post("/runs", data={"csrf_token": browser.csrf, "dataset_id": pairs.id, "base_model_id": model.id,
                                    "preset": "auto", "objective": "orpo", "hp_use_dora": "true"},
                     follow_redirects=False)
    assert r.status_code == 303, r.text
    run = db.query(Run).one()
    assert run.config["objective"] == "orpo" and run.config["use_dora"] is True


def test_wizard_on_example_answers_points_to_pairs(browser, dataset, model):  # noqa: F811
    text = browser.get("/runs/new").text
    assert "To teach it which of two answers is better instead, upload a dataset of pairs" in text
    assert 'name="objective"' not in text
