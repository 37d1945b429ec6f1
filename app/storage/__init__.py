"""The artifact store: one interface (base.Store), a local directory (the embedded default) or
an S3-compatible bucket (STUDIO_ARTIFACT_URL=s3://bucket/prefix)."""

from __future__ import annotations

from functools import lru_cache

from app.config import Settings
from app.storage.base import CHUNK, Store, Written, check_key
from app.storage.local import ArtifactStore

__all__ = ["CHUNK", "ArtifactStore", "Store", "Written", "check_key", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store the settings name: a bucket for an s3:// URL, else the local directory."""
    if settings.artifact_url.startswith("s3://"):
        return _s3(settings.artifact_url, settings.s3_endpoint_url, settings.s3_region,
                   settings.s3_access_key_id, settings.s3_secret_access_key)
    return ArtifactStore(settings.artifact_dir)


@lru_cache(maxsize=8)
def _s3(url: str, endpoint: str, region: str, key_id: str, secret: str) -> Store:
    from app.storage.s3 import S3Store

    return S3Store(url, endpoint_url=endpoint or None, region=region or None,
                   access_key_id=key_id or None, secret_access_key=secret or None)
