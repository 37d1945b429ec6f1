"""Optional LLM-as-judge: an OpenAI-compatible chat endpoint scores answers from 1 to 10.

The judge reads the samples of a run's automatic evaluation (prompt, reference, base answer,
fine-tuned answer), asks the configured endpoint to grade each answer on its own (one request
per answer, so the judge never sees which model wrote it nor the other answer, which avoids
position bias), and stores an Evaluation of kind "llm_judge". Its scores are automatic: the
pages label them as such, never as a human rating.

Any OpenAI-compatible endpoint works, the studio's own `/v1` included:
STUDIO_JUDGE_BASE_URL=http://127.0.0.1:8000/v1, STUDIO_JUDGE_MODEL=<a model id of /v1/models>,
STUDIO_JUDGE_API_KEY=<a studio API key with the read scope>.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from statistics import mean
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from app import queue
from app.config import Settings
from app.errors import Conflict, InvalidInput
from app.evaluations import repository as repo
from app.models import Evaluation, Run, RunStatus, utcnow

if TYPE_CHECKING:
    import httpx

JUDGE_TASK = "studio.judge"
KIND = "llm_judge"
RUBRIC = (
    "You grade answers written by an AI assistant. Rate how well the ANSWER responds to the USER "
    "PROMPT on a scale from 1 (useless or wrong) to 10 (excellent). When a REFERENCE answer is "
    "given, it shows what a good answer looks like (facts, tone, format); an answer can differ "
    "in wording and still deserve a high score. Reply with JSON only, exactly "
    '{"score": <integer 1-10>, "reason": "<one short sentence>"}.'
)
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)
_SCORE_WORD = re.compile(r"score\W{0,5}(\d{1,2})", re.IGNORECASE)


class JudgeError(Exception):
    """The endpoint could not be used at all (unreachable, refused, misconfigured)."""


@dataclass(frozen=True)
class Verdict:
    score: int | None  # None: the reply could not be read as a score
    reason: str


def parse_verdict(text: str) -> Verdict:
    """Reads {"score": n, "reason": "..."} from a reply, tolerating text or code fences around it."""
    for candidate in _JSON_OBJECT.findall(text or ""):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "score" in data:
            try:
                score = round(float(data["score"]))
            except (TypeError, ValueError):
                break
            if 1 <= score <= 10:
                return Verdict(score, str(data.get("reason", "")).strip()[:500])
            return Verdict(None, f"Score out of range: {data['score']!r}.")
    found = _SCORE_WORD.search(text or "")
    if found and 1 <= int(found.group(1)) <= 10:
        return Verdict(int(found.group(1)), (text or "").strip()[:500])
    return Verdict(None, f"Unreadable reply: {(text or '').strip()[:200]!r}")


def prompt_text(prompt: str | list[dict[str, Any]]) -> str:
    """An evaluation sample's prompt (a chat conversation up to the answer) as the judge reads it."""
    if isinstance(prompt, str):
        return prompt
    turns = [m for m in prompt or [] if isinstance(m, dict)]
    if len(turns) == 1 and turns[0].get("role") == "user":
        return str(turns[0].get("content", ""))
    return "\n".join(f"[{m.get('role', 'user')}] {m.get('content', '')}" for m in turns)


class JudgeClient:
    """Chat completions on an OpenAI-compatible endpoint, at temperature 0."""

    def __init__(self, base_url: str, model: str, api_key: str = "", *, timeout_s: float = 60.0,
                 client: httpx.Client | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if client is None:
            import httpx  # on first use: the web starts without it

            client = httpx.Client(timeout=timeout_s)
        self.client = client

    def grade(self, prompt: str | list[dict[str, Any]], answer: str, reference: str | None) -> Verdict:
        parts = [f"USER PROMPT:\n{prompt_text(prompt)}"]
        if reference:
            parts.append(f"REFERENCE:\n{reference}")
        parts.append(f"ANSWER:\n{answer or '(empty answer)'}")
        body = {"model": self.model, "temperature": 0, "max_tokens": 200,
                "messages": [{"role": "system", "content": RUBRIC},
                             {"role": "user", "content": "\n\n".join(parts)}]}
        import httpx

        try:
            response = self.client.post(self.url, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise JudgeError(f"Could not reach the judge at {self.url}: {exc}.") from exc
        if response.status_code in (401, 403):
            raise JudgeError(f"The judge at {self.url} refused the key ({response.status_code}): "
                             "check STUDIO_JUDGE_API_KEY.")
        if response.status_code == 404:
            raise JudgeError(f"The judge at {self.url} answered 404: check STUDIO_JUDGE_BASE_URL (it should end "
                             f"in /v1) and STUDIO_JUDGE_MODEL ({self.model!r}).")
        if response.status_code >= 400:
            raise JudgeError(f"The judge at {self.url} answered {response.status_code}: {response.text[:300]}")
        try:
            text = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"The judge at {self.url} did not answer like a chat completions endpoint.") from exc
        return parse_verdict(text)


def summarize(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean score per side, and how often the fine-tuned answer scored higher, lower or the same."""
    out: dict[str, Any] = {}
    for side in ("base", "finetuned"):
        scores = [s[f"{side}_score"] for s in scored if s.get(f"{side}_score") is not None]
        out[side] = {"mean_score": round(mean(scores), 3) if scores else None, "n": len(scores)}
    both = [s for s in scored if s.get("base_score") is not None and s.get("finetuned_score") is not None]
    out["finetuned_better"] = sum(s["finetuned_score"] > s["base_score"] for s in both)
    out["base_better"] = sum(s["finetuned_score"] < s["base_score"] for s in both)
    out["same"] = len(both) - out["finetuned_better"] - out["base_better"]
    out["unreadable"] = sum(s.get(f"{side}_score") is None for s in scored for side in ("base", "finetuned"))
    return out


def request(session: Session, run: Run, settings: Settings) -> Evaluation:
    """Queues judging of a run's latest automatic evaluation (the caller has checked the team)."""
    if not settings.judge_base_url or not settings.judge_model:
        raise InvalidInput("No LLM judge is configured: set STUDIO_JUDGE_BASE_URL and STUDIO_JUDGE_MODEL "
                           "(any OpenAI-compatible endpoint, the studio's own /v1 included).")
    if run.status != RunStatus.succeeded:
        raise Conflict(f"Only a finished run can be judged (this one is {run.status.value}).")
    source = repo.latest_succeeded(session, run_id=run.id, kind="automatic")
    if source is None or not source.samples:
        raise Conflict("This run has no evaluation with sample answers yet: the judge scores those.")
    pending = repo.unfinished_of(session, run_id=run.id, kind=KIND)
    if pending is not None:
        return pending  # a second click while one is under way changes nothing
    evaluation = Evaluation(team_id=run.team_id, run_id=run.id, kind=KIND, status="pending",
                            details={"endpoint": settings.judge_base_url, "model": settings.judge_model,
                                     "source_evaluation_id": source.id})
    session.add(evaluation)
    session.flush()
    queue.enqueue(session, JUDGE_TASK, evaluation.id, queue="default")
    return evaluation


# -- judging: start (a unit of work), grade (no database, slow), record (a unit of work) ---------
# The task (worker/tasks/judge.py) commits after start, so the page shows the judging running.

@dataclass
class Judging:
    evaluation_id: int
    samples: list[dict[str, Any]]
    details: dict[str, Any]


@dataclass
class Graded:
    scored: list[dict[str, Any]]
    error: str | None
    seconds: float


def start(session: Session, evaluation_id: int) -> Judging | None:
    """pending -> running; what the grading needs. None: the evaluation was deleted, or this is a
    redelivered message for a finished judging."""
    evaluation = repo.by_id(session, evaluation_id)
    if evaluation is None or evaluation.status not in ("pending", "running"):
        return None
    source = repo.by_id(session, (evaluation.details or {}).get("source_evaluation_id"))
    samples = list(source.samples or []) if source is not None else []
    details = dict(evaluation.details or {})
    evaluation.status = "running"
    session.flush()
    return Judging(evaluation_id, samples, details)


def grade(work: Judging, settings: Settings, client: httpx.Client | None = None) -> Graded:
    """Scores every sample's two answers, each on its own; a judge that cannot be used at all
    ends the grading with the reason."""
    details = work.details
    judge = JudgeClient(details.get("endpoint") or settings.judge_base_url,
                        details.get("model") or settings.judge_model, settings.judge_api_key,
                        timeout_s=settings.judge_timeout_s, client=client)
    started = time.monotonic()
    scored: list[dict[str, Any]] = []
    error = None
    try:
        if not work.samples:
            raise JudgeError("The evaluation this judging was based on is gone or has no samples.")
        for sample in work.samples:
            row: dict[str, Any] = {"prompt": sample.get("prompt", "")}
            for side in ("base", "finetuned"):
                verdict = judge.grade(sample.get("prompt", ""), sample.get(side) or "", sample.get("reference"))
                row[f"{side}_score"], row[f"{side}_reason"] = verdict.score, verdict.reason
            scored.append(row)
        if all(r["base_score"] is None and r["finetuned_score"] is None for r in scored):
            raise JudgeError(f"The judge ({judge.model}) never answered with a readable score; its first reply: "
                             f"{scored[0]['base_reason']}")
    except JudgeError as exc:
        error = str(exc)
    return Graded(scored, error, round(time.monotonic() - started, 2))


def record(session: Session, work: Judging, graded: Graded) -> None:
    """The scores and their summary, or the reason the judging failed."""
    evaluation = repo.by_id(session, work.evaluation_id)
    if evaluation is None:
        return
    evaluation.samples = graded.scored
    evaluation.metrics = summarize(graded.scored) if graded.scored else None
    evaluation.details = {**work.details, "seconds": graded.seconds}
    evaluation.status = "failed" if graded.error else "succeeded"
    evaluation.error_message = graded.error
    evaluation.finished_at = utcnow()
    session.flush()


def enqueue_if_configured(session: Session, run: Run, settings: Settings) -> Evaluation | None:
    """Called when a run's automatic evaluation has finished: judge it too when a judge is set up."""
    if not settings.judge_base_url or not settings.judge_model:
        return None
    try:
        return request(session, run, settings)
    except (InvalidInput, Conflict):
        return None
