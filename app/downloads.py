"""Streaming downloads from the artifact store: files as they are (chunk by chunk, or a redirect
to a short-lived pre-signed URL when the store is a bucket and STUDIO_DOWNLOAD_REDIRECT is on),
directories as a zip built on the fly. Memory stays constant whatever the size: nothing is read
whole into the web process."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from fastapi.responses import RedirectResponse, Response

from app.config import get_settings
from app.errors import NotFound
from app.storage import CHUNK, Store
from app.streaming import ClosingStreamingResponse


class _Sink:
    """A write-only file object that hands out what was written since the last drain."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_tree(store: Store, key: str, files: list[tuple[str, int]]) -> Iterator[bytes]:
    """A zip of the files under `key`, each streamed from the store (stored, not compressed:
    safetensors do not compress, and the zip's size is known up front)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, _ in files:
            with archive.open(name, "w", force_zip64=True) as dst:
                for chunk in store.iter_bytes(f"{key}/{name}", CHUNK):
                    dst.write(chunk)
                    yield sink.drain()
    yield sink.drain()


def store_response(store: Store, key: str, filename: str, media_type: str) -> Response:
    """The file at `key`, or the directory under it as `filename`.zip; NotFound when neither is there."""
    size = store.size(key)
    if size is None:
        files = store.list_tree(key)
        if not files:
            raise NotFound("This file is no longer in the artifact store.")
        return ClosingStreamingResponse(zip_tree(store, key, files), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}.zip"'})
    settings = get_settings()
    if settings.download_redirect:
        url = store.presigned_url(key, filename=filename, expires_s=settings.presign_expiry_s)
        if url:
            return RedirectResponse(url, status_code=307)
    return ClosingStreamingResponse(store.iter_bytes(key), media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(size)})
