"""Where a queued run stands, and the device bookkeeping the claim shares with it. Pure: the
rows come from `app/runs/repository.py` (`queue_snapshot`) and `app/workers/repository.py`.

- The fair order, whole: the team that goes next is the one with the fewest running runs, then
  the one that started a run least recently (never first), then the one whose oldest queued run
  is oldest; it sends its own best run (its priority, then age). That team then counts one more
  running run, started now, and the next team is chosen the same way. The first run of this order
  is the one `repository.queued_in_fair_order` (the claim) gives first.
- The expected start: each live training worker's devices are busy until the runs on them end
  (their reported ETA, or their estimate minus the time they have run); then, as the claim does,
  whenever devices free up the first run in fair order that fits them starts, for its estimated
  duration. A run that needs more devices than are free holds the worker for itself (a
  reservation): runs behind it start on the free devices only if their estimate says they end
  before the held devices free up (backfilling), so a steady stream of small runs never keeps a
  large one waiting for ever. A time nobody knows makes the answer "unknown", never a guess. Position and start are computed
  afresh on every read: they move as runs finish early, fail or are cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

FITS = 0.95  # the share of a device's memory a run's estimated peak may use (worker.tasks.runs.fits_device)


def devices_of(config: dict[str, Any] | None) -> int:
    """How many devices a run asks for (`devices` in its training config; absent means 1)."""
    try:
        return max(1, int((config or {}).get("devices") or 1))
    except (TypeError, ValueError):
        return 1


def free_devices(device_count: int, held: Iterable[tuple[Sequence[int] | None, dict | None]]) -> list[int]:
    """A worker's free device ids, lowest first, given (device_ids, config) of its running runs.
    A run claimed before runs recorded their devices holds as many as it asked for, the lowest."""
    busy: set[int] = set()
    unrecorded = 0
    for ids, config in held:
        if ids:
            busy.update(int(i) for i in ids)
        else:
            unrecorded += devices_of(config)
    return [i for i in range(device_count) if i not in busy][unrecorded:]


def devices_free_in(needed: int, device_count: int, busy: Iterable[tuple[int, float | None]]) -> float | None:
    """Seconds until `needed` of a worker's `device_count` devices are free, given each running
    run's (devices it holds, seconds it has left; None: unknown). None when that time is unknown."""
    busy = list(busy)
    free = device_count - sum(n for n, _ in busy)
    if free >= needed:
        return 0.0
    for held, left in sorted(busy, key=lambda b: (b[1] is None, b[1] or 0.0)):
        if left is None:
            return None
        free += held
        if free >= needed:
            return left
    return None


def backfills(duration_s: float | None, reserved_in_s: float | None) -> bool:
    """Whether a run may start on devices a waiting larger run holds for itself: only when its
    estimated duration is known and it ends before those devices would be free anyway."""
    return duration_s is not None and reserved_in_s is not None and duration_s <= reserved_in_s


def duration_of(estimate: dict[str, Any] | None) -> float | None:
    """The estimated training time of a run, in seconds, or None when the estimate has none."""
    value = (estimate or {}).get("time_s")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) and value >= 0 else None


def memory_of(estimate: dict[str, Any] | None) -> float | None:
    value = ((estimate or {}).get("memory") or {}).get("total_gb")
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Queued:
    id: int
    team_id: int
    priority: int = 0
    devices: int = 1
    duration_s: float | None = None
    memory_gb: float | None = None


@dataclass(frozen=True)
class Running:
    worker: str | None
    device_ids: tuple[int, ...] = ()
    devices: int = 1
    remaining_s: float | None = None  # None: nobody knows yet


@dataclass(frozen=True)
class Team:
    running: int = 0
    last_started_at: datetime | None = None


@dataclass(frozen=True)
class Worker:
    name: str
    device_count: int = 1
    memory_gb: float | None = None


@dataclass
class Standing:
    """A queued run's place: `position` is 1-based; `ahead_own` the ids of the team's own runs
    ahead of it; `starts_in_s` seconds from now (None: unknown, `unknown_why` says why)."""

    position: int
    ahead_own: list[int] = field(default_factory=list)
    ahead_other: int = 0
    starts_in_s: float | None = None
    duration_s: float | None = None
    unknown_why: str | None = None
    blocked: str | None = None  # set when no live worker can take the run at all

    def expected_start_at(self, now: datetime) -> datetime | None:
        return now + timedelta(seconds=self.starts_in_s) if self.starts_in_s is not None else None

    def expected_finish_at(self, now: datetime) -> datetime | None:
        if self.starts_in_s is None or self.duration_s is None:
            return None
        return now + timedelta(seconds=self.starts_in_s + self.duration_s)


def fair_order(queued: Iterable[Queued], teams: dict[int, Team]) -> list[Queued]:
    """The whole queue in the order the claim takes it, if every run started in turn."""
    by_team: dict[int, list[Queued]] = {}
    for run in sorted(queued, key=lambda r: (-r.priority, r.id)):
        by_team.setdefault(run.team_id, []).append(run)
    state = {}
    for team_id in by_team:
        team = teams.get(team_id) or Team()
        started = (0, 0.0) if team.last_started_at is None else (1, team.last_started_at.timestamp())
        state[team_id] = [team.running, started]
    order: list[Queued] = []
    turn = 0
    while by_team:
        team_id = min(by_team, key=lambda t: (state[t][0], state[t][1], min(r.id for r in by_team[t]), t))
        runs = by_team[team_id]
        order.append(runs.pop(0))
        if not runs:
            del by_team[team_id]
        turn += 1
        state[team_id] = [state[team_id][0] + 1, (2, float(turn))]  # running now, started last
    return order


def _fits(run: Queued, worker: Worker) -> bool:
    return run.devices <= worker.device_count and (
        run.memory_gb is None or worker.memory_gb is None or run.memory_gb <= worker.memory_gb * FITS)


def standing(run_id: int, *, queued: Iterable[Queued], running: Iterable[Running], teams: dict[int, Team],
             workers: Iterable[Worker]) -> Standing | None:
    """Where the queued run `run_id` stands (None when it is not in the queue)."""
    order = fair_order(queued, teams)
    index = next((i for i, r in enumerate(order) if r.id == run_id), None)
    if index is None:
        return None
    me = order[index]
    ahead = order[:index]
    out = Standing(position=index + 1, ahead_own=[r.id for r in ahead if r.team_id == me.team_id],
                   ahead_other=sum(1 for r in ahead if r.team_id != me.team_id), duration_s=me.duration_s)
    workers = list(workers)
    if not workers:
        out.unknown_why = out.blocked = "no training worker is online"
        return out
    if not any(_fits(me, w) for w in workers):
        most = max(w.device_count for w in workers)
        if me.devices > most:
            out.blocked = (f"it asks for {me.devices} devices and the largest training worker online has "
                           f"{most}; it waits until one with {me.devices} starts")
        else:
            out.blocked = "no training worker online has a device with enough memory for it"
        out.unknown_why = out.blocked
        return out
    out.starts_in_s = _start(me, ahead, running, workers)
    if out.starts_in_s is None:
        out.unknown_why = "the runs on the workers or ahead of it have no time estimate yet"
    return out


def _start(me: Queued, ahead: list[Queued], running: Iterable[Running], workers: list[Worker]) -> float | None:
    """When `me` starts if the workers do what the claim does: whenever devices free up, each
    takes the first run in fair order that fits its free devices; the first run that fits the
    worker but not its free devices holds it, and runs behind it start there only if they
    `backfills`. Seconds from now, or None when unknown."""
    # Each device's time until free: 0 (free now), seconds, or None (busy, for how long unknown).
    free_at: dict[str, list[float | None]] = {w.name: [0.0] * w.device_count for w in workers}
    for r in running:
        devices = free_at.get(r.worker or "")
        if devices is None:
            continue  # its worker is gone: the reconciler queues it again
        ids = [i for i in r.device_ids if 0 <= i < len(devices)] or list(range(min(r.devices, len(devices))))
        for i in ids:
            devices[i] = None if r.remaining_s is None else max(0.0, r.remaining_s)
    pending = [r for r in ahead if any(_fits(r, w) for w in workers)] + [me]
    now = 0.0
    while True:
        held: dict[str, float | None] = {}  # worker -> seconds from now until its waiting run starts
        for r in list(pending):
            for w in workers:
                if not _fits(r, w):
                    continue
                free = [i for i, t in enumerate(free_at[w.name]) if t is not None and t <= now]
                if len(free) < r.devices:
                    if w.name not in held:
                        held[w.name] = devices_free_in(
                            r.devices, len(free_at[w.name]),
                            [(1, None if t is None else t - now) for t in free_at[w.name] if t is None or t > now])
                    continue
                if w.name in held and not backfills(r.duration_s, held[w.name]):
                    continue
                if r is me:
                    return now
                for i in free[:r.devices]:
                    free_at[w.name][i] = None if r.duration_s is None else now + r.duration_s
                pending.remove(r)
                break
        later = [t for devices in free_at.values() for t in devices if t is not None and t > now]
        if not later:
            return None
        now = min(later)


# -- in words --------------------------------------------------------------------------------

def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _wait(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "in under a minute"
    if minutes < 90:
        return f"in ~{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"in ~{hours} h {rest:02d} min"


def describe(place: Standing, *, names: dict[int, str], now: datetime, shown: int = 3) -> str:
    """A queued run's place in plain words, e.g. "3rd in line: your run 'x' and 1 run of another
    team are ahead; expected to start around 14:20 UTC (in ~12 min)."."""
    parts = []
    own = [f"'{names.get(i, f'#{i}')}'" for i in place.ahead_own]
    if own:
        listed = ", ".join(own[:shown]) + (f" and {len(own) - shown} more" if len(own) > shown else "")
        parts.append(f"your run{'s' if len(own) > 1 else ''} {listed}")
    if place.ahead_other:
        parts.append(f"{place.ahead_other} run{'s' if place.ahead_other > 1 else ''} of other teams"
                     if place.ahead_other > 1 else "1 run of another team")
    if parts:
        ahead = " and ".join(parts) + (" are" if len(own) + place.ahead_other > 1 else " is") + " ahead"
    else:
        ahead = "no other run is ahead"
    text = f"{ordinal(place.position)} in line: {ahead}"
    if place.blocked:
        return f"{text}. It cannot start yet: {place.blocked}."
    start = place.expected_start_at(now)
    if start is None:
        return f"{text}; expected start unknown ({place.unknown_why or 'no estimate'})."
    if place.starts_in_s is not None and place.starts_in_s < 30:
        return f"{text}; it should start as soon as a worker picks it up."
    return f"{text}; expected to start around {start:%H:%M} UTC ({_wait(place.starts_in_s or 0)})."


@dataclass
class Place:
    """A queued run's standing as the page and the APIs show it (names: the team's own runs)."""

    standing: Standing
    names: dict[int, str]
    now: datetime

    @property
    def sentence(self) -> str:
        return describe(self.standing, names=self.names, now=self.now)

    @property
    def expected_start_at(self) -> datetime | None:
        return self.standing.expected_start_at(self.now)

    @property
    def expected_finish_at(self) -> datetime | None:
        return self.standing.expected_finish_at(self.now)

    def ahead(self) -> dict[str, Any]:
        return {"own": [{"id": i, "name": self.names.get(i, "")} for i in self.standing.ahead_own],
                "other_teams": self.standing.ahead_other}
