"""A person uploads preference pairs in OpenAI's format, sees each pair's two answers side by side,
fixes a bad pair from its line-level error, and is offered preference training in the wizard."""

from __future__ import annotations

import json

from app.models import BaseModel
from app.models_registry.service import BUILTIN_SLUG
from tests.browser.conftest import shoot
from tests.browser.test_datasets import log_in, person, tokenizer_dir, upload, wait_for_result, worker_thread  # noqa: F401


def pair(i: int) -> dict:
    return {"input": {"messages": [{"role": "user", "content": f"Bonjour, question {i} sur ma facture ?"}]},
            "preferred_output": [{"role": "assistant", "content": f"Bonjour et merci ! Voici la réponse {i}. — L'équipe Nuage"}],
            "non_preferred_output": [{"role": "assistant", "content": f"Réponse {i}."}]}


def test_pairs_are_shown_side_by_side_and_offered_for_preference_training(live_server, page, person,  # noqa: F811
                                                                          worker_thread, db):  # noqa: F811
    # the built-in model's shape, for the wizard's plan (the fixture registers its tokenizer only)
    db.query(BaseModel).filter_by(slug=BUILTIN_SLUG).update(
        {"parameter_count": 134_515_008, "hidden_size": 576, "num_layers": 30, "vocab_size": 49152})
    db.commit()
    log_in(page, live_server, person.email)
    lines = [json.dumps(pair(i), ensure_ascii=False) for i in range(40)]
    bad = lines[:3] + [json.dumps({**pair(3), "non_preferred_output": pair(3)["preferred_output"]})] + lines[4:]
    upload(page, live_server, {"name": "pairs.jsonl", "mimeType": "application/json",
                               "buffer": "\n".join(bad).encode()}, name="Pairs", goal="brand_voice")
    wait_for_result(page)
    assert page.locator(".report .badge").inner_text() == "Invalid"
    first_error = page.locator(".errors-table tbody tr").first.inner_text()
    assert "Line 4:" in first_error and "the same answer" in first_error
    shoot(page, "preference-1-invalid")

    upload(page, live_server, {"name": "pairs.jsonl", "mimeType": "application/json",
                               "buffer": "\n".join(lines).encode()}, name="Pairs", goal="brand_voice")
    wait_for_result(page)
    report = page.locator(".report").inner_text()
    assert page.locator(".report .badge").inner_text() == "Valid"
    assert "Preference pairs (OpenAI preference format): 40 pairs" in report
    assert "preference pairs" in report  # the size advice counts pairs
    assert page.locator(".pair-chosen").count() >= 1 and page.locator(".pair-rejected").count() >= 1
    chosen, rejected = page.locator(".pair-chosen").first, page.locator(".pair-rejected").first
    assert "better answer" in chosen.inner_text().lower() and "worse answer" in rejected.inner_text().lower()
    left, right = chosen.bounding_box(), rejected.bounding_box()
    assert abs(left["y"] - right["y"]) < 2 and right["x"] > left["x"] + left["width"] - 1  # side by side
    page.locator(".pair").first.scroll_into_view_if_needed()
    shoot(page, "preference-2-pairs")

    page.goto(live_server + "/runs/new")
    page.locator("#f-objective-dpo").wait_for()
    assert page.locator("#f-objective-dpo").is_checked()
    text = page.locator("main").inner_text()
    assert "Teach it which of two answers is better" in text
    assert "DPO learning rate" in page.locator("details.advanced").text_content()  # the reasons, under Advanced
    page.check("#f-objective-orpo")
    page.locator(".reasons", has_text="ORPO learning rate").wait_for()
    shoot(page, "preference-3-wizard")
