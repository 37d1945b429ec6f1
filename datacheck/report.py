"""Stage 5 of the dataset checks: turn a finished validation pass into the report:
warnings, size advice (``guidance``) and the plain-words explanation."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from datacheck.detect import Detection
from datacheck.duplicates import HashIndex
from datacheck.guidance import guidance_for
from datacheck.problems import ERROR_TITLES
from datacheck.types import (
    FORMAT_LABELS,
    PREFERENCE_FORMATS,
    Counts,
    DatasetFormat,
    DatasetStats,
    ReportWarning,
    ValidationReport,
)
from datacheck.validate import LineNotes, ValidationRun

MIN_EVAL_EXAMPLES = 20


def build_report(run: ValidationRun) -> ValidationReport:
    detection, eval_detection = run.detection, run.eval_detection
    c = run.counts
    train, evals = run.tally[False], run.tally[True]
    counts = Counts(
        lines=c["train_lines"], blank_lines=run.blank.count, examples=train + evals,
        invalid=c["invalid"], train_examples=train, eval_examples=evals,
        with_system=run.with_system, multi_turn=run.multi_turn, with_tools=run.with_tools, pairs=run.pairs)
    duplicates = {file: _duplicates(index, run.options.max_warning_lines)
                  for file, index in run.duplicates.items()}
    warnings = _warnings(run, counts, duplicates)
    stats = guidance = None
    if counts.examples:
        stats = run.stats.result(counts.examples, sum(d[0] for d in duplicates.values()))
        language = _language_warning(stats)
        warnings.extend([language] if language else [])
    if run.options.goal is not None and counts.examples:
        guidance = guidance_for(run.options.goal, counts.train_examples, stats, pairs=bool(run.pairs))
        if guidance.verdict == "too_few":
            warnings.append(ReportWarning(kind="too_few_examples", message=guidance.message,
                                          count=counts.train_examples))
    valid = not run.error_counts
    fmt = detection.format
    sorted_errors = sorted(run.errors, key=lambda e: (e.file != "train", e.line or 0))
    return ValidationReport(
        status="valid" if valid else "invalid", format=fmt,
        format_label=FORMAT_LABELS[fmt] if fmt else "Unknown format",
        container=detection.container, explanation=_explanation(run, detection, counts, valid),
        counts=counts, errors=sorted_errors, error_counts=dict(run.error_counts),
        errors_truncated=sum(run.error_counts.values()) > len(run.errors),
        warnings=warnings, stats=stats, guidance=guidance, columns=detection.columns,
        mapping=detection.mapping, mapping_proposed=detection.mapping_proposed,
        eval_from="file" if eval_detection is not None else "split")


def _lines_text(notes: LineNotes) -> str:
    shown = notes.lines["train"][:5]
    if not shown:
        return f"evaluation file lines {', '.join(map(str, notes.lines['eval'][:5]))}"
    more = ", ..." if notes.count > len(shown) else ""
    return f"line{'s' * (len(shown) > 1)} {', '.join(map(str, shown))}{more}"


def _note_warning(kind: str, notes: LineNotes, message: str) -> ReportWarning:
    return ReportWarning(kind=kind, message=message, count=notes.count,
                         lines=notes.lines["train"], eval_lines=notes.lines["eval"])


def _warnings(run: ValidationRun, counts: Counts, duplicates: dict) -> list[ReportWarning]:
    out = []
    if run.blank.count:
        out.append(_note_warning("blank_lines", run.blank, (
            f"{_n(run.blank.count, 'blank line')} {_was(run.blank.count)} skipped "
            f"({_lines_text(run.blank)}). That is harmless; nothing else is needed.")))
    out.extend(_duplicate_warnings(duplicates))
    if run.near_empty.count:
        out.append(_note_warning("near_empty_answers", run.near_empty, (
            f"{_n(run.near_empty.count, 'answer')} {_is(run.near_empty.count)} shorter than "
            f"{run.options.near_empty_chars} characters ({_lines_text(run.near_empty)}). If "
            "these are short labels on purpose (for classification), ignore this; otherwise "
            "the model will learn to answer almost nothing.")))
    if run.truncated.count:
        out.append(_note_warning("truncated", run.truncated, (
            f"{_n(run.truncated.count, 'example')} {_is(run.truncated.count)} longer than "
            f"{run.options.max_length:,} tokens, the training length, so {_their(run.truncated.count)} "
            f"end will be cut off ({_lines_text(run.truncated)}). Shorten "
            f"{_them(run.truncated.count)} or raise the training length.")))
    out.extend(_kept_together(run))
    out.extend(_leakage_warnings(run))
    eval_n = counts.eval_examples
    wants_eval = not run.split or run.options.eval_fraction > 0
    if counts.examples and wants_eval and eval_n < MIN_EVAL_EXAMPLES:
        start = (f"The evaluation set has only {_n(eval_n, 'example')}" if eval_n else
                 "No example was set aside for evaluation (the dataset is small)")
        out.append(ReportWarning(kind="small_eval", count=eval_n, message=(
            f"{start}, so evaluation scores will be missing or noisy. Add more examples, "
            "or upload a separate evaluation file.")))
    return out


def _count_and_first(values: Iterable[int], keep: int) -> tuple[int, list[int]]:
    """How many values, and the ``keep`` smallest in order, in O(keep) memory."""
    count, heap = 0, []  # heap holds the negated smallest values seen
    for value in values:
        count += 1
        if len(heap) < keep:
            heapq.heappush(heap, -value)
        elif -heap[0] > value:
            heapq.heapreplace(heap, -value)
    return count, sorted(-v for v in heap)


def _duplicates(index: HashIndex, keep: int) -> tuple[int, list[int], tuple[int, int] | None]:
    """(extra copies, first copy lines, (first copy, its original)) without listing all."""
    first_pair: tuple[int, int] | None = None

    def copies() -> Iterable[int]:
        nonlocal first_pair
        for group in index.groups():
            if first_pair is None or group[1] < first_pair[0]:
                first_pair = (group[1], group[0])
            yield from group[1:]

    count, lines = _count_and_first(copies(), keep)
    return count, lines, first_pair


def _duplicate_warnings(duplicates: dict) -> list[ReportWarning]:
    out = []
    for file, (extra, lines, pair) in duplicates.items():
        if not extra:
            continue
        where = " in the evaluation file" if file == "eval" else ""
        out.append(ReportWarning(
            kind="duplicates", count=extra, lines=lines if file == "train" else [],
            eval_lines=lines if file == "eval" else [], message=(
                f"{_n(extra, 'example')}{where} {_is(extra)} an exact copy of an earlier one "
                f"(for example line {pair[0]} repeats line {pair[1]}). Copies make the "
                "model over-learn those answers; remove them unless that is what you want.")))
    return out


def _kept_together(run: ValidationRun) -> list[ReportWarning]:
    """Said on the dataset page: the split was drawn after grouping copies, so none leaks."""
    if not run.split or run.options.eval_fraction <= 0:
        return []
    count, kept = _count_and_first((line for group in run.split_keys.groups() for line in group[1:]),
                                   run.options.max_warning_lines)
    if not count:
        return []
    near = " or near copies from the duplicate finder" if run.options.duplicate_groups else ""
    return [ReportWarning(kind="kept_together", count=count, lines=kept, message=(
        f"{_n(count, 'example')} {_is(count)} a copy of an earlier one (exactly, or apart from "
        f"case, spacing and punctuation{near}). Before splitting, each copy was kept on the same "
        "side as its original, so no evaluation example also appears in training and the scores "
        "are measured on examples the model has not seen."))]


def _leakage_warnings(run: ValidationRun) -> list[ReportWarning]:
    shared = run.prompts[True].shared_with(run.prompts[False])
    count, kept = _count_and_first(shared, run.options.max_warning_lines)
    if not count:
        return []
    where = "line" if run.split else "evaluation file line"
    example = f"{where}{'s' * (len(kept) > 1)} {', '.join(map(str, kept[:5]))}"
    example += ", ..." if count > 5 else ""
    return [ReportWarning(
        kind="leakage", count=count, lines=kept if run.split else [],
        eval_lines=[] if run.split else kept, message=(
            f"{_n(count, 'evaluation example')} {_has(count)} the same "
            f"prompt as a training example, apart from case ({example}). "
            "Evaluation scores will look better than they are; make the evaluation prompts "
            "different. A run's evaluation also reports its scores without these examples."))]


def _language_warning(stats: DatasetStats) -> ReportWarning | None:
    known = [s for s in stats.languages if s.code != "unknown"]
    if len(known) < 2 or known[1].share < 0.1:
        return None
    parts = ", ".join(f"{round(s.share * 100)}% {s.name}" for s in known[:3])
    return ReportWarning(kind="mixed_languages", count=len(known), message=(
        f"The examples are in several languages ({parts} of those we sampled). That is fine "
        "if the model must answer in each; otherwise keep to one language."))


def _explanation(run: ValidationRun, detection: Detection, counts: Counts, valid: bool) -> str:
    if detection.problem is not None:
        return detection.problem.reason
    parts = [_format_sentence(detection, counts)]
    if counts.blank_lines:
        parts.append(f"{_n(counts.blank_lines, 'blank line')} {_was(counts.blank_lines)} skipped.")
    if not valid:
        total = sum(run.error_counts.values())
        kinds = "; ".join(f"{ERROR_TITLES[k]}: {n:,}" for k, n in run.error_counts.most_common(4))
        parts.append(f"We found {_n(total, 'problem')} ({kinds}). Fix {_them(total)} and upload "
                     "the file again: training cannot start until the file is valid.")
    elif run.split:
        parts.append(f"{counts.train_examples:,} will be used for training and "
                     f"{counts.eval_examples:,} set aside for evaluation.")
    else:
        parts.append(f"{counts.train_examples:,} training examples and "
                     f"{counts.eval_examples:,} in the evaluation file.")
    return " ".join(parts)


def _format_sentence(detection: Detection, counts: Counts) -> str:
    fmt, n = detection.format, counts.examples
    array = ""
    if detection.container == "json_array":
        array = " The file is one JSON array; each item is read as one example."
    if fmt is DatasetFormat.CHAT:
        turns = f", {counts.multi_turn:,} with several turns" if counts.multi_turn else ""
        if counts.with_tools:
            turns += (f", {counts.with_tools:,} with tools (tool calling: the base model's chat template "
                      "must support tools)")
        return (f"Chat format (OpenAI): {_n(n, 'conversation')}, {counts.with_system:,} with a "
                f"system message{turns}.{array}")
    if fmt in PREFERENCE_FORMATS:
        return (f"{FORMAT_LABELS[fmt]}: {_n(n, 'pair')}, each a prompt with a better (chosen) and a worse "
                f"(rejected) answer, for preference training (DPO or ORPO); lengths count the prompt and "
                f"the chosen answer.{array}")
    if fmt in (DatasetFormat.CSV, DatasetFormat.TSV):
        m = detection.mapping
        guessed = " (guessed from the column names: check it)" if detection.mapping_proposed else ""
        system = f', system message from "{m.system}"' if m and m.system else ""
        return (f"{FORMAT_LABELS[fmt]} with the columns {', '.join(detection.columns or [])}: "
                f"{_n(n, 'example')}, prompt from \"{m.prompt}\", answer from "
                f"\"{m.completion}\"{system}{guessed}.")
    label = FORMAT_LABELS[fmt] if fmt else "Unknown format"
    return f"{label}: {_n(n, 'example')}.{array}"


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _is(n: int) -> str:
    return "is" if n == 1 else "are"


def _was(n: int) -> str:
    return "was" if n == 1 else "were"


def _has(n: int) -> str:
    return "has" if n == 1 else "have"


def _their(n: int) -> str:
    return "its" if n == 1 else "their"


def _them(n: int) -> str:
    return "it" if n == 1 else "them"
