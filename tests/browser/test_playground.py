"""The playground in Chromium: a person chats with two models side by side (the tiny built-in
model and a second tiny model), sees both answers stream in, asks a second question (each model
answering in its own conversation), stops a long answer, saves the transcript, opens it by its
link and turns the chosen answers into a new dataset, which the worker checks like any upload.
Screenshots at 1366 px and 390 px go to test-artifacts/screenshots/playground-*.png.

Real processes: the worker (dataset check) and the inference process (answers), as in
tests/browser/test_runs.py, whose fixtures this module uses.

    .venv/bin/python -m pytest tests/browser/test_playground.py -q
"""

from __future__ import annotations

import json
import re

import pytest

from app.models_registry import service as models_service
from app.models_registry.service import BUILTIN_SLUG
from tests.browser.conftest import shoot
from tests.browser.test_runs import inference, tiny_model_dir, until, worker  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
TWIN = "tiny-twin"


@pytest.fixture
def twin(db, worker, tiny_model_dir, tmp_path):  # noqa: F811 - the fixture imported above
    """A second small model, with other weights, that every team can use."""
    from tests.worker.training.factories import build_tiny_model
    from worker.training.modeling import load_tokenizer

    path = build_tiny_model(tmp_path / "twin", load_tokenizer(str(tiny_model_dir)), seed=7)
    models_service.register(db, model_dir=path, display_name="Tiny twin", source="local", slug=TWIN)
    db.commit()
    return TWIN


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sideways(page) -> int:  # noqa: ANN001
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def ask(page, text: str) -> tuple[dict, list[dict]]:  # noqa: ANN001
    """Sends a message; (the JSON the page sent, the NDJSON lines it received) once all answers ended."""
    page.fill("#pg-prompt", text)
    with page.expect_response("**/playground/stream") as got:
        page.click("[data-pg-send]")
    response = got.value
    until(page, lambda: page.locator("[data-pg-status]").inner_text() == "All answers are complete.", 120,
          "both answers to end")
    return json.loads(response.request.post_data), ndjson(response.text())


def test_two_models_side_by_side_then_saved_and_turned_into_a_dataset(live_server, page, inference, twin):  # noqa: F811
    base = live_server
    page.goto(base + "/signup")
    page.fill("#f-name", "Camille")
    page.fill("#f-email", "camille@example.com")
    page.fill("#f-password", PASSWORD)
    page.fill("#f-team_name", "Nuage Support")
    page.click("button:has-text('Create account')")
    page.wait_for_url(base + "/")

    page.click("nav[aria-label=Main] a:has-text('Playground')")
    page.wait_for_url(base + "/playground")
    page.select_option("#pg-model-0", BUILTIN_SLUG)
    page.select_option("#pg-model-1", TWIN)
    page.fill("#pg-system", "Tu réponds aux clients de Nuage, en français.")
    page.fill("#pg-temperature", "0")
    page.fill("#pg-max-tokens", "24")
    assert page.locator("[data-pg-save]").is_disabled()  # nothing to save yet
    shoot(page, "playground-1-empty")

    sent, lines = ask(page, "Bonjour, je n'arrive plus à me connecter.")
    assert sent["models"] == [BUILTIN_SLUG, TWIN] and sent["turns"] == [] and sent["max_tokens"] == 24
    first = {}
    for who in ("0", "1"):
        deltas = [x["delta"] for x in lines if x["who"] == who and "delta" in x]
        assert len(deltas) > 3, f"column {who}: the answer came in {len(deltas)} piece(s), not token by token"
        assert any(x.get("done") for x in lines if x["who"] == who)
        first[who] = "".join(deltas)
        shown = page.locator(f"[data-pg-answer='{who}']").first.inner_text()
        assert shown.strip() == first[who].strip() and shown.strip()  # every piece reached its column
    assert first["0"] != first["1"]  # two different models answered
    assert page.locator("#pg-model-0").is_disabled()  # the conversation's models are fixed now
    shoot(page, "playground-2-first-turn")

    sent, lines = ask(page, "Et si j'ai oublié mon mot de passe ?")
    assert [t["answers"] for t in sent["turns"]] == [[first["0"], first["1"]]]  # each model's own answer
    assert page.locator(".pg-turn").count() == 2
    second = [page.locator(f".pg-turn >> nth=1 >> [data-pg-answer='{i}']").inner_text() for i in (0, 1)]
    assert all(a.strip() for a in second)
    shoot(page, "playground-3-second-turn")

    page.fill("#pg-max-tokens", "1500")  # long enough to stop it halfway
    page.fill("#pg-prompt", "Raconte-moi une très longue histoire.")
    page.click("[data-pg-send]")
    third = page.locator(".pg-turn >> nth=2 >> [data-pg-answer='0']")
    until(page, lambda: third.inner_text().strip(), 60, "the third answer to begin")
    page.click("[data-pg-stop]")
    until(page, lambda: page.locator("[data-pg-status]").inner_text().startswith("Stopped"), 30, "the stop")
    assert not page.locator("[data-pg-stop]").is_visible() and not page.locator("[data-pg-send]").is_disabled()

    page.fill("#pg-title", "Connexion impossible")
    page.click("[data-pg-save]")
    page.wait_for_url(re.compile(r".*/playground/transcripts/\d+$"))
    link = page.url
    main = page.locator("main").inner_text()
    assert "Connexion impossible" in main and second[1].strip()[:20] in main
    assert page.locator(".pg-turn").count() == 3
    assert page.locator("[data-pg-link]").get_attribute("href") == link.removeprefix(base)
    shoot(page, "playground-4-transcript")
    page.goto(base + "/playground/transcripts")
    assert "Connexion impossible" in page.locator("main").inner_text()
    page.click("a:has-text('Connexion impossible')")
    page.wait_for_url(link)

    page.check("input[name=turn_0][value='2']")  # the twin's first answer
    page.check("input[name=turn_1][value='1']")
    page.check("input[name=turn_2][value=none]")  # the stopped one is left out
    page.fill("#t-data-name", "Chats connexion")
    page.click("button:has-text('Create the dataset')")
    page.wait_for_url(re.compile(r".*/datasets/\d+$"))
    page.locator("#report-title").wait_for(timeout=120_000)
    report = page.locator(".report").inner_text()
    assert "Examples read\n2" in report.replace("\t", "\n") or re.search(r"Examples read\s+2\b", report), report
    assert "Chats connexion" in page.locator("main").inner_text()
    shoot(page, "playground-5-dataset")

    page.set_viewport_size({"width": 390, "height": 860})
    page.goto(link)
    assert sideways(page) <= 0
    shoot(page, "playground-6-transcript-phone")
    page.goto(base + f"/playground?transcript={link.rsplit('/', 1)[1]}")
    assert page.locator(".pg-turn").count() == 3 and page.locator("#pg-model-0").is_disabled()
    assert sideways(page) <= 0
    shoot(page, "playground-7-continued-phone")
