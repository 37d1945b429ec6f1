"""Several fine-tuned adapters served on one loaded base: each request gets its own adapter's
answer (the same as plain PEFT), least-recently-used adapters are dropped and reload, and
concurrent requests never mix adapters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

MESSAGES = [{"role": "user", "content": "Bonjour, ma facture est fausse."}]


def _make_adapter(base_dir, out_dir, seed: int):  # noqa: ANN001
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    # Non-zero random adapters with a large scale, so that each one changes the answer.
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    return str(out_dir)


def _reference(base_dir, adapter: str | None, tokenizer) -> str:  # noqa: ANN001
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.eval().generate(**inputs, max_new_tokens=12, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("adapters")
    paths = {"a": _make_adapter(tiny_model_dir, root / "a", 1), "b": _make_adapter(tiny_model_dir, root / "b", 2)}
    expected = {name: _reference(tiny_model_dir, path, tokenizer) for name, path in paths.items()}
    expected[None] = _reference(tiny_model_dir, None, tokenizer)
    assert len(set(expected.values())) == 3, "the two adapters and the base must answer differently"
    return paths, expected


def _ask(engine, base: str, adapter: str | None) -> str:  # noqa: ANN001
    from worker.inference.engine import Request

    return engine.generate(Request(base=base, adapter=adapter, messages=MESSAGES, max_tokens=12,
                                   temperature=0)).text


def test_each_request_gets_its_own_adapter_on_one_base(tiny_model_dir, adapters):
    from worker.inference.engine import Engine

    paths, expected = adapters
    engine = Engine(max_adapters=8)
    base = str(tiny_model_dir)
    for name in ("a", "b", None, "a", None, "b"):
        assert _ask(engine, base, paths.get(name)) == expected[name], name
    assert len(engine.bases) == 1 and len(engine.bases[base].adapters) == 2  # one base, both adapters on it


def test_least_recently_used_adapter_is_dropped_and_reloads(tiny_model_dir, adapters):
    from worker.inference.engine import Engine

    paths, expected = adapters
    engine = Engine(max_adapters=1)
    base = str(tiny_model_dir)
    assert _ask(engine, base, paths["a"]) == expected["a"]
    assert _ask(engine, base, paths["b"]) == expected["b"]
    assert list(engine.bases[base].adapters.values()) == [paths["b"]]
    assert _ask(engine, base, paths["a"]) == expected["a"]  # reloaded after eviction
    assert list(engine.bases[base].adapters.values()) == [paths["a"]]


def test_concurrent_requests_never_mix_adapters(tiny_model_dir, adapters):
    from worker.inference.engine import Engine

    paths, expected = adapters
    engine = Engine(max_adapters=8)
    base = str(tiny_model_dir)
    asked = ["a", "b", None] * 4
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda name: _ask(engine, base, paths.get(name)), asked))
    assert answers == [expected[name] for name in asked]


QUESTIONS = ["Bonjour.", "Ma facture de mars est fausse, le montant est le double de février.",
             "Comment changer mon mot de passe ?", "Merci !"]


def _held_engine(**kwargs):  # noqa: ANN003
    """An engine whose first batch waits until `release` is set, so the requests sent meanwhile
    queue up and go as one batch; `sizes` records each batch's size."""
    import threading

    from worker.inference.engine import Engine

    release, sizes = threading.Event(), []

    def before(batch):  # noqa: ANN001
        sizes.append(len(batch))
        if len(sizes) == 1:
            release.wait(60)

    return Engine(before_batch=before, **kwargs), release, sizes


def _request(base: str, question: str, adapter: str | None = None, **kwargs):  # noqa: ANN003
    from worker.inference.engine import Request

    return Request(base=base, adapter=adapter, messages=[{"role": "user", "content": question}],
                   **{"max_tokens": 12, "temperature": 0, **kwargs})


def test_queued_requests_are_answered_in_one_batch_as_each_alone(tiny_model_dir, adapters):
    """Prompts of different lengths, adapters and max_tokens in one left-padded batch: each answer
    is the one it gets alone (greedy), and the batch ran once for all of them."""
    from worker.inference.engine import Engine, Note

    paths, _ = adapters
    base = str(tiny_model_dir)
    asks = [(q, a, m) for q, a, m in zip(QUESTIONS, [None, paths["a"], paths["b"], None], [12, 7, 12, 3])]
    alone = Engine()
    expected = [alone.generate(_request(base, q, a, max_tokens=m)) for q, a, m in asks]
    engine, release, sizes = _held_engine()
    first = engine.submit(_request(base, "Bonjour."))
    while not sizes:  # the first batch started (and waits)
        pass
    tickets = [engine.submit(_request(base, q, a, max_tokens=m)) for q, a, m in asks]
    release.set()
    outputs = []
    for ticket in tickets:
        items = list(ticket.items())
        assert isinstance(items[0], Note) and "Waiting" in items[0]  # queued behind the first batch
        pieces = [i for i in items[1:-1] if not isinstance(i, Note)]
        assert "".join(pieces) == items[-1].text  # streamed pieces add up to the answer
        outputs.append(items[-1])
    list(first.items())
    assert sizes == [1, 4]
    assert [(o.text, o.completion_tokens, o.finish_reason) for o in outputs] == \
        [(o.text, o.completion_tokens, o.finish_reason) for o in expected]


def test_a_cancelled_answer_stops_and_its_batch_goes_on(tiny_model_dir):
    import threading

    from worker.inference.engine import Engine, Note, Output

    base = str(tiny_model_dir)
    full = Engine().generate(_request(base, QUESTIONS[1], max_tokens=30))
    engine, release, sizes = _held_engine()
    first = engine.submit(_request(base, "Bonjour."))
    while not sizes:
        pass
    cancel = threading.Event()
    stopped = engine.stream(_request(base, QUESTIONS[1], max_tokens=30), cancel=cancel)
    other = engine.submit(_request(base, QUESTIONS[1], max_tokens=30))
    release.set()
    for item in stopped:
        if isinstance(item, str) and not isinstance(item, Note) and item:
            cancel.set()  # the reader stops after the first words
        if isinstance(item, Output):
            short = item
    assert short.completion_tokens < full.completion_tokens and short.finish_reason == "stop"
    assert [i for i in other.items()][-1].text == full.text  # the other row of the batch is whole
    list(first.items())
    assert sizes == [1, 2]


def test_stop_sequences_end_each_row_of_a_batch(tiny_model_dir):
    from worker.inference.engine import Engine

    base = str(tiny_model_dir)
    full = Engine().generate(_request(base, QUESTIONS[2], max_tokens=20)).text
    stop = full.strip()[3:6]
    assert stop and len(full) > 8
    out = Engine().generate(_request(base, QUESTIONS[2], max_tokens=20, stop=[stop]))
    assert out.text == full[:full.index(stop)] and out.finish_reason == "stop"
