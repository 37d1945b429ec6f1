"""How money and device-hours read on the pages (Jinja filters ``money`` and ``hours``)."""

from __future__ import annotations

import math

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def money(value: float | None, currency: str = "USD") -> str:
    """$1,234 · $12.50 · $0.0012 (small amounts keep two significant digits); — when unknown."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 0.01 or value == 0:
        text = f"{value:,.2f}"
    else:
        text = f"{value:.2g}"
    symbol = SYMBOLS.get(currency)
    if 0 < value < 1e-4:
        return f"{sign}under {symbol}0.0001" if symbol else f"{sign}under 0.0001 {currency}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def hours(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 10:
        return f"{value:,.0f}"
    if value >= 0.1:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.01 else "under 0.01"


def amount(value: float | None) -> str:
    """A number of requests or months for a sentence: 1,234,567 · 3.5 · 0.04 · —."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 0.1 else f"{value:.2g}"


def requests(value: float | None) -> str:
    """Requests needed to break even, rounded up: 57 · 1,234,567."""
    return "—" if value is None else f"{math.ceil(value):,}"


def period(months: float | None) -> str:
    """A span given in months, in the unit a person would say: 3.5 months · 12 days · under a day."""
    if months is None:
        return "—"
    if months >= 1:
        return f"{months:,.1f} month{'s' if months != 1 else ''}"
    days = months * 365.25 / 12
    return f"{days:.0f} day{'s' if round(days) != 1 else ''}" if days >= 1 else "under a day"
