"""The Evaluation section of the run page, its htmx fragment, the re-run action and the API."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.evaluations import service
from app.models import Evaluation, Run, RunEvent, RunStatus, Worker, utcnow
from tests.factories import log_in, make_account, make_api_key
from tests.runs.factories import make_dataset, make_run

METRICS = {
    "base": {"eval_loss": 2.5, "perplexity": 12.18, "bleu": 4.2, "rouge1": 0.35, "rouge2": 0.12, "rougeL": 0.31,
             "exact_match": 0.0, "samples": 2},
    "finetuned": {"eval_loss": 1.2, "perplexity": 3.32, "bleu": 38.0, "rouge1": 0.61, "rouge2": 0.44, "rougeL": 0.52,
                  "exact_match": 0.5, "samples": 2},
}
SAMPLES = [{"prompt": [{"role": "system", "content": "Tu es le support."}, {"role": "user", "content": "Où est ma facture ?"}],
            "reference": "Bonjour et merci ! Dans Compte > Factures.", "base": "I am a language model.",
            "finetuned": "Bonjour et merci ! Ouvrez Compte > Factures."}]


@pytest.fixture
def browser(client, team):
    csrf = log_in(client, team[0])
    client.headers["X-CSRF-Token"] = csrf
    return client


@pytest.fixture
def run(db, team, dataset, model) -> Run:
    return make_run(db, team[0].team_id, dataset, model, status=RunStatus.succeeded, name="brand voice run",
                    finished_at=utcnow())


def _evaluation(db, run: Run, **values) -> Evaluation:  # noqa: ANN001
    row = Evaluation(team_id=run.team_id, run_id=run.id, kind=values.pop("kind", "automatic"), **values)
    db.add(row)
    db.commit()
    return row


def _done(db, run: Run, **details) -> Evaluation:  # noqa: ANN001
    return _evaluation(db, run, status="succeeded", metrics=METRICS, samples=SAMPLES, finished_at=utcnow(),
                       details={"split": "eval", "samples": 1, "loss_examples": 4, "max_new_tokens": 96,
                                "seconds": 12.3, **details})


def _live_worker(db, name: str = "train-1@host", pid: int = 4242) -> Worker:  # noqa: ANN001
    row = Worker(name=name, last_seen_at=utcnow(), queues="train", info={"pid": pid})
    db.add(row)
    db.commit()
    return row


def test_run_page_shows_base_vs_finetuned_with_the_better_one_marked(browser, db, run):
    _done(db, run)
    text = browser.get(f"/runs/{run.id}").text
    assert 'id="evaluation-title"' in text and "css/evaluations.css" in text
    assert ("The fine-tuned model&#39;s answers overlap the references more: ROUGE-L 0.52 vs 0.31 for the base model."
            in text)
    assert "It predicts the reference answers better: evaluation loss 1.200 vs 2.500." in text
    for label, base, tuned in (("Evaluation loss", "2.500", "1.200"), ("ROUGE-L", "0.310", "0.520"),
                               ("BLEU", "4.2", "38.0"), ("Exact match", "0%", "50%")):
        assert label in text and base in text and tuned in text
    assert text.count('class="num better"') == 7  # every metric, on the fine-tuned side
    assert "Où est ma facture ?" in text and "I am a language model." in text
    assert "Bonjour et merci ! Ouvrez Compte &gt; Factures." in text and "Earlier messages (1)" in text
    assert "Measured on the eval split" in text and "Re-run evaluation" in text
    assert "hx-get=\"/runs/%d/evaluation\"" % run.id not in text  # nothing to poll


def test_a_better_base_model_is_said_plainly(browser, db, run):
    _evaluation(db, run, status="succeeded", samples=[], details={"split": "eval", "samples": 0},
                metrics={"base": METRICS["finetuned"], "finetuned": METRICS["base"]})
    text = browser.get(f"/runs/{run.id}").text
    assert "overlap the references less: ROUGE-L 0.31 vs 0.52 for the base model" in text
    assert "predicts the reference answers worse" in text


def test_running_evaluation_polls_and_the_fragment_answers_htmx(browser, db, run):
    _live_worker(db)
    row = _evaluation(db, run, status="running", details={"worker": "train-1@host", "worker_pid": 4242, "samples": 8})
    text = browser.get(f"/runs/{run.id}").text
    assert "Evaluating the base model and the fine-tuned one on 8 prompts" in text
    assert f'hx-get="/runs/{run.id}/evaluation"' in text and "Re-run evaluation" not in text
    frag = browser.get(f"/runs/{run.id}/evaluation", headers={"HX-Request": "true"})
    assert frag.status_code == 200 and "<html" not in frag.text and 'id="run-evaluation"' in frag.text
    assert browser.get(f"/runs/{run.id}/evaluation", follow_redirects=False).status_code == 303
    row.status, row.metrics, row.samples, row.details = "succeeded", METRICS, SAMPLES, {"split": "eval", "samples": 1}
    db.commit()
    frag = browser.get(f"/runs/{run.id}/evaluation", headers={"HX-Request": "true"}).text
    assert "ROUGE-L 0.52 vs 0.31" in frag and "hx-get" not in frag


def test_interrupted_evaluation_is_shown_and_can_be_run_again(browser, db, run, sent):
    _evaluation(db, run, status="running", details={"worker": "gone@host", "worker_pid": 1})
    text = browser.get(f"/runs/{run.id}").text
    assert "The evaluation was interrupted" in text and "Re-run evaluation" in text
    r = browser.post(f"/runs/{run.id}/evaluation/rerun", follow_redirects=False)
    assert r.status_code == 303
    db.expire_all()
    rows = db.query(Evaluation).filter_by(run_id=run.id).order_by(Evaluation.id).all()
    assert [e.status for e in rows] == ["failed", "pending"] and rows[0].error_message == service.INTERRUPTED
    assert sent == [("studio.evaluate", [rows[1].id], "train")]
    events = [e.message for e in db.query(RunEvent).filter_by(run_id=run.id)]
    assert any(m.startswith("Evaluation failed: The worker stopped") for m in events)


def test_failed_evaluation_shows_why(browser, db, run):
    _evaluation(db, run, status="failed", error_message="RuntimeError: boom. The fine-tuned model is not affected.")
    text = browser.get(f"/runs/{run.id}").text
    assert "The evaluation failed." in text and "RuntimeError: boom" in text and "Re-run evaluation" in text


def test_no_eval_split_is_marked(browser, db, run):
    _done(db, run, split="train")
    text = browser.get(f"/runs/{run.id}").text
    assert "training examples (this dataset has no eval split)" in text
    assert "the prompts below come from the training data" in text


def test_llm_judge_scores_are_labelled_as_such(browser, db, run):
    _done(db, run)
    _evaluation(db, run, kind="llm_judge", status="succeeded", details={"endpoint": "http://judge/v1", "model": "qwen-judge"},
                metrics={"base": {"mean_score": 2.25, "n": 8}, "finetuned": {"mean_score": 4.5, "n": 8}},
                samples=[{"prompt": "Où est ma facture ?", "base_score": 2, "finetuned_score": 5,
                          "base_reason": "Off topic.", "finetuned_reason": "Right place, brand greeting."}])
    text = browser.get(f"/runs/{run.id}").text
    assert "Automatic score by an LLM judge (qwen-judge) — not a human rating" in text
    assert "2.25" in text and "4.50" in text and "Right place, brand greeting." in text


def test_queued_run_has_no_evaluation_yet_but_polls_for_it(browser, db, team, dataset, model):
    run = make_run(db, team[0].team_id, dataset, model, status=RunStatus.running)
    text = browser.get(f"/runs/{run.id}").text
    assert 'id="run-evaluation"' in text and 'id="evaluation-title"' not in text
    assert f'hx-get="/runs/{run.id}/evaluation"' in text


def test_api_lists_evaluations_and_queues_a_rerun(client, db, team, run, sent):
    headers = team[1]
    _done(db, run)
    r = client.get(f"/api/v1/runs/{run.id}/evaluations", headers=headers)
    assert r.status_code == 200
    [row] = r.json()
    assert row["kind"] == "automatic" and row["status"] == "succeeded"
    assert row["metrics"]["finetuned"]["rougeL"] == 0.52 and row["samples"][0]["reference"].startswith("Bonjour")
    assert row["details"]["split"] == "eval" and row["run_id"] == run.id
    r = client.post(f"/api/v1/runs/{run.id}/evaluations", headers=headers)
    assert r.status_code == 201 and r.json()["status"] == "pending"
    assert sent == [("studio.evaluate", [r.json()["id"]], "train")]
    again = client.post(f"/api/v1/runs/{run.id}/evaluations", headers=headers)  # pending, never picked up yet
    assert again.status_code == 409 and "being evaluated already" in again.json()["error"]["message"]


def test_only_a_finished_run_can_be_evaluated(client, db, team, dataset, model):
    run = make_run(db, team[0].team_id, dataset, model, status=RunStatus.failed)
    r = client.post(f"/api/v1/runs/{run.id}/evaluations", headers=team[1])
    assert r.status_code == 409


def test_api_is_scoped_to_the_team(client, db, store, run, model):
    other = make_account(db, email="other@example.com")
    headers = {"Authorization": f"Bearer {make_api_key(db, other)}"}
    _done(db, run)
    assert client.get(f"/api/v1/runs/{run.id}/evaluations", headers=headers).status_code == 404
    assert client.post(f"/api/v1/runs/{run.id}/evaluations", headers=headers).status_code == 404
    mine = make_run(db, other.team_id, make_dataset(db, store, other.team_id), model, status=RunStatus.succeeded)
    assert client.get(f"/api/v1/runs/{mine.id}/evaluations", headers=headers).json() == []


def test_stale_pending_and_restarted_workers_count_as_interrupted(db, run):
    alive = {"train-1@host": 4242}
    pending = _evaluation(db, run, status="pending", details={"source": "rerun"})
    assert not service.is_interrupted(pending, alive)
    pending.created_at = utcnow() - timedelta(seconds=service.STALE_PENDING_S + 1)
    assert service.is_interrupted(pending, alive)
    running = _evaluation(db, run, status="running", details={"worker": "train-1@host", "worker_pid": 4242})
    assert not service.is_interrupted(running, alive)
    assert service.is_interrupted(running, {"train-1@host": 5151})  # the worker came back as a new process
    assert service.is_interrupted(running, {})
    assert not service.is_interrupted(_done(db, run), {})


def test_the_llm_judge_is_offered_only_when_configured_and_queues_from_page_and_api(browser, client, app, db, team,
                                                                                   run, sent):
    _done(db, run)
    assert "Score with the LLM judge" not in browser.get(f"/runs/{run.id}").text  # no judge configured
    _, headers = team
    refused = client.post(f"/api/v1/runs/{run.id}/evaluations/judge", headers=headers)
    assert refused.status_code == 422 and "STUDIO_JUDGE_BASE_URL" in refused.json()["error"]["message"]

    app.state.settings.judge_base_url, app.state.settings.judge_model = "http://judge.local/v1", "judge-1"
    page = browser.get(f"/runs/{run.id}").text
    assert "Score with the LLM judge" in page
    answer = browser.post(f"/runs/{run.id}/evaluation/judge", follow_redirects=False)
    assert answer.status_code == 303
    queued = db.query(Evaluation).filter_by(run_id=run.id, kind="llm_judge").one()
    assert queued.status == "pending" and queued.details["model"] == "judge-1"
    assert sent[-1] == ("studio.judge", [queued.id], "default")
    assert "Score with the LLM judge" not in browser.get(f"/runs/{run.id}").text  # one judging at a time
    again = client.post(f"/api/v1/runs/{run.id}/evaluations/judge", headers=headers)
    assert again.status_code == 202 and again.json()["id"] == queued.id
