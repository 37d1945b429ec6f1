"""The dataset checks: is an uploaded file a dataset we can train on, and what is in it.

Torch-free and web-free (it imports nothing from ``app`` or ``worker``); the web slice
(``app/datasets``) and the worker use only the names below. Inside, one-way stages, each
importing only earlier ones and the leaf modules ``types`` and ``problems``:

1. ``read``      bytes -> line batches: encoding sniff, chunks, over-long lines
2. ``detect``    which format a file is (JSON Lines, JSON array, CSV/TSV), from its head
3. ``parse``     the examples as checked messages (``parse.jsonl``, ``json_array``, ``table``,
                 ``messages``); ``normalize`` writes them as records
4. ``validate``  the one streamed pass: errors, statistics (``stats``, ``language``),
                 duplicates (``duplicates``), the train/eval split (``split``)
5. ``report``    warnings, size advice (``guidance``) and the explanation

``check.validate_dataset`` runs them in order. ``preview`` reads stored normalised rows.
"""

from datacheck.check import validate_dataset
from datacheck.guidance import guidance_for
from datacheck.preview import Row, SearchPage, read_rows, search_rows
from datacheck.problems import ERROR_TITLES, WARNING_TITLES
from datacheck.types import (
    GOAL_LABELS,
    ColumnMapping,
    Counts,
    CountTokens,
    DatasetFormat,
    Goal,
    LineError,
    ReportWarning,
    ValidationReport,
)
from datacheck.validate import ValidationOptions

__all__ = [
    "ERROR_TITLES",
    "GOAL_LABELS",
    "WARNING_TITLES",
    "ColumnMapping",
    "CountTokens",
    "Counts",
    "DatasetFormat",
    "Goal",
    "LineError",
    "ReportWarning",
    "Row",
    "SearchPage",
    "ValidationOptions",
    "ValidationReport",
    "guidance_for",
    "read_rows",
    "search_rows",
    "validate_dataset",
]
