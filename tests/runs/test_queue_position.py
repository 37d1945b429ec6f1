"""Where a queued run stands (app/runs/queue_position.py): the fair order, the expected start,
the words; then the same through the run page, the native API and the OpenAI job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.runs import queue_position as qp
from app.runs.queue_position import Queued, Running, Team, Worker

NOW = datetime(2026, 12, 6, 14, 8, tzinfo=UTC)


def test_the_fair_order_alternates_teams_and_priority_orders_only_a_teams_own_runs():
    a = [Queued(1, team_id=1), Queued(2, team_id=1, priority=100), Queued(3, team_id=1, priority=100)]
    b = [Queued(4, team_id=2)]
    order = [r.id for r in qp.fair_order(a + b, teams={})]
    assert order == [2, 4, 3, 1]  # A first (its oldest run is oldest), then B, then A's others by priority
    # A team that started a run recently waits behind one that never did; one with a run going, more so.
    teams = {1: Team(running=0, last_started_at=NOW - timedelta(minutes=1))}
    assert [r.id for r in qp.fair_order(a + b, teams)] == [4, 2, 3, 1]
    teams = {1: Team(running=0), 2: Team(running=2, last_started_at=NOW)}
    assert [r.id for r in qp.fair_order(a + b, teams)] == [2, 3, 4, 1]


def test_position_and_what_is_ahead():
    queued = [Queued(1, 1), Queued(2, 2), Queued(3, 1), Queued(4, 3), Queued(5, 1)]
    place = qp.standing(5, queued=queued, running=[], teams={}, workers=[Worker("w")])
    # Order: 1 (team 1), 2 (team 2), 4 (team 3), 3 (team 1), 5 (team 1).
    assert (place.position, place.ahead_own, place.ahead_other) == (5, [1, 3], 2)
    assert qp.standing(99, queued=queued, running=[], teams={}, workers=[]) is None


def test_expected_start_from_the_running_runs_etas_and_the_estimates_of_those_ahead():
    workers = [Worker("w1"), Worker("w2")]
    running = [Running("w1", (0,), remaining_s=600), Running("w2", (0,), remaining_s=120)]
    queued = [Queued(1, 1, duration_s=300), Queued(2, 2, duration_s=900), Queued(3, 1, duration_s=60)]
    # Run 1 takes w2 at 120 s (until 420), run 2 takes w1 at 600 s, run 3 takes w2 at 420 s.
    assert qp.standing(1, queued=queued, running=running, teams={}, workers=workers).starts_in_s == 120
    assert qp.standing(2, queued=queued, running=running, teams={}, workers=workers).starts_in_s == 420
    place = qp.standing(3, queued=queued, running=running, teams={}, workers=workers)
    assert place.starts_in_s == 600 and place.duration_s == 60
    assert place.expected_start_at(NOW) == NOW + timedelta(seconds=600)
    assert place.expected_finish_at(NOW) == NOW + timedelta(seconds=660)


def test_devices_count_in_the_expected_start():
    """A 2-device run waits until two devices of one worker are free; a 1-device run behind it
    uses the one free now."""
    workers = [Worker("big", device_count=2)]
    running = [Running("big", (1,), remaining_s=300)]
    queued = [Queued(1, 1, devices=2, duration_s=100), Queued(2, 2, devices=1, duration_s=50)]
    assert qp.standing(1, queued=queued, running=running, teams={}, workers=workers).starts_in_s == 300
    assert qp.standing(2, queued=queued, running=running, teams={}, workers=workers).starts_in_s == 0


def test_a_run_waiting_for_several_devices_holds_the_worker_against_longer_runs_behind_it():
    """Backfilling: behind a 2-device run that waits 300 s for a second device, a 1-device run of
    50 s starts now on the free device, one of 500 s (or of unknown length) only after the large run."""
    workers = [Worker("big", device_count=2)]
    running = [Running("big", (1,), remaining_s=300)]
    queued = [Queued(1, 1, devices=2, duration_s=100), Queued(2, 2, devices=1, duration_s=50),
              Queued(3, 3, devices=1, duration_s=500), Queued(4, 4, devices=1)]
    starts = {i: qp.standing(i, queued=queued, running=running, teams={}, workers=workers).starts_in_s
              for i in (1, 2, 3, 4)}
    assert starts == {1: 300, 2: 0, 3: 400, 4: 400}
    assert qp.devices_free_in(2, 2, [(1, 300)]) == 300
    assert qp.devices_free_in(3, 4, [(1, 100), (2, 600)]) == 600
    assert qp.devices_free_in(2, 2, [(1, None)]) is None
    assert qp.devices_free_in(1, 2, [(1, None)]) == 0
    assert qp.backfills(50, 300) and not qp.backfills(500, 300)
    assert not qp.backfills(None, 300) and not qp.backfills(50, None)


def test_unknown_times_are_said_unknown():
    workers = [Worker("w1")]
    queued = [Queued(1, 1, duration_s=None), Queued(2, 2, duration_s=60)]
    busy = [Running("w1", (0,), remaining_s=None)]
    place = qp.standing(1, queued=queued, running=busy, teams={}, workers=workers)
    assert place.starts_in_s is None and place.expected_finish_at(NOW) is None
    assert "expected start unknown" in qp.describe(place, names={}, now=NOW)
    # Free now, but the run ahead has no estimate: nobody knows when the device frees up.
    place = qp.standing(2, queued=queued, running=[], teams={}, workers=workers)
    assert place.starts_in_s is None
    place = qp.standing(1, queued=queued, running=[], teams={}, workers=workers)
    assert place.starts_in_s == 0 and place.expected_finish_at(NOW) is None  # its own duration is unknown
    assert qp.standing(1, queued=queued, running=[], teams={}, workers=[]).blocked == "no training worker is online"


def test_a_run_that_asks_for_more_devices_than_any_worker_has_says_why_it_waits():
    place = qp.standing(1, queued=[Queued(1, 1, devices=4)], running=[], teams={},
                       workers=[Worker("a", 2), Worker("b", 1)])
    assert place.blocked and place.starts_in_s is None
    text = qp.describe(place, names={}, now=NOW)
    assert text == ("1st in line: no other run is ahead. It cannot start yet: it asks for 4 devices and the "
                    "largest training worker online has 2; it waits until one with 4 starts.")
    big = qp.standing(1, queued=[Queued(1, 1, memory_gb=70)], running=[], teams={}, workers=[Worker("a", 1, 24)])
    assert "enough memory" in big.blocked


def test_the_sentence():
    place = qp.Standing(position=3, ahead_own=[7], ahead_other=1, starts_in_s=12 * 60, duration_s=600)
    assert qp.describe(place, names={7: "x"}, now=NOW) == (
        "3rd in line: your run 'x' and 1 run of another team are ahead; expected to start around 14:20 UTC "
        "(in ~12 min).")
    many = qp.Standing(position=12, ahead_own=[1, 2, 3, 4, 5], ahead_other=6, starts_in_s=3 * 3600)
    assert qp.describe(many, names={1: "a", 2: "b", 3: "c"}, now=NOW) == (
        "12th in line: your runs 'a', 'b', 'c' and 2 more and 6 runs of other teams are ahead; expected to "
        "start around 17:08 UTC (in ~3 h 00 min).")
    first = qp.Standing(position=1, starts_in_s=0)
    assert qp.describe(first, names={}, now=NOW) == (
        "1st in line: no other run is ahead; it should start as soon as a worker picks it up.")
    assert [qp.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]


def test_free_devices_and_devices_of():
    assert qp.free_devices(4, [([1], {}), ([3], {})]) == [0, 2]
    assert qp.free_devices(4, [(None, {"devices": 2})]) == [2, 3]  # claimed before runs kept their ids
    assert qp.free_devices(1, []) == [0]
    configs = (None, {}, {"devices": None}, {"devices": 4}, {"devices": "x"})
    assert [qp.devices_of(c) for c in configs] == [1, 1, 1, 4, 1]


def test_a_queued_run_says_where_it_stands_on_its_page_and_in_both_apis(db, store, model, team, client, sent):
    """Team A's run 'x' and team B's run are ahead of A's run 'mine'; one worker runs a run of
    team C with 10 minutes left; each run ahead is estimated at 5 minutes."""
    from app.models import RunStatus, Worker, utcnow
    from tests.factories import log_in, make_account
    from tests.runs.factories import make_dataset, make_run

    a, headers = team
    b, c = make_account(db), make_account(db)
    ds_a, ds_b, ds_c = (make_dataset(db, store, t.team_id) for t in (a, b, c))
    db.add(Worker(name="train@gpu", queues="train", device="cuda", device_count=1,
                  device_memory_bytes=80 * 1024**3, last_seen_at=utcnow()))
    make_run(db, c.team_id, ds_c, model, status=RunStatus.running, worker_id="train@gpu", device_ids=[0],
             eta_s=600, started_at=utcnow(), heartbeat_at=utcnow(), lease_token="t")
    five = {"time_s": 300.0, "memory": {"total_gb": 10.0}}
    make_run(db, a.team_id, ds_a, model, name="x", estimate=five)
    make_run(db, b.team_id, ds_b, model, name="theirs", estimate=five)
    mine = make_run(db, a.team_id, ds_a, model, name="mine", estimate={**five, "time_s": 120.0})

    body = client.get(f"/api/v1/runs/{mine.id}", headers=headers).json()
    assert body["queue_position"] == 3
    assert body["queue_ahead"] == {"own": [{"id": mine.id - 2, "name": "x"}], "other_teams": 1}
    start = datetime.fromisoformat(body["expected_start_at"])
    assert abs((start - utcnow()).total_seconds() - (600 + 300 + 300)) < 30  # 10 min left, then two of 5 min
    assert body["queue_status"].startswith("3rd in line: your run 'x' and 1 run of another team are ahead; "
                                           "expected to start around ")
    assert "theirs" not in str(body)  # another team's run is a count, never a name
    listed = client.get("/api/v1/runs?status=queued", headers=headers).json()["data"]
    assert {r["name"]: r["queue_position"] for r in listed} == {"mine": 3, "x": 1}

    job = client.get(f"/v1/fine_tuning/jobs/ftjob-{mine.id}", headers=headers).json()
    assert abs(job["estimated_finish"] - (start.timestamp() + 120)) < 30
    no_estimate = make_run(db, a.team_id, ds_a, model, name="unknown")
    assert client.get(f"/v1/fine_tuning/jobs/ftjob-{no_estimate.id}", headers=headers).json()[
        "estimated_finish"] is None

    client.headers["X-CSRF-Token"] = log_in(client, a)
    page = client.get(f"/runs/{mine.id}").text
    assert "3rd in line: your run &#39;x&#39; and 1 run of another team are ahead; expected to start around" in page


def test_a_run_asking_for_more_devices_than_any_worker_has_says_why_it_waits(db, store, model, team, client, sent):
    from app.models import RunEvent, Worker, utcnow
    from sqlalchemy import select

    a, headers = team
    db.add(Worker(name="train@two", queues="train", device="cuda", device_count=2, last_seen_at=utcnow()))
    db.commit()
    from tests.runs.factories import make_dataset, make_run

    ds = make_dataset(db, store, a.team_id)
    run = make_run(db, a.team_id, ds, model, config={"base_model": model.path, "devices": 4})
    body = client.get(f"/api/v1/runs/{run.id}", headers=headers).json()
    assert body["expected_start_at"] is None
    assert body["queue_status"].endswith("It cannot start yet: it asks for 4 devices and the largest training "
                                         "worker online has 2; it waits until one with 4 starts.")
    from app.config import get_settings
    from worker.runtime import reconciler

    reconciler.reconcile(get_settings())
    reconciler.reconcile(get_settings())  # said once, not at every pass
    db.expire_all()
    said = db.scalars(select(RunEvent.message).where(RunEvent.run_id == run.id, RunEvent.kind == "waiting")).all()
    assert said == ["Waiting: this run asks for 4 devices and the largest training worker online has 2. It "
                    "starts when a worker with 4 devices is online (STUDIO_WORKER_DEVICES, docs/operations.md)."]
    from tests.factories import log_in

    client.headers["X-CSRF-Token"] = log_in(client, a)
    assert "<strong>train@two</strong> (2 × " in client.get("/").text  # the home page counts its devices
