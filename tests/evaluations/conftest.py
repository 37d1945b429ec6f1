from __future__ import annotations

from tests.runs.conftest import dataset, model, store, team  # noqa: F401  (the run tests' fixtures)
