"""Small factories: accounts, logged-in browsers, API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth import service
from app.teams import service as teams_service

PASSWORD = "correct horse battery"


@dataclass
class Account:
    user_id: int
    team_id: int
    email: str
    password: str = PASSWORD


def make_account(db: Session, *, email: str | None = None, team_name: str = "") -> Account:
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    user, team = service.sign_up(db, email=email, password=PASSWORD, name="Test User", team_name=team_name)
    db.commit()
    return Account(user_id=user.id, team_id=team.id, email=email)


def csrf_of(client: TestClient) -> str:
    """The token a browser would submit: read from a form's hidden field on a page."""
    html = client.get("/login").text if "studio_session" not in client.cookies else client.get("/").text
    marker = '<input type="hidden" name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    token = html[start:html.index('"', start)]
    assert token, "a form rendered an empty CSRF token"
    return token


def log_in(client: TestClient, account: Account) -> str:
    token = csrf_of(client)
    r = client.post("/login", data={"email": account.email, "password": account.password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client)


def make_api_key(db: Session, account: Account, scopes: tuple[str, ...] = ("read", "write")) -> str:
    _, key = teams_service.create_api_key(db, team_id=account.team_id, user_id=account.user_id,
                                    name="test key", scopes=list(scopes))
    db.commit()
    return key
