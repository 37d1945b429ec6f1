"""Streaming downloads from the artifact store: files as they are, directories as a zip built
on the fly (constant memory)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from fastapi.responses import StreamingResponse

CHUNK = 1024 * 1024


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


def zip_directory(root: Path) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            with open(file, "rb") as src, archive.open(file.relative_to(root).as_posix(), "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    yield sink.drain()
    yield sink.drain()


def file_response(path: Path, filename: str, media_type: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if path.is_dir():
        return StreamingResponse(zip_directory(path), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}.zip"'})

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    headers["Content-Length"] = str(path.stat().st_size)
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)
