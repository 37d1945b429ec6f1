"""Sign-up, log-in, roles, invitations and API keys."""

from __future__ import annotations

from sqlalchemy import select

from app.auth.security import sha256_hex
from app.models import ApiKey, Membership, Role, Team
from tests.factories import PASSWORD, csrf_of, log_in, make_account, make_api_key


def test_first_signup_creates_team_and_owner(client, db):
    page = client.get("/signup")
    assert "first person here" in page.text
    r = client.post("/signup", data={"email": "Ada@Example.com", "password": PASSWORD, "name": "Ada",
                                     "team_name": "Research", "csrf_token": csrf_of(client)},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "studio_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    team = db.scalar(select(Team))
    member = db.scalar(select(Membership))
    assert team.name == "Research" and member.role == Role.owner
    home = client.get("/")
    assert home.status_code == 200 and "Research" in home.text and "ada@example.com" in home.text


def test_signup_errors_are_shown_and_nothing_is_created(client, db):
    token = csrf_of(client)
    r = client.post("/signup", data={"email": "not-an-email", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 422 and "valid e-mail" in r.text
    r = client.post("/signup", data={"email": "b@example.com", "password": "short", "csrf_token": token})
    assert r.status_code == 422 and "at least 10 characters" in r.text
    assert db.scalar(select(Team)) is None
    make_account(db, email="taken@example.com")
    r = client.post("/signup", data={"email": "taken@example.com", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 409 and "already exists" in r.text


def test_login_logout(client, db):
    acc = make_account(db)
    token = csrf_of(client)
    bad = client.post("/login", data={"email": acc.email, "password": "wrong password!", "csrf_token": token})
    assert bad.status_code == 401 and "do not match" in bad.text
    assert client.get("/", follow_redirects=False).status_code == 303
    token = log_in(client, acc)
    assert client.get("/").status_code == 200
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_an_unknown_email_costs_a_password_hash_like_a_known_one(client, db, monkeypatch):
    """No timing difference tells which e-mails have accounts: both failures compute one argon2."""
    from app.auth import security

    acc = make_account(db)
    hashed = []
    real = security._hasher
    monkeypatch.setattr(security, "_hasher", type("Counting", (), {
        "hash": lambda self, p: hashed.append("hash") or real.hash(p),
        "verify": lambda self, h, p: hashed.append("verify") or real.verify(h, p)})())
    token = csrf_of(client)
    for email in (acc.email, "nobody-here@example.com"):
        r = client.post("/login", data={"email": email, "password": "wrong password!", "csrf_token": token})
        assert r.status_code == 401 and "do not match" in r.text
    assert hashed == ["verify", "hash"]


def test_session_is_invalid_after_logout_even_with_old_cookie(client, make_client, db):
    acc = make_account(db)
    token = log_in(client, acc)
    stolen = client.cookies.get("studio_session")
    client.post("/logout", data={"csrf_token": token})
    other = make_client()
    other.cookies.set("studio_session", stolen)
    assert other.get("/", follow_redirects=False).status_code == 303


def test_open_redirect_after_login_is_refused(client, db):
    acc = make_account(db)
    r = client.post("/login", data={"email": acc.email, "password": PASSWORD, "next": "//evil.example.com/",
                                    "csrf_token": csrf_of(client)}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_invitation_adds_member_with_role(client, make_client, db):
    owner = make_account(db, team_name="Owners")
    token = log_in(client, owner)
    r = client.post("/team/invitations", data={"email": "new@example.com", "role": "viewer", "csrf_token": token})
    assert r.status_code == 200
    link = r.text.split('aria-label="Invitation link"')[0].rsplit('value="', 1)[1].split('"')[0]
    path = "/" + link.split("/", 3)[3]
    guest = make_client()
    page = guest.get(path)
    assert page.status_code == 200 and "Owners" in page.text and "viewer" in page.text
    r = guest.post(path, data={"password": PASSWORD, "name": "New", "csrf_token": csrf_of(guest)},
                   follow_redirects=False)
    assert r.status_code == 303
    assert guest.get("/").status_code == 200
    m = db.scalar(select(Membership).where(Membership.team_id == owner.team_id, Membership.role == Role.viewer))
    assert m is not None
    # the link works once
    assert make_client().get(path).status_code == 404
    # a viewer cannot change anything
    r = guest.post("/team/invitations", data={"email": "x@example.com", "csrf_token": csrf_of(guest)})
    assert r.status_code == 403


def test_last_owner_cannot_leave(client, db):
    owner = make_account(db)
    token = log_in(client, owner)
    r = client.post(f"/team/members/{owner.user_id}/role", data={"role": "member", "csrf_token": token})
    assert r.status_code == 409 and "at least one owner" in r.text


def test_api_key_is_stored_hashed_shown_once_and_revocable(client, db):
    acc = make_account(db)
    token = log_in(client, acc)
    r = client.post("/team/api-keys", data={"name": "ci", "scopes": ["read", "write"], "csrf_token": token})
    assert r.status_code == 200
    key = r.text.split('aria-label="New API key"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert key.startswith("sk-studio-")
    row = db.scalar(select(ApiKey))
    assert row.key_hash == sha256_hex(key) and key not in (row.prefix, row.key_hash)
    assert key.startswith(row.prefix) and len(row.prefix) < len(key) / 2
    # the list page never shows the key again
    assert key not in client.get("/team/api-keys").text

    api = {"Authorization": f"Bearer {key}"}
    me = client.get("/api/v1/me", headers=api)
    assert me.status_code == 200 and me.json()["team_id"] == acc.team_id
    assert me.json()["scopes"] == ["read", "write"]

    client.post(f"/team/api-keys/{row.id}/revoke", data={"csrf_token": token})
    refused = client.get("/api/v1/me", headers=api)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_api_key_scopes_are_enforced(client, db):
    acc = make_account(db)
    read_only = make_api_key(db, acc, scopes=("read",))
    admin = make_api_key(db, acc, scopes=("read", "write", "admin"))
    r = client.post("/api/v1/api-keys", json={"name": "x"}, headers={"Authorization": f"Bearer {read_only}"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    r = client.post("/api/v1/api-keys", json={"name": "made by api", "scopes": ["read"]},
                    headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201 and r.json()["key"].startswith("sk-studio-")
    listed = client.get("/api/v1/api-keys", headers={"Authorization": f"Bearer {admin}"}).json()
    assert {k["name"] for k in listed} == {"test key", "made by api"}
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_unknown_and_malformed_keys_are_refused(client, db):
    for header in ("Bearer sk-studio-nope", "Bearer ", "Basic abc"):
        r = client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "unauthorized"
