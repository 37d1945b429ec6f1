"""Streamed multipart uploads: every file part goes chunk by chunk into the artifact store.

The request body is fed to python-multipart's streaming parser as it arrives, so memory stays
flat whatever the file size, and reading stops as soon as a file passes the size limit (its
partial file is deleted, with every file already written by the same request).

One case cannot stream: a browser form posted without JavaScript carries its CSRF token as a
form field, so the global CSRF check (app.deps.csrf_protect) has already parsed the whole form
(Starlette spools file parts to temporary files, not to memory). Those parts are then copied
to the store in chunks, with the same limit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import UploadFile

from app.api.limits import FORM_OVERHEAD_BYTES
from app.deps import CSRF_HEADER
from app.errors import BadRequest, InvalidInput, TooLarge
from app.storage import CHUNK, Store

MAX_FIELD_BYTES = 64 * 1024  # a text field (name, goal, ...); files have their own limit
MAX_FIELDS = 50

Event = tuple[str, object]


@dataclass(frozen=True)
class ReceivedFile:
    field: str
    filename: str
    key: str
    sha256: str
    size: int


@dataclass
class ReceivedUpload:
    """The text fields of the form and the files already written to the store."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, ReceivedFile] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files.values()]

    def text(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default).strip()

    def discard(self, store: Store) -> None:
        for key in self.keys:
            store.delete(key)

    def add_field(self, name: str, value: str) -> None:
        if len(self.fields) >= MAX_FIELDS:
            raise BadRequest(f"The form has more than {MAX_FIELDS} fields; an upload needs only "
                             "a few (file, name, goal, ...).")
        self.fields.setdefault(name, value)


def human_bytes(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"


def new_prefix(team_id: int) -> str:
    """Where one upload's files live in the store."""
    return f"teams/{team_id}/datasets/{uuid.uuid4().hex}"


def clean_filename(raw: str) -> str:
    """The file's own name, without any folder a browser or client put in front of it."""
    name = PureWindowsPath(PurePosixPath(raw.replace("\x00", "")).name).name
    return "".join(c for c in name if c.isprintable()).strip()[:255]


async def receive_upload(request: Request, *, store: Store, file_keys: dict[str, str],
                         max_bytes: int) -> ReceivedUpload:
    """Read a multipart form: the parts named in ``file_keys`` are written to their store key,
    other parts are kept as text fields. A file part sent without a file name (an empty file
    input) is ignored. On any error nothing written by this request remains in the store."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise InvalidInput("Send the dataset as a multipart/form-data upload with a 'file' field.",
                           param="file")
    received = ReceivedUpload()
    try:
        if _form_already_parsed(request):
            await _from_parsed_form(request, received, store, file_keys, max_bytes)
        else:
            _check_length(request, max_bytes, len(file_keys))
            await _from_stream(request, received, store, file_keys, max_bytes)
    except BaseException:
        received.discard(store)
        raise
    return received


def _form_already_parsed(request: Request) -> bool:
    """Mirrors csrf_protect: without a bearer key or the CSRF header, it read the form."""
    bearer = request.headers.get("authorization", "")[:7].lower() == "bearer "
    return not bearer and not request.headers.get(CSRF_HEADER)


def _check_length(request: Request, max_bytes: int, files: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes * files + FORM_OVERHEAD_BYTES:
        raise TooLarge(f"The upload is larger than the limit of {human_bytes(max_bytes)} per file. "
                       "Split the dataset into smaller files, or ask an administrator to raise "
                       "STUDIO_MAX_UPLOAD_BYTES.")


def _too_large(filename: str, max_bytes: int) -> TooLarge:
    return TooLarge(f'"{filename}" is larger than the upload limit of {human_bytes(max_bytes)}. '
                    "Nothing was kept. Split the dataset into smaller files, or ask an "
                    "administrator to raise STUDIO_MAX_UPLOAD_BYTES.", param="file")


async def _write(store: Store, name: str, filename: str, key: str,
                 chunks: AsyncIterator[bytes], max_bytes: int) -> ReceivedFile:
    try:
        written = await store.write_async_chunks(key, chunks, max_bytes=max_bytes)
    except TooLarge:
        raise _too_large(filename, max_bytes) from None
    return ReceivedFile(field=name, filename=filename, key=key, sha256=written.sha256,
                        size=written.size)


# -- the streamed path -------------------------------------------------------------------


async def _from_stream(request: Request, received: ReceivedUpload, store: Store,
                       file_keys: dict[str, str], max_bytes: int) -> None:
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("The upload has no multipart boundary; send it as multipart/form-data.")
    events = _events(request.stream(), boundary)
    try:
        async for kind, headers in events:
            if kind == "part":
                await _take_part(events, headers, received, store, file_keys, max_bytes)
    finally:
        await events.aclose()


async def _take_part(events: AsyncIterator[Event], headers: dict, received: ReceivedUpload,
                     store: Store, file_keys: dict[str, str], max_bytes: int) -> None:
    _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
    name = disposition.get(b"name", b"").decode("utf-8", "replace")
    raw_filename = disposition.get(b"filename")
    if raw_filename is None:
        received.add_field(name, await _read_field(events, name))
        return
    filename = clean_filename(raw_filename.decode("utf-8", "replace"))
    if name not in file_keys or name in received.files or not filename:
        async for _ in _part_data(events):  # not a file we take: read past it
            pass
        return
    received.files[name] = await _write(store, name, filename, file_keys[name],
                                        _part_data(events), max_bytes)


async def _part_data(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The data of the current part, up to its end (shares the iterator with the caller)."""
    async for kind, value in events:
        if kind == "data":
            yield value
        elif kind == "end":
            return
    raise InvalidInput("The upload was cut off before the end. Please try again.")


async def _read_field(events: AsyncIterator[Event], name: str) -> str:
    value = bytearray()
    async for chunk in _part_data(events):
        value += chunk
        if len(value) > MAX_FIELD_BYTES:
            raise InvalidInput(f"The form field '{name}' is too long.", param=name)
    return value.decode("utf-8", "replace")


async def _events(stream: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[Event]:
    """("part", headers), ("data", bytes) and ("end", None) events as the body arrives."""
    pending: list[Event] = []
    headers: dict[bytes, bytes] = {}
    name, value = bytearray(), bytearray()

    def header_end() -> None:
        headers[bytes(name).lower()] = bytes(value)
        name.clear()
        value.clear()

    callbacks = {
        "on_part_begin": headers.clear,
        "on_header_field": lambda d, s, e: name.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]),
        "on_header_end": header_end,
        "on_headers_finished": lambda: pending.append(("part", dict(headers))),
        "on_part_data": lambda d, s, e: pending.append(("data", bytes(d[s:e]))),
        "on_part_end": lambda: pending.append(("end", None)),
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in stream:
            parser.write(chunk)
            batch, pending[:] = list(pending), []
            for event in batch:
                yield event
        parser.finalize()
    except FormParserError:
        raise InvalidInput("The upload is not a well-formed multipart form. Please try again.") from None
    for event in pending:
        yield event


# -- the already-parsed path --------------------------------------------------------------


async def _from_parsed_form(request: Request, received: ReceivedUpload, store: Store,
                            file_keys: dict[str, str], max_bytes: int) -> None:
    form = await request.form()
    for name, value in form.multi_items():
        if not isinstance(value, UploadFile):
            received.add_field(name, value)
            continue
        filename = clean_filename(value.filename or "")
        if name in file_keys and name not in received.files and filename:
            received.files[name] = await _write(store, name, filename, file_keys[name],
                                                _read_upload(value), max_bytes)


async def _read_upload(upload: UploadFile) -> AsyncIterator[bytes]:
    await upload.seek(0)
    while chunk := await upload.read(CHUNK):
        yield chunk
