"""Queries for accounts: users and their browser sessions. Team things (memberships,
invitations, API keys) are app/teams/repository.py's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import User, UserSession


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


def live_session(session: Session, token_hash: str, now: datetime) -> UserSession | None:
    stmt = select(UserSession).where(
        UserSession.token_hash == token_hash,
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > now,
    )
    return session.scalar(stmt)
