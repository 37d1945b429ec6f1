"""`/v1/files`: training files are the studio's datasets (same upload, same validation).

A file uploaded here is validated by the same task as a dataset uploaded in the browser; its
`status` is `uploaded` while the check runs, `processed` once valid and `error` (with
`status_details`) when invalid. All of it is training data: evaluation data comes from a
separate `validation_file`, as with OpenAI.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.openai import names
from app.api.openai import repository as repo
from app.api.openai.schemas import FileDeletedOut, FileList, FileOut
from app.datasets import service as datasets
from app.datasets.upload import new_prefix, receive_upload
from app.deps import CurrentPrincipal, SessionDep
from app.downloads import store_response
from app.errors import Conflict, InvalidInput
from app.models import Dataset, DatasetStatus

router = APIRouter(tags=["openai: files"])
STATUS = {DatasetStatus.uploaded: "uploaded", DatasetStatus.validating: "uploaded",
          DatasetStatus.valid: "processed", DatasetStatus.invalid: "error"}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL of {\"messages\": [...]}"},
        "purpose": {"type": "string", "enum": ["fine-tune"]}}}}}}}
_DELETE = "studio_delete_files_on_commit"


@event.listens_for(Session, "after_commit")
def _delete_files(session: Session) -> None:
    """A deleted file's bytes go only once the deletion is committed."""
    for store, keys in session.info.pop(_DELETE, []):
        for key in keys:
            store.delete(key)


@event.listens_for(Session, "after_rollback")
def _keep_files(session: Session) -> None:
    session.info.pop(_DELETE, None)


def delete_after_commit(session: Session, store, keys: list[str]) -> None:  # noqa: ANN001
    """These keys (files or whole trees) leave the store once the session commits; a rollback keeps them."""
    session.info.setdefault(_DELETE, []).append((store, keys))


def file_out(row: Dataset) -> FileOut:
    details = None
    if row.status == DatasetStatus.invalid:
        details = (row.report or {}).get("explanation") or "The file did not pass validation."
    return FileOut(id=names.encode("file", row.id), bytes=row.size_bytes, created_at=names.unix(row.created_at),
                   filename=row.original_filename or row.name, status=STATUS[row.status], status_details=details)


def get_file(db, team_id: int, file_id: str, param: str | None = None) -> Dataset:  # noqa: ANN001
    number = names.decode("file", file_id, what="file", param=param)
    return datasets.get(db, team_id=team_id, dataset_id=number)


@router.post("/files", response_model=FileOut, openapi_extra=UPLOAD_BODY,
             responses={200: {"description": "The file, queued for validation."}})
async def create_file(request: Request, db: SessionDep, p: CurrentPrincipal) -> FileOut:
    """Upload a training file (purpose `fine-tune`). Validation runs in the background."""
    p.require("write")
    store = request.app.state.store
    prefix = new_prefix(p.team_id)
    upload = await receive_upload(request, store=store, file_keys={"file": f"{prefix}/raw"},
                                  max_bytes=request.app.state.settings.max_upload_bytes)
    try:
        purpose = upload.fields.get("purpose", "")
        if purpose != "fine-tune":
            raise InvalidInput(f"purpose must be 'fine-tune' here (got '{purpose}').", param="purpose")
        main = upload.files.get("file")
        options = datasets.parse_options({"eval_fraction": "0"}, filename=main.filename if main else "")
        created = datasets.create_from_upload(db, store=store, team_id=p.team_id, user_id=p.user_id,
                                              upload=upload, options=options)
    except BaseException:
        upload.discard(store)
        raise
    db.flush()
    return file_out(created.dataset)


@router.get("/files", response_model=FileList)
def list_files(db: SessionDep, p: CurrentPrincipal, purpose: str | None = None,
               after: Annotated[str | None, Query(max_length=64, description="a file id: the page after it")] = None,
               limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
               order: Literal["asc", "desc"] = "desc") -> FileList:
    p.require("read")
    if purpose not in (None, "fine-tune"):
        return FileList(data=[], has_more=False)
    rows = repo.files(db, team_id=p.team_id, after_id=names.decode_cursor("file", after), limit=limit + 1,
                      newest_first=order == "desc")
    data = [file_out(r) for r in rows[:limit]]
    return FileList(data=data, has_more=len(rows) > limit, first_id=data[0].id if data else None,
                    last_id=data[-1].id if data else None)


@router.get("/files/{file_id}", response_model=FileOut)
def retrieve_file(file_id: str, db: SessionDep, p: CurrentPrincipal) -> FileOut:
    p.require("read")
    return file_out(get_file(db, p.team_id, file_id))


@router.get("/files/{file_id}/content", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The uploaded bytes."}})
def file_content(request: Request, file_id: str, db: SessionDep, p: CurrentPrincipal) -> Response:
    p.require("read")
    row = get_file(db, p.team_id, file_id)
    store = request.app.state.store
    if store.size(row.raw_path) is None:
        raise Conflict("This file's bytes are no longer in the artifact store.")
    return store_response(store, row.raw_path, row.original_filename or f"file-{row.id}", "application/octet-stream")


@router.delete("/files/{file_id}", response_model=FileDeletedOut)
def delete_file(request: Request, file_id: str, db: SessionDep, p: CurrentPrincipal) -> FileDeletedOut:
    """Deletes the file and its validated copies; a file a fine-tuning job used is kept."""
    p.require("write")
    row = get_file(db, p.team_id, file_id)
    if repo.runs_using(db, team_id=p.team_id, dataset_id=row.id):
        raise Conflict("A fine-tuning job used this file, so it is kept with the run's record.", param="file_id")
    keys = [k for k in (row.raw_path, row.normalized_path, row.normalized_eval_path) if k]
    try:
        with db.begin_nested():
            db.delete(row)
    except IntegrityError:
        raise Conflict("This file is in use and cannot be deleted.", param="file_id") from None
    delete_after_commit(db, request.app.state.store, keys)
    return FileDeletedOut(id=file_id, deleted=True)
