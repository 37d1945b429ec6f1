"""The inference process: a small HTTP server that generates chat answers for the web.

    studio inference --port 8001      # or: studio up (starts it with the others)

The web resolves a model name to directories from its database rows and sends them here with a
token derived from the studio's secret key. This process accepts only directories under the
studio's model or artifact store, or the exact directory of a registered base model, so a
request can never make it read an arbitrary path.

POST /generate  {"base", "adapter", "messages", "max_tokens", "temperature", "top_p", "stop",
                 "seed", "stream", "tools", "tool_choice", "exact"}
  -> {"text", "prompt_tokens", "completion_tokens", "finish_reason"}
  -> stream: NDJSON lines {"note": "..."} while it waits (behind other answers, or sharing the
     cores with a run training on this host), {"delta": "..."} as tokens come, then
     {"done": true, ...the fields above}. Closing the stream stops the answer at its next token.

The engine is chosen by STUDIO_INFERENCE_BACKEND (`make_engine`): transformers (worker/inference/
engine.py: concurrent requests batched), llama.cpp on CPU hosts (llamacpp_backend.py: faster per
stream, a model's concurrent requests decoded in one batch too; `exact` requests still go to
transformers), vLLM on GPU hosts (vllm_backend.py), or `auto`: llama.cpp where there is no GPU and
llama-cpp-python is installed, else transformers. Before each batch (or request joining a llama.cpp
batch) the process sets its threads: every core while no run trains on this host, else the cores
it keeps for itself (STUDIO_INFERENCE_CORES; `studio up` gives the train worker the others).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import torch

from fastapi import FastAPI, Header, HTTPException
from starlette.concurrency import iterate_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.config import Settings
from app.db import session_scope
from app.inference.client import service_token
from app.inference.targets import STORE_SCHEME
from app.models_registry import repository as models_repo
from app.models import Run, RunStatus
from worker.inference.engine import Engine, Note, Output, Request, Ticket
from app.streaming import ClosingStreamingResponse

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
    # A comparison that must be the trainer's own greedy output (Try it's base vs fine-tuned):
    # answered by transformers whatever the backend (worker/inference/llamacpp_backend.py).
    exact: bool = False


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


TRAINING_NOTE = ("A run is training on this machine: the answer shares the processor with it "
                 "and comes more slowly.")


class CoreShare:
    """Called before each batch: how many threads the batch may use, and a note for its readers
    when a run trains on this host (its train worker's name ends with '@' and this host's name)."""

    def __init__(self, settings: Settings, *, cores: int | None = None, every_s: float = 5.0):
        self.settings, self.cores, self.every_s = settings, cores or os.cpu_count() or 1, every_s
        self._checked, self._training = 0.0, False

    def training_here(self) -> bool:
        now = time.monotonic()
        if now - self._checked > self.every_s:
            with session_scope(self.settings) as s:
                self._training = s.query(Run.id).filter(
                    Run.status == RunStatus.running, Run.worker_id.like(f"%@{socket.gethostname()}")
                ).first() is not None
            self._checked = now
        return self._training

    def threads(self, batch: list[Ticket]) -> int:
        """The threads a batch (or a llama.cpp answer) may use; tells its readers when it shares
        the cores with a run training on this host."""
        training = self.training_here()
        if training:
            for ticket in batch:
                ticket.events.put(Note(TRAINING_NOTE))
        return self.settings.inference_cores_shared(self.cores) if training else self.cores

    def __call__(self, batch: list[Ticket]) -> None:
        torch.set_num_threads(self.threads(batch))


def _line(item: object) -> bytes:
    if isinstance(item, Note):
        return json.dumps({"note": str(item)}).encode() + b"\n"
    if isinstance(item, Output):
        return json.dumps({"done": True, **item.__dict__}).encode() + b"\n"
    return json.dumps({"delta": item}).encode() + b"\n"


async def _lines(engine: Engine, req: Request) -> AsyncIterator[bytes]:
    """The stream's lines; when the web closes the stream (its reader stopped), the answer is
    cancelled at its next token and its batch goes on without it."""
    cancel = threading.Event()
    try:
        async for item in iterate_in_threadpool(engine.stream(req, cancel=cancel)):
            yield _line(item)
    except Exception as exc:  # the status line is sent already: report in the stream
        log.exception("generation failed")
        yield json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n"
    finally:
        cancel.set()


def backend_for(settings: Settings) -> str:
    """The backend STUDIO_INFERENCE_BACKEND names; `auto`: llama.cpp on a host without a GPU where
    llama-cpp-python is installed (several times faster on one stream there), else transformers."""
    if settings.inference_backend != "auto":
        return settings.inference_backend
    from worker.inference.llamacpp_backend import llama_cpp_available

    return "llamacpp" if not torch.cuda.is_available() and llama_cpp_available() else "transformers"


def make_engine(settings: Settings):  # noqa: ANN201
    backend = backend_for(settings)
    if backend == "vllm":
        from worker.inference.vllm_backend import VllmEngine

        return VllmEngine(max_adapters=settings.inference_max_adapters)
    share = CoreShare(settings)

    def transformers_engine() -> Engine:
        return Engine(max_adapters=settings.inference_max_adapters, max_batch=settings.inference_max_batch,
                      before_batch=share)

    if backend == "llamacpp":
        from worker.inference.llamacpp_backend import LlamaCppEngine

        return LlamaCppEngine(Path(settings.work_dir) / "llamacpp", cores=share.cores,
                              max_seqs=settings.inference_max_batch, kv_budget_gb=settings.inference_kv_gb,
                              cache_gb=settings.llamacpp_cache_gb,
                              before_request=share.threads, fallback=transformers_engine)
    return transformers_engine()


def create_inference_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    app = FastAPI(title="Studio inference", docs_url=None, redoc_url=None, openapi_url=None)
    engine = engine or make_engine(settings)
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
                      stop=body.stop, seed=body.seed, tools=body.tools, tool_choice=body.tool_choice,
                      exact=body.exact)
        if body.stream:
            return ClosingStreamingResponse(_lines(engine, req), media_type="application/x-ndjson")
        try:
            return JSONResponse(engine.generate(req).__dict__)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    return app
