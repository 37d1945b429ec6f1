"""Loaded models and generation for the inference process.

One base model stays loaded per path (LRU, `max_bases`); fine-tuned LoRA adapters are loaded
onto it on demand with PEFT (`load_adapter`), LRU-limited to `max_adapters` per base. Weights are
safetensors only and `trust_remote_code` stays off.

Requests are batched: each loaded base has a `Batcher` thread that takes the queued requests with
the same sampling settings (up to `max_batch`, whatever their adapters) and answers them with one
left-padded `generate` call. Rows of different adapters go through PEFT's mixed-batch LoRA
(`adapter_names`, "__base__" for the base model), so a row never runs with another's adapter; a
batch of one is the plain `generate` of that request, token for token. A per-row stopping
criterion streams each row's text as its tokens come and ends the row at its end token, its
max_tokens, a stop sequence or a cancel. A seeded request runs alone, so its seed is its own.

    engine = Engine()
    out = engine.generate(Request(base="/models/smol", adapter=None, messages=[...]))
    for item in engine.stream(req, cancel=event):   # Note | str pieces | Output (last)
        ...
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from planner.weights import check_model_dir
from worker.inference.tools import render_prompt
from worker.training.cpu_speedup import speed_up_for_cpu


@dataclass
class Request:
    base: str
    adapter: str | None
    messages: list[dict]
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tools: list[dict] | None = None  # OpenAI tool definitions (worker/inference/tools.py)
    tool_choice: str | dict | None = None
    # The trainer's own output is asked for (a base vs fine-tuned comparison): a backend that
    # would answer with other arithmetic (llama.cpp's quantized model) leaves it to transformers.
    exact: bool = False


@dataclass
class Output:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: object
    lock: threading.Lock = field(default_factory=threading.Lock)
    adapters: OrderedDict = field(default_factory=OrderedDict)  # adapter name -> path
    _batcher: Batcher | None = None

    def batcher(self, engine: Engine) -> Batcher:
        with engine._guard:
            if self._batcher is None:
                self._batcher = Batcher(engine, self)
            return self._batcher


def _device_and_dtype() -> tuple[torch.device, torch.dtype]:
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda:0"), dtype
    return torch.device("cpu"), torch.float32


def check_adapter_dir(path: str) -> None:
    """An adapter (a run's, or a checkpoint's beside its optimizer state) is loaded from its
    safetensors file only; PEFT would unpickle adapter_model.bin otherwise."""
    check_model_dir(path)
    if not (Path(path) / "adapter_model.safetensors").is_file():
        raise ValueError(f"{path} has no adapter_model.safetensors: the studio loads adapters in safetensors only.")


def _adapter_name(path: str) -> str:
    return "a" + hashlib.sha256(path.encode()).hexdigest()[:16]


class Engine:
    def __init__(self, *, max_bases: int = 1, max_adapters: int = 8, max_batch: int = 8, gather_s: float = 0.05,
                 before_batch: Callable[[list[Ticket]], None] | None = None):
        self.max_bases, self.max_adapters, self.max_batch = max_bases, max_adapters, max_batch
        self.gather_s = gather_s  # an idle batcher waits this long for more requests (up to 4 times)
        self.before_batch = before_batch  # called by a batcher before each batch (threads, notes)
        self.bases: OrderedDict[str, Loaded] = OrderedDict()
        self._guard = threading.Lock()  # protects the dictionaries, not generation
        self.device, self.dtype = _device_and_dtype()

    # -- loading ---------------------------------------------------------------------------

    def base(self, path: str) -> Loaded:
        with self._guard:
            if path in self.bases:
                self.bases.move_to_end(path)
                return self.bases[path]
            from transformers import AutoModelForCausalLM, AutoTokenizer

            check_model_dir(path)  # UnsafeModel is a ValueError: the server answers 422 with it
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            if not tokenizer.chat_template:
                raise ValueError("This model has no chat template, so it cannot answer chat messages.")
            model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False, use_safetensors=True,
                                                         dtype=self.dtype).to(self.device).eval()
            speed_up_for_cpu(model)  # fp32 CPU layers only: answers 1.4x faster on the AMD dev CPU, same text
            self.bases[path] = Loaded(model=model, tokenizer=tokenizer)
            while len(self.bases) > self.max_bases:
                _, old = self.bases.popitem(last=False)
                if old._batcher is not None:
                    old._batcher.close()  # its thread ends once its queue is empty
            return self.bases[path]

    def _activate(self, loaded: Loaded, adapter: str | None) -> None:
        """Called with loaded.lock held: the adapter to use (loading it if needed), or none."""
        if adapter is None:
            return
        name = _adapter_name(adapter)
        if name in loaded.adapters:
            loaded.adapters.move_to_end(name)
        else:
            check_adapter_dir(adapter)
            if not loaded.adapters and not hasattr(loaded.model, "peft_config"):
                from peft import PeftModel

                loaded.model = PeftModel.from_pretrained(loaded.model, adapter, adapter_name=name).eval()
            else:
                loaded.model.load_adapter(adapter, adapter_name=name)
            speed_up_for_cpu(loaded.model)  # the new adapter's layers
            loaded.adapters[name] = adapter
            while len(loaded.adapters) > self.max_adapters:
                old, _ = loaded.adapters.popitem(last=False)
                loaded.model.delete_adapter(old)
        loaded.model.set_adapter(name)

    # -- generation ------------------------------------------------------------------------

    def _inputs(self, loaded: Loaded, req: Request) -> tuple[list[int], str]:
        """The prompt's token ids (the messages, and tools, through the model's chat template) and
        the answer's forced first words (a tool call that tool_choice requires: part of its text)."""
        text, start = render_prompt(loaded.tokenizer, req.messages, req.tools, req.tool_choice)
        return loaded.tokenizer(text, add_special_tokens=False)["input_ids"], start

    def submit(self, req: Request) -> Ticket:
        """Queue a request on its base's batcher; the ticket yields its pieces as they come."""
        loaded = self.base(req.base)
        ticket = Ticket(req, *self._inputs(loaded, req))
        loaded.batcher(self).put(ticket)
        return ticket

    def generate(self, req: Request) -> Output:
        for item in self.submit(req).items():
            if isinstance(item, Output):
                return item
        raise RuntimeError("generation ended without an answer")  # items() always ends with one

    def stream(self, req: Request, *, cancel: threading.Event | None = None) -> Iterator[str | Note | Output]:
        """Note notes while queued, text pieces as they are generated, then the Output (its
        text is the whole answer). Setting `cancel` (or closing the iterator) stops this answer
        at its next token; the others of its batch go on."""
        ticket = self.submit(req)
        if cancel is not None:
            ticket.cancel_event = cancel
        try:
            yield from ticket.items()
        finally:
            ticket.cancel()

    def _run_batch(self, loaded: Loaded, tickets: list[Ticket]) -> None:
        """With loaded.lock held: one `generate` call for requests of the same sampling settings,
        left-padded, each row with its own adapter (PEFT mixed batch) or, all alike, set_adapter."""
        req = tickets[0].req
        tok = loaded.tokenizer
        if req.seed is not None:
            torch.manual_seed(req.seed)
        adapters = {t.req.adapter for t in tickets}
        for adapter in adapters - {None}:
            self._activate(loaded, adapter)
        width = max(len(t.prompt) for t in tickets)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.full((len(tickets), width), pad, dtype=torch.long)
        mask = torch.zeros((len(tickets), width), dtype=torch.long)
        for row, t in enumerate(tickets):
            ids[row, width - len(t.prompt):] = torch.tensor(t.prompt)
            mask[row, width - len(t.prompt):] = 1
        kwargs = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                      max_new_tokens=max(t.req.max_tokens for t in tickets), pad_token_id=pad,
                      stopping_criteria=StoppingCriteriaList([_Rows(tickets, tok, _eos_ids(loaded))]))
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            if len(adapters) > 1:  # PEFT's mixed batch: "__base__" rows answer without an adapter
                names = [_adapter_name(t.req.adapter) if t.req.adapter else "__base__" for t in tickets]
                loaded.model.generate(**kwargs, adapter_names=names)
            elif req.adapter is None and loaded.adapters:
                with loaded.model.disable_adapter():
                    loaded.model.generate(**kwargs)
            else:
                if req.adapter is not None:
                    loaded.model.set_adapter(_adapter_name(req.adapter))
                loaded.model.generate(**kwargs)


class Note(str):
    """A note about a request's wait (queued behind other answers, sharing the cores with
    training): a stream shows it; it is not part of the answer."""


class Ticket:
    """One request in a batcher's queue: its prompt, and what its row of a batch produced."""

    def __init__(self, req: Request, prompt: list[int], forced: str = ""):
        self.req, self.prompt, self.forced = req, prompt, forced
        self.events: queue.Queue = queue.Queue()
        self.cancel_event = threading.Event()
        self.tokens: list[int] = []
        self.trimmer = StopTrimmer(req.stop)
        self.done = False
        if forced and (ready := self.trimmer.feed(forced)):  # the forced words come first
            self.events.put(ready)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def key(self) -> tuple:
        """Requests with the same key can share a `generate` call; a seeded one runs alone."""
        r = self.req
        return (r.temperature if r.temperature > 0 else 0.0, r.top_p if r.temperature > 0 else 1.0,
                tuple(r.stop), id(self) if r.seed is not None else None)

    def finish(self, tokenizer, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        if error is not None:
            self.events.put(error)
            return
        tail = self.trimmer.finish()
        if tail:
            self.events.put(tail)
        text, _ = cut_at_stop(self.forced + tokenizer.decode(self.tokens, skip_special_tokens=True), self.req.stop)
        completion = len(self.tokens)
        self.events.put(Output(text=text, prompt_tokens=len(self.prompt), completion_tokens=completion,
                               finish_reason=_finish(self.trimmer.stopped, completion, self.req.max_tokens)))

    def items(self) -> Iterator[str | Note | Output]:
        """The ticket's notes, pieces and Output; pieces that piled up while the reader was busy
        (a slow client, a loaded machine) come joined as one, so a stream sends fewer lines."""
        held = None
        while True:
            item = held if held is not None else self.events.get()
            held = None
            if type(item) is str:
                while True:
                    try:
                        more = self.events.get_nowait()
                    except queue.Empty:
                        break
                    if type(more) is not str:
                        held = more
                        break
                    item += more
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Output):
                return


class _Rows(StoppingCriteria):
    """Called by `generate` after each new token: records each row's token, streams its new text
    (held back at a possible stop sequence), and ends a row at its end-of-answer token, its
    max_tokens, a stop sequence, or a cancel. `generate` pads the ended rows until all have ended."""

    def __init__(self, tickets: list[Ticket], tokenizer, eos: set[int]):
        self.tickets, self.tokenizer, self.eos = tickets, tokenizer, eos
        self.printed = [0] * len(tickets)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(len(self.tickets), dtype=torch.bool, device=input_ids.device)
        last = input_ids[:, -1].tolist()
        for row, t in enumerate(self.tickets):
            if t.done:
                done[row] = True
                continue
            t.tokens.append(last[row])
            text = self.tokenizer.decode(t.tokens, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > self.printed[row]:  # not half a character
                piece = t.trimmer.feed(text[self.printed[row]:])
                self.printed[row] = len(text)
                if piece:
                    t.events.put(piece)
            if (last[row] in self.eos or len(t.tokens) >= t.req.max_tokens or t.trimmer.stopped
                    or t.cancelled):
                t.finish(self.tokenizer)
                done[row] = True
        return done


def _eos_ids(loaded: Loaded) -> set[int]:
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos} if eos is not None else set()


class Batcher:
    """One thread per loaded base: takes the queued requests that can share a `generate` call
    (same sampling settings and stop sequences, any adapters), up to `max_batch`, and runs them
    as one batch; a request reaching it idle waits `gather_s` (while more keep coming, at most
    4 times that) for others sent at the same moment. Requests that arrive meanwhile wait for the next batch (static batching: a
    batch ends when its last row does)."""

    def __init__(self, engine: Engine, loaded: Loaded):
        self.engine, self.loaded = engine, loaded
        self.pending: list[Ticket] = []
        self.ready = threading.Condition()
        self.busy = self.closed = False
        threading.Thread(target=self._loop, daemon=True, name="studio-batcher").start()

    def put(self, ticket: Ticket) -> None:
        with self.ready:
            if self.busy:
                ticket.events.put(Note("Waiting for the answers being generated to finish."))
            self.pending.append(ticket)
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()

    def _take(self) -> list[Ticket] | None:
        with self.ready:
            while not self.pending and not self.closed:
                self.ready.wait()
            if not self.pending:
                return None  # closed
            # Requests sent together (8 clients at once, "Try it"'s two answers) reach an idle
            # batcher a few milliseconds apart: gather them while they keep coming, so that they
            # share this batch instead of waiting for the whole of a batch of one.
            deadline = time.monotonic() + self.engine.gather_s * 4
            while len(self.pending) < self.engine.max_batch and time.monotonic() < deadline:
                seen = len(self.pending)
                self.ready.wait(self.engine.gather_s)
                if len(self.pending) == seen:
                    break
            for t in [t for t in self.pending if t.cancelled]:  # stopped while queued
                t.finish(self.loaded.tokenizer)
            self.pending = [t for t in self.pending if not t.cancelled]
            if not self.pending:
                return []
            key, batch, adapters = self.pending[0].key(), [], set()
            for t in self.pending:
                if t.key() != key or len(batch) >= self.engine.max_batch:
                    continue
                if t.req.adapter and t.req.adapter not in adapters:
                    if len(adapters) >= self.engine.max_adapters:  # all of a batch's adapters stay loaded
                        continue
                    adapters.add(t.req.adapter)
                batch.append(t)
            self.pending = [t for t in self.pending if t not in batch]
            self.busy = True
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            if self.engine.before_batch is not None:
                self.engine.before_batch(batch)
            try:
                with self.loaded.lock:
                    self.engine._run_batch(self.loaded, batch)
                for t in batch:
                    t.finish(self.loaded.tokenizer)  # rows still open when generate stopped
            except BaseException as exc:  # each waiting reader raises it
                for t in batch:
                    t.finish(self.loaded.tokenizer, exc)
            finally:
                with self.ready:
                    self.busy = False


def _finish(stopped: bool, completion: int, max_tokens: int) -> str:
    return "length" if not stopped and completion >= max_tokens else "stop"


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text up to the first stop sequence (excluded), and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


class StopTrimmer:
    """Streams text but never a stop sequence: holds back a tail that could begin one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer, self.emitted, self.stopped = "", "", False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buffer += piece
        text, self.stopped = cut_at_stop(self.buffer, self.stops)
        if self.stopped:
            self.buffer = ""
            return self._emit(text)
        cut = len(self.buffer) - self.hold if self.hold else len(self.buffer)
        ready, self.buffer = self.buffer[:max(cut, 0)], self.buffer[max(cut, 0):]
        return self._emit(ready)

    def finish(self) -> str:
        tail, self.buffer = ("" if self.stopped else self.buffer), ""
        return self._emit(tail)

    def _emit(self, text: str) -> str:
        self.emitted += text
        return text
