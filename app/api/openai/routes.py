"""The OpenAI-compatible surface under /v1: files, fine_tuning.jobs, models, chat.completions."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.openai import chat, files, fine_tuning, models
from app.api.openapi import error_response_doc

# Documented by reference to the one error schema (app.api.openapi adds it to the document):
# `"model": ErrorOut` would have FastAPI build a validator per status for every route, twice.
ERRORS = {status: error_response_doc(text) for status, text in (
    (400, "Bad request"), (401, "No valid API key"), (403, "The key lacks the scope"), (404, "Not found"),
    (409, "Conflict with the current state"), (413, "Body too large"), (422, "Invalid input"),
    (429, "Rate limited"), (502, "The inference server failed"), (503, "A service is not reachable"))}

router = APIRouter(prefix="/v1", responses=ERRORS)
for module in (files, fine_tuning, models, chat):
    router.include_router(module.router)
