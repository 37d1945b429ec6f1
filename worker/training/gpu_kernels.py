"""Optional GPU kernels: Liger's fused Triton kernels for RMSNorm, RoPE and SwiGLU.

Off unless asked for (``STUDIO_LIGER_KERNELS=true`` for a worker, ``--liger`` for bench/gpu.py),
and then used only where they can run: on a CUDA device with the ``liger-kernel`` package (it
needs Triton, so GPU machines only: ``pip install '.[gpu]'``). They stay off by default until
bench/gpu.py shows a gain on a GPU (docs/training.md, GPU figures). The output head and its loss
stay the engine's own (worker/training/head_loss.py: answer tokens only, a chunk at a time), so
Liger's fused cross-entropy is not used.
"""

from __future__ import annotations

import importlib.util

from torch import nn

# What Liger replaces; the loss stays the engine's.
LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False,
                 "fused_linear_cross_entropy": False}


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def apply_liger(model: nn.Module, device_kind: str, wanted: bool) -> str | None:
    """Patches the model's layers with Liger's kernels when wanted and possible; a line for the
    run's log saying what happened (None when not wanted)."""
    if not wanted:
        return None
    if device_kind != "cuda":
        return "Liger kernels were asked for, but this run trains on the CPU (they need CUDA and Triton): not used."
    if not liger_installed():
        return ("Liger kernels were asked for, but the liger-kernel package is not installed on this worker "
                "(pip install '.[gpu]'): not used.")
    from transformers.integrations.liger import apply_liger_kernel

    apply_liger_kernel(model, dict(LIGER_KERNELS))
    return "Liger kernels: RMSNorm, RoPE and SwiGLU run as fused Triton kernels."
