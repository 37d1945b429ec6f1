"""The OpenAPI document at /openapi.json (shown at /docs): both APIs, one error schema.

FastAPI documents its own validation error shape for 422; the studio answers every error with
`{"error": {...}}` (app.main.error_response), so the document is corrected to say so, and every
API operation lists the error statuses it can answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.openai.schemas import ErrorOut

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
ERROR_STATUSES = {"401": "No valid API key or session", "403": "Not allowed", "404": "Not found",
                  "413": "Body too large", "422": "Invalid input", "429": "Rate limited"}
DESCRIPTION = """Two APIs over the same studio, both with `Authorization: Bearer <studio API key>`:

* **Native** under `/api/v1`: datasets, models, runs with events, metrics, checkpoints, artifacts.
* **OpenAI-compatible** under `/v1`: files, fine_tuning.jobs, models, chat.completions; the
  official `openai` SDK works with `base_url="http://<studio>/v1"`.

Every error has one shape: `{"error": {"message", "type", "code", "param"}}`. Each API key may
make `rate_limit_per_min` requests a minute (429 beyond); JSON bodies are limited in size (413).
See docs/api.md."""


def error_response_doc(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": ERROR_REF}}}


def _plain_tuples(node: Any) -> None:
    """pydantic's tuple schemas (e.g. metric points [step, value]) can come out as `items: [...]`,
    which OpenAPI 3.1 rejects and which tools read differently: written as an array of a fixed
    length whose items match any of the tuple's types."""
    if isinstance(node, dict):
        for key in ("items", "prefixItems"):
            if isinstance(node.get(key), list):
                kinds = node.pop(key)
                node["items"] = kinds[0] if len({str(k) for k in kinds}) == 1 else {"anyOf": kinds}
                node["minItems"] = node["maxItems"] = len(kinds)
        for value in node.values():
            _plain_tuples(value)
    elif isinstance(node, list):
        for value in node:
            _plain_tuples(value)


def build(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schemas["ErrorOut"].pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    for path, item in doc.get("paths", {}).items():
        if not path.startswith(("/api/", "/v1/")):
            continue
        for op in item.values():
            responses = op.setdefault("responses", {})
            for status, text in ERROR_STATUSES.items():
                responses[status] = error_response_doc(responses.get(status, {}).get("description") or text)
    _plain_tuples(doc)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    app.openapi = lambda: build(app)
