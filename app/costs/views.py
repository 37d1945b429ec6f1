"""How money and device-hours read on the pages (Jinja filters ``money`` and ``hours``)."""

from __future__ import annotations

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
