"""`studio.notify`: one try at a notification delivery (a webhook call or an e-mail), on the
"default" queue. A failed try schedules the next one with exponential backoff (a countdown on
the message); the reconciler re-sends a delivery whose message or process was lost
(app.notifications.service.redeliver_due). The rules live in app/notifications/delivery.py."""

from __future__ import annotations

import logging

from app.notifications import delivery
from app.notifications.service import NOTIFY_TASK
from worker.celery_app import DEFAULT_QUEUE, celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=NOTIFY_TASK)
def notify(delivery_id: int) -> None:
    delay = delivery.attempt(delivery_id)
    if delay is not None:
        schedule_retry(delivery_id, delay)


def schedule_retry(delivery_id: int, delay: float) -> None:
    try:
        notify.apply_async((delivery_id,), countdown=delay, queue=DEFAULT_QUEUE)
    except Exception:  # noqa: BLE001  (the row says when it is due: the reconciler sends it)
        log.exception("could not schedule the next try of delivery %s; the reconciler will", delivery_id)
