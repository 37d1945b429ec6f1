"""Request-edge dependencies: the database session (commits here), the caller, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.api import limits
from app.auth import repository as auth_repo
from app.auth.security import same, sha256_hex
from app.config import Settings
from app.db import session_scope
from app.errors import CSRFError, Forbidden, Unauthorized
from app.models import ApiKey, Role, User, UserSession, utcnow
from app.teams import repository as teams_repo
from app.teams import service as teams_service

SESSION_COOKIE = "studio_session"
CSRF_COOKIE = "studio_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
ROLE_SCOPES = {
    Role.owner: {"read", "write", "admin"},
    Role.member: {"read", "write"},
    Role.viewer: {"read"},
}


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    with session_scope(factory=request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


@dataclass(frozen=True)
class Viewer:
    """What the page layout shows of the logged-in person."""

    email: str
    name: str
    role: str
    team_name: str


@dataclass
class Principal:
    """Who is calling, for which team, with which rights."""

    team_id: int
    role: Role
    scopes: set[str]
    user: User | None = None
    session_record: UserSession | None = None
    api_key: ApiKey | None = None
    extra: dict = field(default_factory=dict)

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user else None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            what = {"write": "change things", "admin": "manage the team"}.get(scope, "read")
            raise Forbidden(f"Your role does not allow you to {what} here (needs the '{scope}' scope).")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def _browser_session(request: Request, db: Session) -> UserSession | None:
    if "studio_browser_session" in request.state._state:
        return request.state.studio_browser_session
    token = request.cookies.get(SESSION_COOKIE)
    record = auth_repo.live_session(db, sha256_hex(token), utcnow()) if token else None
    request.state.studio_browser_session = record
    request.state.csrf_value = record.csrf_token if record is not None else None
    return record


def optional_principal(request: Request, db: SessionDep) -> Principal | None:
    if "principal" in request.state._state:
        return request.state.principal
    principal = None
    key = _bearer(request)
    if key is not None:
        record = teams_service.check_api_key(db, key)
        getattr(request.app.state, "rate_limiter", limits.MEMORY).check(record)
        principal = Principal(team_id=record.team_id, role=Role.member, scopes=record.scope_set,
                              api_key=record)
    else:
        record = _browser_session(request, db)
        if record is not None:
            m = teams_repo.membership(db, team_id=record.team_id, user_id=record.user_id)
            user = auth_repo.user(db, record.user_id)
            if m is not None and user is not None and user.is_active:
                principal = Principal(team_id=m.team_id, role=m.role, scopes=ROLE_SCOPES[m.role],
                                      user=user, session_record=record)
                # Plain values for the layout: an error page renders after the session rolled back.
                request.state.viewer = Viewer(email=user.email, name=user.name, role=m.role.value,
                                              team_name=teams_repo.team(db, m.team_id).name)
    request.state.principal = principal
    return principal


def current_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthorized("Please log in (or send an API key as 'Authorization: Bearer ...').")
    return principal


def current_user(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """A person in a browser session (pages and account actions), not an API key."""
    if principal.user is None:
        raise Forbidden("This action needs a logged-in user, not an API key.")
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUser = Annotated[Principal, Depends(current_user)]


def csrf_token_for(request: Request) -> str:
    """The token forms and htmx must send back: bound to the browser session when there is
    one, else the anonymous double-submit cookie set by CSRFCookieMiddleware."""
    value = getattr(request.state, "csrf_value", None)
    return value or request.scope.get("studio_csrf_cookie", "")


async def csrf_protect(request: Request, db: SessionDep) -> None:
    """Global dependency: every unsafe request from a browser carries the CSRF token.

    Bearer-authenticated API calls carry no ambient credential, so they need none.
    """
    record = _browser_session(request, db)
    if request.method not in UNSAFE_METHODS or _bearer(request) is not None:
        return
    expected = record.csrf_token if record is not None else request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get(CSRF_FIELD, ""))
    if not expected or not sent or not same(expected, sent):
        raise CSRFError("This form has expired or did not come from the studio. Reload the page and try again.")
