"""Datasets: create from an upload or the shipped example, new versions, the CSV column
mapping, and the validation task. Services flush; the request or task edge commits.

A dataset is immutable once valid: a corrected file is uploaded as a new version of the same
name. An upload identical to an existing dataset of the team (same bytes, same evaluation file,
same settings) is recognised and the existing dataset is returned instead of a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import queue
from app.datasets import repository as repo
from app.datasets.upload import ReceivedFile, ReceivedUpload, new_prefix
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Artifact, Dataset, DatasetStatus
from app.models_registry import repository as models_repo
from app.models_registry.service import BUILTIN_SLUG
from app.storage import Store
from datacheck import GOAL_LABELS, ColumnMapping, Goal, Row, read_rows, search_rows

VALIDATE_TASK = "studio.validate_dataset"
EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "examples" / "support_fr_brand_voice.jsonl"
EXAMPLE_NAME = "Support FR brand voice (example)"
INTERNAL_ERROR = "internal_error"  # the error kind of a check that crashed
_DISCARD = "studio_discard_on_rollback"


@dataclass(frozen=True)
class UploadOptions:
    name: str
    goal: Goal = Goal.OTHER
    eval_fraction: float = 0.1
    seed: int = 42
    base_model_id: int | None = None


@dataclass(frozen=True)
class Created:
    dataset: Dataset
    duplicate: bool  # True: an identical upload existed; ``dataset`` is that one


# -- files written before the row: deleted again if the transaction rolls back -------------


def discard_on_rollback(session: Session, store: Store, keys: list[str]) -> None:
    session.info.setdefault(_DISCARD, []).append((store, list(keys)))


@event.listens_for(Session, "after_commit")
def _keep_files(session: Session) -> None:
    session.info.pop(_DISCARD, None)


@event.listens_for(Session, "after_rollback")
def _discard_files(session: Session) -> None:
    for store, keys in session.info.pop(_DISCARD, []):
        for key in keys:
            store.delete(key)


# -- reading the form ---------------------------------------------------------------------


def parse_options(fields: dict[str, str], *, filename: str) -> UploadOptions:
    """Upload settings from form fields, with messages that say what to change."""
    name = " ".join(fields.get("name", "").split()) or Path(filename).stem or "dataset"
    if len(name) > 200:
        raise InvalidInput("The name may have at most 200 characters.", param="name")
    goal = fields.get("goal", "").strip() or Goal.OTHER.value
    if goal not in {g.value for g in Goal}:
        raise InvalidInput(f"Unknown goal '{goal}'. Choose one of: {', '.join(g.value for g in Goal)}.",
                           param="goal")
    fraction = _number(fields.get("eval_fraction", ""), float, 0.1, "eval_fraction")
    if not 0 <= fraction <= 0.5:
        raise InvalidInput("The evaluation share must be between 0 and 0.5 (0.1 sets 10% aside).",
                           param="eval_fraction")
    seed = _number(fields.get("seed", ""), int, 42, "seed")
    model = fields.get("base_model_id", "").strip()
    model_id = _number(model, int, 0, "base_model_id") if model else None
    return UploadOptions(name=name, goal=Goal(goal), eval_fraction=fraction, seed=seed,
                         base_model_id=model_id)


def _number(raw: str, kind: type, default: float, param: str):  # noqa: ANN202
    raw = raw.strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InvalidInput(f"'{param}' must be {what}, not '{raw}'.", param=param) from None


# -- creating -----------------------------------------------------------------------------


def get(session: Session, *, team_id: int, dataset_id: int) -> Dataset:
    dataset = repo.get(session, team_id=team_id, dataset_id=dataset_id)
    if dataset is None:
        raise NotFound("There is no such dataset in your team.")
    return dataset


def create_from_upload(session: Session, *, store: Store, team_id: int, user_id: int | None,
                       upload: ReceivedUpload, options: UploadOptions) -> Created:
    """A new dataset (or a new version of its name) for the uploaded files, queued for
    validation; or the existing dataset when the very same upload was made before."""
    discard_on_rollback(session, store, upload.keys)
    main = upload.files.get("file")
    if main is None:
        raise InvalidInput("Choose a dataset file to upload.", param="file")
    model_id = _tokenizer_model(session, team_id, options.base_model_id)
    eval_file = upload.files.get("eval_file")
    existing = _identical(session, team_id, main, eval_file, options, model_id)
    if existing is not None:
        upload.discard(store)
        return Created(existing, duplicate=True)
    dataset = _add_row(session, team_id=team_id, user_id=user_id, name=options.name, file=main,
                       options=options, model_id=model_id)
    if eval_file is not None:
        eval_row = _add_row(session, team_id=team_id, user_id=user_id, file=eval_file,
                            name=f"{options.name[:187]} (evaluation)", options=options,
                            model_id=model_id, purpose=repo.EVAL_FILE)
        dataset.eval_dataset_id = eval_row.id
    queue.enqueue(session, VALIDATE_TASK, dataset.id)
    return Created(dataset, duplicate=False)


def create_from_example(session: Session, *, store: Store, team_id: int,
                        user_id: int | None) -> Created:
    """The shipped French customer-support dataset, as if the person had uploaded it."""
    key = f"{new_prefix(team_id)}/raw"
    written = store.write_file(key, EXAMPLE_FILE)
    upload = ReceivedUpload(files={"file": ReceivedFile(
        field="file", filename=EXAMPLE_FILE.name, key=key, sha256=written.sha256, size=written.size)})
    return create_from_upload(session, store=store, team_id=team_id, user_id=user_id, upload=upload,
                              options=UploadOptions(name=EXAMPLE_NAME, goal=Goal.BRAND_VOICE))


def _tokenizer_model(session: Session, team_id: int, model_id: int | None) -> int | None:
    """The base model whose tokenizer will count tokens: the chosen one, else the built-in."""
    if model_id is not None:
        if models_repo.get_visible(session, team_id=team_id, model_id=model_id) is None:
            raise InvalidInput("There is no such base model in your team.", param="base_model_id")
        return model_id
    builtin = models_repo.by_slug(session, BUILTIN_SLUG, None)
    return builtin.id if builtin is not None else None


def _identical(session: Session, team_id: int, main: ReceivedFile, eval_file: ReceivedFile | None,
               options: UploadOptions, model_id: int | None) -> Dataset | None:
    eval_sha = eval_file.sha256 if eval_file else None
    for row in repo.by_sha256(session, team_id=team_id, sha256=main.sha256):
        same = (row.goal, row.eval_fraction, row.split_seed, row.tokenizer_model_id) == (
            options.goal.value, options.eval_fraction, options.seed, model_id)
        if same and not crashed(row) and _eval_sha(session, row) == eval_sha:
            return row
    return None


def _eval_sha(session: Session, row: Dataset) -> str | None:
    if row.eval_dataset_id is None:
        return None
    held = repo.get(session, team_id=row.team_id, dataset_id=row.eval_dataset_id, purpose=repo.EVAL_FILE)
    return held.sha256 if held is not None else None


def crashed(row: Dataset) -> bool:
    return INTERNAL_ERROR in ((row.report or {}).get("error_counts") or {})


def _add_row(session: Session, *, team_id: int, user_id: int | None, name: str, file: ReceivedFile,
             options: UploadOptions, model_id: int | None, purpose: str = repo.FINE_TUNE) -> Dataset:
    row = Dataset(
        team_id=team_id, created_by_id=user_id, name=name, purpose=purpose,
        version=repo.next_version(session, team_id=team_id, name=name),
        status=DatasetStatus.uploaded, original_filename=file.filename, goal=options.goal.value,
        sha256=file.sha256, size_bytes=file.size, raw_path=file.key,
        eval_fraction=options.eval_fraction, split_seed=options.seed, tokenizer_model_id=model_id)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f'Another upload named "{name}" was saved at the same moment. Please try '
                       "again.") from None
    session.add(Artifact(team_id=team_id, dataset_id=row.id, kind="dataset_raw", path=file.key,
                         sha256=file.sha256, size_bytes=file.size, content_type=_content_type(file)))
    return row


def _content_type(file: ReceivedFile) -> str:
    suffix = Path(file.filename).suffix.lower()
    return {".jsonl": "application/jsonl", ".json": "application/json", ".csv": "text/csv",
            ".tsv": "text/tab-separated-values"}.get(suffix, "application/octet-stream")


# -- the CSV/TSV column mapping -----------------------------------------------------------


def set_mapping(session: Session, *, team_id: int, dataset_id: int, mapping: ColumnMapping) -> Dataset:
    """Choose the prompt/answer/system columns of a table and check the dataset again."""
    dataset = get(session, team_id=team_id, dataset_id=dataset_id)
    if dataset.status == DatasetStatus.valid:
        raise Conflict("This dataset is valid, and valid datasets never change. To use other "
                       "columns, upload the file again: it becomes a new version.")
    if dataset.status != DatasetStatus.invalid:
        raise Conflict("This dataset is still being checked. Wait for the result, then choose "
                       "the columns.")
    columns = (dataset.report or {}).get("columns") or []
    if not columns:
        raise InvalidInput("Only CSV and TSV tables have columns to choose; this file is not one.")
    _check_mapping(mapping, columns)
    dataset.column_mapping = mapping.model_dump()
    dataset.status = DatasetStatus.uploaded
    dataset.report = dataset.stats = dataset.format = dataset.num_examples = None
    session.flush()
    queue.enqueue(session, VALIDATE_TASK, dataset.id)
    return dataset


def _check_mapping(mapping: ColumnMapping, columns: list[str]) -> None:
    chosen = [("prompt", mapping.prompt), ("completion", mapping.completion)]
    chosen += [("system", mapping.system)] if mapping.system else []
    for param, column in chosen:
        if column not in columns:
            raise InvalidInput(f'There is no column "{column}" in this file. Its columns are: '
                               f"{', '.join(columns)}.", param=param)
    if mapping.prompt == mapping.completion:
        raise InvalidInput("The prompt and the answer must come from two different columns.",
                           param="completion")
    if mapping.system in (mapping.prompt, mapping.completion):
        raise InvalidInput("The system message needs a column of its own (or none).", param="system")


# -- reading rows ---------------------------------------------------------------------------

MAX_ROWS = 100


def rows(store: Store, dataset: Dataset, *, split: str = "train", offset: int = 0,
         limit: int = 20, query: str = "") -> tuple[list[Row], bool]:
    """Normalised examples ``offset`` to ``offset + limit - 1`` (of the matches when ``query``
    is given), and whether more follow. Only a valid dataset has normalised examples."""
    key = dataset.normalized_path if split == "train" else dataset.normalized_eval_path
    if dataset.status != DatasetStatus.valid or not key:
        raise Conflict(f"The examples can be read once the dataset is valid; it is "
                       f"{dataset.status.value} now.")
    if not 1 <= limit <= MAX_ROWS or offset < 0:
        raise InvalidInput(f"limit must be between 1 and {MAX_ROWS}, and offset 0 or more.",
                           param="limit")
    with store.open(key) as f:
        if query:
            if offset % limit:
                raise InvalidInput("With a search (q), offset must be a multiple of limit: "
                                   "results come in pages of limit rows.", param="offset")
            found = search_rows(f, query, page=offset // limit, page_size=limit)
            return found.rows, found.has_more
        got = read_rows(f, offset, limit + 1)
    return got[:limit], len(got) > limit


def goal_choices() -> list[tuple[str, str]]:
    return [(g.value, GOAL_LABELS[g].capitalize()) for g in Goal]
