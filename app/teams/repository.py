"""Queries for teams: memberships, invitations and API keys. Team-owned rows are always looked
up with their team id; an invitation or a key found by its secret's hash names its team."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey, Invitation, Membership, Role, Team, User


def team(session: Session, team_id: int) -> Team | None:
    return session.get(Team, team_id)


def memberships_of(session: Session, user_id: int) -> list[Membership]:
    stmt = select(Membership).where(Membership.user_id == user_id).order_by(Membership.id)
    return list(session.scalars(stmt))


def membership(session: Session, *, team_id: int, user_id: int) -> Membership | None:
    stmt = select(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
    return session.scalar(stmt)


def role_in_team(session: Session, *, team_id: int, user_id: int) -> Role | None:
    return session.scalar(select(Membership.role).where(Membership.team_id == team_id,
                                                        Membership.user_id == user_id))


def team_members(session: Session, team_id: int) -> list[tuple[Membership, User]]:
    stmt = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.team_id == team_id)
        .order_by(Membership.id)
    )
    return [(m, u) for m, u in session.execute(stmt)]


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
