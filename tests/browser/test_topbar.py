"""The top bar stays one row on a laptop screen: every link of the main navigation side by side,
the team and the log-out beside them (it wrapped into two rows at 1366 px once the Models,
Playground and Usage pages joined it)."""

from __future__ import annotations

import pytest

from tests.app.studio_pages import seed
from tests.browser.conftest import log_in_page, shoot


def _rows(page) -> set[int]:  # noqa: ANN001
    """The distinct top edges (px) of the top bar's links, team name and log-out button."""
    return set(page.evaluate("""() => [...document.querySelectorAll(
        '.topbar nav a, .topbar .team-name, .topbar .link-button')].map(e => Math.round(e.getBoundingClientRect().top / 8))"""))


@pytest.mark.parametrize("width", [1280, 1366, 1920])
def test_the_top_bar_is_one_row_on_a_laptop(db, settings, tmp_path, live_server, page, width):
    owner, _ = seed(db, settings, tmp_path)
    page.set_viewport_size({"width": width, "height": 800})
    log_in_page(page, live_server, owner)
    page.goto(live_server + "/runs")
    assert page.locator(".topbar nav a").count() >= 12
    shoot(page, f"topbar-{width}")
    assert len(_rows(page)) == 1, f"the top bar wraps at {width} px"
    # who is logged in stays reachable: on the page at a wide screen, in the team name's title otherwise
    assert owner.email in (page.locator(".topbar .account").inner_text()
                           + (page.locator(".topbar .team-name").get_attribute("title") or ""))
