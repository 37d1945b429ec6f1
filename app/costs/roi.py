"""Return on investment of a fine-tuned model, counted as a case study counts it: what the team
pays today per request (a hosted API's price), what one request costs on its own hardware, and
when the savings have paid back what the fine-tuning cost.

Serving cost per request, when no measured generation speed is given: generating an answer one
token at a time reads every weight once per token, so a device produces about
``bandwidth x BANDWIDTH_EFFICIENCY / weight bytes`` tokens a second for one request (16-bit
weights on a GPU, 32-bit on a CPU). A request then takes ``tokens_per_answer / that`` seconds
of the device, and costs those seconds at the team's price. Serving several requests at once
shares each pass over the weights, so at high volume the real cost is lower: the estimate is
the cautious side. Reading the prompt is left out (it runs many tokens per pass).

A device kept for serving is paid for every hour of the month (HOURS_PER_MONTH), busy or not:
when the volume is too low to keep it busy, that monthly price divided by the requests is the
true cost per request. The break-even counts the larger of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.costs import catalog

BANDWIDTH_EFFICIENCY = 0.6  # share of the data-sheet bandwidth a decoding step reaches
HOURS_PER_MONTH = 730.0
DEFAULT_TOKENS_PER_ANSWER = 300


@dataclass
class Roi:
    currency: str
    device_type: str
    device_label: str
    tokens_per_second: float
    tokens_per_second_measured: bool
    tokens_per_answer: int
    seconds_per_request: float
    cost_per_request_busy: float  # device busy answering only this request
    monthly_device_cost: float  # one device kept all month
    cost_per_request: float  # the larger of busy and (monthly device / volume)
    api_price_per_request: float | None
    monthly_requests: int | None
    saving_per_request: float | None
    monthly_saving: float | None
    training_cost: float
    break_even_requests: float | None  # None: never (no saving) or inputs missing
    break_even_months: float | None
    pays_back: bool | None  # None: the team has not entered its API price yet

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def serving_tokens_per_second(parameters: float, device_type: str) -> float:
    """Answer tokens a second of one request on one device of this type (see the module's text)."""
    weight_bytes = parameters * (4 if device_type == "cpu" else 2)
    return catalog.BY_KEY[device_type].bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY / max(weight_bytes, 1.0)


def compute(*, training_cost: float, parameters: float, device_type: str, price_per_hour: float, currency: str,
            api_price_per_request: float | None, monthly_requests: int | None,
            tokens_per_answer: int | None = None, measured_tokens_per_second: float | None = None) -> Roi:
    tokens = tokens_per_answer or DEFAULT_TOKENS_PER_ANSWER
    tps = measured_tokens_per_second or serving_tokens_per_second(parameters, device_type)
    seconds = tokens / tps
    busy = seconds / 3600 * price_per_hour
    monthly_device = price_per_hour * HOURS_PER_MONTH
    per_request = max(busy, monthly_device / monthly_requests) if monthly_requests else busy
    saving = monthly_saving = requests = months = pays = None
    if api_price_per_request is not None:
        saving = api_price_per_request - per_request
        pays = saving > 0
        if pays:
            requests = training_cost / saving
            if monthly_requests:
                monthly_saving = saving * monthly_requests
                months = requests / monthly_requests
        elif monthly_requests:
            monthly_saving = saving * monthly_requests
    return Roi(currency, device_type, catalog.BY_KEY[device_type].label, tps, measured_tokens_per_second is not None,
               tokens, seconds, busy, monthly_device, per_request, api_price_per_request, monthly_requests, saving,
               monthly_saving, training_cost, requests, months, pays)
