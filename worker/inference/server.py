"""The inference process: a small HTTP server that generates chat answers for the web.

    studio inference --port 8001      # or: studio up (starts it with the others)

The web resolves a model name to directories from its database rows and sends them here with a
token derived from the studio's secret key. This process accepts only directories under the
studio's model or artifact store, or the exact directory of a registered base model, so a
request can never make it read an arbitrary path.

POST /generate  {"base", "adapter", "messages", "max_tokens", "temperature", "top_p", "stop",
                 "seed", "stream", "tools", "tool_choice"}
  -> {"text", "prompt_tokens", "completion_tokens", "finish_reason"}
  -> stream: NDJSON lines {"delta": "..."} then {"done": true, ...the fields above}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from app.config import Settings
from app.db import session_scope
from app.inference.client import service_token
from app.inference.targets import STORE_SCHEME
from app.models_registry import repository as models_repo
from worker.inference.engine import Engine, Output, Request

log = logging.getLogger("studio.inference")


class Message(BaseModel):
    role: str = Field(pattern="^(system|user|assistant|tool)$")
    content: str | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None


class GenerateIn(BaseModel):
    base: str
    adapter: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] = Field(default_factory=list, max_length=4)
    seed: int | None = None
    stream: bool = False
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None


def _local(settings: Settings, raw: str) -> str:
    """A directory the web named in a remote artifact store (`artifact:<key>`) is downloaded once
    into this process's cache (STUDIO_WORK_DIR/cache) and loaded from there."""
    if not raw.startswith(STORE_SCHEME):
        return raw
    from app.storage import open_store
    from worker.runtime.sync import cached_tree

    try:
        return str(cached_tree(open_store(settings), raw[len(STORE_SCHEME):], Path(settings.work_dir) / "cache"))
    except FileNotFoundError:
        raise HTTPException(404, "These weights are no longer in the artifact store.") from None


def _within(path: Path, root: Path | None) -> bool:
    return root is not None and path.is_relative_to(root.resolve())


def allowed(settings: Settings, raw: str) -> bool:
    """A directory under the model or artifact store, or a registered base model's own."""
    path = Path(raw).resolve()
    if not path.is_dir():
        return False
    if any(_within(path, root) for root in (settings.model_dir, settings.artifact_dir, Path(settings.work_dir) / "cache")):
        return True
    with session_scope(settings) as s:
        registered = models_repo.all_paths(s)
    return any(Path(p).resolve() == path for p in registered)


def _lines(engine: Engine, req: Request) -> Iterator[bytes]:
    try:
        for item in engine.stream(req):
            if isinstance(item, Output):
                yield json.dumps({"done": True, **item.__dict__}).encode() + b"\n"
            else:
                yield json.dumps({"delta": item}).encode() + b"\n"
    except Exception as exc:  # the status line is sent already: report in the stream
        log.exception("generation failed")
        yield json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n"


def create_inference_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    app = FastAPI(title="Studio inference", docs_url=None, redoc_url=None, openapi_url=None)
    engine = engine or Engine(max_adapters=settings.inference_max_adapters)
    token = service_token(settings)
    app.state.engine = engine

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "device": str(engine.device), "loaded": list(engine.bases)}

    @app.post("/generate")
    def generate(body: GenerateIn, authorization: str = Header("")) -> object:
        if authorization != f"Bearer {token}":
            raise HTTPException(401, "This inference server answers only the studio's web process.")
        base, adapter = (_local(settings, raw) if raw else None for raw in (body.base, body.adapter))
        for raw in filter(None, (base, adapter)):
            if not allowed(settings, raw):
                raise HTTPException(403, "This model directory is not one the studio manages.")
        req = Request(base=base, adapter=adapter, messages=[m.model_dump(exclude_none=True) for m in body.messages],
                      max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                      stop=body.stop, seed=body.seed, tools=body.tools, tool_choice=body.tool_choice)
        if body.stream:
            return StreamingResponse(_lines(engine, req), media_type="application/x-ndjson")
        try:
            return JSONResponse(engine.generate(req).__dict__)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    return app
