"""Versions, aliases and releases. Services flush; the edges commit.

- Every fine-tuned model the team can serve (a succeeded run that saved an adapter or a model)
  is a version of a name: the run's suffix, else its name, made into a slug. `sync_versions`
  registers the ones not registered yet, oldest run first, so the n-th run of a name is vn.
  `rename` registers a version under another name (it becomes that name's next version).
- An alias (`support-bot:prod`) points at one version of its name. `promote` asks to move it; the
  quality gate (app/registry/gate.py) may make that a pending release that completes or is
  refused when the golden-set evaluation ends. `rollback` moves it back to the previous holder.
- `move_alias` is the one place where an alias moves: the log row, the alias, a run event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.openai import repository as openai_repo
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import ModelAlias, ModelVersion, Release, Run, utcnow
from app.notifications import service as notifications
from app.registry import repository as repo
from app.runs import repository as runs_repo
from app.runs import service as runs_service

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
VERSION_RE = re.compile(r"^v([0-9]{1,9})$")


@dataclass
class Actor:
    """Who asks: for the log (who) and the owner-only override."""

    user_id: int | None
    label: str
    is_owner: bool  # an owner, or an API key with the admin scope (only owners make those)


def default_name(run: Run) -> str:
    """A slug of the run's suffix (given at training), else of its name, else run-<id>."""
    for raw in (run.suffix, run.name):
        slug = re.sub(r"[^a-z0-9_-]+", "-", (raw or "").lower()).strip("-_")[:64]
        if slug and NAME_RE.match(slug):
            return slug
    return f"run-{run.id}"


def check_name(name: str, *, param: str = "name") -> str:
    name = (name or "").strip().lower()
    if not NAME_RE.match(name):
        raise InvalidInput("A model name is 1 to 64 lowercase letters, digits, '-' or '_', starting with a "
                           "letter or digit (support-bot).", param=param)
    return name


def check_alias(alias: str, *, param: str = "alias") -> str:
    alias = (alias or "").strip().lower()
    if not ALIAS_RE.match(alias) or VERSION_RE.match(alias):
        raise InvalidInput("An alias is 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter "
                           "(prod, staging); v1, v2... name versions and cannot be aliases.", param=param)
    return alias


def label(version: ModelVersion | None) -> str:
    return f"{version.name} v{version.version}" if version is not None else "nothing"


def sync_versions(session: Session, *, team_id: int) -> list[ModelVersion]:
    """Registers every servable run of the team that has no version yet; returns all versions."""
    known = {v.run_id for v in repo.versions(session, team_id=team_id)}
    for run in sorted(openai_repo.servable_runs(session, team_id=team_id), key=lambda r: r.id):
        if run.id in known:
            continue
        name = default_name(run)
        try:
            with session.begin_nested():  # a concurrent request may register the same run: keep going
                session.add(ModelVersion(team_id=team_id, run_id=run.id, name=name, version=repo.next_number(
                    session, team_id=team_id, name=name), registered_by_id=run.created_by_id))
        except IntegrityError:
            continue
    return repo.versions(session, team_id=team_id)


def get_version(session: Session, *, team_id: int, version_id: int, param: str = "version_id") -> ModelVersion:
    row = repo.version(session, team_id=team_id, version_id=version_id)
    if row is None:
        raise NotFound(f"Your team has no model version #{version_id}.", param=param)
    return row


def rename(session: Session, *, team_id: int, version: ModelVersion, name: str) -> ModelVersion:
    """Registers the version under another name, as that name's next version."""
    name = check_name(name)
    if name == version.name:
        return version
    held = repo.aliases_on(session, team_id=team_id, version_id=version.id)
    if held:
        raise Conflict(f"{label(version)} is released as {', '.join(f'{a.name}:{a.alias}' for a in held)}: "
                       "move those aliases first, then rename it.", param="name")
    version.name, version.version = name, repo.next_number(session, team_id=team_id, name=name)
    session.flush()
    return version


def find(session: Session, *, team_id: int, name: str) -> tuple[ModelVersion, ModelAlias | None] | None:
    """`name:vN` or `name:alias` -> the version it means (and the alias); None if it is neither form."""
    head, sep, tail = name.partition(":")
    if not sep or ":" in tail or not NAME_RE.match(head):
        return None
    number = VERSION_RE.match(tail)
    if number:
        row = repo.version_by_name(session, team_id=team_id, name=head, number=int(number.group(1)))
        if row is None:  # a run that succeeded since the last listing may not be registered yet
            sync_versions(session, team_id=team_id)
            row = repo.version_by_name(session, team_id=team_id, name=head, number=int(number.group(1)))
        if row is None:
            raise NotFound(f"The model '{head}' has no version {tail}.", param="model")
        return row, None
    if not ALIAS_RE.match(tail):
        return None
    alias = repo.alias_by_name(session, team_id=team_id, name=head, alias_name=tail)
    version = repo.version(session, team_id=team_id, version_id=alias.version_id) if alias else None
    if version is None:
        raise NotFound(f"The alias '{name}' points at no version yet." if alias else
                       f"The alias '{name}' does not exist: the Models page lists your team's aliases.", param="model")
    return version, alias


def move_alias(session: Session, *, alias: ModelAlias, release: Release, to: ModelVersion) -> Release:
    """Moves the alias to `to` and completes the release: the one place where an alias moves, so
    the team's webhooks hear of every move ("release.moved", in this transaction)."""
    before = repo.version(session, team_id=alias.team_id, version_id=alias.version_id)
    release.from_version_id, release.from_label = (before.id if before else None), label(before)
    release.to_version_id, release.to_label = to.id, label(to)
    release.status, release.finished_at = "moved", utcnow()
    alias.version_id, alias.moved_at = to.id, release.finished_at
    session.flush()
    run = runs_repo.get(session, team_id=alias.team_id, run_id=to.run_id)
    if run is not None:
        why = f" Override by an owner: {release.override_reason}" if release.override_reason else ""
        runs_service.add_event(session, run, "release", f"{alias.name}:{alias.alias} now points at {label(to)} "
                               f"(was {release.from_label}), moved by {release.requested_by}.{why}",
                               data={"release_id": release.id, "alias": f"{alias.name}:{alias.alias}"})
    notifications.emit(session, alias.team_id, "release.moved", {"release": {
        "id": release.id, "alias": f"{alias.name}:{alias.alias}", "kind": release.kind,
        "from_version": release.from_label if before else None, "to_version": release.to_label,
        "from_run_id": before.run_id if before else None, "to_run_id": to.run_id,
        "moved_by": release.requested_by, "override_reason": release.override_reason,
        "moved_at": release.finished_at.isoformat(), "url": notifications.link("/models")}})
    return release


def refuse(release: Release, message: str, *, status: str = "refused") -> Release:
    release.status, release.message, release.finished_at = status, message, utcnow()
    return release


def alias_for(session: Session, *, team_id: int, name: str, alias_name: str) -> ModelAlias:
    """The alias row, made on first use."""
    row = repo.alias_by_name(session, team_id=team_id, name=name, alias_name=alias_name)
    if row is None:
        row = ModelAlias(team_id=team_id, name=name, alias=alias_name)
        session.add(row)
        session.flush()
    return row


def open_release(session: Session, *, alias: ModelAlias, actor: Actor, kind: str, to: ModelVersion,
                 override_reason: str | None = None) -> Release:
    if repo.pending_release(session, team_id=alias.team_id, alias_id=alias.id) is not None:
        raise Conflict(f"A release of {alias.name}:{alias.alias} is already waiting for its evaluation: wait for "
                       "it or cancel it on the Models page.", param="alias")
    holder = repo.version(session, team_id=alias.team_id, version_id=alias.version_id)
    release = Release(team_id=alias.team_id, alias_id=alias.id, kind=kind, status=repo.PENDING,
                      from_version_id=holder.id if holder else None, from_label=label(holder),
                      to_version_id=to.id, to_label=label(to), requested_by_id=actor.user_id,
                      requested_by=actor.label, override_reason=override_reason)
    session.add(release)
    session.flush()
    return release


def check_override(actor: Actor, reason: str | None) -> str | None:
    reason = (reason or "").strip()
    if not reason:
        return None
    if not actor.is_owner:
        raise Forbidden("Only an owner of the team may release past the quality gate.", param="override_reason")
    if len(reason) < 10 or len(reason) > 2000:
        raise InvalidInput("Write why the gate is overridden (10 to 2,000 characters): it is kept in the log.",
                           param="override_reason")
    return reason


def rollback(session: Session, *, alias: ModelAlias, actor: Actor) -> Release:
    """Moves the alias back to the version it pointed at before its last move (no gate: that
    version was in use)."""
    last = repo.last_moved(session, team_id=alias.team_id, alias_id=alias.id)
    previous = repo.version(session, team_id=alias.team_id, version_id=last.from_version_id) if last else None
    if previous is None:
        raise Conflict(f"{alias.name}:{alias.alias} has no previous version to go back to.", param="alias")
    release = open_release(session, alias=alias, actor=actor, kind="rollback", to=previous)
    release.message = f"Rolled back from {release.from_label} to {release.to_label}."
    return move_alias(session, alias=alias, release=release, to=previous)


def cancel(session: Session, *, release: Release, actor: Actor) -> Release:
    if release.status != repo.PENDING:
        raise Conflict("Only a pending release can be cancelled.")
    return refuse(release, f"Cancelled by {actor.label}.", status="cancelled")
