"""The memory estimator (planner/estimate.py) against the peak memory of a real run of the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.estimate import estimate_memory, ModelShape

MEASURE = Path(__file__).with_name("measure_peak.py")


def test_estimate_matches_a_measured_cpu_run(tiny_model_dir, tmp_path):
    """Full fine-tuning of a ~30M model in fp32 on the CPU: estimated vs measured peak memory."""
    out = subprocess.run([sys.executable, str(MEASURE), str(tiny_model_dir), str(tmp_path)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    predicted = estimate_memory(
        ModelShape(measured["parameters"], measured["hidden_size"], measured["num_layers"],
                   measured["vocab_size"], measured["intermediate_size"], 0.5, True),
        "full", batch_size=1, context_length=measured["tokens"], precision="fp32", device="cpu",
    )
    assert predicted.total_gb * 1e9 / 2**20 == pytest.approx(measured["peak_mb"], rel=0.25), (predicted, measured)
