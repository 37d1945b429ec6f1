from __future__ import annotations

import pytest

from tests.notifications.receivers import start_receiver, start_smtp


@pytest.fixture
def receiver():
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def mailbox():
    box, controller = start_smtp()
    yield box
    controller.stop()
