"""How a webhook body is signed, and how a receiver checks it (docs/notifications.md).

    X-Studio-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>

The time is inside the signed text, so a receiver that refuses a t older than a few minutes
refuses a replayed request too. `verify` is what a receiver written in Python does."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Studio-Signature"
TOLERANCE_S = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, body, t)}"


def verify(secret: str, value: str, body: bytes, *, tolerance_s: int = TOLERANCE_S, now: float | None = None) -> bool:
    """True when `value` (the header) signs `body` with `secret` and is at most tolerance_s old."""
    parts: dict[str, list[str]] = {}
    for item in value.split(","):
        key, _, v = item.strip().partition("=")
        parts.setdefault(key, []).append(v)
    try:
        t = int(parts.get("t", [""])[0])
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = signature(secret, body, t)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))
