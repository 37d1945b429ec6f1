"""What the run page's Evaluation section shows, computed from rows: the metrics table with the
better model marked, a sentence in plain words, the sample answers side by side. No queries here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.evaluations import service
from app.models import Evaluation, Run
from datacheck.language import LANGUAGE_NAMES

# key, label, lower is better, what it means
METRICS = (
    ("eval_loss", "Evaluation loss", True, "How surprised the model is by the reference answers (lower is better)."),
    ("perplexity", "Perplexity", True, "The same, as an average number of equally likely next words."),
    ("rougeL", "ROUGE-L", False, "Longest run of words shared with the reference, in order (0 to 1)."),
    ("rouge1", "ROUGE-1", False, "Words shared with the reference (0 to 1)."),
    ("rouge2", "ROUGE-2", False, "Pairs of consecutive words shared with the reference (0 to 1)."),
    ("bleu", "BLEU", False, "Phrases of 1 to 4 words shared with the reference, with a brevity penalty (0 to 100)."),
    ("exact_match", "Exact match", False, "Answers identical to the reference, ignoring case and spacing."),
    ("accuracy", "Accuracy", False, "Answers that give the reference label."),
    ("tool_call_accuracy", "Tool-call accuracy", False,
     "Answers that call the right tool with the same arguments as the reference (tool-calling datasets)."),
    ("general_ability", "General questions right", False,
     "Share of the studio's general-ability questions (arithmetic, capitals, simple facts) answered right."),
    ("preference_accuracy", "Preference accuracy", False,
     "Held-out pairs where the model finds the better (chosen) answer more likely than the worse one."),
    ("preference_margin", "Preference margin", False,
     "How much more likely the better answer is than the worse one, per token (log-probability; above 0: "
     "the better answer wins)."),
)
SPLIT_LABELS = {"eval": "the eval split", "train": "training examples (this dataset has no eval split)"}


@dataclass
class MetricRow:
    key: str
    label: str
    help: str
    base: str
    finetuned: str
    better: str | None  # "base", "finetuned" or None (equal, or not measured)


def fmt(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key in ("exact_match", "accuracy", "tool_call_accuracy", "general_ability", "preference_accuracy"):
        return f"{value:.0%}"
    if key == "preference_margin":
        return f"{value:+.3f}"
    if key == "bleu":
        return f"{value:.1f}"
    if key == "perplexity":
        return f"{value:,.2f}"
    return f"{value:.3f}"


def metric_rows(metrics: dict[str, dict[str, float]] | None) -> list[MetricRow]:
    base, tuned = (metrics or {}).get("base") or {}, (metrics or {}).get("finetuned") or {}
    rows = []
    for key, label, lower, meaning in METRICS:
        b, t = base.get(key), tuned.get(key)
        if b is None and t is None:
            continue
        better = None
        if b is not None and t is not None and round(b, 6) != round(t, 6):
            better = "finetuned" if (t < b) == lower else "base"
        rows.append(MetricRow(key, label, meaning, fmt(key, b), fmt(key, t), better))
    return rows


def sentence(metrics: dict[str, dict[str, float]] | None) -> str:
    """The result in plain words: overlap with the references (ROUGE-L, or accuracy), then the loss."""
    base, tuned = (metrics or {}).get("base") or {}, (metrics or {}).get("finetuned") or {}
    if "rougeL" not in base or "rougeL" not in tuned:
        return ""
    parts = []
    if "preference_accuracy" in base and "preference_accuracy" in tuned:
        parts.append(f"On held-out pairs the fine-tuned model prefers the better answer in "
                     f"{fmt('preference_accuracy', tuned['preference_accuracy'])} of them (base model: "
                     f"{fmt('preference_accuracy', base['preference_accuracy'])}), with a margin of "
                     f"{fmt('preference_margin', tuned['preference_margin'])} per token (base model: "
                     f"{fmt('preference_margin', base['preference_margin'])}).")
    if "accuracy" in base and "accuracy" in tuned:
        word = "more" if tuned["accuracy"] > base["accuracy"] else "fewer" if tuned["accuracy"] < base["accuracy"] else "as many"
        parts.append(f"The fine-tuned model gives the right label {word} often: accuracy "
                     f"{fmt('accuracy', tuned['accuracy'])} vs {fmt('accuracy', base['accuracy'])} for the base model.")
    if "tool_call_accuracy" in base and "tool_call_accuracy" in tuned:
        b, t = base["tool_call_accuracy"], tuned["tool_call_accuracy"]
        word = "more" if t > b else "fewer" if t < b else "as many"
        parts.append(f"The fine-tuned model makes the right tool call {word} often: tool-call accuracy "
                     f"{fmt('accuracy', t)} vs {fmt('accuracy', b)} for the base model.")
    b, t = round(base["rougeL"], 2), round(tuned["rougeL"], 2)
    if t == b:
        parts.append(f"Both models' answers overlap the references about equally: ROUGE-L {t:.2f}.")
    else:
        parts.append(f"The fine-tuned model's answers overlap the references {'more' if t > b else 'less'}: "
                     f"ROUGE-L {t:.2f} vs {b:.2f} for the base model.")
    if "eval_loss" in base and "eval_loss" in tuned:
        word = "better" if tuned["eval_loss"] < base["eval_loss"] else "worse"
        parts.append(f"It predicts the reference answers {word}: evaluation loss {tuned['eval_loss']:.3f} vs "
                     f"{base['eval_loss']:.3f}.")
    return " ".join(parts)


@dataclass
class Overlap:
    """Eval examples whose prompt is also in the training data, and the scores without them."""

    count: int
    total: int
    samples_overlapping: int
    samples: int
    rows: list[MetricRow]  # the metrics on the examples that do not overlap
    sentence: str


def overlap(details: dict[str, Any]) -> Overlap | None:
    found = details.get("overlap") or {}
    if not found.get("overlapping"):
        return None
    n, total = found["overlapping"], found["eval_examples"]
    rows = metric_rows(found.get("metrics"))
    clean = found.get("clean_loss_examples", 0)
    text = (f"{n:,} of the {total:,} evaluation examples {'has' if n == 1 else 'have'} a prompt that is also in "
            f"the training data, so the scores above were measured partly on examples the model trained on: "
            f"they look better than the model is. Below, the same scores without them "
            f"({clean:,} examples for the loss, {found['samples'] - found['samples_overlapping']:,} of the "
            f"{found['samples']:,} sample prompts for the answers).")
    return Overlap(count=n, total=total, samples_overlapping=found["samples_overlapping"], samples=found["samples"],
                   rows=rows, sentence=text)


@dataclass
class General:
    questions: int
    base_correct: int
    finetuned_correct: int
    dropped: bool
    sentence: str
    languages: list[tuple[str, int, int, int]]  # (language, questions, base right, fine-tuned right)


def general(details: dict[str, Any]) -> General | None:
    """Forgetting in plain words: did the fine-tuned model lose general ability, and how much."""
    found = details.get("general_ability") or {}
    if not found.get("questions"):
        return None
    n, b, t = found["questions"], found["base_correct"], found["finetuned_correct"]
    points = round((b - t) / n * 100)
    if found.get("dropped"):
        text = (f"General ability dropped: the fine-tuned model answered {t} of {n} general questions right, the "
                f"base model {b} ({points} points fewer). Fine-tuning made it forget some of what it knew; "
                "try fewer epochs, a lower learning rate or LoRA instead of full fine-tuning.")
    elif t > b:
        text = (f"General ability kept: the fine-tuned model answered {t} of {n} general questions right, the base "
                f"model {b}.")
    else:
        text = (f"General ability kept: the fine-tuned model answered {t} of {n} general questions right, the base "
                f"model {b} (a difference of one or two questions is within normal variation).")
    languages = [(LANGUAGE_NAMES.get(code, code), v["questions"], v["base"], v["finetuned"])
                 for code, v in (found.get("by_language") or {}).items()]
    return General(questions=n, base_correct=b, finetuned_correct=t, dropped=bool(found.get("dropped")),
                   sentence=text, languages=languages)


def prompt_text(prompt: Any) -> str:
    """The last user message of a prompt (a list of chat messages), or the prompt itself."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt or "")


def earlier_turns(prompt: Any) -> list[dict]:
    """The messages before the last user message (system text, earlier turns)."""
    if not isinstance(prompt, list):
        return []
    last = max((i for i, m in enumerate(prompt) if isinstance(m, dict) and m.get("role") == "user"), default=0)
    return [m for m in prompt[:last] if isinstance(m, dict)]


def judge_rows(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    base, tuned = (metrics or {}).get("base") or {}, (metrics or {}).get("finetuned") or {}
    b, t = base.get("mean_score"), tuned.get("mean_score")
    better = None if b is None or t is None or b == t else ("finetuned" if t > b else "base")
    return [{"label": "Mean score", "base": "—" if b is None else f"{b:.2f}", "finetuned": "—" if t is None else f"{t:.2f}",
             "better": better},
            {"label": "Answers judged", "base": str(base.get("n", "—")), "finetuned": str(tuned.get("n", "—")),
             "better": None}]


def section(run: Run, evaluations: list[Evaluation], alive: dict[str, int | None], can_write: bool) -> dict[str, Any]:
    """The template context of the Evaluation section."""
    automatic = [e for e in evaluations if e.kind == service.AUTOMATIC]
    judges = [e for e in evaluations if e.kind == service.LLM_JUDGE]
    latest = automatic[-1] if automatic else None
    interrupted = latest is not None and service.is_interrupted(latest, alive)
    details = (latest.details or {}) if latest else {}
    return {
        "run": run, "evaluation": latest, "interrupted": interrupted,
        "evaluating": latest is not None and latest.status in ("pending", "running") and not interrupted,
        "rows": metric_rows(latest.metrics) if latest else [], "sentence": sentence(latest.metrics) if latest else "",
        "split_label": SPLIT_LABELS.get(details.get("split", ""), ""), "details": details,
        "judge": judges[-1] if judges else None,
        "polling": not run.status.is_final or (latest is not None and latest.status in ("pending", "running") and not interrupted)
        or (bool(judges) and judges[-1].status in ("pending", "running")),
        "judge_rows": judge_rows(judges[-1].metrics) if judges else [],
        "can_rerun": can_write and service.can_rerun(run, latest, alive),
        "prompt_text": prompt_text, "earlier_turns": earlier_turns,
        "overlap": overlap(details), "general": general(details),
    }
