"""How fast the run pages answer on PostgreSQL with a big team: the comparison of 20 runs with
5,000 logged steps each, and the runs list of a team with 10,000 runs (first page, filtered, deep
cursor page).

    .venv/bin/python bench/pages.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                                    [--repeat 30]

Creates a temporary database (migrated like production), fills it, times each page through the
whole app (routing, auth, queries, templates) with a logged-in browser session, prints the
median and p95 against the goals (comparison < 300 ms, runs list < 100 ms at p95), and drops the
database. Each compared run logs loss, learning rate and gradient norm at every step and an
evaluation every 50 steps: 15,100 metric rows per run, 302,000 in all.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import create_engine, insert, text  # noqa: E402

STEPS = 5_000
COMPARED = 20
RUNS = 10_000


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def seed(url: str) -> tuple[int, list[int], int, int]:
    from app.models import BaseModel, Dataset, DatasetStatus, Run, RunStatus, Metric
    from tests.factories import make_account

    engine = create_engine(url)
    from sqlalchemy.orm import Session

    with Session(engine) as db:
        acc = make_account(db, email="bench@example.com", team_name="Bench")
        model = BaseModel(slug="bench", display_name="Bench model", source="local", path="/nonexistent",
                          parameter_count=135_000_000)
        datasets = [Dataset(team_id=acc.team_id, name=f"data-{i}", sha256="0" * 64, size_bytes=1, raw_path="x",
                            status=DatasetStatus.valid) for i in range(5)]
        db.add_all([model, *datasets])
        db.commit()
        dataset_ids = [d.id for d in datasets]
        rng = random.Random(0)
        statuses = list(RunStatus)
        rows = [{"team_id": acc.team_id, "created_by_id": acc.user_id, "name": f"run {i}",
                 "dataset_id": dataset_ids[i % 5], "base_model_id": model.id,
                 "method": ("lora", "qlora", "full")[i % 3], "status": statuses[rng.randrange(5)],
                 "config": {"method": "lora", "lora_r": 8 * (1 + i % 4), "learning_rate": 2e-4, "max_steps": STEPS},
                 "current_step": STEPS, "total_steps": STEPS} for i in range(RUNS)]
        db.execute(insert(Run), rows)
        db.commit()
        compared = [j for (j,) in db.execute(text("SELECT id FROM runs ORDER BY id DESC LIMIT :n"), {"n": COMPARED})]
        for run_id in compared:
            points = []
            decay = rng.uniform(300, 1500)
            for step in range(1, STEPS + 1):
                loss = 0.6 + 2.0 * math.exp(-step / decay) + rng.uniform(-0.05, 0.05)
                points += [{"run_id": run_id, "step": step, "name": "loss", "value": loss},
                           {"run_id": run_id, "step": step, "name": "learning_rate", "value": 2e-4 * (1 - step / STEPS)},
                           {"run_id": run_id, "step": step, "name": "grad_norm", "value": rng.uniform(0.5, 2)}]
                if step % 50 == 0:
                    points.append({"run_id": run_id, "step": step, "name": "eval_loss", "value": loss + 0.1})
            db.execute(insert(Metric), points)
            db.commit()
        db.execute(text("ANALYZE"))
        db.commit()
        author, first_dataset = acc.user_id, dataset_ids[0]
    engine.dispose()
    return acc, compared, first_dataset, author


def timed(client, url: str, repeat: int) -> list[float]:  # noqa: ANN001
    client.get(url)  # warm: templates compiled, plans cached
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "STUDIO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    name = f"studio_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    try:
        from tests.conftest import migrate

        migrate(url)
        started = time.perf_counter()
        acc, compared, dataset_id, author = seed(url)
        print(f"seeded {RUNS:,} runs, {COMPARED} of them compared with {STEPS:,} steps each "
              f"({COMPARED * (3 * STEPS + STEPS // 50):,} metric rows) in {time.perf_counter() - started:.0f}s")
        run(url, acc, compared, dataset_id, author, args.repeat)
    finally:
        from app.db import _engine_for

        _engine_for.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(url: str, acc, compared: list[int], dataset_id: int, author: int, repeat: int) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from app.compare.routes import COMPARE_POINTS
    from app.config import Settings
    from app.main import create_app
    from tests.factories import log_in

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=url, secret_key="bench-" + uuid.uuid4().hex)
        with TestClient(create_app(settings)) as client:
            log_in(client, acc)
            ids = ",".join(map(str, compared))
            oldest = min(compared) - RUNS // 2
            cases = [
                ("comparison, 20 runs x 5,000 steps", f"/runs/compare?ids={ids}", 300),
                ("runs list, first page of 10,000", "/runs", 100),
                ("runs list, filtered by status", "/runs?status=failed", 100),
                ("runs list, dataset + author filters", f"/runs?dataset_id={dataset_id}&author_id={author}", 100),
                ("runs list, page in the middle", f"/runs?before={oldest}", 100),
            ]
            failed = False
            print(f"{'page':40} {'median':>9} {'p95':>9} {'goal':>8}")
            for label, path, goal in cases:
                times = timed(client, path, repeat)
                ok = p95(times) < goal
                failed |= not ok
                print(f"{label:40} {statistics.median(times):7.1f}ms {p95(times):7.1f}ms {goal:6d}ms "
                      f"{'ok' if ok else 'TOO SLOW'}")
            size = len(client.get(f"/runs/compare?ids={ids}").content)
            print(f"comparison page size: {size / 1024:.0f} KiB "
                  f"(dense curves thinned to about {COMPARE_POINTS} points per line)")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
