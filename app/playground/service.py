"""The playground: which models a team can chat with, each model's own conversation, saved
transcripts, and what a transcript becomes (an A/B test, a new dataset). Services flush; the
request edge commits.

Every model name goes through `resolve()` of /v1/models (app/api/openai/models.py), and the
choices come from the same list as `GET /v1/models` (`team_models`), so a name the API accepts
is a name the playground accepts, and the other way round.
"""

from __future__ import annotations

import orjson
from sqlalchemy.orm import Session

from app.ab import service as ab_service
from app.api.openai import names
from app.api.openai import repository as openai_repo
from app.api.openai.models import resolve, team_models
from app.datasets import service as datasets_service
from app.datasets.upload import ReceivedFile, ReceivedUpload, new_prefix
from app.errors import InvalidInput, NotFound
from app.inference.client import Target
from app.models import Dataset, Comparison, Transcript
from app.models_registry import repository as models_repo
from app.playground import repository as repo
from app.playground.schemas import ChatIn, Settings, ToAbIn, ToDatasetIn, TranscriptIn
from app.storage import Store
from app.registry import lookup
from datacheck import Goal


# -- models --------------------------------------------------------------------------------

def model_choices(session: Session, *, team_id: int) -> list[tuple[str, list[str]]]:
    """(group label, model names): what /v1/models lists, then the checkpoints of its fine-tuned
    models (served too, by name, as GET /v1/fine_tuning/jobs/{id}/checkpoints lists them)."""
    listed = [m.id for m in team_models(session, team_id)]
    slugs = {b.id: b.slug for b in models_repo.visible(session, team_id, ready_only=False)}
    checkpoints = [names.checkpoint_name(run, slugs[run.base_model_id], c.step)
                   for run in openai_repo.servable_runs(session, team_id=team_id) if run.base_model_id in slugs
                   for c in openai_repo.checkpoints_of(session, run_id=run.id)]
    groups = [("Base and fine-tuned models", listed)]
    return groups + ([("Checkpoints", checkpoints)] if checkpoints else [])


def targets(session: Session, store: Store, *, team_id: int, settings: Settings) -> list[Target]:
    """What each column serves, resolved from the team's rows; a clear error naming the column
    for a name the team cannot use."""
    seen: set[str] = set()
    out = []
    for i, name in enumerate(settings.models):
        name = name.strip()
        if not name:
            raise InvalidInput(f"Choose a model for column {i + 1}.", param=f"models[{i}]")
        if name in seen:
            raise InvalidInput(f"“{name}” is chosen twice: choose different models for each column.",
                               param=f"models[{i}]")
        seen.add(name)
        try:
            out.append(resolve(session, store, team_id, name))
        except (NotFound, InvalidInput) as exc:
            raise InvalidInput(f"Column {i + 1}: {exc.message}", param=f"models[{i}]") from None
    return out


def _check_turns(settings: Settings, turns: list) -> None:  # noqa: ANN001
    for n, turn in enumerate(turns, 1):
        if not turn.prompt.strip():
            raise InvalidInput(f"Turn {n} has an empty prompt.", param="turns")
        if len(turn.answers) != len(settings.models):
            raise InvalidInput(f"Turn {n} has {len(turn.answers)} answers for {len(settings.models)} models: give "
                               "one answer per model (an empty one when it gave none).", param="turns")


def conversations(body: ChatIn) -> list[list[dict[str, str]]]:
    """Each model's own messages for the next answer: the system prompt, the earlier prompts
    with that model's own answers, then the new prompt."""
    _check_turns(body, body.turns)
    head = [{"role": "system", "content": body.system.strip()}] if body.system and body.system.strip() else []
    out = []
    for column in range(len(body.models)):
        messages = list(head)
        for turn in body.turns:
            messages += [{"role": "user", "content": turn.prompt},
                         {"role": "assistant", "content": turn.answers[column]}]
        out.append(messages + [{"role": "user", "content": body.prompt}])
    return out


# -- saved transcripts ---------------------------------------------------------------------

def get(session: Session, *, team_id: int, transcript_id: int) -> Transcript:
    row = repo.get(session, team_id=team_id, transcript_id=transcript_id)
    if row is None:
        raise NotFound("Your team has no such playground transcript.")
    return row


def create(session: Session, store: Store, *, team_id: int, user_id: int | None, body: TranscriptIn) -> Transcript:
    """Saves a conversation for the team: its models must be ones the team can use."""
    targets(session, store, team_id=team_id, settings=body)
    _check_turns(body, body.turns)
    title = " ".join(body.title.split()) or " ".join(body.turns[0].prompt.split())[:80]
    row = Transcript(team_id=team_id, created_by_id=user_id, title=title[:200],
                     system=(body.system or "").strip() or None, temperature=body.temperature,
                     max_tokens=body.max_tokens, models=[m.strip() for m in body.models],
                     turns=[{"prompt": t.prompt, "answers": list(t.answers)} for t in body.turns])
    session.add(row)
    session.flush()
    return row


def rename(session: Session, *, transcript: Transcript, title: str) -> Transcript:
    """A new title (spaces collapsed); the conversation itself never changes."""
    title = " ".join((title or "").split())
    if not title:
        raise InvalidInput("Give the transcript a title.", param="title")
    if len(title) > 200:
        raise InvalidInput("Keep the title under 200 characters.", param="title")
    transcript.title = title
    session.flush()
    return transcript


def delete(session: Session, *, transcript: Transcript) -> None:
    """Deletes the transcript. What was made from it stays: an A/B test keeps its own copy of the
    prompts and a dataset its own file of the examples; nothing refers to the transcript's row."""
    session.delete(transcript)
    session.flush()


# -- into an A/B test -----------------------------------------------------------------------

def ab_ref(session: Session, *, team_id: int, name: str, param: str) -> dict:
    """The A/B service's {"kind", "id"} for a model name: a base model or a fine-tuned run (an
    alias such as support-bot:prod means the version it points at now)."""
    if names.is_checkpoint(name):
        raise InvalidInput(f"“{name}” is a checkpoint: A/B tests compare base models and fine-tuned models. "
                           "Choose another column.", param=param)
    return lookup.model_ref(session, team_id=team_id, name=name, param=param)


def to_ab(session: Session, store: Store, *, transcript: Transcript, user_id: int | None, body: ToAbIn) -> Comparison:
    """A blind A/B test of two of the transcript's models on its prompts (each prompt on its own,
    as A/B tests ask them), with its system prompt and answer length."""
    count = len(transcript.models)
    for param, column in (("model_a", body.model_a), ("model_b", body.model_b)):
        if column >= count:
            raise InvalidInput(f"This transcript has {count} model(s): choose a column from 1 to {count}.",
                               param=param)
    if body.model_a == body.model_b:
        raise InvalidInput("Choose two different models: A and B are the same.", param="model_b")
    refs = [ab_ref(session, team_id=transcript.team_id, name=transcript.models[c], param=p)
            for p, c in (("model_a", body.model_a), ("model_b", body.model_b))]
    new = ab_service.NewComparison(
        team_id=transcript.team_id, user_id=user_id, model_a=refs[0], model_b=refs[1],
        name=body.name.strip() or f"Playground: {transcript.title}"[:200],
        prompts=[t["prompt"] for t in transcript.turns], system=transcript.system,
        max_new_tokens=min(max(transcript.max_tokens, 16), 2048))
    return ab_service.create(session, new=new, store=store)


# -- into dataset rows ----------------------------------------------------------------------

def examples(transcript: Transcript, chosen: list[int | None]) -> list[dict]:
    """One chat example per chosen turn: the system prompt, the earlier turns, the prompt and the
    chosen answer. An earlier turn carries its own chosen answer; one left out carries the answer
    of the column chosen now (the conversation that answer followed)."""
    turns = transcript.turns
    if len(chosen) != len(turns):
        raise InvalidInput(f"Choose an answer (or none) for each of the {len(turns)} turns.", param="chosen")
    for n, column in enumerate(chosen, 1):
        if column is not None and not 0 <= column < len(transcript.models):
            raise InvalidInput(f"Turn {n}: there is no column {column + 1}.", param="chosen")
        if column is not None and not turns[n - 1]["answers"][column].strip():
            raise InvalidInput(f"Turn {n}: the chosen answer is empty. Choose another or leave the turn out.",
                               param="chosen")
    head = [{"role": "system", "content": transcript.system}] if transcript.system else []
    out = []
    for i, column in enumerate(chosen):
        if column is None:
            continue
        messages = list(head)
        for j in range(i):
            kept = chosen[j] if chosen[j] is not None else column
            messages += [{"role": "user", "content": turns[j]["prompt"]},
                         {"role": "assistant", "content": turns[j]["answers"][kept]}]
        messages += [{"role": "user", "content": turns[i]["prompt"]},
                     {"role": "assistant", "content": turns[i]["answers"][column]}]
        out.append({"messages": messages})
    if not out:
        raise InvalidInput("Choose at least one answer: each chosen answer becomes an example.", param="chosen")
    return out


def to_dataset(session: Session, store: Store, *, transcript: Transcript, user_id: int | None,
               body: ToDatasetIn) -> tuple[Dataset, int]:
    """A new dataset of the chosen answers, uploaded and checked like any upload (the validation
    task runs on it); (the dataset, the number of examples)."""
    rows = examples(transcript, body.chosen)
    name = " ".join(body.name.split()) or f"Playground: {transcript.title}"[:200]
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    key = f"{new_prefix(transcript.team_id)}/raw"
    written = store.write_bytes(key, data)
    upload = ReceivedUpload(files={"file": ReceivedFile(
        field="file", filename=f"playground-transcript-{transcript.id}.jsonl", key=key,
        sha256=written.sha256, size=written.size)})
    # Few examples: none is set aside for evaluation (a second version can be uploaded with more).
    options = datasets_service.UploadOptions(name=name, goal=Goal.OTHER, eval_fraction=0.0)
    created = datasets_service.create_from_upload(session, store=store, team_id=transcript.team_id,
                                                   user_id=user_id, upload=upload, options=options)
    return created.dataset, len(rows)
