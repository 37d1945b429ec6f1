"""`studio.validate_dataset(dataset_id)`: check an uploaded dataset in the background.

A straight line: load the row (status validating) -> load the tokenizer of its base model ->
validate in one streamed pass, writing the normalised train/eval records to temporary files
-> valid: store them as artifacts; invalid: throw them away -> save the report.

- A dataset that no longer exists is a typed no-op (`DatasetGone`), never retried.
- A dataset that is already valid is left alone (a message delivered twice changes nothing).
- Without any base model, lengths are counted in characters (the report says so).
- A valid dataset also gets its trained-token preview (``token_preview`` in the report): its first
  training examples rendered by the engine's own data code (``worker.training.data``, the
  functions the trainer runs) for each ready base model the team may use, and where the first
  trained token of every example sits, so a run that would train nothing is refused up front.
- An unexpected error marks the dataset invalid with a plain-language reason, never leaves it
  "validating", and removes whatever it had stored.

Run a worker that takes it: `studio worker --queues default`.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from app.config import get_settings
from app.datasets import repository as repo
from app.datasets.derive import request_scan
from app.datasets.service import INTERNAL_ERROR, VALIDATE_TASK
from app.db import session_scope
from app.runs import service as runs_service
from app.models import Artifact, BaseModel, Dataset, DatasetStatus
from app.models_registry import repository as models_repo
from app.models_registry.service import BUILTIN_SLUG
from app.storage import Store, Written, open_store
from datacheck import (
    ColumnMapping,
    Counts,
    CountTokens,
    Goal,
    LineError,
    ReportWarning,
    ValidationOptions,
    ValidationReport,
)
from datacheck import validate_dataset as run_validation
from planner.weights import check_model_dir
from worker.celery_app import celery_app

log = logging.getLogger(__name__)
PREVIEW_MODELS = 4  # base models a dataset's trained-token preview is drawn for
PREVIEW_EXAMPLES = 3  # examples shown
SCAN_EXAMPLES = 5000  # examples whose first trained token is located (all of most datasets)


class DatasetGone(Exception):
    """The dataset was deleted before its check ran: nothing to do."""


@dataclass
class Check:
    """Everything one check needs, read from the database before the long part starts."""

    dataset_id: int
    team_id: int
    raw_path: str
    filename: str
    options: ValidationOptions
    eval_path: str | None = None
    eval_filename: str | None = None
    model_id: int | None = None
    model_name: str = ""
    model_path: str | None = None
    preview_models: list[tuple[int, str, str]] = field(default_factory=list)  # (id, name, path)
    token_preview: dict | None = None
    stored: list[str] = field(default_factory=list)  # keys written (or being written)
    written: list[Written] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.raw_path.rsplit("/", 1)[0]


@celery_app.task(name=VALIDATE_TASK, ignore_result=True)
def validate_dataset(dataset_id: int) -> str:
    """Check one dataset; returns its final status (or why nothing was done)."""
    try:
        check = _start(dataset_id)
    except DatasetGone:
        log.info("dataset %s no longer exists; nothing to validate", dataset_id)
        return "gone"
    if check is None:
        return DatasetStatus.valid.value
    store = open_store(get_settings())
    try:
        report = _run(check, store)
        return _finish(check, report, store)
    except Exception as exc:  # any crash: say so on the dataset instead of leaving it stuck
        log.exception("validating dataset %s failed", dataset_id)
        _fail(check, exc, store)
        return DatasetStatus.invalid.value


def _start(dataset_id: int) -> Check | None:
    settings = get_settings()
    with session_scope() as session:
        dataset = repo.by_id(session, dataset_id)
        if dataset is None:
            raise DatasetGone(dataset_id)
        if dataset.status == DatasetStatus.valid:
            return None
        dataset.status = DatasetStatus.validating
        mapping = ColumnMapping(**dataset.column_mapping) if dataset.column_mapping else None
        options = ValidationOptions(
            mapping=mapping, max_line_bytes=settings.max_line_bytes, seed=dataset.split_seed,
            eval_fraction=dataset.eval_fraction, goal=_goal(dataset.goal))
        check = Check(dataset_id=dataset.id, team_id=dataset.team_id, raw_path=dataset.raw_path,
                      filename=dataset.original_filename, options=options)
        _add_eval_file(session, dataset, check)
        _add_model(session, dataset, check)
        others = [m for m in models_repo.visible(session, dataset.team_id) if m.id != check.model_id]
        chosen = [(check.model_id, check.model_name, check.model_path)] if check.model_path else []
        check.preview_models = chosen + [(m.id, m.display_name, m.path) for m in others]
        check.preview_models = check.preview_models[:PREVIEW_MODELS]
    return check


def _goal(value: str) -> Goal:
    return Goal(value) if value in {g.value for g in Goal} else Goal.OTHER


def _held_eval_file(session, dataset: Dataset) -> Dataset | None:  # noqa: ANN001
    """The separate evaluation file uploaded with this dataset, if it has one."""
    if dataset.eval_dataset_id is None:
        return None
    return repo.get(session, team_id=dataset.team_id, dataset_id=dataset.eval_dataset_id, purpose=repo.EVAL_FILE)


def _add_eval_file(session, dataset: Dataset, check: Check) -> None:  # noqa: ANN001
    if (held := _held_eval_file(session, dataset)) is not None:
        check.eval_path, check.eval_filename = held.raw_path, held.original_filename
        held.status = DatasetStatus.validating


def _add_model(session, dataset: Dataset, check: Check) -> None:  # noqa: ANN001
    """The chosen base model, else the built-in one when it was registered since."""
    model: BaseModel | None = None
    if dataset.tokenizer_model_id is not None:
        model = models_repo.get_visible(session, team_id=dataset.team_id,
                                        model_id=dataset.tokenizer_model_id)
    if model is None:
        model = models_repo.by_slug(session, BUILTIN_SLUG, None)
    if model is not None:
        check.model_id, check.model_name, check.model_path = model.id, model.display_name, model.path
        check.options.max_tokens = model.context_length or None


@lru_cache(maxsize=4)
def _tokenizer(path: str):  # noqa: ANN202
    """One tokenizer per model directory per worker process; never downloads anything."""
    from transformers import AutoTokenizer

    check_model_dir(path)
    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)


@lru_cache(maxsize=4)
def _training_tokenizer(path: str):  # noqa: ANN202
    """The tokenizer exactly as the trainer loads it (pad token, chat template required)."""
    from worker.training.modeling import load_tokenizer

    return load_tokenizer(path)


def token_counter(tokenizer) -> CountTokens:  # noqa: ANN001
    def count(texts: list[str]) -> list[int]:
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    return count


def _count_tokens(check: Check) -> tuple[CountTokens | None, ReportWarning | None]:
    if check.model_path is None:
        return None, ReportWarning(kind="no_tokenizer", count=0, message=(
            "Lengths are counted in characters and tokens are estimated: no base model is "
            "installed yet to count them exactly (run `studio models import-builtin`)."))
    try:
        return token_counter(_tokenizer(check.model_path)), None
    except Exception as exc:  # a broken model directory must not stop the check
        log.warning("could not load the tokenizer of %s: %s", check.model_path, exc)
        check.model_id, check.options.max_tokens = None, None
        return None, ReportWarning(kind="no_tokenizer", count=0, message=(
            f"Lengths are counted in characters: the tokenizer of {check.model_name} could not "
            f"be loaded ({type(exc).__name__}). Ask an administrator to check that model."))


def _run(check: Check, store: Store) -> ValidationReport:
    """Validate into temporary files; store them only when the dataset is valid."""
    count_tokens, note = _count_tokens(check)
    scratch = get_settings().data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="validate-") as tmp, ExitStack() as stack:
        train, evals = Path(tmp) / "train.jsonl", Path(tmp) / "eval.jsonl"
        source = stack.enter_context(store.open(check.raw_path))
        eval_source = stack.enter_context(store.open(check.eval_path)) if check.eval_path else None
        with open(train, "wb") as train_out, open(evals, "wb") as eval_out:
            report = run_validation(
                source, filename=check.filename, options=check.options, count_tokens=count_tokens,
                eval_source=eval_source, eval_filename=check.eval_filename,
                train_out=train_out, eval_out=eval_out)
        if note is not None:
            report.warnings.append(note)
        if report.status == "valid":
            check.token_preview = token_preview(check.preview_models, train)
            for name, path in (("train.jsonl", train), ("eval.jsonl", evals)):
                check.stored.append(f"{check.prefix}/{name}")
                check.written.append(store.write_file(check.stored[-1], path))
    return report


def token_preview(models: list[tuple[int, str, str]], train: Path) -> dict:
    """{"models": {id: {...}}} for each model whose tokenizer loads: a few examples as the
    trainer sees them and, over the first SCAN_EXAMPLES examples, the earliest position of a
    first trained token (a run whose max_length is not above it trains nothing)."""
    import orjson

    from worker.training.data import DataError, check_tool_support, first_trained_position, preview_record

    records = []
    with open(train, "rb") as fh:
        for line in fh:
            if line.strip():
                record = orjson.loads(line)
                if "messages" not in record:  # a preference pair: its prompt with the better answer
                    record = {"messages": record["prompt"] + record["chosen"]}
                records.append((record["messages"], record.get("tools") or None))
            if len(records) >= SCAN_EXAMPLES:
                break
        complete = not any(line.strip() for line in fh)
    out: dict = {"models": {}, "examples_scanned": len(records), "complete": complete}
    for model_id, name, path in models:
        entry: dict = {"model_name": name}
        try:
            tokenizer = _training_tokenizer(path)
            if any(tools for _, tools in records):
                check_tool_support(tokenizer)
            entry["examples"] = [preview_record(tokenizer, m, t) for m, t in records[:PREVIEW_EXAMPLES]]
            firsts = [first_trained_position(tokenizer, m, t) for m, t in records]
            known = [f for f in firsts if f is not None]
            entry["first_trained_min"] = min(known) if known else None
            entry["untrained_examples"] = len(firsts) - len(known)
        except (DataError, ValueError) as exc:  # no chat template, or one the engine cannot mask
            entry = {"model_name": name, "error": str(exc)}
        except Exception as exc:  # a broken model directory must not stop the check
            log.warning("no token preview with %s: %s", path, exc)
            entry = {"model_name": name, "error": f"The tokenizer of {name} could not be loaded "
                                                  f"({type(exc).__name__})."}
        out["models"][str(model_id)] = entry
    return out


def _finish(check: Check, report: ValidationReport, store: Store) -> str:
    with session_scope() as session:
        dataset = repo.by_id(session, check.dataset_id)
        if dataset is None:  # deleted while it was being checked
            _remove(store, check.stored)
            return "gone"
        valid = report.status == "valid"
        dataset.status = DatasetStatus.valid if valid else DatasetStatus.invalid
        dataset.report = report.model_dump(mode="json")
        if check.token_preview is not None:
            dataset.report["token_preview"] = check.token_preview
        dataset.stats = report.stats.model_dump(mode="json") if report.stats else None
        dataset.format = report.format.value if report.format else None
        dataset.num_examples = report.counts.examples
        dataset.tokenizer_model_id = check.model_id
        if valid:
            dataset.normalized_path, dataset.normalized_eval_path = check.stored
            _record_artifacts(session, check)
            request_scan(session, dataset)  # near duplicates and personal data: a step of its own
        _mirror_eval_file(session, dataset, report)
        _move_waiting_runs(session, dataset)
        return dataset.status.value


def _record_artifacts(session, check: Check) -> None:  # noqa: ANN001
    for written, kind in zip(check.written, ("dataset_train", "dataset_eval")):
        session.add(Artifact(team_id=check.team_id, dataset_id=check.dataset_id, kind=kind,
                             path=written.key, sha256=written.sha256, size_bytes=written.size,
                             content_type="application/jsonl"))


def _mirror_eval_file(session, dataset: Dataset, report: ValidationReport) -> None:  # noqa: ANN001
    if (held := _held_eval_file(session, dataset)) is not None:
        held.status = dataset.status
        held.num_examples = report.counts.eval_examples
        held.format = dataset.format


def _fail(check: Check, exc: Exception, store: Store) -> None:
    _remove(store, check.stored)
    message = (f"The check stopped because of an unexpected error on our side "
               f"({type(exc).__name__}: {str(exc)[:300]}). Nothing from this check was kept. "
               "Upload the file again; if it happens again, tell your administrator (the worker "
               "log has the details).")
    report = ValidationReport(
        status="invalid", format=None, format_label="Unknown format", container=None,
        explanation=message, counts=Counts(), errors_truncated=False, warnings=[], stats=None,
        guidance=None, error_counts={INTERNAL_ERROR: 1},
        errors=[LineError(line=None, kind=INTERNAL_ERROR, message=message)])
    with session_scope() as session:
        dataset = repo.by_id(session, check.dataset_id)
        if dataset is not None:
            dataset.status = DatasetStatus.invalid
            dataset.report = report.model_dump(mode="json")
            dataset.stats = dataset.normalized_path = dataset.normalized_eval_path = None
            _mirror_eval_file(session, dataset, report)
            _move_waiting_runs(session, dataset)


def _move_waiting_runs(session, dataset: Dataset) -> None:  # noqa: ANN001
    """Runs created while this file was checked move on in the same transaction: queued, or
    failed with the file's own error."""
    session.flush()
    moved = runs_service.files_checked(session, dataset_id=dataset.id)
    if moved:
        log.info("dataset %s checked (%s): %d waiting runs moved on", dataset.id, dataset.status.value, moved)


def _remove(store: Store, keys: list[str]) -> None:
    for key in keys:
        store.delete(key)
