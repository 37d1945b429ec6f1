"""Checks printed by `studio doctor`: configuration and reachability of each part."""

from __future__ import annotations

import re
from collections.abc import Iterator

from app.config import Settings


def _mask(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def run_checks(settings: Settings) -> Iterator[tuple[str, bool, str]]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from app.db import alembic_config
    from app.db import get_engine, session_factory
    from app.health import check_broker, check_database, check_storage, live_workers
    from app.storage import open_store

    factory = session_factory(settings)
    db_ok, detail = check_database(factory)
    yield "database", db_ok, f"{_mask(settings.database_url)} ({detail})"
    if db_ok:
        with get_engine(settings).connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        yield "schema", current == head, f"at {current}, latest {head}" + (
            "" if current == head else " (run: studio db upgrade)")
    ok, detail = check_broker(settings)
    yield "broker", ok, f"{_mask(settings.broker_url)} ({detail})"
    store = open_store(settings)
    ok, detail = check_storage(store)
    yield "storage", ok, f"{store.describe()} ({detail})"
    workers = live_workers(factory) if db_ok else []
    listed = ", ".join(f"{w.name} [{w.queues}] {w.device_name}" + (f" x {w.device_count}" if (w.device_count or 1) > 1
                                                                    else "") for w in workers)
    yield "workers", bool(workers), listed or "none alive (start one: studio worker)"
    yield from _gpu()
    yield from _builtin(settings)
    yield from _supervised(settings)


def _supervised(settings: Settings) -> Iterator[tuple[str, bool, str]]:
    """The processes `studio up` keeps running, from the status file it writes in the data dir."""
    from app.supervisor import STATUS_FILE, describe, read_status

    yield from describe(read_status(settings.data_dir / STATUS_FILE))


def _gpu() -> Iterator[tuple[str, bool, str]]:
    try:
        import torch
    except ImportError:
        yield "gpu", False, "torch is not installed here (only workers need it)"
        return
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        yield "gpu", True, f"{len(names)} CUDA device(s): {', '.join(names)}"
    else:
        yield "gpu", False, f"no CUDA GPU: training runs on the CPU (torch {torch.__version__})"


def _builtin(settings: Settings) -> Iterator[tuple[str, bool, str]]:
    try:
        from worker.training.builtin import BuiltinModelMissing, builtin_model_dir, find_builtin_gguf, is_converted
    except ImportError as exc:
        yield "built-in model", False, f"worker libraries missing ({exc})"
        return
    try:
        gguf = find_builtin_gguf()
    except BuiltinModelMissing as exc:
        yield "built-in model", False, str(exc)
        return
    target = builtin_model_dir(settings.model_dir)
    if is_converted(target):
        yield "built-in model", True, f"converted at {target}"
    else:
        yield "built-in model", False, f"{gguf.name} installed but not converted (run: studio models import-builtin)"
