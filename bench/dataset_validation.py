"""Benchmark: validate a large generated chat JSONL file and compute its statistics.

Run it with:

    .venv/bin/python bench/dataset_validation.py                # 1 GB (1024 MB)
    .venv/bin/python bench/dataset_validation.py --size-mb 64   # quicker
    .venv/bin/python bench/dataset_validation.py --write        # also write normalised records
    .venv/bin/python bench/dataset_validation.py --scale 0.1    # short records (~200 bytes)

It writes the file into a temporary directory (deleted afterwards), validates it without
tokenization (lengths in characters), and prints the throughput in MB/s (1 MB = 10^6 bytes),
the ratio to a baseline that only parses each line with orjson (same process, same file),
and the peak memory of the process (resident set size from getrusage; the generator runs
first but streams, so it stays small). Goals: >= 50 MB/s and < 300 MB.

Near duplicates (MinHash LSH) and personal data are not part of validation: they run as a
separate background step after it (``studio.scan_dataset``, datacheck.cleaning.scan) on the
normalised records. The bench times that step too, on the first ``--scan-mb`` MB of records
(default 32; 0 skips it), and prints its own MB/s beside validation's.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datacheck import validate_dataset  # noqa: E402
from datacheck.cleaning import scan  # noqa: E402

_WORDS = ("order delivery refund invoice account password shipping parcel warranty store "
          "customer please thanks help question answer product return exchange size colour "
          "payment card bank address email phone week day hour the a to of and is in for "
          "you we our your with on that this it be can will have not are was").split()


def _text_pool(rng: random.Random, size: int = 1 << 20) -> str:
    words = rng.choices(_WORDS, k=size // 5)
    return " ".join(words)[:size]


def _record(rng: random.Random, pool: str, i: int, scale: float = 1.0) -> bytes:
    def text(low: int, high: int) -> str:
        n = rng.randint(int(low * scale), int(high * scale))
        start = rng.randrange(len(pool) - n)
        return pool[start : start + n]

    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": "You are a helpful support agent. " + text(40, 160)})
    messages.append({"role": "user", "content": f"Ticket {i}: " + text(40, 600)})
    messages.append({"role": "assistant", "content": text(80, 1400)})
    if rng.random() < 0.15:
        messages.append({"role": "user", "content": text(20, 300)})
        messages.append({"role": "assistant", "content": text(40, 800)})
    return orjson.dumps({"messages": messages})


def generate(path: Path, size_mb: int, seed: int = 0, scale: float = 1.0) -> int:
    """Write chat records until the file reaches ``size_mb`` MiB; returns the record count.
    ``scale`` multiplies the text lengths (0.1 gives short records of about 200 bytes)."""
    rng = random.Random(seed)
    pool = _text_pool(rng)
    target, written, count = size_mb * 1024 * 1024, 0, 0
    with path.open("wb", buffering=1 << 20) as f:
        while written < target:
            batch = b"\n".join(_record(rng, pool, count + k, scale) for k in range(1000)) + b"\n"
            f.write(batch)
            written += len(batch)
            count += 1000
    return count


def _parse_only(path: Path) -> float:
    """Seconds to read the file and parse every line with orjson: the floor to compare to."""
    started = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - started


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--write", action="store_true", help="also write normalised records")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="text length factor: 1 gives ~1.3 KB records, 0.1 ~200 bytes")
    parser.add_argument("--scan-mb", type=int, default=32,
                        help="MB of records the near-duplicate/personal-data scan is timed on (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        started = time.perf_counter()
        records = generate(path, args.size_mb, scale=args.scale)
        size = path.stat().st_size
        print(f"generated {size / 1e6:,.0f} MB, {records:,} chat records "
              f"({size / records:,.0f} bytes each) in {time.perf_counter() - started:.1f} s")
        rss_before = _peak_rss_mb()
        started = time.perf_counter()
        with path.open("rb") as f:
            if args.write:
                train_path, eval_path = Path(tmp) / "train.jsonl", Path(tmp) / "eval.jsonl"
                with train_path.open("wb") as train, eval_path.open("wb") as ev:
                    report = validate_dataset(f, train_out=train, eval_out=ev)
            else:
                report = validate_dataset(f)
        elapsed = time.perf_counter() - started
        baseline = _parse_only(path)
        scanned = _scan(path, Path(tmp) / "scan.jsonl", args.scan_mb) if args.scan_mb else None
    stats = report.stats
    print(f"status {report.status}: {report.counts.examples:,} examples, "
          f"{len(report.warnings)} warnings, {stats.duplicates if stats else 0} duplicates, "
          f"language {stats.language if stats else None}")
    print(f"validation + statistics: {elapsed:.1f} s, {size / 1e6 / elapsed:,.1f} MB/s "
          f"({size / 2**20 / elapsed:,.1f} MiB/s)")
    print(f"baseline (only orjson.loads of each line): {baseline:.1f} s, "
          f"{size / 1e6 / baseline:,.1f} MB/s; validation takes {elapsed / baseline:.1f}x that")
    print(f"peak RSS: {_peak_rss_mb():,.0f} MB (before validation: {rss_before:,.0f} MB)")
    if scanned is not None:
        scan_size, seconds, result = scanned
        nd = result["near_duplicates"]
        print(f"separate step, near duplicates + personal data on the first {scan_size / 1e6:,.0f} MB "
              f"({result['train_examples']:,} records): {seconds:.1f} s, {scan_size / 1e6 / seconds:,.1f} MB/s "
              f"({elapsed / size * scan_size / seconds:.2f}x validation's speed); {nd['extra']:,} near "
              f"duplicates, {result['personal_total']:,} personal data found")


def _scan(path: Path, part: Path, size_mb: int) -> tuple[int, float, dict]:
    """Time the cleaning scan on the first ``size_mb`` MB of records (the file is already in
    the normalised {"messages": [...]} form)."""
    limit, size = size_mb * 10**6, 0
    with path.open("rb") as f, part.open("wb") as out:
        for line in f:
            if size >= limit:
                break
            out.write(line)
            size += len(line)
    started = time.perf_counter()
    with part.open("rb") as f:
        result = scan(f)
    return size, time.perf_counter() - started, result


if __name__ == "__main__":
    main()
