"""`studio.judge(evaluation_id)`: score a run's sample answers with the configured LLM judge.

Plain HTTP to an OpenAI-compatible endpoint, no model in this process: it runs on the
"default" queue. See app/evaluations/judge.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import Settings, get_settings
from app.db import session_scope
from app.evaluations import judge
from app.registry import gate
from worker.celery_app import celery_app

if TYPE_CHECKING:
    import httpx


def run_judging(evaluation_id: int, settings: Settings, client: httpx.Client | None = None) -> None:
    """Two units of work around the grading: the first commits "running" so that the page shows
    the judging under way; the second the scores. No transaction stays open while the judge
    answers."""
    with session_scope(settings) as s:
        work = judge.start(s, evaluation_id)
    if work is None:
        return
    graded = judge.grade(work, settings, client=client)
    with session_scope(settings) as s:
        judge.record(s, work, graded)
        gate.settle(s, evaluation_id, settings)  # a judging of a golden set: its release may now be decided


@celery_app.task(name=judge.JUDGE_TASK, acks_late=True)
def judge_evaluation(evaluation_id: int) -> None:
    run_judging(evaluation_id, get_settings())
