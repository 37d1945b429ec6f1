"""What the sweep pages and API show, computed from rows: one line per grid point (its run, its
value, best first) and the two charts, drawn as SVG on the server (no script needed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.runs.views import PALETTE
from app.models import Run, Sweep
from app.sweeps import grid, service
from app.sweeps import repository as repo

STATUS_LABELS = {"waiting": "Waiting", "not_run": "Not run", "queued": "Queued", "running": "Running",
                 "succeeded": "Finished", "failed": "Failed", "cancelled": "Cancelled"}
SWEEP_STATUS_LABELS = {"running": "Running", "succeeded": "Finished", "failed": "Failed", "cancelled": "Cancelled"}


@dataclass
class Row:
    index: int
    params: dict[str, Any]
    label: str
    run: Run | None
    status: str
    value: float | None
    is_best: bool = False
    is_promoted: bool = False


def rows(session: Session, sweep: Sweep) -> list[Row]:
    """Every grid point with its run: those with a value first (best first), then the others in
    grid order."""
    children = repo.children(session, team_id=sweep.team_id, sweep_id=sweep.id)
    by_index = {repo.point_index(j): j for j in children}
    values = service.metric_values(session, sweep, children)
    out = []
    for i, point in enumerate(grid.expand(sweep.search_space)):
        run = by_index.get(i)
        status = run.status.value if run else ("waiting" if sweep.status == "running" else "not_run")
        out.append(Row(index=i, params=point, label=grid.label(point), run=run, status=status,
                       value=values.get(run.id) if run else None,
                       is_best=run is not None and run.id == sweep.best_run_id,
                       is_promoted=run is not None and run.id == sweep.promoted_run_id))
    sign = 1 if sweep.mode == "min" else -1
    return sorted(out, key=lambda r: (r.value is None, sign * r.value if r.value is not None else 0, r.index))


def counts(items: list[Row]) -> dict[str, int]:
    return dict(Counter(r.status for r in items))


def summary_counts(sweep: Sweep, by_status: dict[str, int]) -> dict[str, int]:
    """Runs by status for the list, with the grid points not queued yet as waiting/not_run."""
    total = len(grid.expand(sweep.search_space))
    out = dict(by_status)
    rest = total - sum(by_status.values())
    if rest > 0:
        out["waiting" if sweep.status == "running" else "not_run"] = rest
    return out


def number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


# -- charts ---------------------------------------------------------------------------------

W, L, R, T, B = 640, 150, 20, 10, 34
ROW = 28  # px per run in the dot chart


def _scale(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def dot_chart(items: list[Row]) -> dict[str, Any] | None:
    """One row per run that has a value, the value as a dot on a shared axis; best highlighted."""
    scored = [r for r in items if r.value is not None]
    if not scored:
        return None
    height = T + B + ROW * len(scored)
    lo, hi = _scale([r.value for r in scored])
    x = lambda v: L + (v - lo) / (hi - lo) * (W - L - R)  # noqa: E731
    dots = [{"y": T + ROW * i + ROW // 2, "x": round(x(r.value), 1), "label": r.label, "value": number(r.value),
             "best": r.is_best, "run_id": r.run.id if r.run else None} for i, r in enumerate(scored)]
    ticks = [{"x": round(x(v), 1), "text": number(v)} for v in _ticks(lo, hi)]
    return {"width": W, "height": height, "left": L, "right": W - R, "bottom": height - B, "dots": dots,
            "ticks": ticks}


def param_chart(sweep: Sweep, items: list[Row], param: str) -> dict[str, Any] | None:
    """The metric against one searched setting: its values spaced evenly along x (a grid's values
    are few and discrete), one line per combination of the other settings."""
    values = (sweep.search_space or {}).get(param)
    scored = [r for r in items if r.value is not None]
    if not values or not scored:
        return None
    height, left = 260, 64
    lo, hi = _scale([r.value for r in scored])
    step = (W - left - R) / max(len(values), 1)
    x = lambda i: left + step * (i + 0.5)  # noqa: E731
    y = lambda v: T + (1 - (v - lo) / (hi - lo)) * (height - T - B)  # noqa: E731
    groups: dict[str, list[tuple[int, Row]]] = {}
    for r in scored:
        rest = {k: v for k, v in r.params.items() if k != param}
        groups.setdefault(grid.label(rest) if rest else "all runs", []).append((values.index(r.params[param]), r))
    lines = []
    for n, (name, members) in enumerate(sorted(groups.items())):
        members.sort(key=lambda m: m[0])
        points = [{"x": round(x(i), 1), "y": round(y(r.value), 1), "best": r.is_best, "value": number(r.value),
                   "label": r.label} for i, r in members]
        lines.append({"name": name, "color": PALETTE[n % len(PALETTE)], "points": points,
                      "path": " ".join(f"{p['x']},{p['y']}" for p in points)})
    return {"width": W, "height": height, "left": left, "right": W - R, "bottom": height - B, "param": param,
            "columns": [{"x": round(x(i), 1), "text": grid.format_value(v)} for i, v in enumerate(values)],
            "ticks": [{"y": round(y(v), 1), "text": number(v)} for v in _ticks(lo, hi)], "lines": lines}
