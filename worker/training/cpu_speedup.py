"""Swap a model's fp32 CPU layers for the faster kernels of `cpu_kernels` and `cpu_lora`.

Called once at each load site after the adapters are on (training, evaluation, A/B answers,
the inference process); layers in another dtype or on another device are left alone.
"""

from __future__ import annotations

import torch
from torch import nn

from worker.training.cpu_kernels import MIN_GAIN, FastDropout, OneDNNLinear, onednn_speedup
from worker.training.cpu_lora import fuse_lora_layers


def speed_up_for_cpu(model: nn.Module) -> list[str]:
    """Swap the model's fp32 CPU layers for the faster kernels; what changed, in words."""
    linears = [
        m for m in model.modules()
        if type(m) is nn.Linear and m.weight.dtype is torch.float32 and m.weight.device.type == "cpu"
    ]
    dropouts = [m for m in model.modules() if type(m) is nn.Dropout and 0 < m.p < 1 and not m.inplace]
    changes = []
    if linears and (speedup := onednn_speedup()) >= MIN_GAIN:
        for module in linears:
            module.__class__ = OneDNNLinear
        changes.append(f"fp32 matrix multiplies of {len(linears)} linear layers through oneDNN "
                       f"({speedup:.1f}x the default BLAS on this CPU)")
        if fused := fuse_lora_layers(model):
            changes.append(f"{fused} LoRA layers computed as one function each")
    if dropouts:
        for module in dropouts:
            module.__class__ = FastDropout
        changes.append(f"dropout masks of {len(dropouts)} layers drawn by gaps between dropped elements")
    return changes
