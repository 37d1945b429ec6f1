"""Prompt sets of a comparison: a seeded sample of a dataset's normalised records, or prompts
given one by one (pasted one per line in the form).

From a record {"messages": [...]} the prompt is the last user turn before the last assistant
turn, and the reference is that assistant turn. A system message is kept when every sampled
record has the same one (the usual case: one system prompt per dataset); it is stored in the
comparison's prompt_source and given to both models. Earlier turns of multi-turn records are
not replayed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidInput
from app.models import Dataset
from app.storage import Store

MAX_PROMPTS = 200
MAX_PROMPT_CHARS = 4000
MAX_SYSTEM_CHARS = 4000


@dataclass
class PromptSet:
    prompts: list[str]
    references: list[str | None]
    system: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def from_record(record: dict) -> tuple[str, str | None, str | None] | None:
    """(prompt, reference, system) of one normalised record, or None when it has no user turn."""
    messages = [m for m in record.get("messages") or [] if isinstance(m, dict)]
    last_answer = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    context = messages[:last_answer] if last_answer is not None else messages
    users = [m for m in context if m.get("role") == "user"]
    prompt = _text(users[-1].get("content")).strip() if users else ""
    if not prompt:
        return None
    reference = _text(messages[last_answer].get("content")).strip() if last_answer is not None else None
    system = next((_text(m.get("content")).strip() for m in context if m.get("role") == "system"), None)
    return prompt[:MAX_PROMPT_CHARS], reference or None, system or None


def _sample(store: Store, key: str, count: int, seed: int) -> list[tuple[str, str | None, str | None]]:
    """A seeded uniform sample (reservoir), in file order, streamed: a large split is never
    held in memory."""
    rng, kept, seen = random.Random(seed), [], 0
    with store.open(key) as fh:
        for line in fh:
            if not line.strip():
                continue
            item = from_record(json.loads(line))
            if item is None:
                continue
            if len(kept) < count:
                kept.append((seen, item))
            else:
                j = rng.randrange(seen + 1)
                if j < count:
                    kept[j] = (seen, item)
            seen += 1
    return [item for _, item in sorted(kept, key=lambda x: x[0])]


def from_dataset(store: Store, dataset: Dataset, *, count: int, seed: int) -> PromptSet:
    """count prompts of the dataset's eval split, or of its train split when it has none."""
    if not 1 <= count <= MAX_PROMPTS:
        raise InvalidInput(f"Choose between 1 and {MAX_PROMPTS} prompts.", param="count")
    items, split = [], "eval_split"
    if dataset.normalized_eval_path:
        items = _sample(store, dataset.normalized_eval_path, count, seed)
    if not items and dataset.normalized_path:
        items, split = _sample(store, dataset.normalized_path, count, seed), "train_split"
    if not items:
        raise InvalidInput(f"“{dataset.name}” has no examples with a user message to use as prompts.",
                           param="dataset_id")
    systems = {system for _, _, system in items}
    system = systems.pop() if len(systems) == 1 else None
    return PromptSet(prompts=[p for p, _, _ in items], references=[r for _, r, _ in items], system=system,
                     source={"kind": split, "dataset_id": dataset.id, "count": len(items)})


def from_list(prompts: list[str], *, system: str | None = None) -> PromptSet:
    """Prompts given one by one (a form's lines, or the API's list); blank ones are skipped."""
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise InvalidInput("Give at least one prompt (one per line).", param="prompts")
    if len(prompts) > MAX_PROMPTS:
        raise InvalidInput(f"Use at most {MAX_PROMPTS} prompts (you gave {len(prompts)}).", param="prompts")
    long = next((i for i, p in enumerate(prompts, 1) if len(p) > MAX_PROMPT_CHARS), None)
    if long is not None:
        raise InvalidInput(f"Prompt {long} is longer than {MAX_PROMPT_CHARS:,} characters.", param="prompts")
    return PromptSet(prompts=prompts, references=[None] * len(prompts), system=system,
                     source={"kind": "custom", "count": len(prompts)})


def clean_system(text: str | None) -> str | None:
    text = (text or "").strip()
    if len(text) > MAX_SYSTEM_CHARS:
        raise InvalidInput(f"Keep the system message under {MAX_SYSTEM_CHARS:,} characters.", param="system")
    return text or None
