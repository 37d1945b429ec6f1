"""Records -> the base model's chat template -> token ids with answer-only labels.

A record is the studio's normalised chat form (the OpenAI chat fine-tuning format):
    {"messages": [{"role": "system"|"user"|"assistant", "content": str, "weight": 0|1}]}
`weight` is optional and only meaningful on assistant turns (default 1). Labels are -100
everywhere except the tokens of trained assistant answers (their text and the end-of-turn
token), so prompts, system text and weight-0 turns are never learned.

A record with tools (tool calling, see planner.tools) adds "tools" and the roles of OpenAI's
format: assistant messages with "tool_calls" and "tool" results. It is rendered with the base
model's own template (tools=...); the assistant's calls and answers are trained, tool results
are prompt. A template without tool support is refused with the names of models that have it.

Batches carry no padding: with packing the examples of a micro-batch are laid end to end in
one row (position_ids restart at 0 for each example, which transformers turns into a
block-diagonal causal mask); without packing, rows are padded to the longest example of a
length-grouped micro-batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from planner.tools import has_tool_support, no_tool_support_message, template_messages

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "tool")


class DataError(ValueError):
    """The training data cannot be used; the message says why in plain words."""


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class DataReport:
    """What tokenization did to the data, shown to the person who started the run."""

    examples: int = 0
    kept: int = 0
    total_tokens: int = 0
    trained_tokens: int = 0
    truncated_examples: int = 0
    truncated_tokens: int = 0
    dropped_no_answer: int = 0
    max_length: int = 0
    trained_tokens_per_example: list[int] = field(default_factory=list)

    def as_dict(self, per_example: bool = False) -> dict[str, Any]:
        """Counts; with per_example, also the trained-token count of every kept example."""
        data = {k: v for k, v in self.__dict__.items() if per_example or k != "trained_tokens_per_example"}
        lengths = sorted(self.trained_tokens_per_example)
        data["trained_tokens_per_example_min"] = lengths[0] if lengths else 0
        data["trained_tokens_per_example_max"] = lengths[-1] if lengths else 0
        return data

    def summary(self) -> str:
        text = (
            f"{self.kept}/{self.examples} examples, {self.total_tokens} tokens, "
            f"{self.trained_tokens} trained (answer) tokens"
        )
        if self.truncated_examples:
            text += (
                f"; {self.truncated_examples} examples longer than max_length={self.max_length} were "
                f"cut ({self.truncated_tokens} tokens dropped)"
            )
        if self.dropped_no_answer:
            text += f"; {self.dropped_no_answer} examples had no trained answer left and were skipped"
        return text


def read_jsonl(path: str | Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"Line {number} of {path} is not valid JSON: {error.msg}.") from None
    return records


def check_record(record: Any, index: int) -> list[dict]:
    where = f"Example {index + 1}"
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise DataError(f'{where} must be an object with a "messages" list.')
    messages = record["messages"]
    if not messages:
        raise DataError(f"{where} has no messages.")
    for turn, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DataError(f"{where}, message {turn}: role must be one of {', '.join(ROLES)}.")
        calls = message.get("tool_calls")
        if calls is not None and (message["role"] != "assistant" or not isinstance(calls, list)):
            raise DataError(f"{where}, message {turn}: only assistant messages have a tool_calls list.")
        if not isinstance(message.get("content"), str) and not (calls and message.get("content") is None):
            raise DataError(f"{where}, message {turn}: content must be text.")
        if (message["role"] == "tool" or calls) and not isinstance(record.get("tools"), list):
            raise DataError(f"{where}, message {turn}: a tool call or result needs the example's tools list.")
        if "weight" in message:
            if message["role"] != "assistant":
                raise DataError(f"{where}, message {turn}: only assistant messages can have a weight.")
            if message["weight"] not in (0, 1):
                raise DataError(f"{where}, message {turn}: weight must be 0 or 1.")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where} has no assistant answer to learn from.")
    return messages


def _render(tokenizer, messages: list[dict], generation_prompt: bool, tools: list[dict] | None = None) -> str:
    if tools:
        return tokenizer.apply_chat_template(template_messages(messages), tools=tools, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=generation_prompt)


def check_tool_support(tokenizer) -> None:
    """Refuse a tokenizer whose chat template cannot render tools and tool calls."""
    if not has_tool_support(tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None):
        name = getattr(tokenizer, "name_or_path", "") or "chosen"
        raise DataError(no_tool_support_message(name.rstrip("/").rsplit("/", 1)[-1]))


def trained_spans(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans of trained answers in it.

    Relies on the template rendering a conversation's prefix as a prefix of the text (true of
    ChatML, Llama, Mistral, Gemma templates); a template that is not is refused explicitly.
    """
    text = _render(tokenizer, messages, generation_prompt=False, tools=tools)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        prompt = _render(tokenizer, messages[:index], generation_prompt=True, tools=tools)
        through = _render(tokenizer, messages[: index + 1], generation_prompt=False, tools=tools)
        if not (text.startswith(through) and through.startswith(prompt)):
            raise DataError(
                "This model's chat template rewrites earlier turns when later ones are added, so "
                "answer tokens cannot be located; it is not supported for training yet."
            )
        end = len(through.rstrip())  # train the end-of-turn token, not the newline after it
        spans.append((len(prompt), end))
    return text, spans


def encode_record(tokenizer, messages: list[dict],
                  tools: list[dict] | None = None) -> tuple[Example, str, list[tuple[int, int]]]:
    """The whole example (not cut yet) with its labels, the rendered text and each token's
    character span in it."""
    text, spans = trained_spans(tokenizer, messages, tools)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token_id, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        trained = any(span_start <= start < span_end for span_start, span_end in spans) and end > start
        labels.append(token_id if trained else IGNORE_INDEX)
    return Example(list(encoded["input_ids"]), labels), text, [tuple(o) for o in encoded["offset_mapping"]]


def tokenize_record(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> Example:
    return encode_record(tokenizer, messages, tools)[0]


def fit_example(example: Example, max_length: int) -> tuple[Example, int]:
    """Cut to max_length tokens (returns the tokens dropped) and mask the first token."""
    cut = max(0, len(example.input_ids) - max_length)
    if cut:
        example = Example(example.input_ids[:max_length], example.labels[:max_length])
    example.labels[0] = IGNORE_INDEX  # nothing predicts an example's first token
    return example, cut


def preview_record(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> dict[str, Any]:
    """An example as the trainer sees it, for people: the rendered chat template in runs of
    tokens that are trained or not, with token positions so a cut at any max_length can be
    drawn (tokens from position max_length on are dropped, as ``fit_example`` does).

    {"segments": [{"text", "trained", "start", "end", "breaks"}], "tokens", "first_trained"}:
    start/end are token positions, breaks the offset in the segment's text where each token starts; first_trained is the position of the first trained token (None:
    nothing in it is trained); the example is trained at max_length L iff first_trained < L.
    """
    record = {"messages": messages, **({"tools": tools} if tools else {})}
    example, text, offsets = encode_record(tokenizer, check_record(record, 0), tools)
    example, _ = fit_example(example, len(example.input_ids) or 1)
    segments: list[dict[str, Any]] = []
    for index, label in enumerate(example.labels):
        start = offsets[index][0] if index else 0
        end = offsets[index + 1][0] if index + 1 < len(offsets) else len(text)
        trained = label != IGNORE_INDEX
        if segments and segments[-1]["trained"] == trained:
            segments[-1]["breaks"].append(len(segments[-1]["text"]))
            segments[-1]["text"] += text[start:end]
            segments[-1]["end"] = index + 1
        else:
            segments.append({"text": text[start:end], "trained": trained, "start": index, "end": index + 1,
                             "breaks": [0]})
    first = next((i for i, label in enumerate(example.labels) if label != IGNORE_INDEX), None)
    return {"segments": segments, "tokens": len(example.input_ids), "first_trained": first}


def first_trained_position(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> int | None:
    """Where the first trained token of an example is (None: none is), as the trainer masks it."""
    example, _ = fit_example(tokenize_record(tokenizer, messages, tools), 1 << 62)
    return next((i for i, label in enumerate(example.labels) if label != IGNORE_INDEX), None)


def tokenize_records(
    records: Iterable[dict], tokenizer, max_length: int, *, allow_empty: bool = False
) -> tuple[list[Example], DataReport]:
    """Tokenize, mask, truncate and count. Raises DataError when nothing would be learned."""
    report = DataReport(max_length=max_length)
    examples: list[Example] = []
    tools_checked = False
    for index, record in enumerate(records):
        messages = check_record(record, index)
        tools = record.get("tools") or None
        if tools and not tools_checked:
            check_tool_support(tokenizer)
            tools_checked = True
        report.examples += 1
        example, cut = fit_example(tokenize_record(tokenizer, messages, tools), max_length)
        if cut:
            report.truncated_examples += 1
            report.truncated_tokens += cut
        trained = example.trained_tokens
        if trained == 0:
            report.dropped_no_answer += 1
            continue
        report.kept += 1
        report.total_tokens += len(example.input_ids)
        report.trained_tokens += trained
        report.trained_tokens_per_example.append(trained)
        examples.append(example)
    if not examples and not (allow_empty and report.examples == 0):
        raise DataError(_nothing_to_learn(report))
    return examples, report


def _nothing_to_learn(report: DataReport) -> str:
    if report.examples == 0:
        return "The dataset is empty: add at least one conversation with an assistant answer."
    return (
        f"Nothing to learn: in all {report.examples} examples every assistant answer is either "
        f"marked weight 0 or cut off by max_length={report.max_length}. Give at least one answer "
        "weight 1 (or raise max_length)."
    )


class TorchDataset:
    """A map-style dataset over tokenized examples, with lengths for length grouping."""

    def __init__(self, examples: list[Example]):
        self.examples = examples
        self.lengths = [len(e.input_ids) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


class PaddingFreeCollator:
    """Lays a micro-batch end to end in one row: no padding, attention kept per example.

    Emits input_ids, position_ids (restarting at 0 per example), labels and shift_labels
    (labels moved one to the left, -100 at each example's end so nothing crosses examples).
    """

    def __call__(self, features: list[dict]) -> dict:
        import torch

        input_ids, position_ids, labels, shift_labels = [], [], [], []
        for feature in features:
            ids, lab = feature["input_ids"], feature["labels"]
            input_ids += ids
            position_ids += range(len(ids))
            labels += [IGNORE_INDEX] + lab[1:]
            shift_labels += lab[1:] + [IGNORE_INDEX]
        as_row = lambda values: torch.tensor([values], dtype=torch.long)  # noqa: E731
        return {
            "input_ids": as_row(input_ids),
            "position_ids": as_row(position_ids),
            "labels": as_row(labels),
            "shift_labels": as_row(shift_labels),
        }


class PaddedCollator:
    """One row per example, right-padded to the longest in the micro-batch (use with length grouping)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, mask, labels, shift = [], [], [], []
        for feature in features:
            pad = width - len(feature["input_ids"])
            ids.append(feature["input_ids"] + [self.pad_token_id] * pad)
            mask.append([1] * len(feature["input_ids"]) + [0] * pad)
            lab = feature["labels"] + [IGNORE_INDEX] * pad
            labels.append(lab)
            shift.append(lab[1:] + [IGNORE_INDEX])
        tensor = lambda rows: torch.tensor(rows, dtype=torch.long)  # noqa: E731
        batch = {"input_ids": tensor(ids), "labels": tensor(labels), "shift_labels": tensor(shift)}
        if any(0 in row for row in mask):  # without padding, attention takes the plain causal path
            batch["attention_mask"] = tensor(mask)
        return batch


def make_collator(packing: bool, pad_token_id: int):
    return PaddingFreeCollator() if packing else PaddedCollator(pad_token_id)


class LengthGroupedSampler:
    """Shuffled order in which each optimizer step's examples have similar lengths (little padding).

    `batch_size` is the batch of one optimizer step (micro-batch x gradient accumulation). Indices
    are shuffled, cut into groups of `group` step batches, sorted by length inside each group,
    split into step batches, and the full step batches shuffled again (a last, partial one stays
    last). Each step batch is sorted by length, so the micro-batches cut from it hold similar
    lengths whatever their size. The order depends only on (seed, epoch, step batch), so a resumed
    run sees exactly the batches an uninterrupted one would, also after an out-of-memory retry
    halved the micro-batch and doubled the accumulation: every optimizer step trains on the same
    examples, and the Trainer's skip of (steps done x accumulation) micro-batches lands on the
    same example.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group: int = 32):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        span = self.batch_size * self.group
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=lambda i: -self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        partial = [b for b in batches if len(b) != self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()] + partial
        return iter([index for b in shuffled for index in b])
