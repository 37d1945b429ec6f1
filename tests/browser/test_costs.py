"""An owner sets the team's price for its GPUs; usage, a finished run's cost and its return on
investment follow it; the help page shows the estimator's table of the usual cases."""

from __future__ import annotations

import re

from tests.app.studio_pages import seed
from tests.browser.conftest import log_in_page, shoot


def test_prices_usage_run_cost_and_help(app, db, settings, tmp_path, live_server, page):
    owner, ids = seed(db, settings, tmp_path)  # a finished run: 2 x A100 80 GB for 5 minutes
    log_in_page(page, live_server, owner)

    page.goto(live_server + "/team/costs")
    assert page.locator("#price-a100_80").input_value() == "1.6"
    page.fill("#price-a100_80", "3")
    page.fill("#f-api-price", "0.01")
    shoot(page, "costs-1-prices")
    page.click("button:has-text('Save prices')")
    page.wait_for_url(live_server + "/team/costs")
    assert page.locator(".alert-success, [role=status]").first.inner_text().strip().startswith("Prices saved")
    assert page.locator("#price-a100_80").input_value() == "3"

    page.click("nav >> text=Usage")
    page.wait_for_url(live_server + "/usage")
    # 5 minutes x 2 GPUs = 1/6 device-hour, at $3 an hour: $0.50
    assert page.locator(".usage-runs").inner_text() == "1"
    assert page.locator(".usage-hours").inner_text() == "0.2"
    assert page.locator(".usage-cost").inner_text() == "$0.50"
    assert page.locator("table.usage-person td").first.inner_text() == "Test User"
    shoot(page, "costs-2-usage")

    page.goto(live_server + f"/runs/{ids['done_id']}")
    assert page.locator(".cost-actual").inner_text().startswith("$0.50")
    roi = page.locator("section.roi")
    assert "Pays back its training after about" in roi.locator(".verdict").inner_text()
    assert re.search(r"\$0\.0\d+", roi.locator(".roi-serving").inner_text())
    roi.scroll_into_view_if_needed()
    shoot(page, "costs-3-run")

    page.goto(live_server + "/help/costs")
    assert page.locator("table.cases tbody tr").count() == 9
    assert "does not fit on 8" in page.locator("tr.case-70B-full").inner_text()
    assert "about 45 GB" in page.locator("tr.case-70B-qlora").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    shoot(page, "costs-4-help")

    # at phone width the wide table scrolls inside itself, and a keyboard can reach it
    page.set_viewport_size({"width": 390, "height": 860})
    page.goto(live_server + "/help/costs")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    assert page.locator("table.cases").get_attribute("tabindex") == "0"
    shoot(page, "costs-5-help-phone")
    page.goto(live_server + "/usage")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    shoot(page, "costs-6-usage-phone")
