"""An optional vLLM backend for the inference process on GPU hosts (STUDIO_INFERENCE_BACKEND=vllm).

vLLM batches continuously (a request joins the running batch at the next step, with paged KV
memory) and serves several LoRA fine-tunes of one base at once (`enable_lora`, `LoRARequest` per
request), behind the same `/generate` of worker/inference/server.py, so `/v1/chat/completions`
and "Try it" do not change. Install it on the GPU host (`pip install 'vllm'`; it brings its own
torch build) and start `STUDIO_INFERENCE_BACKEND=vllm studio inference`.

What it keeps of the studio's rules: weights are the same checked safetensors directories
(`check_model_dir`, `trust_remote_code` off), the prompt is the model's own chat template, one base
per process (a request for another base is refused with a clear error), adapters are loaded by
vLLM on first use (`max_loras` at once, `STUDIO_INFERENCE_MAX_ADAPTERS`). A fully fine-tuned model
(no adapter) is served as a base of its own: it needs its own inference process.

Not yet measured on a GPU: no device was lent while this was written; its tests drive it with an
engine object that records what it was asked (tests/worker/test_vllm_backend.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import uuid
from collections.abc import Iterator

from planner.weights import check_model_dir
from worker.inference.engine import Output, Request, StopTrimmer, Ticket, _finish


class VllmEngine:
    """The engine interface the server uses (`submit`, `generate`, `stream`, `bases`, `device`)
    over a vLLM `AsyncLLMEngine` running on its own event loop thread."""

    def __init__(self, *, max_adapters: int = 8, gpu_memory_utilization: float = 0.85, engine_factory=None):  # noqa: ANN001
        self.max_adapters, self.gpu_memory_utilization = max_adapters, gpu_memory_utilization
        self._factory = engine_factory or self._vllm_engine
        self.engine = None
        self.base_path: str | None = None
        self.tokenizer = None
        self.device = "cuda (vLLM)"
        self._lora_ids: dict[str, int] = {}
        self._next_id = itertools.count(1)
        self._guard = threading.Lock()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="studio-vllm-loop").start()

    @property
    def bases(self) -> list[str]:
        return [self.base_path] if self.base_path else []

    def _vllm_engine(self, path: str):  # noqa: ANN202
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        args = AsyncEngineArgs(model=path, tokenizer=path, trust_remote_code=False, enable_lora=True,
                               max_loras=self.max_adapters, max_lora_rank=64,
                               gpu_memory_utilization=self.gpu_memory_utilization)
        return AsyncLLMEngine.from_engine_args(args)

    def _load(self, path: str) -> None:
        with self._guard:
            if self.base_path == path:
                return
            if self.base_path is not None:
                raise ValueError("This inference process serves one base model with vLLM "
                                 f"({self.base_path}); start another for {path}.")
            from transformers import AutoTokenizer

            check_model_dir(path)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            if not tokenizer.chat_template:
                raise ValueError("This model has no chat template, so it cannot answer chat messages.")
            self.engine = self._factory(path)
            self.tokenizer, self.base_path = tokenizer, path

    def _lora(self, adapter: str | None):  # noqa: ANN202
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        check_model_dir(adapter)
        name = "a" + hashlib.sha256(adapter.encode()).hexdigest()[:16]
        with self._guard:
            lora_id = self._lora_ids.setdefault(name, next(self._next_id))
        return LoRARequest(name, lora_id, adapter)

    def _sampling(self, req: Request):  # noqa: ANN202
        from vllm import SamplingParams

        if req.temperature > 0:
            return SamplingParams(temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens,
                                  seed=req.seed)
        return SamplingParams(temperature=0.0, max_tokens=req.max_tokens)

    def submit(self, req: Request) -> Ticket:
        self._load(req.base)
        plain = [{"role": m["role"], "content": m["content"]} for m in req.messages]
        text = self.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ticket = Ticket(req, prompt)
        asyncio.run_coroutine_threadsafe(self._run(ticket, self._lora(req.adapter)), self.loop)
        return ticket

    async def _run(self, ticket: Ticket, lora) -> None:  # noqa: ANN001
        """Streams vLLM's cumulative outputs into the ticket; a stop sequence or a cancel aborts
        the request in vLLM (its slot in the running batch is freed at the next step)."""
        request_id = uuid.uuid4().hex
        trimmer: StopTrimmer = ticket.trimmer
        printed, tokens, vllm_reason = 0, [], None
        try:
            async for out in self.engine.generate({"prompt_token_ids": ticket.prompt}, self._sampling(ticket.req),
                                                  request_id, lora_request=lora):
                done = out.outputs[0]
                tokens, vllm_reason = list(done.token_ids), done.finish_reason
                if not done.text.endswith("\ufffd") and len(done.text) > printed:
                    piece = trimmer.feed(done.text[printed:])
                    printed = len(done.text)
                    if piece:
                        ticket.events.put(piece)
                if trimmer.stopped or ticket.cancelled:
                    await self.engine.abort(request_id)
                    break
        except Exception as exc:  # noqa: BLE001 - the reader raises it
            ticket.done = True
            ticket.events.put(exc)
            return
        tail = trimmer.finish()
        if tail:
            ticket.events.put(tail)
        ticket.done = True
        stopped = trimmer.stopped or vllm_reason == "stop"
        ticket.events.put(Output(text=trimmer.emitted, prompt_tokens=len(ticket.prompt), completion_tokens=len(tokens),
                                 finish_reason=_finish(stopped, len(tokens), ticket.req.max_tokens)))

    def generate(self, req: Request) -> Output:
        for item in self.submit(req).items():
            if isinstance(item, Output):
                return item
        raise RuntimeError("generation ended without an answer")

    def stream(self, req: Request, *, cancel: threading.Event | None = None) -> Iterator:
        ticket = self.submit(req)
        if cancel is not None:
            ticket.cancel_event = cancel
        try:
            yield from ticket.items()
        finally:
            ticket.cancel()
