"""The model registry over HTTP: the JSON API (/api/v1/registry/...) and the Models page (/models).

The page lists the team's base models and every fine-tuned model by name and version, with its
lineage and serving check; aliases with their holder and any pending release; the quality gate;
the release log. Every action is a form that posts and redirects back (CSRF-checked like every
form); the API does the same things in JSON.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from app.datasets import repository as datasets_repo
from app.deps import CurrentPrincipal, CurrentUser, Principal, SessionDep, SettingsDep
from app.errors import InvalidInput, NotFound, StudioError
from app.models import Release, Role, User
from app.models_registry import repository as models_repo
from app.registry import gate as gates
from app.registry import repository as repo
from app.registry import service, views
from app.registry.schemas import (AliasOut, GateBody, GateOut, ModelGroupOut, PromoteBody, ReleaseOut, RenameBody,
                                  ServingCheckOut, VersionOut)
from app.web import redirect, render

api = APIRouter(prefix="/api/v1/registry", tags=["model registry"])
pages = APIRouter(tags=["models"], include_in_schema=False)


def actor(db: Session, p: Principal) -> service.Actor:
    """Who acts, for the log: the person, or the API key and the person who made it."""
    if p.user is not None or p.api_key is None:
        return service.Actor(user_id=p.user_id, label=p.user.email if p.user else "someone",
                             is_owner=p.role == Role.owner)
    maker = db.get(User, p.api_key.created_by_id) if p.api_key.created_by_id else None
    label = f"{maker.email if maker else 'a removed user'} (API key {p.api_key.prefix})"
    return service.Actor(user_id=maker.id if maker else None, label=label, is_owner="admin" in p.scopes)


def _version_out(v: views.VersionView) -> VersionOut:
    return VersionOut(id=v.version.id, name=v.version.name, version=v.version.version, label=v.label,
                      model=v.model_id, run_id=v.run.id, base_model=v.base_name,
                      dataset_id=v.dataset.id if v.dataset else None, dataset_name=v.dataset.name if v.dataset else None,
                      dataset_version=v.dataset.version if v.dataset else None, config=v.config, scores=v.scores,
                      trained_by=v.trained_by, trained_at=v.run.finished_at, aliases=v.aliases,
                      serving=ServingCheckOut(**v.check.as_dict()))


def _release_out(r: Release, names: dict[int, str]) -> ReleaseOut:
    return ReleaseOut(id=r.id, alias=names.get(r.alias_id, ""), kind=r.kind, status=r.status,
                      from_version=r.from_label, to_version=r.to_label, requested_by=r.requested_by,
                      override_reason=r.override_reason, gate=r.gate, candidate_score=r.candidate_score,
                      holder_score=r.holder_score, candidate_evaluation_id=r.candidate_evaluation_id,
                      holder_evaluation_id=r.holder_evaluation_id, message=r.message, created_at=r.created_at,
                      finished_at=r.finished_at)


def _alias(db: Session, team_id: int, alias_id: int):  # noqa: ANN202
    row = repo.alias(db, team_id=team_id, alias_id=alias_id)
    if row is None:
        raise NotFound(f"Your team has no alias #{alias_id}.")
    return row


def _promote(db: Session, p: Principal, settings, *, name: str, alias: str, number: int,  # noqa: ANN001
             override_reason: str | None) -> Release:
    p.require("write")
    name = service.check_name(name)
    version = repo.version_by_name(db, team_id=p.team_id, name=name, number=number)
    if version is None:
        service.sync_versions(db, team_id=p.team_id)
        version = repo.version_by_name(db, team_id=p.team_id, name=name, number=number)
    if version is None:
        raise NotFound(f"The model '{name}' has no version v{number}.", param="version")
    return gates.promote(db, team_id=p.team_id, name=name, alias_name=alias, version=version, actor=actor(db, p),
                         override_reason=override_reason, settings=settings)


# -- API ------------------------------------------------------------------------------------

@api.get("/models", response_model=list[ModelGroupOut])
def list_models(request: Request, db: SessionDep, p: CurrentPrincipal) -> list[ModelGroupOut]:
    """Every fine-tuned model of the team, by name, newest version first, with its lineage, scores,
    aliases and serving check (the same models as GET /v1/models and the Models page)."""
    p.require("read")
    found = views.groups(db, request.app.state.store, team_id=p.team_id)
    return [ModelGroupOut(name=name, versions=[_version_out(v) for v in items]) for name, items in found.items()]


@api.post("/versions/{version_id}/name", response_model=VersionOut)
def rename_version(request: Request, version_id: int, body: RenameBody, db: SessionDep,
                   p: CurrentPrincipal) -> VersionOut:
    """Registers the version under another name, as that name's next version (refused while an alias
    points at it)."""
    p.require("write")
    version = service.rename(db, team_id=p.team_id, version=service.get_version(db, team_id=p.team_id,
                                                                                version_id=version_id), name=body.name)
    view = views.version_view(db, request.app.state.store, version, repo.aliases(db, team_id=p.team_id))
    return _version_out(view)


@api.get("/versions/{version_id}/serving", response_model=ServingCheckOut)
def serving_check(request: Request, version_id: int, db: SessionDep, p: CurrentPrincipal) -> ServingCheckOut:
    """Whether the version's adapter loads in vLLM and converts for llama.cpp (rank, target modules, DoRA, dtype)."""
    p.require("read")
    version = service.get_version(db, team_id=p.team_id, version_id=version_id)
    view = views.version_view(db, request.app.state.store, version, [])
    if view is None:
        raise NotFound(f"Your team has no model version #{version_id}.")
    return ServingCheckOut(**view.check.as_dict())


@api.get("/aliases", response_model=list[AliasOut])
def list_aliases(db: SessionDep, p: CurrentPrincipal) -> list[AliasOut]:
    p.require("read")
    names = views.alias_names(db, team_id=p.team_id)
    return [AliasOut(id=a.alias.id, model=a.ref, version_id=a.alias.version_id, version=service.label(a.holder),
                     moved_at=a.alias.moved_at, pending_release=_release_out(a.pending, names) if a.pending else None)
            for a in views.alias_views(db, team_id=p.team_id)]


RELEASE_RESPONSES = {
    202: {"description": "Pending: the golden-set evaluations run; the alias moves or not when they end.",
          "model": ReleaseOut},
    409: {"description": "Refused by the gate (both scores in the body) or failed; or a release of this alias is "
                         "already pending (an error).",
          "content": {"application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/ReleaseOut"},
                                                                {"$ref": "#/components/schemas/ErrorOut"}]}}}},
}


@api.post("/releases", response_model=ReleaseOut, status_code=201, responses=RELEASE_RESPONSES)
def promote(body: PromoteBody, db: SessionDep, p: CurrentPrincipal, settings: SettingsDep) -> Response:
    """Points `name:alias` at a version, behind the quality gate. 201 with status moved; 202 with
    status pending while the golden-set evaluations run; 409 with status refused (both scores in
    the body) or failed. An owner may pass override_reason to release without the gate."""
    release = _promote(db, p, settings, name=body.name, alias=body.alias, number=body.version,
                       override_reason=body.override_reason)
    code = {"moved": 201, "pending": 202}.get(release.status, 409)
    out = _release_out(release, views.alias_names(db, team_id=p.team_id))
    return JSONResponse(out.model_dump(mode="json"), status_code=code)


@api.get("/releases", response_model=list[ReleaseOut])
def list_releases(db: SessionDep, p: CurrentPrincipal) -> list[ReleaseOut]:
    """The release log, newest first: who moved which alias when, from which version to which."""
    p.require("read")
    names = views.alias_names(db, team_id=p.team_id)
    return [_release_out(r, names) for r in repo.releases(db, team_id=p.team_id)]


@api.post("/aliases/{alias_id}/rollback", response_model=ReleaseOut, status_code=201)
def rollback(alias_id: int, db: SessionDep, p: CurrentPrincipal) -> Response:
    """Moves the alias back to the version it pointed at before its last move."""
    p.require("write")
    release = service.rollback(db, alias=_alias(db, p.team_id, alias_id), actor=actor(db, p))
    out = _release_out(release, views.alias_names(db, team_id=p.team_id))
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@api.post("/releases/{release_id}/cancel", response_model=ReleaseOut)
def cancel_release(release_id: int, db: SessionDep, p: CurrentPrincipal) -> ReleaseOut:
    p.require("write")
    release = repo.release(db, team_id=p.team_id, release_id=release_id)
    if release is None:
        raise NotFound(f"Your team has no release #{release_id}.")
    return _release_out(service.cancel(db, release=release, actor=actor(db, p)), views.alias_names(db, team_id=p.team_id))


def _gate_out(row) -> GateOut:  # noqa: ANN001
    return GateOut(dataset_id=row.dataset_id, metric=row.metric, margin=row.margin,
                   higher_is_better=gates.METRICS[row.metric].higher_is_better)


@api.get("/gate", response_model=GateOut | None)
def get_gate(db: SessionDep, p: CurrentPrincipal) -> GateOut | None:
    p.require("read")
    row = repo.gate(db, team_id=p.team_id)
    return _gate_out(row) if row else None


@api.put("/gate", response_model=GateOut)
def put_gate(body: GateBody, db: SessionDep, p: CurrentPrincipal) -> GateOut:
    """Sets the team's golden set, metric and margin (owners only)."""
    p.require("admin")
    return _gate_out(gates.set_gate(db, team_id=p.team_id, user_id=p.user_id, dataset_id=body.dataset_id,
                                    metric=body.metric, margin=body.margin))


@api.delete("/gate", status_code=204)
def delete_gate(db: SessionDep, p: CurrentPrincipal) -> Response:
    p.require("admin")
    gates.clear_gate(db, team_id=p.team_id)
    return Response(status_code=204)


# -- pages ------------------------------------------------------------------------------------

def _page(request: Request, db: Session, p: Principal, *, error: str | None = None, form: dict | None = None,
          status_code: int = 200) -> Response:
    gate = repo.gate(db, team_id=p.team_id)
    return render(request, "registry/models.html", {
        "bases": models_repo.visible(db, p.team_id),
        "groups": views.groups(db, request.app.state.store, team_id=p.team_id),
        "aliases": views.alias_views(db, team_id=p.team_id),
        "releases": repo.releases(db, team_id=p.team_id, limit=50),
        "alias_names": views.alias_names(db, team_id=p.team_id),
        "gate": gate, "gate_dataset": datasets_repo.get(db, team_id=p.team_id, dataset_id=gate.dataset_id)
        if gate and gate.dataset_id else None,
        "datasets": [d for d in datasets_repo.list_page(db, team_id=p.team_id, offset=0, limit=200)[0]
                     if d.normalized_path],
        "metrics": gates.METRICS, "technical": views.technical,
        "config_labels": views.CONFIG_LABELS, "can_write": "write" in p.scopes, "can_admin": "admin" in p.scopes,
        "is_owner": p.role.value == "owner", "error": error, "form": form or {},
    }, status_code=status_code)


@pages.get("/models")
def models_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return _page(request, db, p)


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str) and k != "csrf_token"}


def _number(raw: str | None, param: str) -> int:
    text = (raw or "").strip().lower().removeprefix("v")
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) <= 0:
        raise InvalidInput("Choose a version.", param=param)
    return int(text)


@pages.post("/models/releases")
async def promote_page(request: Request, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    form = await _form(request)
    try:
        release = _promote(db, p, settings, name=form.get("name", ""), alias=form.get("alias", ""),
                           number=_number(form.get("version"), "version"),
                           override_reason=form.get("override_reason") or None)
    except StudioError as exc:  # shown on the page, above the form, with what was typed
        db.rollback()
        return _page(request, db, p, error=exc.message, form=form, status_code=exc.status_code)
    alias = views.alias_names(db, team_id=p.team_id).get(release.alias_id, "")
    flash = {"moved": ("success", f"{alias} now points at {release.to_label}."),
             "pending": ("success", f"{release.to_label} is being evaluated on the golden set: {alias} moves "
                                    "when the evaluation ends, if it passes the gate.")}.get(
        release.status, ("error", release.message))
    return redirect(request, "/models#releases-title", flash=flash)


@pages.post("/models/aliases/{alias_id}/rollback")
def rollback_page(request: Request, alias_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    release = service.rollback(db, alias=_alias(db, p.team_id, alias_id), actor=actor(db, p))
    return redirect(request, "/models#aliases-title",
                    flash=("success", f"Rolled back: {release.from_label} → {release.to_label}."))


@pages.post("/models/releases/{release_id}/cancel")
def cancel_page(request: Request, release_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    release = repo.release(db, team_id=p.team_id, release_id=release_id)
    if release is None:
        raise NotFound(f"Your team has no release #{release_id}.")
    service.cancel(db, release=release, actor=actor(db, p))
    return redirect(request, "/models#aliases-title", flash=("success", "The pending release is cancelled."))


@pages.post("/models/versions/{version_id}/name")
async def rename_page(request: Request, version_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    version = service.get_version(db, team_id=p.team_id, version_id=version_id)
    form = await _form(request)
    try:
        service.rename(db, team_id=p.team_id, version=version, name=form.get("name", ""))
    except InvalidInput as exc:
        db.rollback()
        return _page(request, db, p, error=exc.message, status_code=exc.status_code)
    return redirect(request, "/models", flash=("success", f"Registered as {service.label(version)}."))


@pages.post("/models/gate")
async def gate_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    p.require("admin")
    form = await _form(request)
    if form.get("action") == "remove":
        gates.clear_gate(db, team_id=p.team_id)
        return redirect(request, "/models#gate-title", flash=("success", "The quality gate is removed."))
    try:
        margin = float(form.get("margin") or 0)
        dataset = form.get("dataset_id") or ""
        gates.set_gate(db, team_id=p.team_id, user_id=p.user_id, metric=form.get("metric", ""), margin=margin,
                       dataset_id=_number(dataset, "dataset_id") if dataset else None)
    except ValueError:
        return _page(request, db, p, error="The margin is a number (0.05).", form=form, status_code=422)
    except InvalidInput as exc:
        db.rollback()
        return _page(request, db, p, error=exc.message, form=form, status_code=422)
    return redirect(request, "/models#gate-title", flash=("success", "The quality gate is saved."))
