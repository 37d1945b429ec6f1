"""What the run pages show, computed from rows: labels, curves ready to draw, the comparison
(metrics table, best run, configuration diff) and the advanced-settings form. No queries here."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any

from app.models import Run, RunStatus, utcnow
from planner.config import TrainingConfig, field_help

CURVES = (("loss", "Training loss"), ("eval_loss", "Evaluation loss"), ("learning_rate", "Learning rate"))
CURVE_NAMES = tuple(name for name, _ in CURVES)
MAX_POINTS = 600  # per series drawn; a longer series is thinned (first, last and every k-th point)
PALETTE = ("#2f5fd0", "#d0632f", "#1f8a4c", "#8a3fb8", "#b8324f", "#2f9fb0", "#8a6d1f", "#4f4f4f")

STATUS_LABELS = {"validating_files": "Checking files",
                 "queued": "Queued", "running": "Running", "succeeded": "Finished",
                 "failed": "Failed", "cancelled": "Cancelled"}
METHOD_LABELS = {"full": "Full fine-tuning", "lora": "LoRA", "qlora": "QLoRA (4-bit)", "lora8bit": "LoRA (8-bit)"}
METHOD_PLAIN = {
    "full": "Full fine-tuning trains every weight: the most memory and the largest files, the most "
            "room to change the model.",
    "lora": "LoRA trains {pct} of the weights: fast, small files, nearly full quality.",
    "qlora": "QLoRA trains {pct} of the weights on a 4-bit copy of the model: the least memory, a "
             "little slower, nearly full quality.",
    "lora8bit": "LoRA on an 8-bit copy of the model trains {pct} of the weights: less memory than "
                "LoRA, nearly full quality.",
}
FAILURE_TITLES = {
    "oom": "The run ran out of memory",
    "out_of_memory": "The run ran out of memory",  # runs that failed before the kind was renamed
    "dataset": "A problem with the dataset stopped the run",
    "worker_lost": "The machine running it stopped answering",
    "error": "The training stopped with an error",
    "invalid_file": "The training file did not pass its check",
    "config": "The settings do not suit the checked file",
}
ARTIFACT_LABELS = {"adapter": ("Adapter", "the small trained part; load it on top of the base model"),
                   "merged": ("Merged model", "base model and adapter in one, ready to serve"),
                   "full": ("Full model", "every weight, trained"),
                   "model_card": ("Model card", "what was trained, on what, and how (README.md)"),
                   "log": ("Training log", "everything the run printed")}

# How to use each download, in two lines a person can paste (the folder is the unzipped download).
ARTIFACT_USAGE = {
    "adapter": ("Unzip it to a folder \"adapter\", then in Python with peft (it loads the base model the "
                "adapter was trained on, named in the adapter's settings):",
                'from peft import AutoPeftModelForCausalLM\n'
                'model = AutoPeftModelForCausalLM.from_pretrained("adapter")'),
    "merged": ("Unzip it to a folder \"merged\", then in Python with transformers (or any tool that reads a "
               "Hugging Face model folder):",
               'from transformers import pipeline\n'
               'chat = pipeline("text-generation", model="merged")'),
    "full": ("Unzip it to a folder \"model\", then in Python with transformers (or any tool that reads a "
             "Hugging Face model folder):",
             'from transformers import pipeline\n'
             'chat = pipeline("text-generation", model="model")'),
    "model_card": ("A text file (Markdown): open it in any editor, or keep it as README.md beside the model.", ""),
    "log": ("Plain text: open it in any editor; search it for 'error' when a run failed.", ""),
}


def status_label(status: RunStatus | str) -> str:
    return STATUS_LABELS.get(getattr(status, "value", status), str(status))


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def progress(run: Run) -> dict[str, Any]:
    total = run.total_steps or 0
    pct = 100.0 if run.status == RunStatus.succeeded else (
        min(100.0, 100.0 * run.current_step / total) if total else 0.0)
    return {"pct": round(pct, 1), "step": run.current_step, "total": total or None,
            "eta": duration(run.eta_s) if run.status == RunStatus.running and run.eta_s is not None else None}


def elapsed(run: Run) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at or (utcnow() if run.status == RunStatus.running else run.heartbeat_at)
    return (end - run.started_at).total_seconds() if end else None


def trainable_share(estimate: dict[str, Any] | None, parameters: int | None) -> float | None:
    """Trainable weights as a fraction of all weights, from the estimate."""
    trainable = ((estimate or {}).get("memory") or {}).get("trainable_params")
    if not trainable or not parameters:
        return None
    return min(1.0, float(trainable) / float(parameters))


def percent(share: float | None) -> str:
    if share is None:
        return "a small part"
    pct = share * 100
    return f"{pct:.2g}%" if pct < 1 else f"{pct:.1f}%".replace(".0%", "%")


def method_sentence(method: str, share: float | None) -> str:
    return METHOD_PLAIN.get(method, method).format(pct=percent(share))


# -- curves ---------------------------------------------------------------------------------

def thin(points: list[tuple[int, float]], max_points: int = MAX_POINTS) -> list[tuple[int, float]]:
    """At most max_points of a series, keeping the first and the last."""
    if len(points) <= max_points:
        return points
    stride = math.ceil(len(points) / (max_points - 1))
    out = points[::stride]
    if out[-1] != points[-1]:
        out.append(points[-1])
    return out


def series_by_name(rows: typing.Iterable[tuple[int, str, int, float]]) -> dict[int, dict[str, list]]:
    """(run_id, name, step, value) rows in step order -> {run_id: {name: [(step, value)]}}."""
    out: dict[int, dict[str, list]] = {}
    for run_id, name, step, value in rows:
        if value is None or not math.isfinite(value):
            continue
        out.setdefault(run_id, {}).setdefault(name, []).append((step, value))
    return out


def run_charts(series: dict[str, list]) -> list[dict[str, Any]]:
    """One chart per curve of one run, for static/js/charts.js."""
    return [{"name": name, "title": title, "series": [
        {"key": name, "label": title, "color": PALETTE[i], "points": thin(series.get(name, []))}]}
        for i, (name, title) in enumerate(CURVES)]


def compare_charts(runs: list[Run], series: dict[int, dict[str, list]], best_id: int | None) -> list[dict]:
    charts = []
    for name, title in CURVES:
        lines = [{"key": str(j.id), "label": f"#{j.id} {j.name}" + (" (best)" if j.id == best_id else ""),
                  "color": PALETTE[i % len(PALETTE)], "dash": i >= len(PALETTE), "best": j.id == best_id,
                  "points": thin(series.get(j.id, {}).get(name, []))} for i, j in enumerate(runs)]
        charts.append({"name": name, "title": title, "series": lines})
    return charts


# -- comparison -----------------------------------------------------------------------------

@dataclass
class RunSummary:
    run: Run
    final_loss: float | None
    best_eval_loss: float | None
    best_eval_step: int | None
    perplexity: float | None
    color: str
    is_best: bool = False


def summaries(runs: list[Run], series: dict[int, dict[str, list]]) -> list[RunSummary]:
    out = []
    for i, run in enumerate(runs):
        curves = series.get(run.id, {})
        loss, evals = curves.get("loss") or [], curves.get("eval_loss") or []
        best = min(evals, key=lambda p: p[1]) if evals else None
        out.append(RunSummary(run=run, final_loss=loss[-1][1] if loss else None,
                              best_eval_loss=best[1] if best else None, best_eval_step=best[0] if best else None,
                              perplexity=math.exp(best[1]) if best and best[1] < 50 else None,
                              color=PALETTE[i % len(PALETTE)]))
    return out


def mark_best(rows: list[RunSummary]) -> RunSummary | None:
    """Lowest evaluation loss wins; runs without evaluation fall back to the final training loss."""
    with_eval = [r for r in rows if r.best_eval_loss is not None]
    pool, key = (with_eval, "best_eval_loss") if with_eval else (
        [r for r in rows if r.final_loss is not None], "final_loss")
    if not pool:
        return None
    best = min(pool, key=lambda r: getattr(r, key))
    best.is_best = True
    return best


@dataclass
class DiffRow:
    key: str
    help: str
    values: list[str]
    differs: bool


def config_diff(runs: list[Run]) -> list[DiffRow]:
    """Every setting of the compared runs; the ones that differ first."""
    helps = field_help()
    keys = list(helps) + sorted({k for j in runs for k in (j.config or {})} - set(helps))
    rows = []
    for key in keys:
        values = [_fmt((j.config or {}).get(key)) for j in runs]
        rows.append(DiffRow(key=key, help=helps.get(key, ""), values=values, differs=len(set(values)) > 1))
    return sorted(rows, key=lambda r: not r.differs)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"


# -- the advanced settings form -------------------------------------------------------------

@dataclass
class SettingField:
    name: str
    help: str
    kind: str  # number | select | text
    recommended: str
    value: str
    choices: list[str] = field(default_factory=list)
    step: str = "any"


def _choices(annotation: Any) -> tuple[str, list[str]]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "select", [str(a) for a in typing.get_args(annotation)]
    if annotation is bool or bool in args:
        return "select", ["true", "false"]
    if args and typing.get_origin(args[0]) is typing.Literal:
        return "select", [str(a) for a in typing.get_args(args[0])]
    if annotation in (int, float) or any(a in (int, float) for a in args):
        return "number", []
    return "text", []


def setting_fields(config: dict[str, Any], submitted: dict[str, str]) -> list[SettingField]:
    """Every TrainingConfig field but the model path, with its meaning and the planned value."""
    out = []
    for name, info in TrainingConfig.model_fields.items():
        if name == "base_model":
            continue
        kind, choices = _choices(info.annotation)
        planned = config.get(name)
        recommended = "empty" if planned is None else (str(planned).lower() if isinstance(planned, bool)
                                                       else _fmt(planned))
        integer = info.annotation is int or int in typing.get_args(info.annotation)
        out.append(SettingField(name=name, help=info.description or "", kind=kind, recommended=recommended,
                                value=submitted.get(name, ""), choices=choices, step="1" if integer else "any"))
    return out


def overrides_from(form: dict[str, str]) -> dict[str, str]:
    """Advanced fields the person filled in (hp_<field>); empty ones keep the recommended value."""
    known = set(TrainingConfig.model_fields) - {"base_model"}
    return {k[3:]: v.strip() for k, v in form.items()
            if k.startswith("hp_") and k[3:] in known and isinstance(v, str) and v.strip()}


def parameters_label(n: int | None) -> str:
    if not n:
        return "unknown size"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit} weights"
    return f"{n} weights"
