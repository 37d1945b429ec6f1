"""The worker's task edge training one claimed run under an address-space limit (used by test_oom.py):

    python -m tests.worker.training.oom_child RUN_ID LEASE HEADROOM_MB

The studio's settings come from the environment (STUDIO_DATABASE_URL, STUDIO_DATA_DIR...). Torch,
its thread pool and the libraries are loaded first; then RLIMIT_AS is set to what the process has
mapped plus HEADROOM_MB, so the run's own allocations (activations of a large micro-batch) hit a
real allocation failure in torch's CPU allocator, not a hand-raised exception.

RLIMIT_AS counts address space, not memory in use: blocks that `allocator.tune()` keeps on the heap
for speed stay mapped after they are freed (malloc_trim gives their pages back, not their
addresses), and the retry's model file could no longer be mapped although the memory is free. So
here large blocks are mapped and unmapped one by one (glibc's default, with the threshold fixed),
as memory is counted when the kernel's OOM killer or a cgroup limit decides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from pathlib import Path


def mapped_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def main(run_id: str, lease: str, headroom_mb: str) -> None:
    import torch
    import transformers.trainer  # noqa: F401  (its imports would count against the limit otherwise)

    from worker.tasks.runs import run_training
    from worker.training import allocator

    allocator._tuned = False  # tune() then leaves the allocator alone
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt(allocator.M_MMAP_THRESHOLD, 128 * 1024)

    torch.set_num_threads(1)
    torch.ones(256, 256) @ torch.ones(256, 256)  # the intra-op pool exists before the limit
    limit = mapped_bytes() + int(headroom_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    run_training(int(run_id), lease)


if __name__ == "__main__":
    main(*sys.argv[1:4])
