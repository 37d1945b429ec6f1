"""The playground. Pages: the chat (`/playground`), its stream, the team's saved transcripts and
one transcript (shared by its link within the team), with the forms that turn it into an A/B
test or a new dataset, or rename or delete it. The API (`/api/v1/playground/transcripts`): list,
create, get, rename (PATCH), delete, `/ab`, `/dataset`.

The stream (POST /playground/stream, JSON body `ChatIn`) sends NDJSON lines tagged with the
model's column, as "Try it" does: {"who": "0"|"1"|"2", and "note" (waiting: other answers ahead,
a run training on the same machine), "delta", "done" or "error"}. All columns are asked at once,
so the inference process answers them in one batch; closing the stream (Stop) ends them all at
their next token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.deps import CurrentPrincipal, CurrentUser, Principal, SessionDep, SettingsDep
from app.errors import InvalidInput, StudioError
from app.inference import client as inference
from app.models import Transcript, User
from app.playground import repository as repo
from app.playground import service
from app.playground.schemas import (
    MAX_MODELS,
    ChatIn,
    TitleIn,
    ToAbIn,
    ToAbOut,
    ToDatasetIn,
    ToDatasetOut,
    TranscriptIn,
    TranscriptOut,
    TranscriptPage,
    TranscriptSummary,
)
from app.web import redirect, render
from app.streaming import ClosingStreamingResponse

api = APIRouter(prefix="/api/v1/playground", tags=["playground"])
pages = APIRouter(tags=["playground"], include_in_schema=False)


def _author(db: Session, row: Transcript) -> str | None:
    user = db.get(User, row.created_by_id) if row.created_by_id else None
    return user.email if user else None


def _out(db: Session, row: Transcript) -> TranscriptOut:
    return TranscriptOut(id=row.id, title=row.title, models=row.models, system=row.system,
                         temperature=row.temperature, max_tokens=row.max_tokens, turns=row.turns,
                         created_by=_author(db, row), created_at=row.created_at,
                         url=f"/playground/transcripts/{row.id}")


def _summary(db: Session, row: Transcript) -> TranscriptSummary:
    return TranscriptSummary(id=row.id, title=row.title, models=row.models, turns=len(row.turns),
                             created_by=_author(db, row), created_at=row.created_at,
                             url=f"/playground/transcripts/{row.id}")


def _invalid(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    return InvalidInput(f"{where}: {first['msg']}", param=where)


# -- the chat -----------------------------------------------------------------------------------

@pages.get("/playground")
def chat_page(request: Request, db: SessionDep, p: CurrentUser, transcript: int | None = None) -> Response:
    """The chat; `?transcript=<id>` continues a saved transcript (its models, settings and turns)."""
    start: dict[str, Any] = {"models": [], "system": "", "temperature": 0.0, "max_tokens": 256, "turns": []}
    if transcript is not None:
        row = service.get(db, team_id=p.team_id, transcript_id=transcript)
        start = {"models": row.models, "system": row.system or "", "temperature": row.temperature,
                 "max_tokens": row.max_tokens, "turns": row.turns, "title": row.title}
    groups = service.model_choices(db, team_id=p.team_id)
    if not start["models"]:
        listed = groups[0][1]
        start["models"] = listed[:2]
    return render(request, "playground/chat.html", {
        "groups": groups, "start": start, "columns": range(MAX_MODELS), "can_write": "write" in p.scopes,
        "nav_current": "/playground"})


@pages.post("/playground/stream")
async def chat_stream(request: Request, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    try:
        body = ChatIn.model_validate(json.loads(await request.body() or b"null"))
    except ValueError as exc:
        raise (_invalid(exc) if isinstance(exc, ValidationError)
               else InvalidInput("The request is not JSON.")) from None
    if not body.prompt.strip():
        raise InvalidInput("Type a message to send to the models.", param="prompt")
    targets = service.targets(db, request.app.state.store, team_id=p.team_id, settings=body)
    messages = service.conversations(body)
    db.commit()  # the answers can take a while: hold no transaction meanwhile
    streams: dict[str, Iterator[dict[str, Any]]] = {}
    try:
        for column, (target, conversation) in enumerate(zip(targets, messages, strict=True)):
            params = {"messages": conversation, "max_tokens": body.max_tokens, "temperature": body.temperature,
                      "top_p": 1.0}
            streams[str(column)] = await run_in_threadpool(inference.open_stream, settings, target, params)
    except BaseException:
        for items in streams.values():
            items.close()  # those opened already
        raise
    return ClosingStreamingResponse(inference.merged_lines(streams), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- saved transcripts (pages) -----------------------------------------------------------------

@pages.get("/playground/transcripts")
def transcripts_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    rows = repo.list_for_team(db, team_id=p.team_id, limit=200)
    return render(request, "playground/transcripts.html", {
        "rows": [_summary(db, r) for r in rows], "nav_current": "/playground"})


@pages.post("/playground/transcripts")
async def save_transcript_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    """The chat page's Save form: the conversation comes as JSON in its `transcript` field."""
    p.require("write")
    form = await request.form()
    try:
        data = json.loads(str(form.get("transcript") or "null"))
        if isinstance(data, dict):
            data["title"] = str(form.get("title") or data.get("title") or "")
        row = service.create(db, request.app.state.store, team_id=p.team_id, user_id=p.user_id,
                             body=TranscriptIn.model_validate(data))
    except (ValueError, StudioError) as exc:
        db.rollback()
        message = (_invalid(exc).message if isinstance(exc, ValidationError) else
                   exc.message if isinstance(exc, StudioError) else "The conversation could not be read.")
        return redirect(request, "/playground", flash=("error", f"Not saved: {message}"))
    return redirect(request, f"/playground/transcripts/{row.id}",
                    flash=("success", "Saved. Anyone in your team can open this page by its link."))


def _detail(request: Request, db: Session, p: Principal, row: Transcript, *, error: StudioError | None = None,
            form: dict | None = None) -> Response:
    return render(request, "playground/transcript.html", {
        "t": _out(db, row), "can_write": "write" in p.scopes, "error": error.message if error else None,
        "form": form or {},
        "nav_current": "/playground"}, status_code=error.status_code if error else 200)


@pages.get("/playground/transcripts/{transcript_id}")
def transcript_page(request: Request, transcript_id: int, db: SessionDep, p: CurrentUser) -> Response:
    return _detail(request, db, p, service.get(db, team_id=p.team_id, transcript_id=transcript_id))


@pages.post("/playground/transcripts/{transcript_id}/title")
async def rename_page(request: Request, transcript_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    title = str((await request.form()).get("title") or "")
    try:
        service.rename(db, transcript=row, title=title)
    except StudioError as exc:
        db.rollback()
        return _detail(request, db, p, service.get(db, team_id=p.team_id, transcript_id=transcript_id),
                       error=exc, form={"title": title[:200]})
    return redirect(request, f"/playground/transcripts/{transcript_id}", flash=("success", "Renamed."))


@pages.post("/playground/transcripts/{transcript_id}/delete")
def delete_page(request: Request, transcript_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    title = row.title
    service.delete(db, transcript=row)
    return redirect(request, "/playground/transcripts", flash=(
        "success", f"Transcript “{title}” deleted. A/B tests and datasets made from it are kept."))


def _column(value: Any) -> int | None:
    try:
        return int(str(value)) - 1
    except (TypeError, ValueError):
        return None


@pages.post("/playground/transcripts/{transcript_id}/ab")
async def to_ab_page(request: Request, transcript_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str) and k != "csrf_token"}
    try:
        a, b = _column(form.get("model_a")), _column(form.get("model_b"))
        if a is None or b is None or a < 0 or b < 0:
            raise InvalidInput("Choose model A and model B.", param="model_a")
        comparison = service.to_ab(db, request.app.state.store, transcript=row, user_id=p.user_id,
                                   body=ToAbIn.model_construct(model_a=a, model_b=b, name=form.get("name", "")[:200]))
    except StudioError as exc:
        db.rollback()
        return _detail(request, db, p, service.get(db, team_id=p.team_id, transcript_id=transcript_id),
                       error=exc, form=form)
    return redirect(request, f"/ab/{comparison.id}", flash=(
        "success", "A/B test created from the transcript's prompts: both models answer each one again, then "
                   "voting opens."))


@pages.post("/playground/transcripts/{transcript_id}/dataset")
async def to_dataset_page(request: Request, transcript_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str) and k != "csrf_token"}
    chosen = []
    for i in range(len(row.turns)):
        value = form.get(f"turn_{i}", "")
        chosen.append(_column(value) if value not in ("", "none") else None)
    try:
        if any(c is not None and c < 0 for c in chosen):
            raise InvalidInput("Choose an answer of one of the columns, or none.", param="chosen")
        dataset, count = service.to_dataset(db, request.app.state.store, transcript=row, user_id=p.user_id,
                                            body=ToDatasetIn.model_construct(name=form.get("name", "")[:200],
                                                                             chosen=chosen))
    except StudioError as exc:
        db.rollback()
        return _detail(request, db, p, service.get(db, team_id=p.team_id, transcript_id=transcript_id),
                       error=exc, form=form)
    said = f"{count} example{'s' if count != 1 else ''} uploaded as a new dataset: it is being checked like any upload."
    return redirect(request, f"/datasets/{dataset.id}", flash=("success", said))


# -- the API ----------------------------------------------------------------------------------

@api.get("/transcripts", response_model=TranscriptPage)
def list_transcripts(db: SessionDep, p: CurrentPrincipal, offset: Annotated[int, Query(ge=0)] = 0,
                     limit: Annotated[int, Query(ge=1, le=100)] = 50) -> TranscriptPage:
    """The team's saved playground transcripts, newest first."""
    p.require("read")
    rows = repo.list_for_team(db, team_id=p.team_id, offset=offset, limit=limit)
    return TranscriptPage(data=[_summary(db, r) for r in rows], total=repo.count_for_team(db, team_id=p.team_id))


@api.post("/transcripts", response_model=TranscriptOut, status_code=201)
def create_transcript(request: Request, body: TranscriptIn, db: SessionDep, p: CurrentPrincipal) -> JSONResponse:
    """Saves a conversation (one answer per model at each turn) for the team."""
    p.require("write")
    row = service.create(db, request.app.state.store, team_id=p.team_id, user_id=_user_id(p), body=body)
    return JSONResponse(_out(db, row).model_dump(mode="json"), status_code=201)


@api.get("/transcripts/{transcript_id}", response_model=TranscriptOut)
def get_transcript(transcript_id: int, db: SessionDep, p: CurrentPrincipal) -> TranscriptOut:
    p.require("read")
    return _out(db, service.get(db, team_id=p.team_id, transcript_id=transcript_id))


@api.patch("/transcripts/{transcript_id}", response_model=TranscriptOut)
def rename_transcript(transcript_id: int, body: TitleIn, db: SessionDep, p: CurrentPrincipal) -> TranscriptOut:
    """Renames the transcript (`{"title"}`); its conversation never changes."""
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    return _out(db, service.rename(db, transcript=row, title=body.title))


@api.delete("/transcripts/{transcript_id}", response_model=TranscriptOut)
def delete_transcript(transcript_id: int, db: SessionDep, p: CurrentPrincipal) -> TranscriptOut:
    """Deletes the transcript and returns it as it was. A/B tests and datasets made from it stay."""
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    out = _out(db, row)
    service.delete(db, transcript=row)
    return out


@api.post("/transcripts/{transcript_id}/ab", response_model=ToAbOut, status_code=201)
def transcript_to_ab(request: Request, transcript_id: int, body: ToAbIn, db: SessionDep,
                     p: CurrentPrincipal) -> JSONResponse:
    """A blind A/B test of two of its models (by column) on the transcript's prompts."""
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    comparison = service.to_ab(db, request.app.state.store, transcript=row, user_id=_user_id(p), body=body)
    return JSONResponse(ToAbOut(comparison_id=comparison.id, url=f"/ab/{comparison.id}").model_dump(),
                        status_code=201)


@api.post("/transcripts/{transcript_id}/dataset", response_model=ToDatasetOut, status_code=201)
def transcript_to_dataset(request: Request, transcript_id: int, body: ToDatasetIn, db: SessionDep,
                          p: CurrentPrincipal) -> JSONResponse:
    """A new dataset of the chosen answers (one chat example per chosen turn), validated like an upload."""
    p.require("write")
    row = service.get(db, team_id=p.team_id, transcript_id=transcript_id)
    dataset, count = service.to_dataset(db, request.app.state.store, transcript=row, user_id=_user_id(p), body=body)
    return JSONResponse(ToDatasetOut(dataset_id=dataset.id, examples=count,
                                     url=f"/datasets/{dataset.id}").model_dump(), status_code=201)


def _user_id(p: Principal) -> int | None:
    """The person behind the call: the logged-in user, or the API key's creator."""
    if p.user is not None:
        return p.user.id
    return p.api_key.created_by_id if p.api_key is not None else None
