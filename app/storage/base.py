"""The artifact store's interface: every dataset, checkpoint, adapter, merged model, export and
log goes through it, on a local directory (the embedded default) or an S3-compatible bucket.

Keys are relative POSIX paths built by the studio (e.g. "teams/3/datasets/12/raw.jsonl"); every
method validates its key first, so no user-supplied path reaches the filesystem or the bucket
unchecked. A "tree" is every object under a key prefix (an adapter, a merged model, a checkpoint).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.errors import InvalidInput, TooLarge

_KEY_RE = re.compile(r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*$")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Written:
    key: str
    sha256: str
    size: int


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key) or any(p in ("..", ".") for p in key.split("/")):
        raise InvalidInput(f"Not a valid artifact key: {key!r}")
    return key


class Tally:
    """Counts and hashes the chunks of one write as they pass, refusing it past `max_bytes`: what
    every backend's streamed write records (`Written`)."""

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes, self.size, self.digest = max_bytes, 0, hashlib.sha256()

    def add(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise TooLarge(f"The file is larger than the limit of {self.max_bytes:,} bytes.")
        self.digest.update(chunk)
        return chunk

    def written(self, key: str) -> Written:
        return Written(key, self.digest.hexdigest(), self.size)


class Store(ABC):
    """One storage interface; `remote` says whether a worker must copy files in and out."""

    remote: bool = False

    @abstractmethod
    def describe(self) -> str: ...

    # -- writing ----------------------------------------------------------------------------
    @abstractmethod
    def write_chunks(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> Written:
        """All or nothing: a failure (or more than max_bytes) leaves nothing under the key."""

    @abstractmethod
    async def write_async_chunks(self, key: str, chunks: AsyncIterator[bytes], *,
                                 max_bytes: int | None = None) -> Written: ...

    def write_bytes(self, key: str, data: bytes) -> Written:
        return self.write_chunks(key, [data])

    @abstractmethod
    def write_file(self, key: str, source: Path) -> Written: ...

    @abstractmethod
    def upload_tree(self, key: str, source: Path) -> int:
        """Copies a local directory under `key` (what was there before goes); returns its bytes."""

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def exists(self, key: str) -> bool:
        """A file at `key` or a tree under it."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The size of the file at `key`, None when there is none."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streamed binary reader (iterable by lines); NotFound when the file is gone."""

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        with self.open(key) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    @abstractmethod
    def tail(self, key: str, nbytes: int) -> bytes:
        """The last `nbytes` of a file (b"" when there is none)."""

    @abstractmethod
    def list_tree(self, key: str) -> list[tuple[str, int]]:
        """(path relative to `key`, size) of every file under the prefix, sorted."""

    @abstractmethod
    def download_file(self, key: str, dest: Path) -> None: ...

    def download_tree(self, key: str, dest: Path) -> list[tuple[str, int]]:
        files = self.list_tree(key)
        for name, _ in files:
            target = Path(dest) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.download_file(f"{key}/{name}", target)
        return files

    def local_path(self, key: str) -> Path | None:
        """The file's own path when the store is a directory on this host, else None."""
        return None

    def presigned_url(self, key: str, *, filename: str, expires_s: int) -> str | None:
        """A short-lived URL that serves the file itself (None: the store has no such thing)."""
        return None

    # -- deleting, health -------------------------------------------------------------------
    @abstractmethod
    def delete(self, key: str) -> None:
        """Deletes the file at `key` and every file under it."""

    @abstractmethod
    def check_writable(self) -> None: ...
