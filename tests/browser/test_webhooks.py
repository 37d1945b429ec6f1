"""An owner adds a webhook on the team's page, copies its secret, sends a test to a real local
receiver that checks the signature, and reads the delivery log; then a failing receiver shows
in the log. Rotating the secret and deleting the webhook each ask first (a "no" changes
nothing)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in_page, shoot
from tests.factories import make_account
from tests.notifications.receivers import start_receiver


@pytest.fixture
def receiver():
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


def test_add_a_webhook_send_a_test_and_read_the_log(live_server, page, db, receiver):
    log_in_page(page, live_server, make_account(db, email="owner@example.com", team_name="Support AI"))

    page.click("nav >> text=Team")
    page.click("text=Webhooks and notifications")
    assert page.locator("h1").inner_text() == "Webhooks and notifications"
    assert "E-mail is off" in page.locator("#email-title + p").inner_text()
    page.fill("#f-url", receiver.url)
    page.fill("#f-description", "chat channel")
    page.check("input[value='sweep.finished']")
    page.click("button:has-text('Add webhook')")
    secret = page.locator("input[aria-label='Signing secret of the new webhook']").input_value()
    assert secret.startswith("whsec_")
    receiver.secret = secret
    shoot(page, "webhooks-1-added")

    page.click("button:has-text('Send test')")
    assert "Test delivered: the receiver answered 200." in page.locator(".toast").inner_text()
    assert receiver.calls[0].verified and receiver.calls[0].json["type"] == "webhook.test"
    row = page.locator("#log-title + table tbody tr").first
    assert "Delivered" in row.inner_text() and "HTTP 200" in row.inner_text()

    receiver.answers = [500]
    page.click("button:has-text('Send test')")
    assert "The test was not delivered: HTTP 500" in page.locator(".toast").inner_text()
    row = page.locator("#log-title + table tbody tr").first
    assert "Gave up" in row.inner_text()
    row.locator("summary").click()
    assert "Try 1" in row.inner_text() and "receiver says no" in row.inner_text()
    shoot(page, "webhooks-2-log")

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("button:has-text('Rotate secret')")
    assert asked and "old secret stops signing at once" in asked[0]
    assert page.locator("input[aria-label='New signing secret of the webhook']").count() == 0  # "no": unchanged
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Rotate secret')")
    rotated = page.locator("input[aria-label='New signing secret of the webhook']").input_value()
    assert rotated.startswith("whsec_") and rotated != secret
    receiver.secret, receiver.answers = rotated, [200]
    page.click("button:has-text('Send test')")
    assert "Test delivered" in page.locator(".toast").inner_text() and receiver.calls[-1].verified

    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("button:has-text('Delete')")
    assert asked[-1].startswith(f"Delete the webhook {receiver.url}?")
    assert page.locator("#hooks-title + table").count() == 1  # "no": still there
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete')")
    assert "Webhook deleted" in page.locator(".toast").inner_text()
    assert "No webhooks yet" in page.locator("#hooks-title + p").inner_text()
