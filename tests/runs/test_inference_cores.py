"""The inference process and a run training on the same host share the cores: the train worker
that `studio up` starts gets the cores the inference process does not keep, and the inference
process uses every core only while no run trains on its host, with a note for the answers."""

from __future__ import annotations

import socket

import torch

from app.models import RunStatus
from tests.runs.factories import make_run


def test_inference_threads_follow_a_run_training_on_this_host(settings, db, team, dataset, model):
    from worker.inference.engine import Note, Request, Ticket
    from worker.inference.server import TRAINING_NOTE, CoreShare

    before = torch.get_num_threads()
    share = CoreShare(settings, cores=4, every_s=0)
    ticket = Ticket(Request(base="b", adapter=None, messages=[]), [1, 2])
    try:
        make_run(db, team[0].team_id, dataset, model, status=RunStatus.running, worker_id="train@another-host")
        share([ticket])
        assert torch.get_num_threads() == 4 and ticket.events.empty()  # training elsewhere takes no core here
        make_run(db, team[0].team_id, dataset, model, status=RunStatus.running,
                 worker_id=f"train@{socket.gethostname()}")
        share([ticket])
        assert torch.get_num_threads() == 2  # half of 4 while this host trains
        note = ticket.events.get_nowait()
        assert isinstance(note, Note) and note == TRAINING_NOTE
        settings.inference_cores = 3
        share([ticket])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_studio_up_gives_the_train_worker_the_other_cores(settings, monkeypatch):
    from app.cli import train_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert train_threads(settings) == {"OMP_NUM_THREADS": "4", "OMP_WAIT_POLICY": "PASSIVE"}
    settings.inference_cores = 2
    assert train_threads(settings)["OMP_NUM_THREADS"] == "6"
    settings.inference_cores = 50  # never all of them
    assert train_threads(settings)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert train_threads(settings) == {}  # one core: nothing to share out
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert train_threads(settings) == {}  # the operator's own setting stands
