"""bench/soak.py is only run by hand or by `make bench` (minutes long); here only what can go wrong
before it starts: its arguments and their bounds, and that it imports without Locust's gevent
patching leaking into the importing process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_soak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_defaults_are_bounded_and_loopback_only():
    soak = _load()
    args = soak.parse_args([])
    assert (args.minutes, args.users) == (10.0, 6)
    assert soak.HOST == "127.0.0.1"
    assert "gevent.monkey" not in sys.modules or not __import__("gevent.monkey").monkey.is_module_patched("socket")


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["--minutes", "2000"], ["--users", "1"], ["--users", "50"]])
def test_out_of_bounds_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _load().parse_args(argv)
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_help_runs_as_a_script():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--minutes" in done.stdout and "--users" in done.stdout


def test_p95_and_rss():
    soak = _load()
    assert soak.p95(list(range(1, 101))) == 95
    assert soak.rss_kib(__import__("os").getpid()) > 1000
