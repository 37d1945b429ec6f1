"""Artifact store on a filesystem directory. Every write records sha256 and size; writes go to a
temporary file and are renamed into place, so a crash never leaves a half-written artifact.

Keys are relative POSIX paths built by the studio (e.g. "teams/3/datasets/12/raw.jsonl"); a key
that would leave the root is refused, so no user-supplied path reaches the filesystem unchecked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import InvalidInput, NotFound, TooLarge

_KEY_RE = re.compile(r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*$")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Written:
    key: str
    sha256: str
    size: int


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY_RE.match(key) or any(part in ("..", ".") for part in key.split("/")):
            raise InvalidInput(f"Not a valid artifact key: {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"Not a valid artifact key: {key!r}")
        return path

    def _tmp(self, key: str) -> Path:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")

    def write_chunks(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> Written:
        tmp, digest, size = self._tmp(key), hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"The file is larger than the limit of {max_bytes:,} bytes.")
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(key))
        finally:
            tmp.unlink(missing_ok=True)
        return Written(key, digest.hexdigest(), size)

    async def write_async_chunks(self, key: str, chunks: AsyncIterator[bytes], *,
                                 max_bytes: int | None = None) -> Written:
        tmp, digest, size = self._tmp(key), hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"The file is larger than the limit of {max_bytes:,} bytes.")
                    digest.update(chunk)
                    fh.write(chunk)
            os.replace(tmp, self.path(key))
        finally:
            tmp.unlink(missing_ok=True)
        return Written(key, digest.hexdigest(), size)

    def write_bytes(self, key: str, data: bytes) -> Written:
        return self.write_chunks(key, [data])

    def write_file(self, key: str, source: Path) -> Written:
        with open(source, "rb") as fh:
            return self.write_chunks(key, iter(lambda: fh.read(CHUNK), b""))

    def copy_tree(self, key: str, source: Path) -> int:
        """Copies a directory (an adapter, a merged model) in place atomically; returns bytes."""
        final = self.path(key)
        tmp = self._tmp(key)
        shutil.copytree(source, tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return sum(p.stat().st_size for p in final.rglob("*") if p.is_file())

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def open(self, key: str):  # noqa: ANN201
        path = self.path(key)
        if not path.is_file():
            raise NotFound("That file is no longer in the artifact store.")
        return open(path, "rb")

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        with self.open(key) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def check_writable(self) -> None:
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
