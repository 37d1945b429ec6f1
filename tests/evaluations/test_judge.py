"""LLM-as-judge: reading verdicts, summarising them, and judging a run through a real HTTP endpoint."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.errors import Conflict, InvalidInput
from app.evaluations import judge
from app.models import BaseModel, Evaluation, RunStatus
from app.storage import ArtifactStore
from tests.factories import make_account, make_api_key
from tests.processes import free_port
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir
from worker.tasks import judge as judge_tasks

SAMPLES = [
    {"prompt": "Où est ma commande ?", "reference": "Bonjour et merci de votre message ! Elle arrive demain.",
     "base": "I don't know.", "finetuned": "Bonjour et merci de votre message ! Elle arrive demain."},
    {"prompt": [{"role": "system", "content": "Tu es le support de Nuage."},
                {"role": "user", "content": "Comment changer mon mot de passe ?"}], "reference": "Bonjour et merci de votre message ! Via le lien.",
     "base": "Bonjour, via le lien.", "finetuned": "Bonjour et merci de votre message ! Via le lien."},
    {"prompt": "Avez-vous une appli ?", "reference": "Bonjour et merci de votre message ! Oui.",
     "base": "Oui.", "finetuned": "Non."},
]


@pytest.mark.parametrize(("reply", "score"), [
    ('{"score": 8, "reason": "Good."}', 8),
    ('Sure!\n```json\n{"score": 3, "reason": "Off topic."}\n```', 3),
    ('{"score": "7", "reason": "ok"}', 7),
    ("Score: 9 - close to the reference.", 9),
    ('{"score": 42, "reason": "?"}', None),
    ("I cannot grade this.", None),
    ("", None),
])
def test_verdicts_are_read_from_plain_or_wrapped_replies(reply, score):
    assert judge.parse_verdict(reply).score == score


def test_summary_counts_by_hand():
    scored = [{"base_score": 3, "finetuned_score": 9}, {"base_score": 6, "finetuned_score": 6},
              {"base_score": 8, "finetuned_score": 5}, {"base_score": None, "finetuned_score": 7}]
    summary = judge.summarize(scored)
    assert summary["base"] == {"mean_score": round((3 + 6 + 8) / 3, 3), "n": 3}
    assert summary["finetuned"] == {"mean_score": round((9 + 6 + 5 + 7) / 4, 3), "n": 4}
    assert (summary["finetuned_better"], summary["base_better"], summary["same"], summary["unreadable"]) == (1, 1, 1, 1)


class JudgeServer:
    """A small OpenAI-compatible endpoint in a thread: 9 for an answer that opens like its
    reference, 2 otherwise; it records what it was sent."""

    def __init__(self, *, status: int = 200, key: str = "judge-key"):
        self.requests: list[dict] = []
        api = FastAPI()

        @api.post("/v1/chat/completions")
        async def completions(request: Request):
            body = await request.json()
            self.requests.append(body)
            if request.headers.get("authorization") != f"Bearer {key}":
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            if status != 200:
                return JSONResponse({"error": {"message": "boom"}}, status_code=status)
            text = body["messages"][-1]["content"]
            reference = text.split("REFERENCE:\n", 1)[1].split("\n\nANSWER:", 1)[0]
            answer = text.split("ANSWER:\n", 1)[1]
            score = 9 if answer[:20] == reference[:20] else 2
            content = f'{{"score": {score}, "reason": "compared with the reference"}}'
            return {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}]}

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def account(db):
    return make_account(db)


@pytest.fixture
def run_with_samples(db, settings, tmp_path, account):
    model = register_model(db, write_model_dir(tmp_path / "tiny-model"))
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded)
    db.add(Evaluation(team_id=run.team_id, run_id=run.id, kind="automatic", status="succeeded",
                      metrics={"base": {}, "finetuned": {}}, samples=SAMPLES))
    db.commit()
    return run


def configured(settings, url: str, key: str = "judge-key"):
    return settings.model_copy(update={"judge_base_url": url, "judge_model": "judge-1", "judge_api_key": key})


def test_a_run_is_judged_answer_by_answer_and_summarised(db, settings, run_with_samples, sent):
    with JudgeServer() as server:
        settings = configured(settings, server.url)
        evaluation = judge.request(db, run_with_samples, settings)
        db.commit()
        assert sent == [(judge.JUDGE_TASK, [evaluation.id], "default")]
        assert judge.request(db, run_with_samples, settings).id == evaluation.id  # no second judging
        judge_tasks.run_judging(evaluation.id, settings)

    db.expire_all()
    evaluation = db.get(Evaluation, evaluation.id)
    assert evaluation.kind == "llm_judge" and evaluation.status == "succeeded", evaluation.error_message
    assert [(s["base_score"], s["finetuned_score"]) for s in evaluation.samples] == [(2, 9), (2, 9), (2, 2)]
    assert evaluation.metrics["finetuned"] == {"mean_score": round(20 / 3, 3), "n": 3}
    assert evaluation.metrics["base"] == {"mean_score": 2.0, "n": 3}
    assert (evaluation.metrics["finetuned_better"], evaluation.metrics["same"]) == (2, 1)
    assert evaluation.details["model"] == "judge-1" and evaluation.finished_at is not None
    # one request per answer, each alone: the judge never sees the other model's answer
    assert len(server.requests) == 6
    assert all(r["temperature"] == 0 and r["model"] == "judge-1" for r in server.requests)
    assert sum("I don't know." in r["messages"][-1]["content"] for r in server.requests) == 1
    # a conversation is shown to the judge as its turns, not as a Python list
    assert sum("[system] Tu es le support de Nuage.\n[user] Comment changer" in r["messages"][-1]["content"]
               for r in server.requests) == 2


@pytest.mark.parametrize(("status", "key", "words"), [
    (200, "wrong-key", "refused the key"),
    (500, "judge-key", "answered 500"),
])
def test_a_refusing_judge_fails_the_judging_with_the_reason(db, settings, run_with_samples, sent, status, key, words):
    with JudgeServer(status=status) as server:
        settings = configured(settings, server.url, key)
        evaluation = judge.request(db, run_with_samples, settings)
        db.commit()
        judge_tasks.run_judging(evaluation.id, settings)
    db.expire_all()
    evaluation = db.get(Evaluation, evaluation.id)
    assert evaluation.status == "failed" and words in evaluation.error_message


def test_an_unreachable_judge_fails_clearly(db, settings, run_with_samples, sent):
    port = free_port()  # nothing listens there
    settings = configured(settings, f"http://127.0.0.1:{port}/v1")
    evaluation = judge.request(db, run_with_samples, settings)
    db.commit()
    judge_tasks.run_judging(evaluation.id, settings, client=httpx.Client(timeout=2))
    db.expire_all()
    assert "Could not reach the judge" in db.get(Evaluation, evaluation.id).error_message


def test_judging_needs_a_configured_judge_and_a_finished_evaluated_run(db, settings, run_with_samples, sent):
    with pytest.raises(InvalidInput, match="STUDIO_JUDGE_BASE_URL"):
        judge.request(db, run_with_samples, settings)
    settings = configured(settings, "http://127.0.0.1:9/v1")
    run_with_samples.status = RunStatus.running
    with pytest.raises(Conflict, match="finished run"):
        judge.request(db, run_with_samples, settings)
    run_with_samples.status = RunStatus.succeeded
    for evaluation in db.query(Evaluation).all():
        db.delete(evaluation)
    db.flush()
    with pytest.raises(Conflict, match="no evaluation"):
        judge.request(db, run_with_samples, settings)
    assert judge.enqueue_if_configured(db, run_with_samples, settings) is None
    assert sent == []


def test_the_studios_own_v1_endpoint_can_be_the_judge(db, settings, account, run_with_samples, sent, client,
                                                      monkeypatch):
    """The judge's requests are plain chat completions: the studio's own /v1 answers them with a
    studio API key (here its inference process is replaced by fixed replies)."""
    from app.api.openai import chat

    asked = []

    def generate(settings, target, params):  # noqa: ANN001, ANN202
        asked.append((target, params))
        return {"text": '{"score": 6, "reason": "fine"}', "finish_reason": "stop", "prompt_tokens": 50,
                "completion_tokens": 9}

    monkeypatch.setattr(chat.client, "generate", generate)
    slug = db.get(BaseModel, run_with_samples.base_model_id).slug
    key = make_api_key(db, account, scopes=("read",))
    settings = settings.model_copy(update={"judge_base_url": "http://testserver/v1", "judge_model": slug,
                                           "judge_api_key": key})
    evaluation = judge.request(db, run_with_samples, settings)
    db.commit()
    judge_tasks.run_judging(evaluation.id, settings, client=client)
    db.expire_all()
    evaluation = db.get(Evaluation, evaluation.id)
    assert evaluation.status == "succeeded", evaluation.error_message
    assert evaluation.metrics["base"] == evaluation.metrics["finetuned"] == {"mean_score": 6.0, "n": 3}
    assert len(asked) == 6 and asked[0][1]["temperature"] == 0
