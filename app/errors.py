"""Typed domain errors that carry their HTTP status; one handler renders them (see main.py)."""

from __future__ import annotations

from typing import Any


class StudioError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.param = param


class BadRequest(StudioError):
    """A request that cannot be read as sent (e.g. a form with too many fields): 400."""


class NotFound(StudioError):
    status_code = 404
    code = "not_found"


class Unauthorized(StudioError):
    status_code = 401
    code = "unauthorized"


class Forbidden(StudioError):
    status_code = 403
    code = "forbidden"


class CSRFError(Forbidden):
    code = "csrf_failed"


class Conflict(StudioError):
    status_code = 409
    code = "conflict"


class InvalidInput(StudioError):
    status_code = 422
    code = "invalid_input"


class TooLarge(StudioError):
    status_code = 413
    code = "too_large"


class RateLimited(StudioError):
    status_code = 429
    code = "rate_limited"


class Unavailable(StudioError):
    status_code = 503
    code = "unavailable"
