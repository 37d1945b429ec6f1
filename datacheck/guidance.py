"""Plain-words advice on dataset size and quality, from rules of thumb per task type.

Rules of thumb (examples for training):
- classification / extraction: 500 minimum, 2,000-5,000 recommended;
- generation (support answers, code, anything else): 2,000 minimum, 10,000-50,000 recommended;
- style / brand voice: 500 minimum, 2,000-5,000 recommended.

Preference pairs (DPO, ORPO) teach which of two answers is better rather than the answers
themselves, so fewer are needed; published recipes use a few thousand, and a style or a simple
rule shows after a few hundred:
- classification / extraction / style: 300 minimum, 1,000-5,000 recommended;
- generation: 500 minimum, 2,000-10,000 recommended.
"""

from __future__ import annotations

from datacheck.types import GOAL_LABELS, DatasetStats, Goal, Guidance

TASK_TYPES = {
    Goal.CLASSIFICATION: "classification",
    Goal.EXTRACTION: "extraction",
    Goal.BRAND_VOICE: "style",
    Goal.SUPPORT_ANSWERS: "generation",
    Goal.CODE: "generation",
    Goal.OTHER: "generation",
}

# task type -> (minimum, recommended low, recommended high)
SIZE_RULES = {
    "classification": (500, 2_000, 5_000),
    "extraction": (500, 2_000, 5_000),
    "style": (500, 2_000, 5_000),
    "generation": (2_000, 10_000, 50_000),
}


# the same, for preference pairs
PAIR_SIZE_RULES = {
    "classification": (300, 1_000, 5_000),
    "extraction": (300, 1_000, 5_000),
    "style": (300, 1_000, 5_000),
    "generation": (500, 2_000, 10_000),
}


def guidance_for(goal: Goal | str, train_examples: int, stats: DatasetStats | None = None, *,
                 pairs: bool = False) -> Guidance:
    """Advice for training ``train_examples`` examples (preference pairs when ``pairs``) towards ``goal``."""
    goal = Goal(goal)
    task_type = TASK_TYPES[goal]
    minimum, low, high = (PAIR_SIZE_RULES if pairs else SIZE_RULES)[task_type]
    verdict = _verdict(train_examples, minimum, low, high)
    message = _message(goal, verdict, train_examples, minimum, low, high)
    tips = _tips(goal, stats)
    if pairs:
        message = message.replace("training examples", "preference pairs")
        tips.insert(0, "Make each rejected answer a realistic mistake (the wrong tone, a missing step, a "
                       "made-up fact) rather than nonsense: the model learns the difference between the two.")
    return Guidance(
        goal=goal.value, task_type=task_type, minimum=minimum, recommended_low=low,
        recommended_high=high, examples=train_examples, verdict=verdict, message=message, tips=tips)


def _verdict(n: int, minimum: int, low: int, high: int) -> str:
    if n < minimum:
        return "too_few"
    if n < low:
        return "enough"
    return "recommended" if n <= high else "plenty"


def _message(goal: Goal, verdict: str, n: int, minimum: int, low: int, high: int) -> str:
    task = GOAL_LABELS[goal]
    if verdict == "too_few":
        return (f"You have {n:,} training examples. For {task} we advise at least {minimum:,}, "
                f"and {low:,} to {high:,} for good results. Training will run, but the model "
                "may learn little or copy your examples word for word.")
    if verdict == "enough":
        return (f"You have {n:,} training examples: enough to start {task}. {low:,} to "
                f"{high:,} usually give clearly better results.")
    if verdict == "recommended":
        return (f"You have {n:,} training examples, within the {low:,} to {high:,} we "
                f"recommend for {task}.")
    return (f"You have {n:,} training examples, more than the {high:,} usually needed for "
            f"{task}. Quality matters more than quantity: a cleaner, smaller set often "
            "trains faster and as well.")


def _tips(goal: Goal, stats: DatasetStats | None) -> list[str]:
    tips = ["Quality beats quantity: a few hundred careful, consistent examples teach more "
            "than thousands of sloppy ones."]
    if goal in (Goal.CLASSIFICATION, Goal.EXTRACTION):
        tips.append("Give every category (or field) a fair number of examples, and always "
                    "write the answers in exactly the same form.")
    if goal is Goal.BRAND_VOICE:
        tips.append("Keep the tone consistent across all answers: the model copies what it "
                    "sees most often.")
    if stats is not None and stats.duplicates:
        tips.append(f"Remove the {stats.duplicates:,} duplicate examples: they make the model "
                    "repeat those answers.")
    if stats is not None and len([s for s in stats.languages if s.code != "unknown"]) > 1:
        tips.append("Write your examples in the language the model should answer in.")
    return tips
