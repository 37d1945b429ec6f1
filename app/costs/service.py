"""Prices, the cost of a run (estimated before, measured after), and usage by month, person and
model. Services flush; the edge commits. Every query is scoped by team.

Measured cost of a run = its running time (started -> finished, or -> now while it runs) x the
devices it held (``runs.device_ids``; a CPU host counts once) x the team's price for the device
type of the worker that ran it (``workers.device_name``; the planning estimate's device when the
worker row is gone). The running time is that of the run's last attempt: ``started_at`` is set
again when a retried run starts over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.costs import catalog
from app.errors import InvalidInput
from app.models import BaseModel, Run, RunStatus, TeamCostSettings, User, Worker, utcnow


@dataclass
class Prices:
    currency: str
    per_hour: dict[str, float]  # every catalog key
    custom: set[str] = field(default_factory=set)  # keys the team set itself
    api_price_per_request: float | None = None
    monthly_requests: int | None = None
    tokens_per_answer: int | None = None
    serving_device: str | None = None
    updated_at: datetime | None = None

    def price(self, key: str) -> float:
        return self.per_hour.get(key, self.per_hour["gpu_other"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "device_types": [{"key": d.key, "label": d.label, "price_per_hour": self.per_hour[d.key],
                              "default_price_per_hour": d.default_price, "custom": d.key in self.custom,
                              "unit": "host-hour" if catalog.is_per_host(d.key) else "device-hour"}
                             for d in catalog.DEVICE_TYPES],
            "api_price_per_request": self.api_price_per_request, "monthly_requests": self.monthly_requests,
            "tokens_per_answer": self.tokens_per_answer, "serving_device": self.serving_device,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def prices(session: Session, team_id: int) -> Prices:
    row = session.get(TeamCostSettings, team_id)
    stored = dict(row.prices or {}) if row else {}
    per_hour = {d.key: float(stored[d.key]) if d.key in stored else d.default_price for d in catalog.DEVICE_TYPES}
    return Prices(currency=row.currency if row else catalog.DEFAULT_CURRENCY, per_hour=per_hour,
                  custom={k for k in stored if k in catalog.BY_KEY},
                  api_price_per_request=row.api_price_per_request if row else None,
                  monthly_requests=row.monthly_requests if row else None,
                  tokens_per_answer=row.tokens_per_answer if row else None,
                  serving_device=row.serving_device if row else None,
                  updated_at=row.updated_at if row else None)


def _number(value: Any, name: str, label: str, *, lo: float, hi: float, integer: bool = False) -> float | int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(str(value).strip().replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{label}: enter a number, such as 2.5.", param=name) from None
    if not math.isfinite(number) or number < lo or number > hi:
        raise InvalidInput(f"{label}: enter a number from {lo:g} to {hi:g}.", param=name)
    if integer:
        if number != int(number):
            raise InvalidInput(f"{label}: enter a whole number.", param=name)
        return int(number)
    return number


def save(session: Session, *, team_id: int, user_id: int | None, currency: str | None = None,
         prices_per_hour: dict[str, Any] | None = None, roi: dict[str, Any] | None = None,
         reset: bool = False) -> Prices:
    """Stores what was given: device prices (an empty value goes back to the default), the
    currency, and the return-on-investment inputs (keys api_price_per_request, monthly_requests,
    tokens_per_answer, serving_device; an empty value clears one). Checks everything first."""
    row = session.get(TeamCostSettings, team_id)
    if row is None:
        row = TeamCostSettings(team_id=team_id, currency=catalog.DEFAULT_CURRENCY, prices={})
        session.add(row)
    stored = {} if reset else dict(row.prices or {})
    for key, value in (prices_per_hour or {}).items():
        if key not in catalog.BY_KEY:
            raise InvalidInput(f"Unknown device type {key!r}: use one of {', '.join(catalog.BY_KEY)}.",
                               param="prices")
        number = _number(value, f"price_{key}", f"Price of {catalog.BY_KEY[key].label}", lo=0,
                         hi=catalog.MAX_PRICE)
        if number is None:
            stored.pop(key, None)
        else:
            stored[key] = number
    if currency is not None:
        currency = currency.strip().upper()
        if currency not in catalog.CURRENCIES:
            raise InvalidInput(f"Currency must be one of {', '.join(catalog.CURRENCIES)}.", param="currency")
        row.currency = currency
    if roi is not None:
        if "api_price_per_request" in roi:
            row.api_price_per_request = _number(roi["api_price_per_request"], "api_price_per_request",
                                                "Price per request today", lo=0, hi=1000)
        if "monthly_requests" in roi:
            row.monthly_requests = _number(roi["monthly_requests"], "monthly_requests", "Requests a month",
                                           lo=0, hi=1e12, integer=True)
        if "tokens_per_answer" in roi:
            row.tokens_per_answer = _number(roi["tokens_per_answer"], "tokens_per_answer", "Tokens per answer",
                                            lo=1, hi=1_000_000, integer=True)
        if "serving_device" in roi:
            device = (roi["serving_device"] or "").strip() or None
            if device is not None and device not in catalog.BY_KEY:
                raise InvalidInput(f"Unknown device type {device!r}.", param="serving_device")
            row.serving_device = device
    row.prices = stored
    row.updated_at = utcnow()
    row.updated_by_id = user_id
    session.flush()
    return prices(session, team_id)


# -- the cost of runs -------------------------------------------------------------------------

@dataclass
class Cost:
    device_type: str
    device_label: str
    devices: int
    hours: float  # wall-clock running time
    device_hours: float  # what is paid for: hours x devices (a CPU host counts once)
    price_per_hour: float
    cost: float
    currency: str
    measured: bool  # False: a running run (so far) or an estimate

    def as_dict(self) -> dict[str, Any]:
        return {"device_type": self.device_type, "device_label": self.device_label, "devices": self.devices,
                "hours": self.hours, "device_hours": self.device_hours,
                "price_per_hour": self.price_per_hour, "cost": self.cost, "currency": self.currency,
                "measured": self.measured}


def _cost(key: str, devices: int, seconds: float, table: Prices, measured: bool) -> Cost:
    devices = max(1, devices)
    hours = max(0.0, seconds) / 3600
    device_hours = hours * (1 if catalog.is_per_host(key) else devices)
    price = table.price(key)
    return Cost(key, catalog.BY_KEY[key].label, devices, hours, device_hours, price, device_hours * price,
                table.currency, measured)


def workers_by_name(session: Session) -> dict[str, Worker]:
    return {w.name: w for w in session.scalars(select(Worker))}


def run_device_type(run: Run, workers: dict[str, Worker]) -> str:
    worker = workers.get(run.worker_id or "")
    if worker is not None:
        return catalog.classify(worker.device_name, worker.device)
    est = run.estimate or {}
    return catalog.classify(est.get("device") if est.get("device_known") else None, est.get("device_kind") or "cpu")


def run_devices(run: Run) -> int:
    if run.device_ids:
        return len(run.device_ids)
    return int((run.config or {}).get("devices") or 1)


def run_cost(run: Run, table: Prices, workers: dict[str, Worker], now: datetime | None = None) -> Cost | None:
    """What the run cost (a finished run) or has cost so far (a running one); None before it started."""
    if run.started_at is None:
        return None
    end = run.finished_at or (now or utcnow() if run.status == RunStatus.running else run.heartbeat_at)
    if end is None:
        return None
    return _cost(run_device_type(run, workers), run_devices(run), (end - run.started_at).total_seconds(), table,
                 measured=run.finished_at is not None)


def cost_of_run(session: Session, run: Run) -> Cost | None:
    return run_cost(run, prices(session, run.team_id), workers_by_name(session))


def estimate_cost(estimate: dict[str, Any], table: Prices) -> dict[str, Any] | None:
    """Device-hours and money of a planned run, from the planner's estimate (its time range when
    there is one): {"device_type", "device_label", "devices", "price_per_hour", "currency",
    "device_hours": {"low", "likely", "high"}, "cost": {...}}; None when the time is unknown."""
    time_s = estimate.get("time_s")
    if not time_s:
        return None
    tr = estimate.get("time_range") or {}
    key = catalog.classify(estimate.get("device") if estimate.get("device_known") else None,
                           estimate.get("device_kind") or "cpu")
    devices = int(estimate.get("devices") or 1)
    spans = {"low": tr.get("low_s", time_s), "likely": tr.get("likely_s", time_s), "high": tr.get("high_s", time_s)}
    costs = {k: _cost(key, devices, v, table, measured=False) for k, v in spans.items()}
    return {"device_type": key, "device_label": catalog.BY_KEY[key].label, "devices": devices,
            "per_host": catalog.is_per_host(key), "price_per_hour": table.price(key), "currency": table.currency,
            "device_hours": {k: c.device_hours for k, c in costs.items()},
            "cost": {k: c.cost for k, c in costs.items()}}


# -- usage ------------------------------------------------------------------------------------

def usage(session: Session, *, team_id: int, since: datetime | None = None) -> dict[str, Any]:
    """Device-hours and cost of the team's runs that started (since `since`), per month (of the
    start, UTC), per person who started them and per base model; finished runs count in full,
    running ones so far."""
    table = prices(session, team_id)
    workers = workers_by_name(session)
    stmt = (select(Run, User, BaseModel)
            .outerjoin(User, User.id == Run.created_by_id)
            .join(BaseModel, BaseModel.id == Run.base_model_id)
            .where(Run.team_id == team_id, Run.started_at.is_not(None)))
    if since is not None:
        stmt = stmt.where(Run.started_at >= since)
    now = utcnow()
    groups: dict[str, dict[str, dict[str, Any]]] = {"month": {}, "person": {}, "model": {}}
    total = {"runs": 0, "device_hours": 0.0, "cost": 0.0}

    def add(kind: str, key: str, label: str, c: Cost) -> None:
        g = groups[kind].setdefault(key, {"key": key, "label": label, "runs": 0, "device_hours": 0.0, "cost": 0.0})
        g["runs"] += 1
        g["device_hours"] += c.device_hours
        g["cost"] += c.cost

    for run, user, model in session.execute(stmt.order_by(Run.started_at)):
        c = run_cost(run, table, workers, now)
        if c is None:
            continue
        month = run.started_at.strftime("%Y-%m")
        add("month", month, month, c)
        person = (user.name or user.email) if user else "not recorded (a removed account)"
        add("person", str(user.id) if user else "-", person, c)
        add("model", str(model.id), model.display_name, c)
        total["runs"] += 1
        total["device_hours"] += c.device_hours
        total["cost"] += c.cost

    def rows(kind: str, by_cost: bool) -> list[dict[str, Any]]:
        out = list(groups[kind].values())
        return sorted(out, key=lambda g: -g["cost"]) if by_cost else sorted(out, key=lambda g: g["key"], reverse=True)

    return {"currency": table.currency, "total": total,
            "by_month": rows("month", False), "by_person": rows("person", True), "by_model": rows("model", True)}


# -- return on investment ---------------------------------------------------------------------

def roi_for_run(session: Session, run: Run, *, measured_tokens_per_second: float | None = None,  # noqa: ANN201
                table: Prices | None = None, workers: dict[str, Worker] | None = None):
    """The return on investment of a succeeded run's model (app.costs.roi.Roi), or None (the run
    did not succeed, or its base model's size is unknown). Served on the team's serving device
    type when it chose one, else on the device type the run trained on; the training cost is
    the run's measured cost. measured_tokens_per_second: a generation speed measured for this
    model, when a caller has one (otherwise roi estimates it from the device's bandwidth). A page
    showing many runs passes the team's `table` (prices) and `workers` read once."""
    from app.costs import roi

    if run.status != RunStatus.succeeded:
        return None
    model = session.get(BaseModel, run.base_model_id)
    if model is None or not model.parameter_count:
        return None
    table = table or prices(session, run.team_id)
    workers = workers if workers is not None else workers_by_name(session)
    cost = run_cost(run, table, workers)
    device = table.serving_device or run_device_type(run, workers)
    return roi.compute(training_cost=cost.cost if cost else 0.0, parameters=float(model.parameter_count),
                       device_type=device, price_per_hour=table.price(device), currency=table.currency,
                       api_price_per_request=table.api_price_per_request, monthly_requests=table.monthly_requests,
                       tokens_per_answer=table.tokens_per_answer,
                       measured_tokens_per_second=measured_tokens_per_second)
