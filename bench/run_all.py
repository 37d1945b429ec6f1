"""Every benchmark, one after the other, each in its own process (what `make bench` runs).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/run_all.py [--quick] [--with-style] [--only NAME ...]

Each benchmark prints its own figures against its baseline and goal; this script adds a line per
benchmark with its exit status and wall time, and exits non-zero if any of them failed.
--quick runs the smaller variants (a 64 MB file instead of 1 GB, fewer repeats and steps).
--with-style adds the brand-voice adoption run on the built-in model (about ten minutes on a CPU).
bench/pages.py needs PostgreSQL (STUDIO_TEST_POSTGRES_URL or its --postgres default).
bench/soak.py needs Locust; it soaks a whole `studio up` for 10 minutes (1 with --quick), plus
about two minutes of set-up.
bench/gpu.py measures LoRA, QLoRA and full fine-tuning of a 1B model on a CUDA device; without one
it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, --quick arguments)
    "dataset_validation": ([], ["--size-mb", "64"]),
    "train_throughput": ([], ["--steps", "2", "--rounds", "1"]),
    "shared_prefix": ([], ["--rounds", "1"]),
    "run_overhead": ([], ["--steps", "40"]),
    "distributed": ([], ["--steps", "3", "--rounds", "1", "--methods", "lora"]),
    "pages": ([], ["--repeat", "10"]),
    "soak": ([], ["--minutes", "1"]),
    "style_adoption": ([], ["--budget-s", "120", "--limit-s", "180"]),
    "gpu": ([], ["--steps", "6", "--skip", "2"]),
}


def run(command: list[str], env: dict[str, str]) -> int:
    """The benchmark's exit status. On Ctrl-C the benchmark (in the same process group) gets it
    too: it is given time to stop what it started (bench/soak.py stops a whole studio) before
    it is killed."""
    proc = subprocess.Popen(command, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the studio's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="smaller variants of each benchmark")
    parser.add_argument("--with-style", action="store_true", help="also run bench/style_adoption.py")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    names = args.only or [n for n in BENCHMARKS if n != "style_adoption" or args.with_style]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    outcomes = []
    for name in names:
        full, quick = BENCHMARKS[name]
        command = [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = run(command, env)
        outcomes.append((name, code, time.monotonic() - started))
    print("\n=== summary")
    for name, code, seconds in outcomes:
        print(f"{name:20s} {'ok' if code == 0 else f'FAILED (exit {code})':16s} {seconds:7.1f}s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
