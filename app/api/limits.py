"""Per-key rate limits and the JSON body size limit, for both APIs.

Rate limits are a sliding window of one minute per API key (`ApiKey.rate_limit_per_min`):
exactly `limit` requests in any 60 seconds, then 429 with the seconds until the oldest one
leaves the window. Browser sessions are not limited here. Where the window lives:

- Redis, when one is configured (``STUDIO_REDIS_URL``; empty: the broker's URL when the broker
  is Redis): one sorted set per key hash (``studio:ratelimit:<hash>``, one member per request,
  scored by Redis's own clock), trimmed, counted and added to by one Lua script, which Redis runs
  atomically. So N web processes, on one host or many, share one budget per key. If Redis does
  not answer (down, or slower than ``REDIS_TIMEOUT_S``, with no retry) the request is let through
  (fail open: an outage of Redis must not take the API down) and a warning is logged, at most
  once a minute per process; for ``DOWN_PAUSE_S`` after a failure requests are let through
  without asking Redis, so an unreachable Redis costs one timeout per pause, not one per request.
- This web process's memory otherwise (the embedded default, no Redis): exact for one web
  process; with N processes behind a balancer a key gets up to N times its limit.

`limiter_for(settings)` picks one; the app keeps it in ``app.state.rate_limiter``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections import deque

from app.errors import RateLimited
from app.models import ApiKey

log = logging.getLogger(__name__)

WINDOW_S = 60.0
REDIS_PREFIX = "studio:ratelimit:"
REDIS_TIMEOUT_S = 0.5  # a rate check waits at most this long for Redis before letting the request through
WARN_EVERY_S = 60.0
DOWN_PAUSE_S = 5.0  # after Redis failed to answer, let requests through this long before asking again

# KEYS[1]: the key's sorted set. ARGV: window (s), limit, a unique member. Returns {1, 0} when the
# request is counted, {0, seconds until a slot frees} when the window is full. Redis's TIME is the
# clock, so web hosts whose clocks disagree still share one window.
SLIDING_WINDOW_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return {1, '0'}
"""


def _refuse(limit: int, wait_s: float) -> RateLimited:
    wait = max(1, math.ceil(wait_s - 1e-9))
    return RateLimited(f"This API key may make {limit} requests a minute; try again in {wait} s.",
                       details={"retry_after_s": wait, "limit_per_min": limit})


class MemoryLimiter:
    """The sliding window in this process's memory (one deque of times per key)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, key: ApiKey, now: float | None = None) -> None:
        limit = key.rate_limit_per_min
        if limit is None or limit <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key.key_hash, deque())
            while hits and hits[0] <= now - WINDOW_S:
                hits.popleft()
            if len(hits) >= limit:
                raise _refuse(limit, hits[0] + WINDOW_S - now)
            hits.append(now)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class RedisLimiter:
    """The sliding window in Redis, shared by every web process that uses the same Redis."""

    def __init__(self, url: str, *, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self._errors = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                            retry=Retry(NoBackoff(), 0), health_check_interval=30)
        self._script = self._client.register_script(SLIDING_WINDOW_LUA)
        self._warned_at = -math.inf
        self._down_until = -math.inf

    def check(self, key: ApiKey, now: float | None = None) -> None:  # noqa: ARG002 (Redis keeps the time)
        limit = key.rate_limit_per_min
        if limit is None or limit <= 0:
            return
        if time.monotonic() < self._down_until:
            return  # Redis failed moments ago: fail open without waiting for it again
        try:
            allowed, wait = self._script(keys=[REDIS_PREFIX + key.key_hash],
                                         args=[WINDOW_S, limit, uuid.uuid4().hex])
        except self._errors as exc:
            self._down_until = time.monotonic() + DOWN_PAUSE_S
            self._warn(exc)
            return  # fail open
        if int(allowed) != 1:
            raise _refuse(limit, float(wait))

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("rate limits are not enforced: Redis at %s does not answer (%s); requests are let "
                        "through until it does", _redacted(self.url), exc)

    def reset(self) -> None:
        for name in self._client.scan_iter(match=REDIS_PREFIX + "*"):
            self._client.delete(name)


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


MEMORY = MemoryLimiter()


def limiter_for(settings) -> MemoryLimiter | RedisLimiter:  # noqa: ANN001
    """Redis when the settings name one (STUDIO_REDIS_URL, or a Redis broker), else this process's memory."""
    return RedisLimiter(settings.redis_url) if settings.redis_url else MEMORY


def check_rate(key: ApiKey, now: float | None = None) -> None:
    """Counts one request of this key in this process's memory; refuses it (429) when the last
    minute is full. (The app calls its own limiter: app.state.rate_limiter.)"""
    MEMORY.check(key, now)


def reset() -> None:
    MEMORY.reset()


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
