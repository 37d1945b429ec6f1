"""The vLLM backend's bridge (worker/inference/vllm_backend.py), driven on a CPU by an engine
object in vLLM's shape (cumulative outputs, abort by request id): its pieces, stop sequences,
cancel and adapter requests. vLLM itself needs a GPU host: not exercised here."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from dataclasses import dataclass

import pytest

MESSAGES = [{"role": "user", "content": "Bonjour"}]


@dataclass
class _Completion:
    text: str
    token_ids: list
    finish_reason: str | None


class _Engine:
    """Answers 'Hello world. Bye.' a word per step, as vLLM's AsyncLLMEngine.generate yields."""

    def __init__(self):
        self.asked, self.aborted = [], []
        self.step = asyncio.Event()

    async def generate(self, prompt, params, request_id, lora_request=None):  # noqa: ANN001
        self.asked.append((prompt, params, lora_request))
        words = ["Hello", " world", ".", " Bye", "."]
        for i in range(1, len(words) + 1):
            if request_id in self.aborted:
                return
            await asyncio.sleep(0.1)
            yield types.SimpleNamespace(outputs=[_Completion("".join(words[:i]), list(range(i)),
                                                             "stop" if i == len(words) else None)])

    async def abort(self, request_id):  # noqa: ANN001
        self.aborted.append(request_id)


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: kw
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lora_id, path: (name, lora_id, path)
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)


def test_vllm_backend_streams_stops_cancels_and_names_adapters(fake_vllm, tiny_model_dir, tmp_path):
    from worker.inference.engine import Output, Request
    from worker.inference.vllm_backend import VllmEngine

    fake = _Engine()
    engine = VllmEngine(engine_factory=lambda path: fake)
    base = str(tiny_model_dir)
    items = list(engine.stream(Request(base=base, adapter=None, messages=MESSAGES, max_tokens=20, temperature=0)))
    assert "".join(i for i in items if not isinstance(i, Output)) == "Hello world. Bye." == items[-1].text
    assert items[-1].finish_reason == "stop" and items[-1].completion_tokens == 5
    prompt, params, lora = fake.asked[0]
    assert prompt["prompt_token_ids"] and params == {"temperature": 0.0, "max_tokens": 20} and lora is None

    out = engine.generate(Request(base=base, adapter=None, messages=MESSAGES, max_tokens=20, temperature=0,
                                  stop=[" Bye"]))
    assert out.text == "Hello world." and out.finish_reason == "stop" and len(fake.aborted) == 1

    cancel = threading.Event()
    for item in engine.stream(Request(base=base, adapter=None, messages=MESSAGES, temperature=0), cancel=cancel):
        cancel.set()  # the reader stops after the first piece
        if isinstance(item, Output):
            assert item.text.startswith("Hello") and item.completion_tokens < 5  # cut before the end
    assert len(fake.aborted) == 2

    engine.generate(Request(base=base, adapter=base, messages=MESSAGES, temperature=0.7, seed=3))
    engine.generate(Request(base=base, adapter=base, messages=MESSAGES, temperature=0.7, seed=3))
    (_, p1, l1), (_, _, l2) = fake.asked[-2:]
    assert l1 == l2 and l1[1] == 1 and l1[2] == base and p1["seed"] == 3 and p1["temperature"] == 0.7
    with pytest.raises(ValueError, match="one base model"):
        engine.generate(Request(base=str(tmp_path), adapter=None, messages=MESSAGES))
