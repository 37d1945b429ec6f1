"""The Celery application, configured from the studio's Settings.

Redis in production; in the embedded default kombu's SQLAlchemy transport on a SQLite file, so
that no service is needed. Messages only say "run N is ready": the database is the truth.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import Settings, get_settings

TRAIN_QUEUE = "train"
DEFAULT_QUEUE = "default"
# A Redis message that is not acked within this time is delivered again. Training tasks run for
# hours, so it is long; a lost worker is detected sooner by the reconciler's heartbeat check.
VISIBILITY_TIMEOUT_S = 24 * 3600
# Imported by every worker at start: the task modules register their tasks, the heartbeat
# module connects the signals that start the heartbeat and the reconciler.
TASK_MODULES = [
    "worker.runtime.heartbeat",
    "worker.tasks.ab",         # studio.ab_generate
    "worker.tasks.datasets",   # studio.validate_dataset
    "worker.tasks.cleaning",   # studio.scan_dataset
    "worker.tasks.augment",    # studio.augment_dataset
    "worker.tasks.runs",       # studio.train, studio.evaluate
    "worker.tasks.judge",      # studio.judge
    "worker.tasks.merge",      # studio.merge
    "worker.tasks.gguf",       # studio.gguf
    "worker.tasks.notify",     # studio.notify
    "worker.tasks.ping",       # studio.ping
]


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    if settings.embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("studio", broker=settings.broker_url, include=TASK_MODULES)
    app.conf.update(
        task_queues=(Queue(TRAIN_QUEUE), Queue(DEFAULT_QUEUE)),
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Redis restarted or unreachable: the worker reconnects for as long as it takes (the
        # default gives up after 100 tries and the worker exits), and a task in progress goes on:
        # a training run needs the database, not the broker, and its lost message is harmless
        # (the run is claimed by compare-and-set, the reconciler re-sends what a restart lost).
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # kombu's SQLAlchemy transport hands these options to create_engine(): Redis only.
        broker_transport_options={} if settings.embedded_broker else {
            "visibility_timeout": VISIBILITY_TIMEOUT_S, "socket_timeout": 30, "socket_connect_timeout": 5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
    )
    return app


celery_app = make_celery()
