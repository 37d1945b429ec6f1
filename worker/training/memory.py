"""Telling an out-of-memory failure from other errors, and giving the memory back before a retry.

What each allocator raises when it runs out:
- CUDA: `torch.OutOfMemoryError` ("CUDA out of memory. Tried to allocate ...", a RuntimeError);
- the CPU allocator (c10 DefaultCPUAllocator): a plain RuntimeError "... DefaultCPUAllocator:
  can't allocate memory: you tried to allocate N bytes. Error code 12 (Cannot allocate memory)";
- Python and NumPy: MemoryError; C++ code inside torch: RuntimeError "std::bad_alloc".
A process killed by the kernel's OOM killer raises nothing: the reconciler sees a lost worker.
No torch import at module level: the task edge classifies failures before torch is loaded.
"""

from __future__ import annotations

import gc

MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc",
           "failed to allocate memory")


def is_out_of_memory(exc: BaseException | None) -> bool:
    """True for an allocation failure, also when a library wrapped it in another exception."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            return True
        if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in MARKERS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def release() -> None:
    """Frees what a failed attempt left (call it outside the `except` block, once its traceback
    and the trainer it held are gone), so the retry starts from an empty device."""
    gc.collect()
    from worker.training import allocator

    allocator.trim()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
