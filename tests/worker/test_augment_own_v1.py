"""Augmentation against the studio's own /v1: the web app served over real HTTP (uvicorn in a
thread), its chat completions answered by the studio's inference app with the engine on a tiny
Llama model (in process, as tests/worker/test_tool_calling_api.py does), and the augmentation
task calling it through the openai SDK with a team API key, exactly as a worker would. No fake
endpoint: the key check, the model lookup, generation and the usage counted against the budget
are the real ones."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from app.datasets import augment
from app.models import AugmentationJob, AugmentationStatus, Dataset, GeneratedExample
from app.storage import ArtifactStore
from tests.datacheck.factories import chat, jsonl
from tests.datasets.test_service import create
from tests.factories import make_account, make_api_key
from tests.processes import free_port, wait_for
from tests.runs.factories import register_model

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

QUESTIONS = ["How do I reset my password when the e-mail never arrives?",
             "Can I change the delivery address after paying for my order?",
             "Where do I find the invoices of last year in my account?",
             "Is there a student discount on the yearly plan?"]


@pytest.fixture
def studio_v1(app, settings, monkeypatch):
    """The web app on a real port, its inference answered in process by the studio's engine."""
    import uvicorn

    from app.inference import client as inference_client
    from worker.inference.engine import Engine
    from worker.inference.server import create_inference_app

    inference = create_inference_app(settings, Engine())
    monkeypatch.setattr(inference_client, "_client", lambda _settings: TestClient(inference, base_url="http://inference"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 30, "the web app")
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def test_augmentation_generates_through_the_studios_own_v1(studio_v1, db, settings, sent, tiny_model_dir):
    from worker.tasks import augment as augment_task
    from worker.tasks.cleaning import scan_dataset
    from worker.tasks.datasets import validate_dataset

    account = make_account(db)
    model = register_model(db, tiny_model_dir, team_id=account.team_id, name="Tiny Llama")
    key = make_api_key(db, account, scopes=("read", "write"))
    store = ArtifactStore(settings.artifact_dir)
    records = [chat(q, f"Answer {i}: open your account page and follow the steps shown there.")
               for i, q in enumerate(QUESTIONS)]
    d = create(db, store, account.team_id, data=jsonl(*records), eval_fraction=0.0).dataset
    tasks = {"studio.validate_dataset": validate_dataset, "studio.scan_dataset": scan_dataset}
    while sent:
        task, args, _ = sent.pop(0)
        tasks[task](*args)
    db.expire_all()
    assert db.get(Dataset, d.id).status.value == "valid"

    values = augment.parse_form({"endpoint_url": studio_v1, "api_key": key, "model": model.slug,
                                 "sources": "2", "max_tokens": "100000", "max_answer_tokens": "24",
                                 "house_style": "short and warm"},
                                ["paraphrase", "house_style"])
    job = augment.start(db, settings, team_id=account.team_id, user_id=None, dataset_id=d.id, values=values)
    db.commit()
    assert sent == [("studio.augment_dataset", [job.id], "default")]
    assert augment_task.augment_dataset(job.id) == "succeeded"

    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    assert job.status == AugmentationStatus.succeeded, job.message
    assert (job.calls_used, job.done_steps, job.total_steps) == (4, 4, 4)
    made = db.query(GeneratedExample).filter(GeneratedExample.job_id == job.id).all()
    # the budget counts the usage the studio's /v1 reported for each generated example
    assert job.tokens_used > 0 and sum(g.tokens for g in made) <= job.tokens_used
    unusable = int(job.message.split()[0]) if job.message else 0
    assert len(made) + unusable == 4
    sources = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in records}
    for g in made:
        assert g.status in ("pending", "duplicate") and g.tokens > 0
        question, answer = g.messages[0]["content"], g.messages[1]["content"]
        source_q = QUESTIONS[0] if g.source_example == 1 else QUESTIONS[2]
        if g.kind == "paraphrase":  # the model's text replaced the question, the answer kept
            assert answer == sources[source_q] and question.strip()
        else:  # house style: the model's text replaced the answer
            assert question == source_q and answer.strip()
