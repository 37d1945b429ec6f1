"""Costs: the team's prices (page and API), usage by month / person / model, a run's cost and
return on investment (API), and the help page with the estimator's table for the usual cases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.costs import catalog, reference, roi
from app.costs import service as costs
from app.deps import CurrentPrincipal, CurrentUser, SessionDep
from app.errors import StudioError
from app.models import Role, utcnow
from app.runs import service as runs_service
from app.teams import service as team_service
from app.costs import views as cost_views
from app.web import redirect, render, templates

templates.env.filters.setdefault("money", cost_views.money)
templates.env.filters.setdefault("hours", cost_views.hours)
templates.env.filters.setdefault("amount", cost_views.amount)
templates.env.filters.setdefault("requests", cost_views.requests)
templates.env.filters.setdefault("period", cost_views.period)

pages = APIRouter(tags=["costs"], include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["costs"])
ROI_FIELDS = ("api_price_per_request", "monthly_requests", "tokens_per_answer", "serving_device")


def _prices_page(request: Request, db, p, **extra: Any) -> Response:  # noqa: ANN001
    status_code = extra.pop("status_code", 200)
    ctx = {"prices": costs.prices(db, p.team_id), "device_types": catalog.DEVICE_TYPES,
           "currencies": catalog.CURRENCIES, "is_owner": p.role == Role.owner,
           "default_tokens": roi.DEFAULT_TOKENS_PER_ANSWER, **extra}
    return render(request, "costs/prices.html", ctx, status_code=status_code)


@pages.get("/team/costs")
def prices_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return _prices_page(request, db, p)


@pages.post("/team/costs")
async def save_prices_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    team_service.require_owner(p.role)
    form = await request.form()
    reset = form.get("reset") == "defaults"  # every device back to its default, whatever the boxes hold
    try:
        costs.save(db, team_id=p.team_id, user_id=p.user.id, currency=str(form.get("currency") or "USD"),
                   prices_per_hour={} if reset else {d.key: str(form.get(f"price_{d.key}", ""))
                                                     for d in catalog.DEVICE_TYPES},
                   roi={k: str(form.get(k, "")) for k in ROI_FIELDS}, reset=reset)
    except StudioError as exc:
        db.rollback()
        return _prices_page(request, db, p, error=exc.message, form=dict(form), status_code=exc.status_code)
    said = "Prices set back to the defaults." if reset else "Prices saved."
    return redirect(request, "/team/costs", flash=("success", said))


def _since(months: int) -> Any:
    return utcnow() - timedelta(days=31 * months) if months else None


@pages.get("/usage")
def usage_page(request: Request, db: SessionDep, p: CurrentUser,
               months: int = Query(12, ge=0, le=120)) -> Response:
    return render(request, "costs/usage.html", {"usage": costs.usage(db, team_id=p.team_id, since=_since(months)),
                                                 "months": months, "prices": costs.prices(db, p.team_id)})


@pages.get("/help/costs")
def help_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    table = costs.prices(db, p.team_id)
    return render(request, "costs/help.html", {
        "cases": reference.table(), "price": table.price(reference.GPU_PRICE_KEY), "prices": table,
        "gpu_label": catalog.BY_KEY[reference.GPU_PRICE_KEY].label, "reference": reference, "roi": roi})


# -- API --------------------------------------------------------------------------------------

class PricesIn(BaseModel):
    currency: str | None = Field(None, description="One of the supported currency codes (USD, EUR, ...).")
    prices: dict[str, float | None] = Field(default_factory=dict, description=(
        "Price of one device for one hour by device type key (cpu: one host for one hour); null goes "
        "back to the default."))
    api_price_per_request: float | None = Field(None, description="What one request costs the team today.")
    monthly_requests: int | None = Field(None, description="Requests a month.")
    tokens_per_answer: int | None = Field(None, description="Tokens in a typical answer.")
    serving_device: str | None = Field(None, description="Device type key the model would be served on.")


@api.get("/team/prices")
def get_prices(db: SessionDep, p: CurrentPrincipal) -> dict:
    """The team's price per device-hour by device type (defaults where it set none) and its
    return-on-investment inputs."""
    p.require("read")
    return costs.prices(db, p.team_id).as_dict()


@api.put("/team/prices")
def put_prices(body: PricesIn, db: SessionDep, p: CurrentPrincipal) -> dict:
    """Sets prices (only those given; null = default) and the return-on-investment inputs given."""
    p.require("admin")
    given = body.model_fields_set
    table = costs.save(db, team_id=p.team_id, user_id=p.user_id, currency=body.currency,
                       prices_per_hour=body.prices,
                       roi={k: getattr(body, k) for k in ROI_FIELDS if k in given})
    return table.as_dict()


@api.get("/usage")
def get_usage(db: SessionDep, p: CurrentPrincipal, months: int = Query(12, ge=0, le=120)) -> dict:
    """Device-hours and cost of the team's runs per month, per person and per base model, over
    the last `months` months (0: all)."""
    p.require("read")
    return costs.usage(db, team_id=p.team_id, since=_since(months))


@api.get("/runs/{run_id}/cost")
def get_run_cost(run_id: int, db: SessionDep, p: CurrentPrincipal) -> dict:
    """What the run cost (measured: running time x devices x the team's price for the device
    type), its estimate before it ran, and, for a succeeded run, the return on investment."""
    p.require("read")
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    table = costs.prices(db, p.team_id)
    actual = costs.run_cost(run, table, costs.workers_by_name(db))
    result = costs.roi_for_run(db, run)
    return {"run_id": run.id, "actual": actual.as_dict() if actual else None,
            "estimate": costs.estimate_cost(run.estimate or {}, table),
            "roi": result.as_dict() if result else None}
