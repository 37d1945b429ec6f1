"""The webhook endpoints of the native API and the team's webhooks page: who may do what, the
secret shown once, clear refusals, the delivery log and "send test" against a real receiver."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Membership, Role, Webhook
from tests.factories import log_in, make_account, make_api_key


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_create_list_test_deliveries_and_delete(client, db, receiver):
    owner = make_account(db)
    admin = _auth(make_api_key(db, owner, scopes=("read", "write", "admin")))
    r = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["run.failed", "release.moved"],
                                              "description": "deploy bot"}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["secret"][:10] == created["secret_prefix"]
    assert created["events"] == ["release.moved", "run.failed"]
    receiver.secret = created["secret"]
    stored = db.scalar(select(Webhook).where(Webhook.id == created["id"]))
    assert created["secret"] not in stored.secret_encrypted  # kept encrypted

    listed = client.get("/api/v1/webhooks", headers=admin).json()
    assert [h["id"] for h in listed] == [created["id"]] and "secret" not in listed[0]

    r = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=admin)
    assert r.status_code == 200, r.text
    test = r.json()
    assert (test["event"], test["status"], test["last_status_code"], test["attempts"]) == ("webhook.test", "succeeded", 200, 1)
    assert receiver.calls[0].verified and receiver.calls[0].json["type"] == "webhook.test"

    receiver.answers = [500]
    failed = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=admin).json()
    assert (failed["status"], failed["last_status_code"], failed["max_attempts"]) == ("failed", 500, 1)

    log = client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=admin).json()
    assert [(d["status"], [a["status_code"] for a in d["attempt_log"]]) for d in log] == [
        ("failed", [500]), ("succeeded", [200])]
    events = client.get("/api/v1/webhooks/events", headers=admin).json()
    assert {"run.succeeded", "run.failed", "run.cancelled", "sweep.finished", "ab_test.finished",
            "release.moved"} == {e["name"] for e in events}

    assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin).status_code == 200
    assert client.get("/api/v1/webhooks", headers=admin).json() == []
    assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin).status_code == 404


def test_bad_input_is_refused_clearly_and_only_admins_manage(client, db):
    owner = make_account(db)
    admin = _auth(make_api_key(db, owner, scopes=("read", "write", "admin")))
    writer = _auth(make_api_key(db, owner, scopes=("read", "write")))
    r = client.post("/api/v1/webhooks", json={"url": "file:///etc/passwd", "events": ["run.failed"]}, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["param"] == "url"
    r = client.post("/api/v1/webhooks", json={"url": "https://example.com/h", "events": ["run.done"]}, headers=admin)
    assert r.status_code == 422 and "Unknown event: run.done" in r.json()["error"]["message"]
    assert client.post("/api/v1/webhooks", json={"url": "https://example.com/h", "events": ["run.failed"]},
                       headers=writer).status_code == 403
    assert client.get("/api/v1/webhooks", headers=writer).status_code == 403


def test_another_team_cannot_see_or_touch_a_webhook(client, db, receiver):
    a, b = make_account(db), make_account(db)
    key_a = _auth(make_api_key(db, a, scopes=("read", "write", "admin")))
    key_b = _auth(make_api_key(db, b, scopes=("read", "write", "admin")))
    hook = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["run.failed"]}, headers=key_b).json()
    assert client.get("/api/v1/webhooks", headers=key_a).json() == []
    for method, path in (("POST", f"/api/v1/webhooks/{hook['id']}/test"), ("DELETE", f"/api/v1/webhooks/{hook['id']}"),
                         ("GET", f"/api/v1/webhooks/{hook['id']}/deliveries"),
                         ("POST", f"/api/v1/webhooks/{hook['id']}/rotate-secret")):
        assert client.request(method, path, headers=key_a).status_code == 404
    assert receiver.calls == []
    assert client.get("/api/v1/webhooks", headers=key_b).json()[0]["secret_prefix"] == hook["secret_prefix"]


def test_the_page_adds_shows_the_secret_once_tests_and_deletes(client, db, receiver):
    owner = make_account(db)
    token = log_in(client, owner)
    r = client.post("/team/webhooks", data={"url": receiver.url, "events": ["run.succeeded", "run.failed"],
                                            "description": "chat channel", "csrf_token": token})
    assert r.status_code == 200
    secret = r.text.split('aria-label="Signing secret of the new webhook"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert secret.startswith("whsec_")
    receiver.secret = secret
    page = client.get("/team/webhooks").text
    assert receiver.url in page and "chat channel" in page and secret not in page  # shown only once

    hook = db.scalar(select(Webhook).where(Webhook.team_id == owner.team_id))
    r = client.post(f"/team/webhooks/{hook.id}/test", data={"csrf_token": token}, follow_redirects=True)
    assert "Test delivered: the receiver answered 200." in r.text and "Delivered" in r.text
    assert receiver.calls[0].verified

    r = client.post("/team/webhooks", data={"url": "gopher://x", "events": ["run.failed"], "csrf_token": token})
    assert r.status_code == 422 and "must start with http:// or https://" in r.text and 'value="gopher://x"' in r.text

    r = client.post(f"/team/webhooks/{hook.id}/delete", data={"csrf_token": token}, follow_redirects=True)
    assert "Webhook deleted" in r.text and receiver.url not in r.text


def test_members_see_the_page_but_only_owners_change_it(make_client, db):
    owner, member = make_account(db), make_account(db)
    db.add(Membership(team_id=owner.team_id, user_id=member.user_id, role=Role.member))
    db.commit()
    client = make_client()
    token = log_in(client, member)
    client.post("/team/switch", data={"team_id": owner.team_id, "csrf_token": token})
    page = client.get("/team/webhooks")
    assert page.status_code == 200 and "A team owner can add one." in page.text and "Add a webhook" not in page.text
    r = client.post("/team/webhooks", data={"url": "https://example.com/h", "events": ["run.failed"],
                                            "csrf_token": token})
    assert r.status_code == 403
    r = client.post("/team/webhooks", data={"url": "https://example.com/h", "events": ["run.failed"]})
    assert r.status_code == 403  # no CSRF token


def test_rotating_the_secret_shows_a_new_one_once_and_signs_with_it(client, db, receiver):
    owner = make_account(db)
    admin = _auth(make_api_key(db, owner, scopes=("read", "write", "admin")))
    writer = _auth(make_api_key(db, owner, scopes=("read", "write")))
    created = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["run.failed"]}, headers=admin).json()
    path = f"/api/v1/webhooks/{created['id']}/rotate-secret"
    assert client.post(path, headers=writer).status_code == 403  # the scope that creates webhooks
    r = client.post(path, headers=admin)
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["id"] == created["id"] and rotated["url"] == receiver.url and rotated["events"] == ["run.failed"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["secret_prefix"] == rotated["secret"][:10]
    listed = client.get("/api/v1/webhooks", headers=admin).json()
    assert listed[0]["secret_prefix"] == rotated["secret_prefix"] and "secret" not in listed[0]
    db.expire_all()
    stored = db.scalar(select(Webhook).where(Webhook.id == created["id"]))
    assert rotated["secret"] not in stored.secret_encrypted  # kept encrypted

    receiver.secret = created["secret"]  # a receiver that still has the old secret refuses the call
    refused = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=admin).json()
    assert (refused["status"], refused["last_status_code"]) == ("failed", 401)
    receiver.secret = rotated["secret"]
    delivered = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=admin).json()
    assert (delivered["status"], delivered["last_status_code"]) == ("succeeded", 200)
    assert [c.verified for c in receiver.calls] == [False, True]
    assert client.post("/api/v1/webhooks/999999/rotate-secret", headers=admin).status_code == 404


def test_the_page_rotates_a_secret_for_owners_only(make_client, db, receiver):
    owner, member = make_account(db), make_account(db)
    db.add(Membership(team_id=owner.team_id, user_id=member.user_id, role=Role.member))
    db.commit()
    client = make_client()
    token = log_in(client, owner)
    r = client.post("/team/webhooks", data={"url": receiver.url, "events": ["run.failed"], "csrf_token": token})
    old = r.text.split('aria-label="Signing secret of the new webhook"')[0].rsplit('value="', 1)[1].split('"')[0]
    hook = db.scalar(select(Webhook).where(Webhook.team_id == owner.team_id))
    assert f'action="/team/webhooks/{hook.id}/rotate-secret"' in client.get("/team/webhooks").text

    assert client.post(f"/team/webhooks/{hook.id}/rotate-secret").status_code == 403  # no CSRF token
    r = client.post(f"/team/webhooks/{hook.id}/rotate-secret", data={"csrf_token": token})
    assert r.status_code == 200 and "New signing secret for" in r.text
    new = r.text.split('aria-label="New signing secret of the webhook"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert new.startswith("whsec_") and new != old
    page = client.get("/team/webhooks").text
    assert new not in page and f"<code>{new[:10]}…</code>" in page  # shown once; its prefix stays

    receiver.secret = new
    r = client.post(f"/team/webhooks/{hook.id}/test", data={"csrf_token": token}, follow_redirects=True)
    assert "Test delivered" in r.text and receiver.calls[-1].verified

    other = make_client()
    member_token = log_in(other, member)
    other.post("/team/switch", data={"team_id": owner.team_id, "csrf_token": member_token})
    assert "rotate-secret" not in other.get("/team/webhooks").text
    assert other.post(f"/team/webhooks/{hook.id}/rotate-secret", data={"csrf_token": member_token}).status_code == 403
    db.expire_all()
    assert db.get(Webhook, hook.id).secret_prefix == new[:10]  # the member's try changed nothing
