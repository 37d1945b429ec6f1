"""Artifact store on a filesystem directory (the embedded default). Every write records sha256
and size; writes go to a temporary file and are renamed into place, so a crash never leaves a
half-written artifact; a tree is deleted by renaming it out of its name first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from app.errors import NotFound
from app.storage.base import CHUNK, Store, Tally, Written, check_key


class ArtifactStore(Store):
    remote = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        """The key's path under the root (the local store only: callers use the interface)."""
        check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            from app.errors import InvalidInput

            raise InvalidInput(f"Not a valid artifact key: {key!r}")
        return path

    def _tmp(self, key: str) -> Path:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")

    def write_chunks(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> Written:
        tmp, tally = self._tmp(key), Tally(max_bytes)
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(tally.add(chunk))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(key))
        finally:
            tmp.unlink(missing_ok=True)
        return tally.written(key)

    async def write_async_chunks(self, key: str, chunks: AsyncIterator[bytes], *,
                                 max_bytes: int | None = None) -> Written:
        tmp, tally = self._tmp(key), Tally(max_bytes)
        try:
            with open(tmp, "wb") as fh:
                async for chunk in chunks:
                    fh.write(tally.add(chunk))
            os.replace(tmp, self.path(key))
        finally:
            tmp.unlink(missing_ok=True)
        return tally.written(key)

    def write_file(self, key: str, source: Path) -> Written:
        if Path(source).resolve() == self.path(key):  # a worker writing in place: nothing to copy
            with open(source, "rb") as fh:
                return Written(key, hashlib.file_digest(fh, "sha256").hexdigest(), Path(source).stat().st_size)
        with open(source, "rb") as fh:
            return self.write_chunks(key, iter(lambda: fh.read(CHUNK), b""))

    def upload_tree(self, key: str, source: Path) -> int:
        """Copies a directory (an adapter, a merged model) in place atomically; returns bytes."""
        final = self.path(key)
        if Path(source).resolve() != final:
            tmp = self._tmp(key)
            shutil.copytree(source, tmp)
            self.delete(key)
            os.replace(tmp, final)
        return sum(p.stat().st_size for p in final.rglob("*") if p.is_file())

    copy_tree = upload_tree

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def open(self, key: str):  # noqa: ANN201
        path = self.path(key)
        if not path.is_file():
            raise NotFound("That file is no longer in the artifact store.")
        return open(path, "rb")

    def tail(self, key: str, nbytes: int) -> bytes:
        path = self.path(key)
        if not path.is_file():
            return b""
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - nbytes))
            return fh.read()

    def list_tree(self, key: str) -> list[tuple[str, int]]:
        root = self.path(key)
        if not root.is_dir():
            return []
        return [(p.relative_to(root).as_posix(), p.stat().st_size)
                for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".part")]

    def download_file(self, key: str, dest: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise NotFound("That file is no longer in the artifact store.")
        if Path(dest).resolve() != source:
            shutil.copyfile(source, dest)

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_dir():
            doomed = path.with_name(f".deleting-{path.name}-{uuid.uuid4().hex[:8]}")
            try:
                os.replace(path, doomed)  # out of its name at once: never seen half-deleted
            except FileNotFoundError:
                return
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def check_writable(self) -> None:
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
