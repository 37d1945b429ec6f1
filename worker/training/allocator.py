"""Keeps the C allocator from handing training memory back to the system after every step.

On Linux, glibc serves large blocks (activations, gradients) with mmap and returns them with
munmap as soon as they are freed, and trims the heap top past 128 KiB; every step then pays
page faults to map and zero the same memory again. A long-lived process whose early work grew
the heap escapes this by luck, a fresh worker does not: the same 120-step run took 22.4 s in a
fresh process against 19.6 s in a warm one (bench/run_overhead.py's model, 2-core CPU). With
blocks up to 32 MiB kept on the heap and trimming only past 1 GiB it took 20.3 s.

`tune()` is process-wide and idempotent; it does nothing where glibc's mallopt is missing
(macOS, musl), and the cost is memory that stays mapped while the process lives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024**2  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1024**3

_tuned: bool | None = None


def tune() -> bool:
    """Returns whether the allocator was tuned (now or before)."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def trim() -> bool:
    """Hands the heap's free memory back to the system (glibc's malloc_trim): after an attempt that
    ran out of memory, what `tune()` kept mapped for speed must not be missing from the retry."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes, malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(malloc_trim(0))
