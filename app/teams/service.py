"""Members and their roles, invitations and API keys of a team. Services flush; the edge commits."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from app.auth import repository as auth_repo
from app.auth import service as auth_service
from app.auth.security import new_api_key, new_token, sha256_hex
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from app.models import ApiKey, Invitation, Membership, Role, User, utcnow
from app.teams import repository as repo

SCOPES = ("read", "write", "admin")
INVITATION_TTL = timedelta(days=7)


def require_owner(role: Role) -> None:
    if role != Role.owner:
        raise Forbidden("Only a team owner can do this.")


def invite(session: Session, *, team_id: int, invited_by: int, email: str, role: Role) -> tuple[Invitation, str]:
    email = email.strip().lower()
    if not auth_service.EMAIL_RE.match(email):
        raise InvalidInput("Please enter a valid e-mail address.", param="email")
    existing = auth_repo.user_by_email(session, email)
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
        existing = auth_repo.user_by_email(session, inv.email)
        if existing is not None:
            user = auth_service.authenticate(session, email=inv.email, password=password)
        else:
            user = auth_service.new_user(session, email=inv.email, password=password, name=name)
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
