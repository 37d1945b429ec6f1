"""Team pages (members, invitations, API keys) and their JSON counterparts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import service as auth_service
from app.deps import CurrentPrincipal, CurrentUser, SessionDep
from app.errors import InvalidInput, StudioError
from app.config import get_settings
from app.models import Role
from app.runs import retention
from app.teams import repository as repo
from app.teams import service
from app.teams.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Me
from app.web import redirect, render

pages = APIRouter(tags=["team"], include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["team"])
ROLES = [r.value for r in Role]


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"Role must be one of {', '.join(ROLES)}.", param="role") from None


def _members_page(request: Request, db, p, **extra) -> Response:  # noqa: ANN001
    mine = repo.memberships_of(db, p.user.id)
    ctx = {
        "members": repo.team_members(db, p.team_id), "roles": ROLES,
        "is_owner": p.role == Role.owner,
        "invitations": repo.pending_invitations(db, p.team_id) if p.role == Role.owner else [],
        "other_teams": [m for m in mine if m.team_id != p.team_id],
        "storage": retention.usage(db, p.team_id), "settings": get_settings(),
    }
    ctx.update(extra)
    return render(request, "team/members.html", ctx, status_code=extra.pop("status_code", 200))


@pages.get("/team")
def team_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return _members_page(request, db, p)


@pages.post("/team/invitations")
def create_invitation(request: Request, db: SessionDep, p: CurrentUser,
                      email: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "member") -> Response:
    service.require_owner(p.role)
    try:
        inv, token = service.invite(db, team_id=p.team_id, invited_by=p.user.id, email=email, role=_role(role))
    except StudioError as exc:
        db.rollback()
        return _members_page(request, db, p, error=exc.message, status_code=exc.status_code)
    link = str(request.base_url).rstrip("/") + f"/invitations/{token}"
    return _members_page(request, db, p, invite_link=link, invite_email=inv.email)


@pages.post("/team/invitations/{invitation_id}/revoke")
def revoke_invitation(request: Request, invitation_id: int, db: SessionDep, p: CurrentUser) -> Response:
    service.require_owner(p.role)
    service.revoke_invitation(db, team_id=p.team_id, invitation_id=invitation_id)
    return redirect(request, "/team", flash=("success", "Invitation withdrawn."))


@pages.post("/team/members/{user_id}/role")
def change_role(request: Request, user_id: int, db: SessionDep, p: CurrentUser,
                role: Annotated[str, Form()] = "") -> Response:
    service.require_owner(p.role)
    service.change_role(db, team_id=p.team_id, user_id=user_id, role=_role(role), acting_user_id=p.user.id)
    return redirect(request, "/team", flash=("success", "Role changed."))


@pages.post("/team/members/{user_id}/remove")
def remove_member(request: Request, user_id: int, db: SessionDep, p: CurrentUser) -> Response:
    service.require_owner(p.role)
    service.remove_member(db, team_id=p.team_id, user_id=user_id)
    return redirect(request, "/team", flash=("success", "Member removed."))


@pages.post("/team/switch")
def switch_team(request: Request, db: SessionDep, p: CurrentUser,
                team_id: Annotated[int, Form()] = 0) -> Response:
    auth_service.switch_team(db, record=p.session_record, team_id=team_id)
    return redirect(request, "/")


def _keys_page(request: Request, db, p, **extra) -> Response:  # noqa: ANN001
    status_code = extra.pop("status_code", 200)
    ctx = {"keys": repo.api_keys(db, p.team_id), "is_owner": p.role == Role.owner, **extra}
    return render(request, "team/api_keys.html", ctx, status_code=status_code)


@pages.get("/team/api-keys")
def api_keys_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return _keys_page(request, db, p)


@pages.post("/team/api-keys")
async def create_api_key_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    service.require_owner(p.role)
    form = await request.form()
    try:
        _, key = service.create_api_key(db, team_id=p.team_id, user_id=p.user.id,
                                        name=str(form.get("name", "")),
                                        scopes=[str(s) for s in form.getlist("scopes")])
    except StudioError as exc:
        db.rollback()
        return _keys_page(request, db, p, error=exc.message, status_code=exc.status_code)
    return _keys_page(request, db, p, new_key=key)


@pages.post("/team/api-keys/{key_id}/revoke")
def revoke_api_key_page(request: Request, key_id: int, db: SessionDep, p: CurrentUser) -> Response:
    service.require_owner(p.role)
    service.revoke_api_key(db, team_id=p.team_id, key_id=key_id)
    return redirect(request, "/team/api-keys", flash=("success", "Key revoked: it no longer works."))


@api.get("/team/storage")
def team_storage(db: SessionDep, p: CurrentPrincipal) -> dict:
    """Bytes the team keeps in the artifact store, by kind, and the retention settings."""
    p.require("read")
    used = retention.usage(db, p.team_id)
    settings = get_settings()
    return {"total_bytes": sum(used.values()), "by_kind": used,
            "keep_checkpoints": settings.keep_checkpoints, "keep_merged": settings.keep_merged}


@api.get("/me", response_model=Me)
def me(db: SessionDep, p: CurrentPrincipal) -> Me:
    return Me(team_id=p.team_id, team_name=repo.team(db, p.team_id).name, role=p.role.value,
              scopes=sorted(p.scopes), user_email=p.user.email if p.user else None,
              api_key_prefix=p.api_key.prefix if p.api_key else None)


@api.get("/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(db: SessionDep, p: CurrentPrincipal) -> list[ApiKeyOut]:
    p.require("admin")
    return [ApiKeyOut.model_validate(k) for k in repo.api_keys(db, p.team_id)]


@api.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(body: ApiKeyCreate, db: SessionDep, p: CurrentPrincipal) -> ApiKeyCreated:
    p.require("admin")
    record, key = service.create_api_key(db, team_id=p.team_id, user_id=p.user_id, name=body.name,
                                         scopes=body.scopes)
    return ApiKeyCreated(**ApiKeyOut.model_validate(record).model_dump(), key=key)


@api.delete("/api-keys/{key_id}", response_model=ApiKeyOut)
def revoke_api_key(key_id: int, db: SessionDep, p: CurrentPrincipal) -> ApiKeyOut:
    p.require("admin")
    return ApiKeyOut.model_validate(service.revoke_api_key(db, team_id=p.team_id, key_id=key_id))
