"""Measure the peak memory of a real full fine-tuning run on the CPU (used by test_estimate).

    python tests/worker/training/measure_peak.py TOKENIZER_DIR WORK_DIR

Builds a ~37M-parameter Llama in a child process (so its construction leaves nothing behind
in this process), then runs the engine for 2 steps and prints one JSON line: the peak
resident memory above what the process held before the run, and the model's shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

SHAPE = dict(hidden=512, layers=4)
ROW_EXAMPLES = 8


def build(tokenizer_dir: str, model_dir: str) -> None:
    from transformers import AutoTokenizer

    from tests.worker.training.factories import build_tiny_model

    build_tiny_model(Path(model_dir), AutoTokenizer.from_pretrained(tokenizer_dir), **SHAPE)


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def main(tokenizer_dir: str, work_dir: str) -> None:
    model_dir = str(Path(work_dir) / "model")
    subprocess.run([sys.executable, __file__, "--build", tokenizer_dir, model_dir], check=True)

    import torch  # noqa: F401  (imported before the baseline is taken)
    from tests.worker.training.factories import records, tiny_config
    from worker.training.modeling import load_tokenizer
    from worker.training.data import tokenize_records
    from planner.presets import read_model_info
    from worker.training.reporter import NullReporter
    from worker.training.run import run

    data = records(24)
    examples, _ = tokenize_records(data, load_tokenizer(model_dir), 128)
    tokens = ROW_EXAMPLES * max(len(e.input_ids) for e in examples)
    config = tiny_config(model_dir, method="full", learning_rate=1e-4, max_steps=2,
                         per_device_batch_size=ROW_EXAMPLES, grad_accum=1)
    baseline = rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    run(config, data, None, Path(work_dir) / "run", NullReporter(), export_merged=False)
    info = read_model_info(model_dir)
    print(json.dumps({
        "peak_mb": rss_mb("VmHWM") - baseline, "tokens": tokens, "parameters": info.parameters,
        "hidden_size": info.hidden_size, "num_layers": info.num_layers, "vocab_size": info.vocab_size,
        "intermediate_size": info.intermediate_size,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "--build":
        build(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2])
