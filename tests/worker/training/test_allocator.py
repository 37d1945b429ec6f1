"""The allocator tuning that keeps a fresh worker from page-faulting its activations every step."""

from __future__ import annotations

import ctypes
import sys

import pytest

from worker.training import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_large_blocks_stay_on_the_heap_after_tuning():
    assert allocator.tune() is True and allocator.tune() is True  # idempotent

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblks  # blocks served by mmap
    block = libc.malloc(8 * 1024**2)  # an 8 MiB activation: mmap'ed by default (threshold 128 KiB)
    assert libc.mallinfo2().hblks == before  # now it comes from the heap and is reused, not re-mapped
    libc.free(block)
