"""The search space: every refusal names the field; the expansion is stable."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.sweeps import grid


def test_values_are_converted_and_fields_put_in_config_order():
    space = grid.validate_space({"lora_r": ["8", 16], "learning_rate": ["1e-4", 3e-4], "epochs": ["2", "none"]})
    assert space == {"lora_r": [8, 16], "learning_rate": [1e-4, 3e-4], "epochs": [2.0, None]}
    assert list(space) == ["lora_r", "learning_rate", "epochs"]  # TrainingConfig's order


def test_expansion_is_the_cartesian_product_in_a_stable_order():
    points = grid.expand({"learning_rate": [1e-4, 3e-4], "lora_r": [8, 16]})
    # Fields in TrainingConfig's order (lora_r comes first), the last one varying fastest.
    assert points == [{"lora_r": 8, "learning_rate": 1e-4}, {"lora_r": 8, "learning_rate": 3e-4},
                      {"lora_r": 16, "learning_rate": 1e-4}, {"lora_r": 16, "learning_rate": 3e-4}]
    assert [list(p) for p in points] == [["lora_r", "learning_rate"]] * 4
    # The order of the keys as given (or as a JSONB column returns them) does not matter.
    assert grid.expand({"lora_r": [8, 16], "learning_rate": [1e-4, 3e-4]}) == points
    assert grid.label(points[1]) == "r=8 lr=0.0003"


@pytest.mark.parametrize(("space", "says"), [
    ({"lora_rank": [8]}, "'lora_rank' is not a training setting"),
    ({"base_model": ["/tmp/x"]}, "chosen once, not per run"),
    ({"lora_r": []}, "lora_r: the list of values is empty"),
    ({"lora_r": 8}, "lora_r: give a list of values"),
    ({"lora_r": ["eight"]}, "lora_r: 'eight' is not a valid value"),
    ({"lora_r": [8.5]}, "lora_r: 8.5 is not a valid value"),
    ({"learning_rate": [-1]}, "learning_rate: -1 is not a valid value (Input should be greater than 0)"),
    ({"precision": ["fp8"]}, "precision: 'fp8' is not a valid value"),
    ({"lora_r": [8, "8"]}, "lora_r: 8 is listed twice"),
    ({"learning_rate": [[1e-4]]}, "is not a single value"),
    ({}, "at least one field"),
    ([1, 2], "at least one field"),
])
def test_refusals_name_the_field(space, says):
    with pytest.raises(InvalidInput) as err:
        grid.validate_space(space)
    assert says in err.value.message


def test_too_many_combinations_are_refused_before_anything_runs():
    with pytest.raises(InvalidInput) as err:
        grid.validate_space({"learning_rate": [1e-5 * i for i in range(1, 9)], "lora_r": [4, 8, 16, 32, 64],
                             "seed": [1, 2]})
    assert "makes 80 runs (8 learning_rate x 5 lora_r x 2 seed)" in err.value.message
    assert "at most 64" in err.value.message
    assert len(grid.expand(grid.validate_space({"lora_r": list(range(1, 65))}))) == 64


def test_form_values_are_split_on_commas():
    assert grid.parse_values(" 1e-4, 3e-4 ,, 1e-3;2e-3 ") == ["1e-4", "3e-4", "1e-3", "2e-3"]
    assert grid.format_value(0.0003) == "0.0003" and grid.format_value(None) == "none"
    assert grid.format_value(True) == "true"
