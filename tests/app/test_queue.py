"""Messages are sent only after the creating transaction commits."""

from __future__ import annotations

from app import queue
from app.models import Team


def test_enqueue_waits_for_commit_and_rollback_drops(db, monkeypatch):
    sent = []
    monkeypatch.setattr(queue, "send", lambda task, args, queue: sent.append((task, args, queue)))
    db.add(Team(name="t"))
    queue.enqueue(db, "studio.ping", "a")
    db.flush()
    assert sent == []
    db.rollback()
    assert sent == []
    queue.enqueue(db, "studio.ping", "b", queue="train")
    db.add(Team(name="t2"))
    db.commit()
    assert sent == [("studio.ping", ["b"], "train")]
    db.commit()
    assert len(sent) == 1  # nothing is sent twice


def test_a_broker_failure_after_commit_does_not_undo_the_commit(db, monkeypatch):
    def boom(*_a, **_k):
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "send", boom)
    db.add(Team(name="kept"))
    queue.enqueue(db, "studio.ping", "x")
    db.commit()
    assert db.query(Team).filter_by(name="kept").count() == 1
