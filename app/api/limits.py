"""Per-key rate limits and the JSON body size limit, for both APIs.

Rate limits are a sliding window of one minute per API key (`ApiKey.rate_limit_per_min`), kept
in this web process's memory: exact for one web process; with N processes behind a balancer a
key gets up to N times its limit. Browser sessions are not limited here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

from app.errors import RateLimited
from app.models import ApiKey

WINDOW_S = 60.0
_hits: dict[str, deque] = {}
_lock = threading.Lock()


def check_rate(key: ApiKey, now: float | None = None) -> None:
    """Counts one request of this key; refuses it (429) when the last minute is full."""
    limit = key.rate_limit_per_min
    if limit is None or limit <= 0:
        return
    now = time.monotonic() if now is None else now
    with _lock:
        hits = _hits.setdefault(key.key_hash, deque())
        while hits and hits[0] <= now - WINDOW_S:
            hits.popleft()
        if len(hits) >= limit:
            wait = max(1, int(hits[0] + WINDOW_S - now + 0.999))
            raise RateLimited(f"This API key may make {limit} requests a minute; try again in {wait} s.",
                              details={"retry_after_s": wait, "limit_per_min": limit})
        hits.append(now)


def reset() -> None:
    with _lock:
        _hits.clear()


# Multipart bodies may be this large only on the routes that take uploads: a dataset with its
# evaluation file (two files), or one file for /v1/files. Everywhere else the JSON limit applies.
UPLOAD_PATHS = frozenset(("/datasets", "/api/v1/datasets", "/v1/files"))
UPLOAD_FILES = 2
FORM_OVERHEAD_BYTES = 1024 * 1024  # room for boundaries, part headers and text fields


class BodyLimitMiddleware:
    """Refuses request bodies above their limit with 413 in the one error shape, whether the
    size is declared (Content-Length) or streamed (chunked: the body is counted as it is read
    and reading stops at the limit, so nothing past it is ever buffered, in memory or on disk).

    The limit is ``max_bytes`` for every body (JSON, forms, a multipart form posted anywhere),
    except multipart uploads to ``UPLOAD_PATHS``: ``max_upload_bytes`` per file for two files,
    plus the form's overhead. The upload itself checks each file against ``max_upload_bytes``
    while it is written (app/datasets/upload.py); this bound also covers the browser form whose
    CSRF field makes the framework spool the whole form before the route runs."""

    def __init__(self, app, *, max_bytes: int, max_upload_bytes: int | None = None) -> None:  # noqa: ANN001
        self.app, self.max_bytes = app, max_bytes
        upload = max_upload_bytes if max_upload_bytes is not None else max_bytes
        self.max_form_bytes = upload * UPLOAD_FILES + FORM_OVERHEAD_BYTES

    def limit(self, scope, headers: dict) -> int:  # noqa: ANN001
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        upload = multipart and scope.get("path", "").rstrip("/") in UPLOAD_PATHS
        return self.max_form_bytes if upload else self.max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = self.limit(scope, headers)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        state = {"seen": 0, "over": False, "refused": False}

        async def counted():  # noqa: ANN202
            message = await receive()
            state["seen"] += len(message.get("body", b""))
            if state["seen"] > limit:  # streamed past the limit: stop reading here
                state["over"] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message) -> None:  # noqa: ANN001
            if not state["over"]:
                await send(message)
            elif not state["refused"]:
                state["refused"] = True
                await self._refuse(send, limit)

        await self.app(scope, counted, guarded)

    async def _refuse(self, send, limit: int) -> None:  # noqa: ANN001
        body = json.dumps({"error": {
            "message": f"The request body is larger than {limit:,} bytes, the most this studio "
                       "accepts here. Send less (a dataset above STUDIO_MAX_UPLOAD_BYTES: split "
                       "it into smaller files).", "type": "too_large",
            "code": "too_large", "param": None}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
