"""Loaded models and generation for the inference process.

One base model stays loaded per path (LRU, `max_bases`); fine-tuned LoRA adapters are loaded
onto it on demand with PEFT (`load_adapter`) and switched with `set_adapter`, LRU-limited to
`max_adapters` per base. A lock per base serialises generation, so two concurrent requests never
run with each other's adapter. Weights are safetensors only and `trust_remote_code` stays off.

    engine = Engine()
    out = engine.generate(Request(base="/models/smol", adapter=None, messages=[...]))
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from planner.weights import check_model_dir
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
    def __init__(self, *, max_bases: int = 1, max_adapters: int = 8):
        self.max_bases, self.max_adapters = max_bases, max_adapters
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
                self.bases.popitem(last=False)
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

    def _inputs(self, loaded: Loaded, req: Request) -> dict:
        plain = [{"role": m["role"], "content": m["content"]} for m in req.messages]
        text = loaded.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        return loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)

    def _kwargs(self, loaded: Loaded, req: Request, inputs: dict) -> dict:
        tok = loaded.tokenizer
        kwargs = dict(**inputs, max_new_tokens=req.max_tokens, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if req.stop:
            kwargs.update(stop_strings=req.stop, tokenizer=tok)
        return kwargs

    def _run(self, loaded: Loaded, req: Request, kwargs: dict) -> torch.Tensor:
        """With loaded.lock held: seed, pick the adapter (or none), generate."""
        if req.seed is not None:
            torch.manual_seed(req.seed)
        self._activate(loaded, req.adapter)
        with torch.inference_mode():
            if req.adapter is None and loaded.adapters:
                with loaded.model.disable_adapter():
                    return loaded.model.generate(**kwargs)
            return loaded.model.generate(**kwargs)

    def generate(self, req: Request) -> Output:
        loaded = self.base(req.base)
        inputs = self._inputs(loaded, req)
        with loaded.lock:
            out = self._run(loaded, req, self._kwargs(loaded, req, inputs))
        prompt = inputs["input_ids"].shape[1]
        new = out[0, prompt:]
        text = loaded.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, req.stop)
        return Output(text=text, prompt_tokens=prompt, completion_tokens=int(new.shape[0]),
                      finish_reason=_finish(stopped, int(new.shape[0]), req.max_tokens))

    def stream(self, req: Request) -> Iterator[str | Output]:
        """Text pieces as they are generated, then the Output (its text is the whole answer)."""
        from transformers import TextIteratorStreamer

        loaded = self.base(req.base)
        inputs = self._inputs(loaded, req)
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        result: dict = {}

        def work() -> None:
            try:
                with loaded.lock:
                    result["out"] = self._run(loaded, req, {**self._kwargs(loaded, req, inputs), "streamer": streamer})
            except BaseException as exc:  # surfaced to the reader below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        trimmer = StopTrimmer(req.stop)
        for piece in streamer:
            ready = trimmer.feed(piece)
            if ready:
                yield ready
        thread.join()
        if "error" in result:
            raise result["error"]
        tail = trimmer.finish()
        if tail:
            yield tail
        completion = int(result["out"].shape[1] - inputs["input_ids"].shape[1])
        yield Output(text=trimmer.emitted, prompt_tokens=int(inputs["input_ids"].shape[1]),
                     completion_tokens=completion, finish_reason=_finish(trimmer.stopped, completion, req.max_tokens))


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
