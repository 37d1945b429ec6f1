"""Each worker upserts its row in `workers` every few seconds; /readyz, `studio doctor`, run
routing and the reconciler read it. Started by Celery's worker_ready signal."""

from __future__ import annotations

import functools
import logging
import os
import threading

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from app.db import session_scope, unreachable
from app.models import Worker, utcnow
from app.workers import repository as workers_repo

log = logging.getLogger(__name__)
INTERVAL_S = 5.0
_stop = threading.Event()


@functools.cache
def device_info() -> dict:
    """What this worker trains on: the kind of device, each one's memory, and how many it drives
    (see `device_count`). torch is imported here, in the worker, never in the web."""
    from app.config import get_settings

    wanted = get_settings().worker_devices
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return {"device": "cuda", "device_name": props.name, "device_memory_bytes": props.total_memory,
                    "bf16": torch.cuda.is_bf16_supported(),
                    "device_count": device_count(torch.cuda.device_count(), wanted)}
    except ImportError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"device": "cpu", "device_name": f"CPU ({os.cpu_count()} cores)", "device_memory_bytes": memory,
            "bf16": False, "device_count": device_count(None, wanted)}


def device_count(gpus: int | None, wanted: int | None) -> int:
    """How many devices a worker drives: its GPUs, at most `STUDIO_WORKER_DEVICES` of them; on a
    CPU (gpus None) that setting (how many gloo processes a run may use) or 1."""
    if gpus is None:
        return wanted or 1
    return max(1, min(gpus, wanted) if wanted else gpus)


def beat(name: str, queues: str, info: dict, extra: dict | None = None) -> None:
    with session_scope() as s:
        row = workers_repo.by_name(s, name)
        if row is None:
            row = Worker(name=name, last_seen_at=utcnow())
            s.add(row)
        row.queues = queues
        row.device = info["device"]
        row.device_name = info["device_name"]
        row.device_memory_bytes = info["device_memory_bytes"]
        row.device_count = info.get("device_count", 1)
        row.info = {**(row.info or {}), "bf16": info["bf16"], "pid": os.getpid(), **(extra or {})}
        row.last_seen_at = utcnow()


def _loop(name: str, queues: str) -> None:
    info = device_info()
    down = False
    while not _stop.is_set():
        try:
            beat(name, queues, info)
        except Exception as exc:  # a database hiccup must not kill the worker; the next beat retries
            if not unreachable(exc):
                log.exception("worker heartbeat failed")
            elif not down:
                log.warning("worker heartbeat: the database does not answer (%s); retrying every %.0f s",
                            type(exc).__name__, INTERVAL_S)
            down = True
        else:
            if down:
                log.warning("worker heartbeat: the database answers again")
            down = False
        _stop.wait(INTERVAL_S)


@worker_ready.connect
def _start(sender=None, **_kwargs) -> None:  # noqa: ANN001
    queues = ",".join(sorted(q.name for q in sender.app.amqp.queues.consume_from.values()))
    _stop.clear()
    threading.Thread(target=_loop, args=(sender.hostname, queues), daemon=True, name="heartbeat").start()
    from worker.runtime import reconciler

    reconciler.start()


@worker_shutdown.connect
def _stop_beating(sender=None, **_kwargs) -> None:  # noqa: ANN001
    _stop.set()
    from worker.runtime import reconciler

    reconciler.stop()
    try:
        with session_scope() as s:
            workers_repo.remove(s, sender.hostname)
    except Exception:
        log.exception("could not remove the worker row at shutdown")


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    """A forked pool child (default queue) must not reuse the parent's database connections."""
    from app.db import get_engine

    get_engine().dispose(close=False)


@worker_init.connect
def _preload_engine(sender=None, **_kwargs) -> None:  # noqa: ANN001
    """A training worker runs its tasks in this very process (the solo pool, or a thread per
    device on a worker that drives several; no fork: CUDA cannot be re-initialised in a forked
    child). It imports the engine and probes its devices now, so a claimed run starts at once."""
    pool = str(getattr(sender, "pool_cls", None) or "").lower()
    if "solo" not in pool and "thread" not in pool:
        return
    try:
        import worker.training.run  # noqa: F401
    except ImportError:  # a web-only install has no torch; such a worker runs no training
        log.warning("the training engine cannot be imported here; this worker cannot train")
    device_info()
