"""Sign-up, log-in, members, invitations and API keys. Services flush; the edge commits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.auth import repository as repo
from app.auth.security import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    new_api_key,
    new_token,
    sha256_hex,
    verify_password,
)
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from app.models import ApiKey, Invitation, Membership, Role, Team, User, UserSession, utcnow

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SCOPES = ("read", "write", "admin")
INVITATION_TTL = timedelta(days=7)


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


def _new_user(session: Session, *, email: str, password: str, name: str) -> User:
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
    user = _new_user(session, email=email, password=password, name=name)
    team = Team(name=(team_name.strip() or f"{name.strip() or user.email.split('@')[0]}'s team")[:120])
    session.add(team)
    session.flush()
    session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner))
    session.flush()
    return user, team


def authenticate(session: Session, *, email: str, password: str) -> User:
    user = repo.user_by_email(session, email.strip().lower())
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        raise Unauthorized("That e-mail and password do not match an account.")
    return user


@dataclass
class NewSession:
    token: str
    record: UserSession


def start_session(session: Session, *, user: User, team_id: int | None, max_age_s: int) -> NewSession:
    memberships = repo.memberships_of(session, user.id)
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
    if repo.membership(session, team_id=team_id, user_id=record.user_id) is None:
        raise NotFound("No such team.")
    record.team_id = team_id
    session.flush()


def require_owner(role: Role) -> None:
    if role != Role.owner:
        raise Forbidden("Only a team owner can do this.")


def invite(session: Session, *, team_id: int, invited_by: int, email: str, role: Role) -> tuple[Invitation, str]:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise InvalidInput("Please enter a valid e-mail address.", param="email")
    existing = repo.user_by_email(session, email)
    if existing and repo.membership(session, team_id=team_id, user_id=existing.id):
        raise Conflict(f"{email} is already a member of this team.", param="email")
    token = new_token()
    inv = Invitation(team_id=team_id, email=email, role=role, token_hash=sha256_hex(token),
                     invited_by_id=invited_by, expires_at=utcnow() + INVITATION_TTL)
    session.add(inv)
    session.flush()
    return inv, token


def open_invitation(session: Session, token: str) -> Invitation:
    inv = repo.invitation_by_hash(session, sha256_hex(token))
    if inv is None or inv.accepted_at is not None or inv.expires_at < utcnow():
        raise NotFound("This invitation link is not valid any more. Ask the team owner for a new one.")
    return inv


def accept_invitation(session: Session, *, token: str, password: str, name: str,
                      user: User | None = None) -> User:
    """Joins the invited team: as a new account, or as the logged-in user."""
    inv = open_invitation(session, token)
    if user is None:
        existing = repo.user_by_email(session, inv.email)
        if existing is not None:
            user = authenticate(session, email=inv.email, password=password)
        else:
            user = _new_user(session, email=inv.email, password=password, name=name)
    if repo.membership(session, team_id=inv.team_id, user_id=user.id) is None:
        session.add(Membership(team_id=inv.team_id, user_id=user.id, role=inv.role))
    inv.accepted_at = utcnow()
    session.flush()
    return user


def change_role(session: Session, *, team_id: int, user_id: int, role: Role, acting_user_id: int) -> None:
    m = repo.membership(session, team_id=team_id, user_id=user_id)
    if m is None:
        raise NotFound("No such member.")
    if user_id == acting_user_id and role != Role.owner:
        _ensure_other_owner(session, team_id, user_id)
    m.role = role
    session.flush()


def remove_member(session: Session, *, team_id: int, user_id: int) -> None:
    m = repo.membership(session, team_id=team_id, user_id=user_id)
    if m is None:
        raise NotFound("No such member.")
    if m.role == Role.owner:
        _ensure_other_owner(session, team_id, user_id)
    session.delete(m)
    session.flush()


def _ensure_other_owner(session: Session, team_id: int, user_id: int) -> None:
    owners = [m for m, _ in repo.team_members(session, team_id) if m.role == Role.owner]
    if all(m.user_id == user_id for m in owners):
        raise Conflict("A team needs at least one owner. Make someone else owner first.")


def revoke_invitation(session: Session, *, team_id: int, invitation_id: int) -> None:
    inv = repo.invitation(session, team_id=team_id, invitation_id=invitation_id)
    if inv is None:
        raise NotFound("No such invitation.")
    session.delete(inv)
    session.flush()


def create_api_key(session: Session, *, team_id: int, user_id: int | None, name: str,
                   scopes: list[str]) -> tuple[ApiKey, str]:
    scopes = [s for s in scopes if s]
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise InvalidInput(f"Scopes must be among {', '.join(SCOPES)}.", param="scopes")
    name = name.strip() or "API key"
    key, prefix, digest = new_api_key()
    record = ApiKey(team_id=team_id, created_by_id=user_id, name=name[:120], prefix=prefix,
                    key_hash=digest, scopes=",".join(s for s in SCOPES if s in scopes))
    session.add(record)
    session.flush()
    return record, key


def revoke_api_key(session: Session, *, team_id: int, key_id: int) -> ApiKey:
    record = repo.api_key(session, team_id=team_id, key_id=key_id)
    if record is None:
        raise NotFound("No such API key.")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    session.flush()
    return record


def check_api_key(session: Session, key: str) -> ApiKey:
    record = repo.api_key_by_hash(session, sha256_hex(key))
    now = utcnow()
    if record is None:
        raise Unauthorized("This API key is not valid.")
    if record.revoked_at is not None:
        raise Unauthorized("This API key was revoked.")
    if record.expires_at is not None and record.expires_at < now:
        raise Unauthorized("This API key has expired.")
    if record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60:
        record.last_used_at = now  # at most one write a minute per key
    return record
