"""Queries for accounts. Team-owned rows are always looked up with their team id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import ApiKey, Invitation, Membership, Team, User, UserSession


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


def memberships_of(session: Session, user_id: int) -> list[Membership]:
    stmt = select(Membership).where(Membership.user_id == user_id).order_by(Membership.id)
    return list(session.scalars(stmt))


def membership(session: Session, *, team_id: int, user_id: int) -> Membership | None:
    stmt = select(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
    return session.scalar(stmt)


def team_members(session: Session, team_id: int) -> list[tuple[Membership, User]]:
    stmt = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.team_id == team_id)
        .order_by(Membership.id)
    )
    return [(m, u) for m, u in session.execute(stmt)]


def team(session: Session, team_id: int) -> Team | None:
    return session.get(Team, team_id)


def live_session(session: Session, token_hash: str, now: datetime) -> UserSession | None:
    stmt = select(UserSession).where(
        UserSession.token_hash == token_hash,
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > now,
    )
    return session.scalar(stmt)


def api_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


def api_keys(session: Session, team_id: int) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.team_id == team_id).order_by(ApiKey.id.desc())
    return list(session.scalars(stmt))


def api_key(session: Session, *, team_id: int, key_id: int) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.team_id == team_id, ApiKey.id == key_id))


def invitation_by_hash(session: Session, token_hash: str) -> Invitation | None:
    return session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))


def pending_invitations(session: Session, team_id: int) -> list[Invitation]:
    stmt = (
        select(Invitation)
        .where(Invitation.team_id == team_id, Invitation.accepted_at.is_(None))
        .order_by(Invitation.id.desc())
    )
    return list(session.scalars(stmt))


def invitation(session: Session, *, team_id: int, invitation_id: int) -> Invitation | None:
    stmt = select(Invitation).where(Invitation.team_id == team_id, Invitation.id == invitation_id)
    return session.scalar(stmt)
