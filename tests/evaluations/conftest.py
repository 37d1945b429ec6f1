from __future__ import annotations

from tests.jobs.conftest import dataset, model, store, team  # noqa: F401  (the job tests' fixtures)
