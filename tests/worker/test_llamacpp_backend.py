"""The llama.cpp backend of the inference process on a tiny Llama (the real SmolLM2 tokenizer):
/generate answers from a GGUF the studio writes once (a base, and a LoRA fine-tune merged), with
the answer llama.cpp itself gives on that file; a stream closed by its reader stops its answer;
concurrent requests for a model are decoded in one batch, each its own answer (greedy: token for
token its answer alone; a cancel, stop sequence or max_tokens ends only its own), and a request
waits with a note only when every sequence is taken, as many sequences as the KV budget holds;
`exact` requests (base vs fine-tuned) are answered by transformers, token for token the
transformers engine's; the GGUF cache keeps to its size limit, least recently used first."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test installs it)")
pytestmark = pytest.mark.one_database  # the inference process is the point; it keeps nothing in the database

MESSAGES = [{"role": "user", "content": "Bonjour, ma facture est fausse."}]


@pytest.fixture
def served(settings, tiny_model_dir, tmp_path):
    """The inference app over a LlamaCppEngine, the tiny model in the model store, a LoRA adapter
    beside it, and the tickets each answer began with."""
    from fastapi.testclient import TestClient

    from app.inference.client import service_token
    from tests.worker.test_gguf_task import _lora_adapter
    from worker.inference.llamacpp_backend import LlamaCppEngine
    from worker.inference.server import create_inference_app

    model = shutil.copytree(tiny_model_dir, settings.model_dir / "tiny")
    adapter = settings.model_dir / "tiny-adapter"
    _lora_adapter(model, adapter)
    began, gate = [], threading.Event()
    gate.set()

    def before_request(batch):  # noqa: ANN001, ANN202 - records, and can hold an answer back
        began.extend(batch)
        assert gate.wait(60)
        return 2

    engine = LlamaCppEngine(tmp_path / "llamacpp", before_request=before_request)
    headers = {"Authorization": f"Bearer {service_token(settings)}"}
    with TestClient(create_inference_app(settings, engine)) as client:
        yield {"client": client, "engine": engine, "base": str(model), "adapter": str(adapter), "began": began,
               "gate": gate, "headers": headers}


def _post(ctx, **body):  # noqa: ANN001, ANN202
    body = {"base": ctx["base"], "messages": MESSAGES, "max_tokens": 12, "temperature": 0, **body}
    r = ctx["client"].post("/generate", json=body, headers=ctx["headers"])
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()] if body.get("stream") else r.json()


def _llama_cpp_greedy(path, prompt: list[int], n: int) -> list[int]:  # noqa: ANN001
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False)
    out = []
    for token in llm.generate(prompt, temp=0.0, repeat_penalty=1.0):
        out.append(token)
        if token == llm.token_eos() or len(out) >= n:
            break
    llm.close()
    return out


def test_a_base_and_a_fine_tune_answer_from_their_gguf_as_llama_cpp_does(served):
    from worker.inference.llamacpp_backend import EXPORT_NOTE, VARIANT

    engine, tokenizer = served["engine"], None
    for adapter in (None, served["adapter"]):
        first = _post(served, adapter=adapter, stream=True)
        assert first[0] == {"note": EXPORT_NOTE}  # written once, and the first answer says it waits
        done = first[-1]
        assert done["done"] and "".join(line.get("delta", "") for line in first) == done["text"]
        again = _post(served, adapter=adapter)
        assert again["text"] == done["text"] and again["completion_tokens"] == done["completion_tokens"]
        assert _post(served, adapter=adapter, stream=True)[0] != {"note": EXPORT_NOTE}  # cached now

        path = engine.cache.ready(served["base"], adapter)
        assert path is not None and path.name == f"model-{VARIANT}.gguf"
        ticket = served["began"][-1]
        tokenizer = engine.tokenizers[served["base"]]
        want = _llama_cpp_greedy(path, ticket.prompt, 12)
        assert ticket.tokens == want  # what llama.cpp itself answers on that file, greedily
        assert again["text"] == tokenizer.decode(want, skip_special_tokens=True)
    base_answer = _post(served)["text"]
    tuned_answer = _post(served, adapter=served["adapter"])["text"]
    assert base_answer != tuned_answer  # the fine-tune's export holds its adapter
    assert engine._fallback is None  # transformers was never loaded


def test_max_tokens_stop_and_seed(served):
    five = _post(served, max_tokens=5)
    assert five["completion_tokens"] <= 5
    if five["completion_tokens"] == 5:
        assert five["finish_reason"] == "length"
    full = _post(served, max_tokens=12)["text"]
    stop = full[3:6]
    cut = _post(served, max_tokens=12, stop=[stop])
    assert cut["text"] == full[: full.find(stop)] and cut["finish_reason"] == "stop"
    sampled = [_post(served, temperature=1.0, seed=7, max_tokens=10)["text"] for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seeded answer is its own


def _until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"waited a minute for {what}"
        time.sleep(0.01)


def test_a_closed_stream_stops_its_answer_and_others_wait_their_turn(served):
    from worker.inference.llamacpp_backend import WAIT_NOTE

    served["engine"].max_seqs = 1  # one answer at a time: the second waits its turn
    _post(served, max_tokens=2)  # exported and loaded
    client, engine, began = served["client"], served["engine"], served["began"]
    served["gate"].clear()  # answers are held at their start until the gate opens
    body = {"base": served["base"], "messages": MESSAGES, "max_tokens": 400, "temperature": 0, "stream": True}
    with client.stream("POST", "/generate", json=body, headers=served["headers"]):
        _until(lambda: len(began) == 2, "the long answer to begin")
    long = began[-1]
    _until(lambda: long.cancelled, "the closed stream to cancel its answer")
    served["gate"].set()
    _until(lambda: long.done, "the cancelled answer to end")
    assert len(long.tokens) <= 1  # stopped at its first token, not run to 400

    served["gate"].clear()
    answers = []
    first = threading.Thread(target=lambda: answers.append(_post(served, max_tokens=3, stream=True)))
    first.start()
    _until(lambda: len(began) == 3, "the first answer to begin")
    second = threading.Thread(target=lambda: answers.append(_post(served, max_tokens=3, stream=True)))
    second.start()
    _until(lambda: engine.served[(served["base"], None)].waiting, "the second request to queue")
    served["gate"].set()
    first.join(60)
    second.join(60)
    assert len(answers) == 2 and all(a[-1]["done"] for a in answers)
    assert answers[1][0] == {"note": WAIT_NOTE} and answers[0][0] != {"note": WAIT_NOTE}


def test_exact_requests_are_the_transformers_engines_answers(served, tiny_model_dir):
    from worker.inference.engine import Engine, Request

    plain = Engine()
    for adapter in (None, served["adapter"]):
        exact = _post(served, adapter=adapter, exact=True, max_tokens=16)
        want = plain.generate(Request(base=served["base"], adapter=adapter, messages=MESSAGES, max_tokens=16,
                                      temperature=0))
        assert exact["text"] == want.text and exact["completion_tokens"] == want.completion_tokens
    assert served["engine"]._fallback is not None and served["base"] in served["engine"]._fallback.bases
    assert not served["engine"].served  # llama.cpp loaded nothing for them


def test_a_model_llama_cpp_cannot_take_is_served_by_transformers(settings, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from tests.worker.training.factories import build_tiny_model
    from worker.inference.engine import Request
    from worker.inference.llamacpp_backend import LlamaCppEngine

    other = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    other.add_tokens(["<|studio_extra|>"])  # a vocabulary llama.cpp's tokenizer tables do not know
    model = build_tiny_model(tmp_path / "other", other, hidden=32, layers=1)
    engine = LlamaCppEngine(tmp_path / "llamacpp")
    out = engine.generate(Request(base=str(model), adapter=None, messages=MESSAGES, max_tokens=4, temperature=0))
    assert out.completion_tokens > 0 and not engine.served and str(model) in engine._fallback.bases
    assert "vocabulary" in engine.unservable[(str(model), None)]


def test_auto_picks_llama_cpp_on_a_cpu_host_where_it_is_installed(settings, monkeypatch):
    import torch

    from worker.inference import llamacpp_backend
    from worker.inference.server import backend_for

    settings.inference_backend = "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend_for(settings) == "llamacpp"
    monkeypatch.setattr(llamacpp_backend, "llama_cpp_available", lambda: False)
    assert backend_for(settings) == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(llamacpp_backend, "llama_cpp_available", lambda: True)
    assert backend_for(settings) == "transformers"  # a GPU: transformers (or vllm, when named)
    settings.inference_backend = "transformers"
    assert backend_for(settings) == "transformers"


# -- batching: concurrent requests for one model share its llama.cpp context ------------------

PROMPTS = ["Bonjour, ma facture est fausse.", "Where is my parcel? It was due on Monday.",
           "Can I change the address of my order?", "Le produit est arrivé cassé, que faire ?",
           "Hello", "I would like a refund for the second item of order 1234, please."]


def _req(ctx, content: str, **kw):  # noqa: ANN001, ANN202
    from worker.inference.engine import Request

    return Request(base=ctx["base"], adapter=None, messages=[{"role": "user", "content": content}],
                   **{"max_tokens": 24, "temperature": 0, **kw})


def _read(ticket):  # noqa: ANN001, ANN202
    """The ticket's streamed text (its pieces joined) and its Output."""
    items = list(ticket.items())
    return "".join(i for i in items if type(i) is str), items[-1]


def _watch(ctx):  # noqa: ANN001, ANN202
    """The model's _Served, recording how many answers each step decoded together."""
    served = ctx["engine"].served[(ctx["base"], None)]
    sizes, step = [], served._step

    def recorded() -> None:
        sizes.append(len(served.active))
        step()

    served._step = recorded
    return served, sizes


def _together(ctx, reqs):  # noqa: ANN001, ANN202
    """The requests submitted while the first is held at its start, so that all of them are under
    way together: their tickets."""
    engine, gate = ctx["engine"], ctx["gate"]
    gate.clear()
    first = engine.submit(reqs[0])
    _until(lambda: first in ctx["began"], "the first request to begin")
    tickets = [first] + [engine.submit(r) for r in reqs[1:]]
    gate.set()
    return tickets


def test_concurrent_greedy_answers_are_each_their_lone_answer(served):
    engine = served["engine"]
    reqs = [_req(served, p) for p in PROMPTS]
    alone = []
    for req in reqs:
        ticket = engine.submit(req)
        alone.append((_read(ticket), list(ticket.tokens)))
    _, sizes = _watch(served)
    tickets = _together(served, reqs)
    for ticket, ((text, out), tokens) in zip(tickets, alone):
        streamed, got = _read(ticket)
        assert ticket.tokens == tokens  # token for token what it answers alone
        assert got.text == out.text and streamed == text == out.text
        assert got.completion_tokens == out.completion_tokens and got.finish_reason == out.finish_reason
    assert max(sizes) == len(reqs)  # they were decoded in one batch, not one after the other
    assert all(t.done for t in tickets) and not engine.served[(served["base"], None)].active


def test_a_cancel_stop_or_max_tokens_ends_only_its_own_answer(served):
    engine = served["engine"]
    plain = [_req(served, p, max_tokens=30) for p in PROMPTS[:4]]
    alone = []
    for req in plain:
        ticket = engine.submit(req)
        alone.append((_read(ticket)[1], list(ticket.tokens)))
    assert all(len(tokens) > 8 for _, tokens in alone), "the tiny model's answers are long enough to cut"
    tokenizer = engine.tokenizers[served["base"]]
    stop = alone[1][0].text[4:8]
    reqs = [plain[0],  # cancelled after its 3rd token
            _req(served, PROMPTS[1], max_tokens=30, stop=[stop]),
            _req(served, PROMPTS[2], max_tokens=5),
            plain[3]]
    served_model, _ = _watch(served)
    take = served_model._take
    victim = []

    def take_and_cancel(seq, token) -> bool:  # noqa: ANN001
        ended = take(seq, token)
        if seq.ticket is victim[0] and len(seq.ticket.tokens) == 3:
            seq.ticket.cancel()  # seen at the next step
        return ended

    served_model._take = take_and_cancel
    tickets = []
    served["gate"].clear()
    tickets.append(engine.submit(reqs[0]))
    victim.append(tickets[0])
    _until(lambda: tickets[0] in served["began"], "the first request to begin")
    tickets += [engine.submit(r) for r in reqs[1:]]
    served["gate"].set()
    outs = [_read(t) for t in tickets]

    assert tickets[0].tokens == alone[0][1][:3] and outs[0][1].completion_tokens == 3  # stopped there
    text, out = outs[1]
    assert out.text == alone[1][0].text[: alone[1][0].text.find(stop)] == text and out.finish_reason == "stop"
    assert tickets[1].tokens == alone[1][1][: len(tickets[1].tokens)]
    text, out = outs[2]
    assert tickets[2].tokens == alone[2][1][:5] and out.completion_tokens == 5 and out.finish_reason == "length"
    assert out.text == text == tokenizer.decode(alone[2][1][:5], skip_special_tokens=True)
    assert tickets[3].tokens == alone[3][1] and outs[3][1].text == alone[3][0].text  # undisturbed
    assert len(served_model.free) == served_model.max_seqs  # every sequence given back


def test_a_seeded_sampled_answer_is_its_own_alone_or_in_a_batch(served):
    engine = served["engine"]
    sampled = _req(served, PROMPTS[0], temperature=0.9, top_p=0.9, seed=11, max_tokens=20)
    first, again = (_read(engine.submit(sampled))[1] for _ in range(2))
    assert first.text == again.text and first.completion_tokens == again.completion_tokens
    other = _read(engine.submit(_req(served, PROMPTS[0], temperature=0.9, top_p=0.9, seed=12, max_tokens=20)))[1]
    greedy = _read(engine.submit(_req(served, PROMPTS[0], max_tokens=20)))[1]
    assert len({first.text, other.text, greedy.text}) > 1  # the seed and the temperature are used
    tickets = _together(served, [_req(served, PROMPTS[1]), sampled, _req(served, PROMPTS[2], temperature=1.0)])
    outs = [_read(t)[1] for t in tickets]
    assert outs[1].text == first.text  # beside other answers, the same draws


def test_a_request_waits_only_when_every_sequence_is_taken(served):
    from worker.inference.llamacpp_backend import WAIT_NOTE

    engine = served["engine"]
    engine.max_seqs = 2
    _read(engine.submit(_req(served, PROMPTS[0], max_tokens=2)))  # exported and loaded, 2 sequences
    tickets = _together(served, [_req(served, p, max_tokens=6) for p in PROMPTS[:3]])
    items = [list(t.items()) for t in tickets]
    assert [i[0] == WAIT_NOTE for i in items] == [False, False, True]
    assert all(i[-1].completion_tokens > 0 for i in items)


def test_the_kv_budget_sets_how_many_sequences_a_model_gets(served):
    """A model's concurrent sequences are what its KV budget holds: a 7B Llama's 4096-token
    context (2 GB of f16 cache) gets one sequence in the default 2 GB, the built-in model eight;
    a tight budget makes the tiny model answer one request at a time."""
    from worker.inference.llamacpp_backend import WAIT_NOTE, sequences_within

    llama_7b = 2 * 32 * 128 * 32 * 2  # layers, head size, key/value heads, f16
    assert sequences_within(2 * 1024**3, 4096, llama_7b, 8) == 1
    assert sequences_within(2 * 1024**3, 4096, 2 * 30 * 64 * 3 * 2, 8) == 8  # SmolLM2-135M: 23 KB a token
    assert sequences_within(1, 4096, llama_7b, 8) == 1  # never none

    engine = served["engine"]
    engine.kv_budget_bytes = 1  # less than one sequence: one, alone
    _read(engine.submit(_req(served, PROMPTS[0], max_tokens=2)))  # exported and loaded
    assert next(iter(engine.served.values())).max_seqs == 1
    tickets = _together(served, [_req(served, p, max_tokens=4) for p in PROMPTS[:2]])
    items = [list(t.items()) for t in tickets]
    assert [i[0] == WAIT_NOTE for i in items] == [False, True]
    assert all(i[-1].completion_tokens > 0 for i in items)


def test_the_gguf_cache_keeps_to_its_limit_least_recently_used_first(tmp_path):
    """Past its limit the cache deletes the GGUF directories used longest ago, never the file
    just written or a loaded model's; scratch left by an interrupted export goes after an hour."""
    import os
    import time

    from worker.inference.llamacpp_backend import GGUFCache

    root = tmp_path / "llamacpp"
    files = {}
    for age, name in ((400, "oldest"), (300, "loaded"), (200, "older"), (100, "recent")):
        file = root / name / "model-q8_0.gguf"
        file.parent.mkdir(parents=True)
        file.write_bytes(b"g" * 1000)
        os.utime(file, (time.time() - age, time.time() - age))
        files[name] = file
    stale, fresh = root / ".abc-1", root / ".abc-2"
    stale.mkdir(), fresh.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cache = GGUFCache(root, limit_bytes=2500, in_use=lambda: {files["loaded"]})

    # 4000 bytes: the oldest is the one just written and the next is loaded, so the two after go
    assert cache.evict(keep=files["oldest"]) == [files["older"], files["recent"]]
    assert cache.evict() == []  # 2000: within the limit
    cache.limit_bytes = 1500
    assert cache.evict() == [files["oldest"]]  # no longer the one just written
    assert sorted(p.name for p in root.iterdir()) == [".abc-2", "loaded"]
    assert not stale.exists() and fresh.exists()
    assert GGUFCache(root).evict() == []  # no limit: nothing but stale scratch goes


def test_a_used_gguf_file_counts_as_recent(tmp_path, monkeypatch):
    import os
    import time

    from worker.inference import llamacpp_backend
    from worker.inference.llamacpp_backend import GGUFCache

    monkeypatch.setattr(llamacpp_backend, "_weights_stamp", lambda path: path)
    cache = GGUFCache(tmp_path, limit_bytes=1500)
    paths = []
    for base in ("a", "b"):
        target = tmp_path / cache.key(base, None) / "model-q8_0.gguf"
        target.parent.mkdir()
        target.write_bytes(b"g" * 1000)
        os.utime(target, (time.time() - 500, time.time() - 500))
        paths.append(target)
    assert cache.ready("a", None) == paths[0]  # a is used: it becomes the recent one
    assert cache.evict() == [paths[1]]


LOAD_A_CONTEXT = """
import queue
import sys
from pathlib import Path
from worker.inference.llamacpp_backend import LlamaCppEngine, _Served, _backend_init

engine = LlamaCppEngine(Path(sys.argv[2]))
served = _Served(engine, sys.argv[1], None, engine._tokenizer(sys.argv[1]))

class Ticket:  # what _load uses of a request: where its "being prepared" note goes
    events = queue.Queue()

served._load(Ticket())
assert served.ctx is not None
served.close()
print("loaded", flush=True)
"""


def test_loading_a_model_does_not_flood_the_inference_log(tiny_model_dir, tmp_path):
    """A fresh interpreter, as the inference process is: a model and its context loaded, the log
    has none of llama.cpp's chatty lines (llama-cpp-python's own callback printed them all to
    stderr); they go to the `studio.inference.llamacpp.native` logger at DEBUG, where an
    operator who asks for debug logging finds them."""
    import os
    import subprocess
    import sys

    base = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, base)
    cache = tmp_path / "llamacpp"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    quiet = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig(level=logging.INFO)\n"
                            + LOAD_A_CONTEXT, str(base), str(cache)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0 and "loaded" in quiet.stdout, quiet.stderr[-3000:]
    assert "llama_context" not in quiet.stderr and "llama_kv_cache" not in quiet.stderr, quiet.stderr[:2000]

    debug = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig(level=logging.DEBUG)\n"
                            + LOAD_A_CONTEXT, str(base), str(cache)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert debug.returncode == 0, debug.stderr[-3000:]
    assert "DEBUG:studio.inference.llamacpp.native:llama_context: constructing llama_context" in debug.stderr
