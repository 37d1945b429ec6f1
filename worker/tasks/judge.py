"""`studio.judge(evaluation_id)`: score a run's sample answers with the configured LLM judge.

Plain HTTP to an OpenAI-compatible endpoint, no model in this process: it runs on the
"default" queue. See app/evaluations/judge.py.
"""

from __future__ import annotations

from app.config import get_settings
from app.db import session_factory
from app.evaluations import judge
from worker.celery_app import celery_app


@celery_app.task(name=judge.JUDGE_TASK, acks_late=True)
def judge_evaluation(evaluation_id: int) -> None:
    settings = get_settings()
    judge.run(session_factory(settings), evaluation_id, settings)
