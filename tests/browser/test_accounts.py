"""A person signs up, invites a teammate, creates an API key, logs out and back in."""

from __future__ import annotations

from tests.browser.conftest import shoot


def test_sign_up_invite_key_log_out_and_in(live_server, page):
    page.goto(live_server + "/")
    assert page.url.endswith("/login?next=/")
    page.click("text=Create an account")
    page.fill("#f-name", "Ada Lovelace")
    page.fill("#f-email", "ada@example.com")
    page.fill("#f-password", "correct horse battery")
    page.fill("#f-team_name", "Support AI")
    shoot(page, "accounts-1-signup")
    page.click("button:has-text('Create account')")
    page.wait_for_url(live_server + "/")
    assert page.locator("h1").inner_text() == "Welcome, Ada Lovelace"
    assert page.locator(".team-name").inner_text() == "Support AI"
    shoot(page, "accounts-2-home")

    page.click("nav >> text=Team")
    page.fill("#f-email", "bob@example.com")
    page.click("button:has-text('Create invitation link')")
    link = page.locator("input[aria-label='Invitation link']").input_value()
    assert "/invitations/" in link
    shoot(page, "accounts-3-team")

    page.click("nav >> text=API keys")
    assert page.locator("nav a[aria-current=page]").inner_text() == "API keys"
    page.fill("#f-name", "nightly pipeline")
    page.click("button:has-text('Create key')")
    key = page.locator("input[aria-label='New API key']").input_value()
    assert key.startswith("sk-studio-")
    shoot(page, "accounts-4-api-keys")

    page.click("text=Log out")
    page.wait_for_url("**/login")
    page.fill("#f-email", "ada@example.com")
    page.fill("#f-password", "wrong password!!")
    page.click("button:has-text('Log in')")
    assert "do not match" in page.locator(".alert-error").inner_text()
    page.fill("#f-password", "correct horse battery")
    page.click("button:has-text('Log in')")
    page.wait_for_url(live_server + "/")

    # the invited teammate joins with the link
    guest = page.context.browser.new_context().new_page()
    guest.goto(link)
    assert "Join Support AI" in guest.locator("h1").inner_text()
    guest.fill("#f-password", "another good password")
    guest.click("button:has-text('Accept invitation')")
    guest.wait_for_url(live_server + "/")
    assert guest.locator(".account .muted").inner_text() == "bob@example.com · member"
    shoot(guest, "accounts-5-invited-member")
    guest.context.close()
