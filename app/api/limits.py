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


class BodyLimitMiddleware:
    """Refuses request bodies above `max_bytes` with 413 in the one error shape, whether the
    size is declared (Content-Length) or streamed. Multipart uploads have their own, larger
    limit (max_upload_bytes) checked while they are written."""

    def __init__(self, app, *, max_bytes: int) -> None:  # noqa: ANN001
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        if scope["type"] != "http" or headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        state = {"seen": 0, "over": False, "refused": False}

        async def counted():  # noqa: ANN202
            message = await receive()
            state["seen"] += len(message.get("body", b""))
            if state["seen"] > self.max_bytes:  # streamed past the limit: stop reading here
                state["over"] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message) -> None:  # noqa: ANN001
            if not state["over"]:
                await send(message)
            elif not state["refused"]:
                state["refused"] = True
                await self._refuse(send)

        await self.app(scope, counted, guarded)

    async def _refuse(self, send) -> None:  # noqa: ANN001
        body = json.dumps({"error": {
            "message": f"The request body is larger than {self.max_bytes} bytes.", "type": "too_large",
            "code": "too_large", "param": None}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
