"""The whole dataset check, its stages in order: read -> detect -> parse -> validate -> report."""

from __future__ import annotations

from typing import BinaryIO

from datacheck.report import build_report
from datacheck.types import CountTokens, ValidationReport
from datacheck.validate import ValidationOptions, validate


def validate_dataset(
    source: BinaryIO,
    *,
    filename: str | None = None,
    options: ValidationOptions | None = None,
    count_tokens: CountTokens | None = None,
    eval_source: BinaryIO | None = None,
    eval_filename: str | None = None,
    train_out: BinaryIO | None = None,
    eval_out: BinaryIO | None = None,
) -> ValidationReport:
    """Check ``source`` (a binary file at its start) and report, in one streamed pass.

    Without ``eval_source``, ``options.eval_fraction`` of the examples are set aside for
    evaluation (see ``split``); with it, all of ``source`` is training data. Normalised
    records (one JSON object per line) go to ``train_out``/``eval_out`` when given.
    """
    run = validate(source, filename=filename, options=options, count_tokens=count_tokens,
                   eval_source=eval_source, eval_filename=eval_filename, train_out=train_out,
                   eval_out=eval_out)
    return build_report(run)
