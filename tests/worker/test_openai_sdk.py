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
    key = make_api_key(db, account, scopes=("read", "write", "admin"))
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
    # as every OpenAI example does: create the job at once, without waiting for the file's check
    run = client.fine_tuning.jobs.create(model=s["model"], training_file=uploaded.id, suffix="sdk", seed=7,
                                         hyperparameters={"n_epochs": 1, "batch_size": 4})
    assert run.id.startswith("ftjob-") and run.hyperparameters.n_epochs == 1
    assert run.status in ("validating_files", "queued")  # queued if the check already ended
    assert client.files.content(uploaded.id).read() == data
    assert uploaded.id in [f.id for f in client.files.list()]

    def finished():  # noqa: ANN202
        current = client.fine_tuning.jobs.retrieve(run.id)
        assert current.status not in ("failed", "cancelled"), f"{current.error}\n{s['procs'].tail()}"
        return current if current.status == "succeeded" else None

    done = wait_for(finished, 240, "the run to succeed", interval=1)
    trained_in = time.monotonic() - started
    assert client.files.retrieve(uploaded.id).status == "processed"
    events = list(client.fine_tuning.jobs.list_events(run.id, limit=100))
    messages = [e.message for e in events if e.type == "message"]
    # newest first: the run's evaluation may already be reporting after "Succeeded"
    succeeded = next(i for i, m in enumerate(messages) if m.startswith("Succeeded"))
    assert all(m.startswith("Evaluat") for m in messages[:succeeded])
    assert messages[-1].startswith(("Checking your files", "Queued"))
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and metrics[0].message.startswith("Step 4/4: training loss=") and metrics[0].data["step"] == 4
    assert metrics[0].data["train_loss"] > 0
    checkpoints = client.fine_tuning.jobs.checkpoints.list(run.id).data
    assert checkpoints and checkpoints[0].step_number == 4 and checkpoints[0].metrics.train_loss > 0
    assert done.fine_tuned_model == f"ft:{s['model']}:{done.organization_id}:sdk:{run.id.split('-')[1]}"
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-4"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(done.fine_tuned_model).owned_by == done.organization_id

    ask = [{"role": "user", "content": "How do I reset my password?"}]
    answer = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=12,
                                            temperature=0)
    text = answer.choices[0].message.content
    assert answer.usage.completion_tokens > 0 and answer.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=12,
                                            temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the same answer, piece by piece
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == answer.usage.completion_tokens

    # a checkpoint is a model too: its own adapter, loaded from the checkpoint
    from_checkpoint = client.chat.completions.create(model=checkpoints[0].fine_tuned_model_checkpoint, messages=ask,
                                                     max_completion_tokens=12, temperature=0)
    assert from_checkpoint.model == checkpoints[0].fine_tuned_model_checkpoint
    assert from_checkpoint.choices[0].message.content == text  # the last checkpoint holds the final weights

    # n choices, seeded: different choices that repeat; stop cuts before the stop sequence
    several = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, n=2, seed=11,
                                             temperature=1.0, max_completion_tokens=8)
    again = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, n=2, seed=11,
                                           temperature=1.0, max_completion_tokens=8)
    assert [c.index for c in several.choices] == [0, 1]
    assert [c.message.content for c in several.choices] == [c.message.content for c in again.choices]
    assert several.choices[0].message.content != several.choices[1].message.content
    assert 2 <= several.usage.completion_tokens <= 16
    assert len(text) >= 6, text
    stop = text[3:6]
    cut = client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=12,
                                         temperature=0, stop=[stop, "never-said"])
    assert cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"

    import openai

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.chat.completions.create(model=done.fine_tuned_model, messages=ask, logprobs=True)
    assert refused.value.body["param"] == "logprobs"

    base = client.chat.completions.create(model=s["model"], messages=ask, max_tokens=12, temperature=0)
    assert base.choices[0].message.content is not None

    def delete():  # noqa: ANN202  (refused while the run's automatic evaluation still uses the model)
        try:
            return client.models.delete(done.fine_tuned_model)
        except openai.ConflictError as exc:
            assert "evaluation" in exc.message and exc.body["param"] == "model", exc.message
            return None

    deleted = wait_for(delete, 240, f"the model to be deletable\n{s['procs'].tail()}", interval=2)
    assert deleted.id == done.fine_tuned_model and deleted.deleted is True
    assert done.fine_tuned_model not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=done.fine_tuned_model, messages=ask, max_tokens=4)
    print(f"\nupload -> succeeded in {trained_in:.1f}s; whole SDK flow {time.monotonic() - started:.1f}s; "
          f"fine-tuned answer {text!r}, base answer {base.choices[0].message.content!r}")


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_openai_sdk_job_on_a_broken_file_fails_with_its_error(running_studio):
    """Upload then create at once, as above, but the file has a broken line: the job fails with it."""
    from openai import OpenAI

    s = running_studio
    client = OpenAI(base_url=s["base_url"], api_key=s["key"], max_retries=0, timeout=120)
    lines = [json.dumps(chat(i)) for i in range(6)]
    lines[3] = '{"messages": [{"role": "user", "content": "unfinished'
    uploaded = client.files.create(file=("broken.jsonl", "\n".join(lines).encode() + b"\n"), purpose="fine-tune")
    run = client.fine_tuning.jobs.create(model=s["model"], training_file=uploaded.id)
    assert run.status in ("validating_files", "failed")
    failed = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(run.id)).status != "validating_files" and j, 90,
                      f"the file's check\n{s['procs'].tail()}")
    assert failed.status == "failed" and failed.error.param == "training_file"
    assert "line 4" in failed.error.message and failed.error.code != "error"
    assert client.files.retrieve(uploaded.id).status == "error"
