"""The comparison page: /runs/compare?ids=3,7,9 is the shareable address of a comparison."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.compare import repository as reads
from app.deps import CurrentUser, SessionDep
from app.errors import InvalidInput, NotFound
from app.runs import views
from app.web import redirect, render

pages = APIRouter(tags=["runs"], include_in_schema=False)
MAX_RUNS = 20
COMPARE_POINTS = 150  # per line: 20 runs stay light to send and to draw


def parse_ids(values: list[str]) -> list[int]:
    """ids=1,2,3 or ids=1&ids=2 (the runs list's checkboxes), in order, without repeats."""
    out: list[int] = []
    for value in values:
        for part in value.replace(" ", ",").split(","):
            if not part:
                continue
            if not (part.isascii() and part.isdigit()):
                raise InvalidInput(f"“{part[:20]}” is not a run number.", param="ids")
            if int(part) not in out:
                out.append(int(part))
    if len(out) > MAX_RUNS:
        raise InvalidInput(f"Compare at most {MAX_RUNS} runs at a time (you chose {len(out)}).", param="ids")
    return out


@pages.get("/runs/compare")
def compare_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    raw = request.query_params.getlist("ids")
    ids = parse_ids(raw)
    canonical = ",".join(map(str, ids))
    if len(raw) > 1:  # from the runs list's checkboxes: go to the short, shareable address
        return redirect(request, f"/runs/compare?ids={canonical}")
    runs = reads.runs_by_ids(db, team_id=p.team_id, ids=ids)
    missing = [i for i in ids if i not in {j.id for j in runs}]
    if missing:
        raise NotFound(f"Your team has no run #{missing[0]}.")
    # Thinned up to the step each run reached (its progress is written with its metrics), not the
    # step it planned: a run cancelled at step 5 of 5,000 keeps its five points.
    last_steps = {j.id: j.current_step or j.total_steps or 0 for j in runs}
    series = views.series_by_name(reads.thinned_curve_rows(
        db, last_steps, views.CURVE_NAMES, dense=("loss", "learning_rate"), max_points=COMPARE_POINTS))
    rows = views.summaries(runs, series)
    best = views.mark_best(rows)
    return render(request, "compare/compare.html", {
        "runs": runs, "rows": rows, "best": best, "views": views, "share_url": f"/runs/compare?ids={canonical}",
        "charts": views.compare_charts(runs, series, best.run.id if best else None),
        "diff": views.config_diff(runs) if runs else [],
        "dataset_names": reads.dataset_names(db, team_id=p.team_id, ids={j.dataset_id for j in runs}),
        "model_names": reads.model_names(db, team_id=p.team_id, ids={j.base_model_id for j in runs}),
    })
