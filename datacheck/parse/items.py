"""What every parser yields: ``(line, item)`` pairs, where ``item`` is a list of messages
(a valid example), a dict (the record of a valid example with tools), a ``Problem`` (an invalid one) or ``BLANK`` (a blank line, skipped)."""

from __future__ import annotations

from collections.abc import Iterator

from datacheck.problems import Problem
from datacheck.read import Marker
from datacheck.types import Message

BLANK = Marker("BLANK")
Item = list[Message] | dict | Problem | Marker
Examples = Iterator[tuple[int, Item]]
