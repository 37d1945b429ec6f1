"""Every unsafe request from a browser must carry the CSRF token; API keys need none."""

from __future__ import annotations

import pytest

from tests.app.routes_walk import UNSAFE, fill, params, routes
from tests.factories import csrf_of, log_in, make_account, make_api_key

# Values that make a path well-formed; CSRF is refused before any lookup happens.
PLACEHOLDERS = {"token": "some-invitation-token"}


def _path(path: str) -> str:
    return fill(path, {p: PLACEHOLDERS.get(p, 1) for p in params(path)})


def test_every_unsafe_route_refuses_a_post_without_token(client, app, db):
    acc = make_account(db)
    log_in(client, acc)
    unsafe = [(m, p) for m, p in routes(app) if m in UNSAFE]
    assert len(unsafe) >= 10  # the walk really walks
    for method, path in unsafe:
        for kwargs in ({"data": {"x": "1"}}, {"json": {"x": 1}}, {"data": {"csrf_token": "forged"}}):
            r = client.request(method, _path(path), follow_redirects=False, **kwargs)
            assert r.status_code == 403, f"{method} {path} {kwargs}: {r.status_code}"
            assert "did not come from the studio" in r.text


@pytest.mark.parametrize("path", ["/login", "/signup"])
def test_anonymous_forms_need_the_token_too(client, path):
    r = client.post(path, data={"email": "a@example.com", "password": "whatever-long"})
    assert r.status_code == 403
    r = client.post(path, data={"email": "a@example.com", "password": "whatever-long",
                                "csrf_token": csrf_of(client)}, follow_redirects=False)
    assert r.status_code != 403


def test_htmx_header_is_accepted_and_error_is_a_toast(client, db):
    acc = make_account(db)
    token = log_in(client, acc)
    r = client.post("/team/invitations", data={"email": "bad"},
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 422 and "valid e-mail" in r.text
    r = client.post("/team/invitations", data={"email": "x@example.com"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.headers["HX-Retarget"] == "#toasts" and "toast-error" in r.text


def test_a_session_token_from_another_session_is_refused(client, make_client, db):
    a, b = make_account(db), make_account(db)
    token_a = log_in(client, a)
    other = make_client()
    log_in(other, b)
    r = other.post("/team/invitations", data={"email": "x@example.com", "csrf_token": token_a})
    assert r.status_code == 403


def test_bearer_requests_need_no_csrf(client, db):
    acc = make_account(db)
    key = make_api_key(db, acc, scopes=("read", "write", "admin"))
    r = client.post("/api/v1/api-keys", json={"name": "k"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201
