"""A training run that blocks inside one checkpoint save, to be SIGKILLed there (used by
test_checkpoint_kill.py):

    python -m tests.worker.training.kill_in_save MODEL_DIR OUTPUT_DIR SIGNAL_FILE STEP

It runs the real engine (the resume tests' config: 12 steps, a checkpoint every 2). In the save
of checkpoint-STEP, once the Trainer has written the weights, the optimizer and the scheduler and
before its RNG state and trainer state (and before the studio seals the checkpoint), it writes
the checkpoint's path to SIGNAL_FILE and sleeps until it is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from transformers import Trainer

from tests.worker.training.factories import records, tiny_config
from worker.training.reporter import RecordingReporter
from worker.training.run import run


def config(model_dir: str):
    return tiny_config(Path(model_dir), lora_dropout=0.1, max_steps=None, epochs=2, save_strategy="steps",
                       save_steps=2, scheduler="cosine", warmup=0.2, learning_rate=1e-2)


def main(model_dir: str, output_dir: str, signal_file: str, step: str) -> None:
    save_rng_state = Trainer._save_rng_state

    def blocking(self, checkpoint_dir: str) -> None:  # noqa: ANN001
        if self.state.global_step == int(step):
            Path(signal_file).write_text(checkpoint_dir)
            time.sleep(600)
        save_rng_state(self, checkpoint_dir)

    Trainer._save_rng_state = blocking
    run(config(model_dir), records(48), None, output_dir, RecordingReporter())


if __name__ == "__main__":
    main(*sys.argv[1:5])
