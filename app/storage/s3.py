"""Artifact store in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...), through boto3.

STUDIO_ARTIFACT_URL=s3://bucket/prefix; the endpoint, region and credentials come from the
settings (STUDIO_S3_ENDPOINT_URL, STUDIO_S3_REGION, STUDIO_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY)
or, where those are empty, from boto3's usual chain (AWS_* variables, ~/.aws, instance roles).

Writes are spooled to a temporary file while their sha256 and size are counted (and a size limit
checked), then uploaded by boto3's transfer manager (multipart above 16 MiB, several parts at
once); an S3 object appears whole or not at all, so a failed write leaves nothing under its key.
Reads are streamed: nothing is read whole into memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlparse

from app.errors import InvalidInput, NotFound
from app.storage.base import CHUNK, Store, Tally, Written, check_key

MULTIPART_THRESHOLD = 16 * 1024**2


class _Body(io.RawIOBase):
    """botocore's streaming body as a raw stream, so io.BufferedReader can read lines from it."""

    def __init__(self, body) -> None:  # noqa: ANN001
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001
        data = self.body.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.body.close()
        super().close()


class S3Store(Store):
    remote = True

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidInput(f"STUDIO_ARTIFACT_URL must look like s3://bucket/prefix, not {url!r}")
        self.url, self.bucket = url, parsed.netloc
        self.prefix = parsed.path.strip("/")
        if self.prefix:
            check_key(self.prefix)
        # Path-style addressing: MinIO and most self-hosted stores have no per-bucket DNS names.
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                        s3={"addressing_style": "path"} if endpoint_url else None, signature_version="s3v4")
        session = boto3.session.Session()
        self.client = session.client("s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
                                     aws_secret_access_key=secret_access_key, config=config)
        # /readyz and `studio doctor` try once and answer in a moment, so that a probe with a short
        # timeout sees an outage instead of waiting through the retries.
        self.probe_client = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config.merge(Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1,
                                       read_timeout=2)))
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD,
                                       max_concurrency=4)

    def describe(self) -> str:
        endpoint = self.client.meta.endpoint_url
        return f"{self.url} at {endpoint}"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        return code in ("404", "NoSuchKey", "NotFound")

    # -- writing ----------------------------------------------------------------------------
    def _upload_spooled(self, key: str, spool: BinaryIO, tally: Tally) -> Written:
        spool.seek(0)
        self.client.upload_fileobj(spool, self.bucket, self._name(key), Config=self.transfer,
                                   ExtraArgs={"Metadata": {"sha256": tally.digest.hexdigest()}})
        return tally.written(key)

    def write_chunks(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> Written:
        self._name(key)
        tally = Tally(max_bytes)
        with tempfile.TemporaryFile() as spool:
            for chunk in chunks:
                spool.write(tally.add(chunk))
            return self._upload_spooled(key, spool, tally)

    async def write_async_chunks(self, key: str, chunks: AsyncIterator[bytes], *,
                                 max_bytes: int | None = None) -> Written:
        self._name(key)
        tally = Tally(max_bytes)
        with tempfile.TemporaryFile() as spool:
            async for chunk in chunks:
                spool.write(tally.add(chunk))
            return await asyncio.to_thread(self._upload_spooled, key, spool, tally)

    def write_file(self, key: str, source: Path) -> Written:
        with open(source, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        self.client.upload_file(str(source), self.bucket, self._name(key), Config=self.transfer,
                                ExtraArgs={"Metadata": {"sha256": digest}})
        return Written(key, digest, Path(source).stat().st_size)

    def upload_tree(self, key: str, source: Path) -> int:
        source = Path(source)
        files = sorted(p for p in source.rglob("*") if p.is_file())
        names = {p.relative_to(source).as_posix() for p in files}
        stale = [name for name, _ in self.list_tree(key) if name not in names]
        total = 0
        for file in files:
            total += self.write_file(f"{key}/{file.relative_to(source).as_posix()}", file).size
        for name in stale:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(f"{key}/{name}"))
        return total

    # -- reading ----------------------------------------------------------------------------
    def size(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))["ContentLength"]
        except Exception as exc:
            if self._missing(exc):
                return None
            raise

    def exists(self, key: str) -> bool:
        if self.size(key) is not None:
            return True
        found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._name(key) + "/", MaxKeys=1)
        return bool(found.get("KeyCount"))

    def open(self, key: str):  # noqa: ANN201
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except Exception as exc:
            if self._missing(exc):
                raise NotFound("That file is no longer in the artifact store.") from None
            raise
        return io.BufferedReader(_Body(body), CHUNK)

    def tail(self, key: str, nbytes: int) -> bytes:
        size = self.size(key)
        if not size:
            return b""
        start = max(0, size - nbytes)
        body = self.client.get_object(Bucket=self.bucket, Key=self._name(key), Range=f"bytes={start}-{size - 1}")["Body"]
        with body:
            return body.read()

    def list_tree(self, key: str) -> list[tuple[str, int]]:
        prefix = self._name(key) + "/"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [(obj["Key"][len(prefix):], obj["Size"]) for obj in page.get("Contents", [])]
        return sorted(found)

    def download_file(self, key: str, dest: Path) -> None:
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            self.client.download_file(self.bucket, self._name(key), str(tmp), Config=self.transfer)
            tmp.replace(dest)
        except Exception as exc:
            if self._missing(exc):
                raise NotFound("That file is no longer in the artifact store.") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def presigned_url(self, key: str, *, filename: str, expires_s: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": self._name(key),
                    "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(filename)}"})

    # -- deleting, health -------------------------------------------------------------------
    def delete(self, key: str) -> None:
        names = [self._name(key)] + [f"{self._name(key)}/{name}" for name, _ in self.list_tree(key)]
        for start in range(0, len(names), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": n} for n in names[start:start + 1000]], "Quiet": True})

    def check_writable(self) -> None:
        probe = self._name(f".probe-{uuid.uuid4().hex}")
        self.probe_client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
        self.probe_client.delete_object(Bucket=self.bucket, Key=probe)
