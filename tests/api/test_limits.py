"""Per-key rate limits and the JSON body limit, in the one error shape."""

from __future__ import annotations

from sqlalchemy import update

from app.api import limits
from app.models import ApiKey
from tests.factories import make_account, make_api_key


def test_a_key_over_its_rate_limit_gets_429_and_other_keys_do_not(client, db):
    account = make_account(db)
    key, other = make_api_key(db, account), make_api_key(db, account)
    db.execute(update(ApiKey).values(rate_limit_per_min=3))
    db.commit()
    limits.reset()
    headers = {"Authorization": f"Bearer {key}"}
    assert [client.get("/v1/models", headers=headers).status_code for _ in range(3)] == [200] * 3
    r = client.get("/api/v1/runs", headers=headers)  # both APIs count against the same key
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["type"] == "rate_limited" and 1 <= error["details"]["retry_after_s"] <= 60
    assert r.headers["Retry-After"] == str(error["details"]["retry_after_s"])
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_the_window_slides():
    key = ApiKey(key_hash="k" * 64, rate_limit_per_min=2)
    limits.reset()
    limits.check_rate(key, now=0.0)
    limits.check_rate(key, now=30.0)
    try:
        limits.check_rate(key, now=59.0)
        raise AssertionError("the third request within a minute passed")
    except limits.RateLimited:
        pass
    limits.check_rate(key, now=60.5)  # the first one left the window


def test_json_bodies_over_the_limit_get_413(client, db, settings):
    headers = {"Authorization": f"Bearer {make_api_key(db, make_account(db))}", "Content-Type": "application/json"}
    big = b'{"model": "' + b"x" * (settings.max_json_bytes + 10) + b'"}'
    r = client.post("/v1/chat/completions", headers=headers, content=big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "too_large"

    def chunks():  # no Content-Length: counted while read
        yield big[:1000]
        yield big[1000:]

    r = client.post("/v1/chat/completions", headers=headers, content=chunks())
    assert r.status_code == 413 and r.json()["error"]["type"] == "too_large"
