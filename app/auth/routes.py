"""Sign-up, log-in, log-out and invitation pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import repository as repo
from app.auth import service
from app.teams import repository as teams_repo
from app.teams import service as teams_service
from app.deps import SESSION_COOKIE, OptionalPrincipal, SessionDep, SettingsDep
from app.errors import StudioError
from app.web import redirect, render, safe_next

pages = APIRouter(tags=["accounts"], include_in_schema=False)


def _start(request: Request, db, settings, user, team_id: int | None, next_url: str) -> Response:  # noqa: ANN001
    new = service.start_session(db, user=user, team_id=team_id, max_age_s=settings.session_max_age_s)
    response = redirect(request, safe_next(next_url))
    response.set_cookie(SESSION_COOKIE, new.token, max_age=settings.session_max_age_s, httponly=True,
                        samesite="lax", secure=settings.secure_cookies, path="/")
    return response


@pages.get("/signup")
def signup_page(request: Request, db: SessionDep, principal: OptionalPrincipal) -> Response:
    if principal and principal.user:
        return redirect(request, "/")
    return render(request, "auth/signup.html", {"first_user": repo.count_users(db) == 0})


@pages.post("/signup")
def signup(request: Request, db: SessionDep, settings: SettingsDep,
           email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
           name: Annotated[str, Form()] = "", team_name: Annotated[str, Form()] = "") -> Response:
    try:
        user, team = service.sign_up(db, email=email, password=password, name=name, team_name=team_name)
    except StudioError as exc:
        db.rollback()
        return render(request, "auth/signup.html", {
            "form": {"email": email, "name": name, "team_name": team_name},
            "errors": {exc.param: exc.message} if exc.param else {},
            "error": None if exc.param else exc.message,
            "first_user": repo.count_users(db) == 0,
        }, status_code=exc.status_code)
    return _start(request, db, settings, user, team.id, "/")


@pages.get("/login")
def login_page(request: Request, principal: OptionalPrincipal, next: str = "/") -> Response:
    if principal and principal.user:
        return redirect(request, safe_next(next))
    return render(request, "auth/login.html", {"next_url": safe_next(next)})


@pages.post("/login")
def login(request: Request, db: SessionDep, settings: SettingsDep,
          email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/") -> Response:
    try:
        user = service.authenticate(db, email=email, password=password)
    except StudioError as exc:
        return render(request, "auth/login.html", {
            "form": {"email": email}, "error": exc.message, "next_url": safe_next(next),
        }, status_code=exc.status_code)
    return _start(request, db, settings, user, None, next)


@pages.post("/logout")
def logout(request: Request, db: SessionDep, principal: OptionalPrincipal) -> Response:
    if principal and principal.session_record is not None:
        service.end_session(db, principal.session_record)
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@pages.get("/invitations/{token}")
def invitation_page(request: Request, token: str, db: SessionDep, principal: OptionalPrincipal) -> Response:
    inv = teams_service.open_invitation(db, token)
    return render(request, "auth/invitation.html", {
        "invitation": inv, "token": token, "team_name": teams_repo.team(db, inv.team_id).name,
        "has_account": repo.user_by_email(db, inv.email) is not None,
    })


@pages.post("/invitations/{token}")
def accept_invitation(request: Request, token: str, db: SessionDep, settings: SettingsDep,
                      principal: OptionalPrincipal, password: Annotated[str, Form()] = "",
                      name: Annotated[str, Form()] = "") -> Response:
    inv = teams_service.open_invitation(db, token)
    user = principal.user if principal and principal.user else None
    try:
        user = teams_service.accept_invitation(db, token=token, password=password, name=name, user=user)
    except StudioError as exc:
        db.rollback()
        return render(request, "auth/invitation.html", {
            "invitation": inv, "token": token, "team_name": teams_repo.team(db, inv.team_id).name,
            "has_account": repo.user_by_email(db, inv.email) is not None, "error": exc.message,
        }, status_code=exc.status_code)
    if principal and principal.session_record is not None:
        service.switch_team(db, record=principal.session_record, team_id=inv.team_id)
        return redirect(request, "/", flash=("success", "You joined the team."))
    return _start(request, db, settings, user, inv.team_id, "/")
