"""Every page at desktop (1366 px) and phone (390 px) width, in Chromium: no sideways scrolling,
no serious or critical axe-core finding (axe is vendored in tests/browser/vendor, MPL-2.0), and
the first visit's path on the home page (upload examples -> check -> train -> try and compare).
One walk per width over one seeded team (tests/app/studio_pages.py); a screenshot of each page
goes to test-artifacts/screenshots/walk-<width>-<page>.png.

    .venv/bin/python -m pytest tests/browser/test_pages_walk.py -q
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.studio_pages import page_urls, seed
from tests.browser.conftest import log_in_page, shoot

pytestmark = pytest.mark.slow
AXE = Path(__file__).resolve().parent / "vendor" / "axe-4.14.1.min.js"
WIDTHS = {"desktop": 1366, "phone": 390}


def _axe(page) -> list[str]:  # noqa: ANN001
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
          .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' @ ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    return list(result)


def _sideways(page) -> int:  # noqa: ANN001
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_at_this_width(width, app, db, settings, tmp_path, live_server, browser):
    owner, ids = seed(db, settings, tmp_path)
    # bypass_csp: the page allows only its own scripts; axe is injected by the test
    context = browser.new_context(viewport={"width": WIDTHS[width], "height": 860}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    problems: list[str] = []
    try:
        for url, name in (("/login", "login"), ("/signup", "signup")):
            page.goto(live_server + url)
            problems += [f"{url}: {v}" for v in _axe(page)]
            if _sideways(page) > 0:
                problems.append(f"{url}: scrolls sideways by {_sideways(page)} px")
            shoot(page, f"walk-{width}-{name}")
        log_in_page(page, live_server, owner)
        # the first visit's path, in order, with the first step as the main button
        steps = page.locator("ol.first-steps > li").all_inner_texts()
        assert [s.split(".")[0] for s in steps] == ["Upload examples", "Check them", "Train", "Try and compare"], steps
        assert page.locator("a.card-link[href='/datasets']").count() == 1  # the Datasets card is a link
        # the focus ring is dark enough on white (WCAG 1.4.11: 3:1 for the indicator)
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        ring = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
        assert ring in ("rgb(31, 68, 192)", "rgb(255, 210, 77)"), ring
        for url in page_urls(app, ids):
            page.goto(live_server + url)
            page.wait_for_load_state("networkidle")
            problems += [f"{url}: {v}" for v in _axe(page)]
            over = _sideways(page)
            if over > 0:
                problems.append(f"{url}: scrolls sideways by {over} px")
            shoot(page, f"walk-{width}-" + (re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-") or "home"))
        # a one-epoch run's evaluation curve: one point that carries its value, steps not repeated
        page.goto(f"{live_server}/runs/{ids['done_id']}")
        figure = page.locator("figure.chart", has_text="Evaluation loss")
        figure.locator("svg").wait_for()
        assert figure.locator("text.point-value").all_text_contents() == ["1.234 at step 50"]
        ticks = figure.locator("text.tick").all_text_contents()
        assert len(ticks) == len(set(ticks)), ticks
        # the A/B form: the dataset part is off while "My own prompts" is chosen
        page.goto(live_server + "/ab/new")
        if page.locator("input[name=source][value=custom]").count():
            page.check("input[name=source][value=custom]")
            assert page.locator("#f-dataset_id").is_disabled() and page.locator("#f-prompts").is_enabled()
    finally:
        context.close()
    assert not problems, "\n".join(problems)
    assert not errors, errors
