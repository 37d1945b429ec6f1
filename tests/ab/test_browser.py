"""A member opens an A/B test in Chromium, votes on every pair without seeing model names, and
sees the reveal; the new-comparison form is prefilled from a run. Screenshots go to
test-artifacts/screenshots/ab-*.png.

    .venv/bin/python -m pytest tests/ab/test_browser.py -q
"""

from __future__ import annotations

import re

import pytest

from app.ab import service
from tests.ab.conftest import make_comparison
from tests.browser.conftest import browser, db_url, live_server, page, shoot  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
ANSWERS = {
    "a": "Bonjour. Cliquez sur « Mot de passe oublié » sur la page de connexion.",
    "b": "Bonjour et merci de votre message ! Cliquez sur « Mot de passe oublié », puis suivez le lien "
         "reçu par e-mail.\n— L'équipe Nuage ☁️",
}


def _log_in(page, live_server, email: str) -> None:  # noqa: F811
    page.goto(live_server + "/login")
    page.fill("#f-email", email)
    page.fill("#f-password", "correct horse battery")
    page.click("button:has-text('Log in')")
    page.wait_for_url(live_server + "/")


def test_vote_blind_then_see_the_reveal(page, live_server, db, store, team, model, run, dataset, sent):  # noqa: F811
    comparison = make_comparison(db, store, team.team_id, team.owner.user_id, model, run, prompts=3,
                                 name="Support v1 against its base")
    for pair in service.repo.pairs(db, comparison_id=comparison.id):
        pair.prompt = f"Je n'arrive plus à me connecter ({pair.position + 1}), que faire ?"
        pair.answer_a, pair.answer_b = ANSWERS["a"], ANSWERS["b"]
    db.commit()
    _log_in(page, live_server, team.member.email)
    page.click("nav >> text=A/B tests")
    page.click("text=Support v1 against its base")
    page.click("text=Start voting")
    for number in range(1, 4):
        page.wait_for_selector(f"text=Pair {number} of 3")
        body = page.inner_text("main")
        assert "Tiny Base" not in body and "support v1" not in body
        if number == 1:
            shoot(page, "ab-vote")
        # always prefer the signed answer, wherever it is shown
        side = "left" if "L'équipe Nuage" in page.inner_text("#left-title + .ab-answer") else "right"
        page.click(f"button[value='{side}']")
    page.wait_for_selector("text=Pair by pair")
    text = page.inner_text("main")
    assert "B won 100% of 3 decisive votes" in text and "p = 0.25" in text
    assert "Model B · support v1" in text
    shoot(page, "ab-results")
    page.goto(live_server + f"/ab/new?run_id={run.id}")
    assert page.input_value("#f-model_b") == f"run:{run.id}"
    assert page.input_value("#f-model_a") == f"base:{model.id}"
    shoot(page, "ab-new")
    assert re.search(r"support v1: base vs fine-tuned", page.input_value("#f-name"))
