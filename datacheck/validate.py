"""Stage 4 of the dataset checks: validate a dataset file in one streamed pass: errors per
line, the notes warnings are made of, statistics, the train/eval split and (optionally) the
normalised records, written as they are read. ``datacheck.report`` then words the result.

A file with any error is ``invalid``; the caller then discards whatever was written to
``train_out``/``eval_out``. Decisions (see also ``parse.messages`` for the conversation rules):
- blank lines (0 bytes or only spaces) are skipped with a warning, not an error;
- a JSON array file (even one named .jsonl) is read as an array of examples;
- a line longer than ``max_line_bytes`` is an error and is never held whole in memory;
- token limits are checked only when the caller passes ``count_tokens``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import BinaryIO

import orjson
import xxhash
from pydantic import BaseModel, Field

from datacheck.detect import Detection
from datacheck.duplicates import HashIndex, record_key
from datacheck.parse import open_examples
from datacheck.parse.items import BLANK
from datacheck.parse.preference import Pair
from datacheck.parse.tools import text_view
from datacheck.problems import Problem
from datacheck.read import DEFAULT_MAX_LINE_BYTES
from datacheck.split import Splitter
from datacheck.stats import StatsCollector, split_roles
from datacheck.types import ColumnMapping, CountTokens, Goal, LineError, Message

TOKEN_BATCH = 256


class ValidationOptions(BaseModel):
    mapping: ColumnMapping | None = Field(None, description="CSV/TSV columns; guessed when None")
    max_line_bytes: int = Field(DEFAULT_MAX_LINE_BYTES, description="longest allowed line/example")
    max_tokens: int | None = Field(None, description="model context length: longer is an error")
    max_length: int | None = Field(None, description="training length: longer gets a warning")
    message_overhead_tokens: int = Field(4, description="tokens a chat template adds per message")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share split off for eval")
    seed: int = 0
    duplicate_groups: list[list[int]] | None = Field(
        None, description="near-duplicate groups (0-based example indices) kept on one side of the split")
    goal: Goal | None = None
    near_empty_chars: int = Field(3, description="answers with fewer visible characters warn")
    max_errors: int = Field(100, description="errors listed; all are counted")
    max_warning_lines: int = 20


class LineNotes:
    """How many lines something happened on, and the first few of them."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self.lines: dict[str, list[int]] = {"train": [], "eval": []}

    def note(self, line: int, file: str = "train") -> None:
        self.count += 1
        if len(self.lines[file]) < self.keep:
            self.lines[file].append(line)


class ValidationRun:
    """The state of one validation pass (over a training file and maybe an eval file)."""

    def __init__(self, options: ValidationOptions, count_tokens: CountTokens | None,
                 train_out: BinaryIO | None, eval_out: BinaryIO | None, split: bool) -> None:
        self.options, self.count_tokens, self.split = options, count_tokens, split
        self.outputs = {False: train_out, True: eval_out}
        self.errors: list[LineError] = []
        self.error_counts: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.duplicates = {"train": HashIndex(), "eval": HashIndex()}
        # Normalised prompts by is_eval: only evaluation lines are kept (leakage is reported on them).
        self.prompts = {False: HashIndex(tagged=False), True: HashIndex()}
        # Split keys of the split file: examples sharing one were kept on one side (see split).
        self.split_keys = HashIndex()
        keep = options.max_warning_lines
        self.blank, self.near_empty, self.truncated = LineNotes(keep), LineNotes(keep), LineNotes(keep)
        overhead = options.message_overhead_tokens if count_tokens else 0
        self.stats = StatsCollector(tokens=count_tokens is not None, message_overhead=overhead)
        self.queue: list[tuple] = []
        self.languages = self.stats.languages
        self.splitter = Splitter(options.seed, options.eval_fraction, options.duplicate_groups)
        self.pick = self.splitter.pick
        self.tally = {False: 0, True: 0}  # examples by is_eval
        self.with_system = self.multi_turn = self.with_tools = 0
        self.pairs = 0  # preference pairs among the examples
        self.detection: Detection | None = None  # of the training file, set by validate()
        self.eval_detection: Detection | None = None  # of the eval file, when there is one

    def scan(self, source: BinaryIO, filename: str | None, file: str) -> Detection:
        detection, items = open_examples(source, filename=filename, mapping=self.options.mapping,
                                         max_line_bytes=self.options.max_line_bytes)
        if detection.problem:
            self.error(detection.problem.line, detection.problem, file)
            return detection
        example = self.examples(file)
        index = last = 0
        for line, item in items:
            last = line
            if type(item) is list:
                example(line, item, index)
                index += 1
            elif type(item) is dict:  # a conversation with tools (datacheck.parse.tools)
                self.with_tools += 1
                example(line, text_view(item["messages"]), index, item)
                index += 1
            elif type(item) is Pair:  # statistics of the prompt and the chosen answer
                self.pairs += 1
                example(line, item.chosen_conversation(), index, item.record())
                index += 1
            elif item is BLANK:
                self.blank.note(line, file)
            else:
                self.error(line, item, file)
        self.flush_tokens()
        self.counts[f"{file}_lines"] = last
        if index == 0 and not self.counts[f"{file}_invalid"]:
            self.error(None, Problem("empty_file", "The file contains no examples."), file)
        return detection

    def examples(self, file: str) -> Callable[..., None]:
        """``example(line, messages, index, record=None)``, which accounts for one valid example
        of ``file`` (its 0-based ``index`` among them). ``record`` is the whole record when it is
        more than its messages (tools: ``messages`` is its text view; a preference pair: its
        chosen conversation).

        The hot path, one call per example: what it needs is bound here once (no attribute
        lookups per example), and the indexes are appended to directly, in C."""
        run, dumps, digest = self, orjson.dumps, xxhash.xxh3_64_intdigest
        split, pick, record_key_of = self.split, self.pick, record_key
        grouped_key = self.splitter.key if self.splitter.leader else None
        add_key, add_key_line = self.split_keys.hashes.append, self.split_keys.tags.append
        copies = self.duplicates[file]
        add_copy, add_copy_line = copies.hashes.append, copies.tags.append
        add_train_prompt = self.prompts[False].hashes.append
        add_eval_prompt, add_eval_prompt_line = self.prompts[True].hashes.append, self.prompts[True].tags.append
        near_empty, near_empty_chars = self.near_empty, self.options.near_empty_chars
        wants_language, add_language = self.languages.wants, self.languages.add
        add_stats, tally, outputs = self.stats.add, self.tally, self.outputs
        counting_tokens = self.count_tokens is not None
        in_eval_file = file == "eval"

        def example(line: int, messages: list[Message], index: int, record: dict | None = None) -> None:
            record = dumps({"messages": messages} if record is None else record)
            if split:
                key = record_key_of(record) if grouped_key is None else grouped_key(index, record)
                add_key(key)
                add_key_line(line)
                is_eval = pick(key)
            else:
                is_eval = in_eval_file
            add_copy(digest(record))
            add_copy_line(line)
            prompt, answer = split_roles(messages)
            # the prompt as split_roles gives it, apart from case (also spacing and punctuation cost a
            # fifth of validation's speed: the evaluation's overlap check and the near-duplicate scan see those)
            if is_eval:
                add_eval_prompt(digest(dumps(prompt).lower()))
                add_eval_prompt_line(line)
            else:
                add_train_prompt(digest(dumps(prompt).lower()))
            answer_chars = sum(map(len, answer))
            if answer_chars < 16 and len("".join(answer).strip()) < near_empty_chars:
                near_empty.note(line, file)
            if wants_language():
                add_language(" ".join(prompt[-1:] + answer))
            if counting_tokens:
                run.queue.append((line, file, is_eval, len(messages), "\n".join(prompt), "\n".join(answer)))
                if len(run.queue) >= TOKEN_BATCH:
                    run.flush_tokens()
            else:
                add_stats(sum(map(len, prompt)), answer_chars, len(messages), not is_eval)
            tally[is_eval] += 1
            if messages[0]["role"] == "system":
                run.with_system += 1
            if len(messages) > 3 or (len(messages) == 3 and messages[0]["role"] != "system"):
                run.multi_turn += 1
            out = outputs[is_eval]
            if out is not None:
                out.write(record + b"\n")

        return example

    def flush_tokens(self) -> None:
        if not self.queue:
            return
        batch, self.queue = self.queue, []
        lengths = list(self.count_tokens([q[4] for q in batch] + [q[5] for q in batch]))
        if len(lengths) != 2 * len(batch):
            raise ValueError("count_tokens must return one count per text")
        limit, train_length = self.options.max_tokens, self.options.max_length
        for (line, file, is_eval, n_messages, _, _), prompt_len, answer_len in zip(
                batch, lengths, lengths[len(batch):]):
            total = self.stats.add(prompt_len, answer_len, n_messages, not is_eval)
            if limit is not None and total > limit:
                self.error(line, Problem(
                    "too_many_tokens", f"The example is {total:,} tokens long, more than the "
                    f"{limit:,} tokens the model can read at once. Shorten it or split it."), file)
            elif train_length is not None and total > train_length:
                self.truncated.note(line, file)

    def error(self, line: int | None, problem: Problem, file: str) -> None:
        self.error_counts[problem.kind] += 1
        self.counts["invalid"] += 1
        self.counts[f"{file}_invalid"] += 1
        if len(self.errors) < self.options.max_errors:
            where = "" if line is None else f"Line {line}: "
            if file == "eval":
                where = "Evaluation file: " if line is None else f"Evaluation file, line {line}: "
            self.errors.append(LineError(line=line, kind=problem.kind, file=file,
                                         message=where + problem.reason))


def validate(
    source: BinaryIO,
    *,
    filename: str | None = None,
    options: ValidationOptions | None = None,
    count_tokens: CountTokens | None = None,
    eval_source: BinaryIO | None = None,
    eval_filename: str | None = None,
    train_out: BinaryIO | None = None,
    eval_out: BinaryIO | None = None,
) -> ValidationRun:
    """One streamed pass over ``source`` (and ``eval_source``); the run holds what the report
    is made of (see ``datacheck.check.validate_dataset`` for the arguments)."""
    options = options or ValidationOptions()
    run = ValidationRun(options, count_tokens, train_out, eval_out, split=eval_source is None)
    run.detection = run.scan(source, filename, "train")
    if eval_source is not None:
        run.eval_detection = run.scan(eval_source, eval_filename, "eval")
    return run
