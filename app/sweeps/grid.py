"""A sweep's search space: {field: [values, ...]} over TrainingConfig fields, checked with
messages that name the field, and expanded into grid points in a stable order.

Pure Python (no database): the web form, the API and the service all use it.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from pydantic import ValidationError

from app.errors import InvalidInput
from planner.config import TrainingConfig

MAX_RUNS = 64  # grid points per sweep: each is a full fine-tuning run
NOT_SWEPT = {"base_model"}  # chosen by the sweep's base model, never per point
SHORT_NAMES = {"learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha", "per_device_batch_size": "bs",
               "grad_accum": "ga", "epochs": "ep", "max_steps": "steps", "lora_dropout": "dropout",
               "weight_decay": "wd", "warmup": "warmup", "max_length": "len"}
# A neutral configuration that every single value is checked against: with these, no
# cross-field rule (epochs or max_steps, eval_steps for 'steps', ...) can fail on one value.
_PROBE = {"base_model": "probe", "method": "lora", "learning_rate": 1e-4, "epochs": 1, "max_steps": 1,
          "eval_steps": 1, "save_steps": 1}


def sweepable_fields() -> list[str]:
    return [name for name in TrainingConfig.model_fields if name not in NOT_SWEPT]


def _message(exc: ValidationError, name: str) -> str:
    errors = [e for e in exc.errors() if not e.get("loc") or e["loc"][0] == name]
    return "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in errors) or str(exc)


def check_value(name: str, value: Any) -> Any:
    """One value of one field, converted as the config would store it ("1e-4" -> 0.0001)."""
    if isinstance(value, (list, dict)):
        raise InvalidInput(f"{name}: {value!r} is not a single value.", param=f"search_space.{name}")
    if isinstance(value, str) and value.strip().lower() in ("none", "null", "empty"):
        value = None
    try:
        config = TrainingConfig.model_validate({**_PROBE, name: value})
    except ValidationError as exc:
        raise InvalidInput(f"{name}: {value!r} is not a valid value ({_message(exc, name)}).",
                           param=f"search_space.{name}") from None
    checked = getattr(config, name)
    if isinstance(checked, float) and not math.isfinite(checked):
        raise InvalidInput(f"{name}: {value!r} is not a finite number.", param=f"search_space.{name}")
    return checked


def validate_space(space: Any, *, max_runs: int = MAX_RUNS) -> dict[str, list[Any]]:
    """The search space with its values converted, fields in TrainingConfig order; refuses an
    unknown field, an empty or repeated list, a wrong value and too many combinations."""
    if not isinstance(space, dict) or not space:
        raise InvalidInput("Give the search space as {field: [value, ...]} with at least one field, e.g. "
                           '{"learning_rate": [1e-4, 3e-4], "lora_r": [8, 16]}.', param="search_space")
    known = sweepable_fields()
    checked: dict[str, list[Any]] = {}
    for name, values in space.items():
        if name not in known:
            hint = " (the sweep's base model is chosen once, not per run)" if name in NOT_SWEPT else ""
            raise InvalidInput(f"'{name}' is not a training setting that a sweep can vary{hint}. Known settings: "
                               f"{', '.join(known)}.", param=f"search_space.{name}")
        if not isinstance(values, (list, tuple)):
            raise InvalidInput(f"{name}: give a list of values, e.g. [{values!r}].", param=f"search_space.{name}")
        if not values:
            raise InvalidInput(f"{name}: the list of values is empty; give at least one.",
                               param=f"search_space.{name}")
        converted: list[Any] = []
        for value in values:
            value = check_value(name, value)
            if value in converted:
                raise InvalidInput(f"{name}: {value!r} is listed twice.", param=f"search_space.{name}")
            converted.append(value)
        checked[name] = converted
    runs = math.prod(len(v) for v in checked.values())
    if runs > max_runs:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in checked.items())
        raise InvalidInput(f"This search space makes {runs} runs ({sizes}); a sweep runs at most {max_runs}. "
                           "Give fewer values.", param="search_space")
    order = {name: i for i, name in enumerate(known)}
    return dict(sorted(checked.items(), key=lambda item: order[item[0]]))


def expand(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, fields in TrainingConfig order, values in the order given; the last
    field varies fastest. The same space always gives the same list (point i is child i)."""
    order = {name: i for i, name in enumerate(TrainingConfig.model_fields)}
    names = sorted(space, key=lambda n: order.get(n, len(order)))
    return [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))]


def format_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def label(point: dict[str, Any]) -> str:
    """A short name for a grid point: "lr=0.0001 r=8"."""
    return " ".join(f"{SHORT_NAMES.get(k, k)}={format_value(v)}" for k, v in point.items()) or "base"


def parse_values(text: str) -> list[str]:
    """Comma-separated values from a form field ("1e-4, 3e-4" -> ["1e-4", "3e-4"])."""
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
