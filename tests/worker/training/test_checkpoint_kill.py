"""A run SIGKILLed in the middle of a checkpoint save resumes from the last complete checkpoint.

A child process runs the real engine and blocks inside the save of checkpoint-6, after the
Trainer wrote its weights and optimizer (kill_in_save.py); the test SIGKILLs it there, then resumes
in this process: the torn checkpoint-6 is removed and never trusted, training resumes from
checkpoint-4, and the run finishes all 12 steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import wait_for
from tests.worker.training.factories import records
from tests.worker.training.kill_in_save import config
from worker.training import checkpoints
from worker.training.reporter import RecordingReporter
from worker.training.run import run


@pytest.mark.slow  # about 40 s on the 2-core machine: a child that trains 6 steps, then 8 more here
def test_a_kill_during_a_checkpoint_save_resumes_from_the_last_complete_one(tiny_model_dir, tmp_path):
    output, signal_file, log = tmp_path / "run", tmp_path / "in-save", tmp_path / "child.log"
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.worker.training.kill_in_save", str(tiny_model_dir), str(output),
             str(signal_file), "6"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for(lambda: signal_file.exists() or child.poll() is not None, 180,
                 "the child to reach the save of checkpoint-6", log=log)
        assert child.poll() is None, log.read_text()[-3000:]
        torn = Path(signal_file.read_text())
        assert torn.name == "checkpoint-6"
        written = {p.name for p in torn.iterdir()}
        assert "adapter_model.safetensors" in written and "optimizer.pt" in written  # half-way
        assert checkpoints.METADATA not in written
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert not checkpoints.is_complete(torn)
    assert [p.name for p in checkpoints.directories(torn.parent)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]

    reporter = RecordingReporter()
    resumed = run(config(str(tiny_model_dir)), records(48), None, output, reporter, resume_from=True)

    assert any("Removed checkpoint-6" in line for line in reporter.lines), reporter.lines
    assert any("Resuming from" in line and "checkpoint-4" in line for line in reporter.lines)
    assert resumed.status == "completed" and resumed.global_step == 12
    assert sorted(dict(reporter.series("loss"))) == list(range(5, 13))
    assert all(checkpoints.is_complete(p) for p in checkpoints.directories(torn.parent))
