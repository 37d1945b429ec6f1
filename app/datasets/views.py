"""What the dataset pages show, computed from a dataset row and its report: status words,
error and warning titles, and histogram geometry (drawn as inline SVG by the templates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.models import Dataset, DatasetStatus
from datacheck import ERROR_TITLES, GOAL_LABELS, WARNING_TITLES, Goal

STATUS_WORDS = {
    DatasetStatus.uploaded: ("Waiting", "Uploaded; waiting for a worker to check it."),
    DatasetStatus.validating: ("Checking", "Being checked: format, every example, statistics."),
    DatasetStatus.valid: ("Valid", "Checked and ready to train on. It will not change any more."),
    DatasetStatus.invalid: ("Invalid", "The check found problems: training cannot use it yet."),
}
EXTRA_TITLES = {"internal_error": "The check crashed", "no_tokenizer": "Lengths in characters"}
ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def status_label(status: DatasetStatus) -> str:
    return STATUS_WORDS[status][0]


def status_help(status: DatasetStatus) -> str:
    return STATUS_WORDS[status][1]


def is_pending(dataset: Dataset) -> bool:
    return dataset.status in (DatasetStatus.uploaded, DatasetStatus.validating)


def error_title(kind: str) -> str:
    return ERROR_TITLES.get(kind) or EXTRA_TITLES.get(kind) or kind.replace("_", " ").capitalize()


def warning_title(kind: str) -> str:
    return WARNING_TITLES.get(kind) or EXTRA_TITLES.get(kind) or kind.replace("_", " ").capitalize()


def goal_label(goal: str) -> str:
    try:
        return GOAL_LABELS[Goal(goal)].capitalize()
    except ValueError:
        return goal


def error_counts(report: dict[str, Any]) -> list[tuple[str, int]]:
    counts = report.get("error_counts") or {}
    return sorted(((error_title(k), n) for k, n in counts.items()), key=lambda kv: -kv[1])


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Histogram:
    title: str
    unit: str
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (x, label) under the axis
    peak: int
    summary: str
    width: int
    height: int


def histogram(title: str, lengths: dict[str, Any] | None, *, width: int = 520,
              height: int = 150) -> Histogram | None:
    """Bars for the length bins of a report's LengthStats (as stored JSON)."""
    bins = (lengths or {}).get("bins") or []
    if not bins:
        return None
    peak = max(b["count"] for b in bins) or 1
    step = width / len(bins)
    bars = [Bar(x=round(i * step + 1, 1), y=round(height - max(2.0, b["count"] / peak * height), 1),
                width=round(max(step - 2, 1), 1), height=round(max(2.0, b["count"] / peak * height), 1),
                label=f"{b['start']:,} to {b['end'] - 1:,} {lengths['unit']}: {b['count']:,}")
            for i, b in enumerate(bins)]
    ticks = [(0.0, f"{bins[0]['start']:,}"), (width / 2, f"{bins[len(bins) // 2]['start']:,}"),
             (float(width), f"{bins[-1]['end']:,}")]
    summary = (f"median {lengths['p50']:,}, 90% under {lengths['p90']:,}, longest "
               f"{lengths['max']:,} {lengths['unit']}")
    return Histogram(title=title, unit=lengths["unit"], bars=bars, ticks=ticks, peak=peak,
                     summary=summary, width=width, height=height)


def histograms(stats: dict[str, Any] | None) -> list[Histogram]:
    if not stats:
        return []
    found = [histogram("Prompt lengths", stats.get("prompt_lengths")),
             histogram("Answer lengths", stats.get("answer_lengths"))]
    return [h for h in found if h is not None]


def language_text(stats: dict[str, Any]) -> str:
    shares = [s for s in stats.get("languages") or [] if s.get("code") != "unknown"]
    if not shares:
        return "not recognised"
    return ", ".join(f"{s['name']} ({round(s['share'] * 100)}%)" for s in shares[:3])


def personal_label(kind: str) -> str:
    from datacheck.personal_data import LABELS

    return LABELS.get(kind, kind)
