"""New versions made from a valid dataset: without its near duplicates, with its personal data
redacted, or with reviewed generated examples added (app.datasets.augment).

A derived version is an upload like any other: its training records are written as its raw
file, its evaluation records (when the source has any) as a separate evaluation file, so the
split never changes; it is then validated by the usual task. Each version carries
``origin`` (what was done, from which version) and a "dataset_provenance" artifact: one JSON
object per training example, carried over from the source's own provenance, so that an example
can always be traced to the upload it came from, or to the model and example that generated it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import orjson
from sqlalchemy.orm import Session

from app import queue
from app.datasets import repository as repo
from app.datasets import service
from app.datasets.upload import ReceivedFile, new_prefix
from app.errors import Conflict
from app.models import Artifact, Dataset, DatasetStatus, utcnow
from app.storage import Store
from datacheck import Goal
from datacheck.personal_data import redact_record

SCAN_TASK = "studio.scan_dataset"
PROVENANCE = "dataset_provenance"


def records(store: Store, key: str | None) -> Iterator[dict]:
    if not key:
        return
    with store.open(key) as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def provenance(session: Session, store: Store, dataset: Dataset) -> list[dict]:
    """One entry per training example of a valid dataset (an upload's examples are "original")."""
    held = next((a for a in repo.artifacts(session, team_id=dataset.team_id, dataset_id=dataset.id)
                 if a.kind == PROVENANCE), None)
    if held is not None:
        return list(records(store, held.path))
    count = sum(1 for _ in records(store, dataset.normalized_path))
    return [{"source": "original", "dataset_id": dataset.id, "version": dataset.version, "example": n}
            for n in range(1, count + 1)]


def require_valid(dataset: Dataset) -> None:
    if dataset.status != DatasetStatus.valid or not dataset.normalized_path:
        raise Conflict("Only a valid dataset can give a new version; wait for its check to end.")


SCANNING = ("queued", "running")


def split_by_studio(dataset: Dataset) -> bool:
    """Whether the studio drew this dataset's evaluation set itself (not a file the user gave, not
    a derived version's carried-over evaluation file): the near-duplicate scan may then re-split
    it (``worker.tasks.cleaning``)."""
    return dataset.eval_dataset_id is None and bool(dataset.normalized_eval_path) and dataset.eval_fraction > 0


def split_pending(dataset: Dataset) -> bool:
    """Whether runs of this valid dataset must wait: the studio split it and the near-duplicate
    scan, which moves evaluation examples that resemble training ones into training, has not
    ended. A run never starts on a split that near duplicates may still cross."""
    return (dataset.status == DatasetStatus.valid and split_by_studio(dataset)
            and (dataset.cleaning or {}).get("status") in SCANNING)


def split_note(dataset: Dataset) -> tuple[str, str] | None:
    """(level, sentence) for a run's story once the scan ended: how the split was corrected,
    or that the check failed (the evaluation's overlap check still reports any overlap)."""
    if not split_by_studio(dataset):
        return None
    cleaning = dataset.cleaning or {}
    if cleaning.get("status") == "failed":
        return ("warning", f"The near-duplicate check of '{dataset.name}' failed, so some evaluation examples "
                "may resemble training ones; the evaluation reports any overlap it finds and gives "
                "every score without it too.")
    moved = (cleaning.get("resplit") or {}).get("moved")
    if moved:
        return ("info", f"The near-duplicate check moved {moved} evaluation example{'s' if moved != 1 else ''} "
                "that resembled training ones into training, so no evaluation example is a near copy of "
                "a training one.")
    return None


def request_scan(session: Session, dataset: Dataset) -> None:
    """Queue the near-duplicate and personal-data scan of a valid dataset."""
    require_valid(dataset)
    earlier = (dataset.cleaning or {}).get("resplit")  # what an earlier scan moved stays said
    dataset.cleaning = {"status": "queued", "queued_at": utcnow().isoformat(),
                        **({"resplit": earlier} if earlier else {})}
    session.flush()
    queue.enqueue(session, SCAN_TASK, dataset.id)


def _jsonl(items: Iterable[dict]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def create_version(session: Session, store: Store, *, source: Dataset, user_id: int | None,
                   train: list[dict], evals: list[dict], origin: dict, lineage: list[dict]) -> Dataset:
    """A new version of ``source``'s name with these records, queued for validation."""
    assert len(train) == len(lineage), "one provenance entry per training example"
    prefix = new_prefix(source.team_id)
    keys = [f"{prefix}/raw", f"{prefix}/eval_raw", f"{prefix}/provenance.jsonl"]
    service.discard_on_rollback(session, store, keys)
    written = store.write_bytes(keys[0], _jsonl(train))
    options = service.UploadOptions(
        name=source.name, goal=Goal(source.goal) if source.goal in {g.value for g in Goal} else Goal.OTHER,
        eval_fraction=0.0, seed=source.split_seed, base_model_id=source.tokenizer_model_id)
    filename = f"{source.name[:150]}-v{repo.next_version(session, team_id=source.team_id, name=source.name)}.jsonl"
    main = ReceivedFile(field="file", filename=filename, key=keys[0], sha256=written.sha256, size=written.size)
    dataset = service._add_row(session, team_id=source.team_id, user_id=user_id, name=source.name, file=main,
                               options=options, model_id=source.tokenizer_model_id)
    dataset.origin = {**origin, "from_dataset_id": source.id, "from_version": source.version}
    if evals:
        w = store.write_bytes(keys[1], _jsonl(evals))
        eval_file = ReceivedFile(field="eval_file", filename=f"eval-{filename}", key=keys[1],
                                 sha256=w.sha256, size=w.size)
        eval_row = service._add_row(session, team_id=source.team_id, user_id=user_id, file=eval_file,
                                    name=f"{source.name[:160]} (evaluation) v{dataset.version}",
                                    options=options, model_id=source.tokenizer_model_id,
                                    purpose=repo.EVAL_FILE)
        dataset.eval_dataset_id = eval_row.id
    w = store.write_bytes(keys[2], _jsonl(lineage))
    session.add(Artifact(team_id=source.team_id, dataset_id=dataset.id, kind=PROVENANCE, path=keys[2],
                         sha256=w.sha256, size_bytes=w.size, content_type="application/jsonl"))
    queue.enqueue(session, service.VALIDATE_TASK, dataset.id)
    return dataset


def without_near_duplicates(session: Session, store: Store, *, team_id: int, user_id: int | None,
                            dataset_id: int) -> Dataset:
    """A new version without the near duplicates the scan found: the later copies within the
    training set and within the evaluation set, and evaluation examples that resemble a
    training example (the training set keeps the first of each group)."""
    source = service.get(session, team_id=team_id, dataset_id=dataset_id)
    require_valid(source)
    found = (source.cleaning or {}).get("near_duplicates")
    if (source.cleaning or {}).get("status") != "done" or found is None:
        raise Conflict("The near-duplicate check of this dataset has not finished yet.")
    if not found["drop_train"] and not found["drop_eval"]:
        raise Conflict("This dataset has no near duplicates: there is nothing to remove.")
    drop_train, drop_eval = set(found["drop_train"]), set(found["drop_eval"])
    lineage = provenance(session, store, source)
    train, kept = [], []
    for n, record in enumerate(records(store, source.normalized_path), 1):
        if n not in drop_train:
            train.append(record)
            kept.append(lineage[n - 1])
    evals = [r for n, r in enumerate(records(store, source.normalized_eval_path), 1) if n not in drop_eval]
    return create_version(session, store, source=source, user_id=user_id, train=train, evals=evals,
                          lineage=kept, origin={"kind": "without_near_duplicates",
                                                "removed_train": len(drop_train),
                                                "removed_eval": len(drop_eval)})


def redacted(session: Session, store: Store, *, team_id: int, user_id: int | None,
             dataset_id: int) -> Dataset:
    """A new version with every e-mail address, phone number, IBAN and card number replaced by
    [EMAIL], [PHONE], [IBAN] or [CARD]."""
    source = service.get(session, team_id=team_id, dataset_id=dataset_id)
    require_valid(source)
    if (source.cleaning or {}).get("status") == "done" and not source.cleaning.get("personal_total"):
        raise Conflict("No personal data was found in this dataset: there is nothing to redact.")
    counts: Counter[str] = Counter()
    out: dict[str, list[dict]] = {"train": [], "eval": []}
    for split, key in (("train", source.normalized_path), ("eval", source.normalized_eval_path)):
        for record in records(store, key):
            clean, found = redact_record(record)
            counts.update(found)
            out[split].append(clean)
    return create_version(session, store, source=source, user_id=user_id, train=out["train"],
                          evals=out["eval"], lineage=provenance(session, store, source),
                          origin={"kind": "redacted", "replaced": dict(counts)})

