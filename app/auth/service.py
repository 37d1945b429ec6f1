"""Sign-up, log-in and browser sessions. Members, invitations and API keys are app/teams/service.py's.
Services flush; the edge commits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.auth import repository as repo
from app.auth.security import MIN_PASSWORD_LENGTH, hash_password, new_token, sha256_hex, verify_password
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from app.models import Membership, Role, Team, User, UserSession, utcnow
from app.teams import repository as teams_repo

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_credentials(email: str, password: str) -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise InvalidInput("Please enter a valid e-mail address.", param="email")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"Please choose a password of at least {MIN_PASSWORD_LENGTH} characters.",
            param="password",
        )
    return email


def new_user(session: Session, *, email: str, password: str, name: str) -> User:
    email = _check_credentials(email, password)
    if repo.user_by_email(session, email):
        raise Conflict("An account with this e-mail address already exists. Log in instead.",
                       param="email")
    user = User(email=email, name=name.strip()[:120], password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def sign_up(session: Session, *, email: str, password: str, name: str = "",
            team_name: str = "") -> tuple[User, Team]:
    """A new account gets its own team and owns it (the first user of the studio included)."""
    user = new_user(session, email=email, password=password, name=name)
    team = Team(name=(team_name.strip() or f"{name.strip() or user.email.split('@')[0]}'s team")[:120])
    session.add(team)
    session.flush()
    session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner))
    session.flush()
    return user, team


def authenticate(session: Session, *, email: str, password: str) -> User:
    user = repo.user_by_email(session, email.strip().lower())
    matches = verify_password(user.password_hash if user is not None else None, password)
    if user is None or not user.is_active or not matches:
        raise Unauthorized("That e-mail and password do not match an account.")
    return user


@dataclass
class NewSession:
    token: str
    record: UserSession


def start_session(session: Session, *, user: User, team_id: int | None, max_age_s: int) -> NewSession:
    memberships = teams_repo.memberships_of(session, user.id)
    if not memberships:
        raise Forbidden("This account belongs to no team.")
    chosen = next((m for m in memberships if m.team_id == team_id), memberships[0])
    token = new_token()
    record = UserSession(
        token_hash=sha256_hex(token), user_id=user.id, team_id=chosen.team_id,
        csrf_token=new_token(24), expires_at=utcnow() + timedelta(seconds=max_age_s),
    )
    session.add(record)
    session.flush()
    return NewSession(token=token, record=record)


def end_session(session: Session, record: UserSession) -> None:
    record.revoked_at = utcnow()
    session.flush()


def switch_team(session: Session, *, record: UserSession, team_id: int) -> None:
    if teams_repo.membership(session, team_id=team_id, user_id=record.user_id) is None:
        raise NotFound("No such team.")
    record.team_id = team_id
    session.flush()
