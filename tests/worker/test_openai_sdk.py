"""The official `openai` package, unchanged, against a running studio: a web process, a worker
and the inference process, all real, on a tiny real Llama model.

    .venv/bin/python -m pytest tests/worker/test_openai_sdk.py -s
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from tests.processes import Processes, free_port, wait_for
from tests.factories import make_account, make_api_key
from tests.runs.factories import chat, register_model



def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def running_studio(settings, db, tmp_path, tiny_model_dir):
    web, inference = free_port(), free_port()
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": settings.broker_url, "STUDIO_SECRET_KEY": settings.secret_key,
           "STUDIO_INFERENCE_URL": f"http://127.0.0.1:{inference}", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    procs = Processes(env, tmp_path)
    procs.start("web", "serve", "--port", str(web))
    procs.start("inference", "inference", "--port", str(inference))
    procs.start("worker", "worker", "--queues", "train,default", "--name", "sdk@test")
    model = register_model(db, tiny_model_dir, name="Tiny Llama")
    account = make_account(db)
    key = make_api_key(db, account)
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{web}/healthz"), 60, "the web process")
        wait_for(lambda: _up(f"http://127.0.0.1:{inference}/healthz"), 90, "the inference process")
        yield {"base_url": f"http://127.0.0.1:{web}/v1", "key": key, "model": model.slug, "procs": procs}
    finally:
        procs.stop()


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_openai_sdk_fine_tunes_and_chats(running_studio):
    from openai import OpenAI

    s = running_studio
    client = OpenAI(base_url=s["base_url"], api_key=s["key"], max_retries=0, timeout=120)
    started = time.monotonic()
    data = b"".join(json.dumps(chat(i)).encode() + b"\n" for i in range(16))
    uploaded = client.files.create(file=("support.jsonl", data), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(data)
    processed = wait_for(lambda: (f := client.files.retrieve(uploaded.id)).status == "processed" and f, 90,
                         f"the file to be validated\n{s['procs'].tail()}")
    assert client.files.content(processed.id).read() == data
    assert uploaded.id in [f.id for f in client.files.list()]

    run = client.fine_tuning.jobs.create(model=s["model"], training_file=uploaded.id, suffix="sdk", seed=7,
                                         hyperparameters={"n_epochs": 1, "batch_size": 4})
    assert run.status == "queued" and run.id.startswith("ftjob-") and run.hyperparameters.n_epochs == 1

    def finished():  # noqa: ANN202
        current = client.fine_tuning.jobs.retrieve(run.id)
        assert current.status not in ("failed", "cancelled"), f"{current.error}\n{s['procs'].tail()}"
        return current if current.status == "succeeded" else None

    done = wait_for(finished, 180, "the run to succeed", interval=1)
    trained_in = time.monotonic() - started
    events = [e.message for e in client.fine_tuning.jobs.list_events(run.id, limit=100)]
    # newest first: the run's evaluation may already be reporting after "Succeeded"
    succeeded = next(i for i, m in enumerate(events) if m.startswith("Succeeded"))
    assert all(m.startswith("Evaluat") for m in events[:succeeded]) and events[-1].startswith("Queued")
    checkpoints = client.fine_tuning.jobs.checkpoints.list(run.id).data
    assert checkpoints and checkpoints[0].step_number == 4
    assert done.fine_tuned_model == f"ft:{s['model']}:{done.organization_id}:sdk:{run.id.split('-')[1]}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(done.fine_tuned_model).owned_by == done.organization_id

    ask = [{"role": "user", "content": "How do I reset my password?"}]
    answer = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=12,
                                            temperature=0)
    text = answer.choices[0].message.content
    assert answer.usage.completion_tokens > 0 and answer.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=12,
                                            temperature=0, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == text  # greedy: the same answer, piece by piece
    base = client.chat.completions.create(model=s["model"], messages=ask, max_tokens=12, temperature=0)
    assert base.choices[0].message.content is not None
    print(f"\nupload -> succeeded in {trained_in:.1f}s; whole SDK flow {time.monotonic() - started:.1f}s; "
          f"fine-tuned answer {text!r}, base answer {base.choices[0].message.content!r}")
