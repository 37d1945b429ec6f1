"""PEFT's LoRA linear layer as one autograd function on fp32 CPUs: same result, a third of the work around it.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as five autograd nodes, each
with its own output tensor and saved inputs: the dropped input is kept once per adapter, so the
q, k and v adapters of a layer keep three copies of the same hidden state. With the matrix
multiplies in oneDNN, that bookkeeping cost a LoRA step of the built-in model about as much as
the adapters' arithmetic itself. `FusedLoraLinear` is a subclass of PEFT's `lora.Linear` (same
parameters, state dict, adapter files, merging) whose forward runs one function:

    forward:  k = keep mask (0/1), d = 1 / (1 - p);  down = d (x * k) A^T;  y = x W^T + b + s down B^T
    backward: g_down = s g B;  dB = s g^T down;  dA = d g_down^T (x * k);  dx = g W + d (g_down A) * k

keeping x (one tensor, shared by the adapters that read it), the uint8 mask and the rank-r
`down`; the dropped input is recomputed in the backward pass, and the dropout scale is applied
to rank-r tensors only. Anything this does not cover
(several active adapters, DoRA and other variants, merged weights, adapter bias, mixed batches,
another dtype or device, autocast) goes through PEFT's own forward.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn

from worker.training.cpu_kernels import (
    FastDropout,
    OneDNNLinear,
    fp32_cpu,
    onednn_linear,
    keep_mask,
    rows,
    weight_grad,
)

_PLAIN_LINEAR = (nn.Linear, OneDNNLinear)
_PLAIN_DROPOUT = (nn.Dropout, FastDropout)


class _LoraLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, p):
        keep = keep_mask(x.shape, p) if p else None
        drop_scale = 1.0 / (1.0 - p)
        down = onednn_linear(x if keep is None else x * keep, lora_a)
        if keep is not None:
            down.mul_(drop_scale)  # on the rank-r product, not the full-width input
        out = onednn_linear(x, weight, bias)
        out.add_(onednn_linear(down, lora_b), alpha=scaling)
        ctx.save_for_backward(x, keep, down, weight, lora_a, lora_b)
        ctx.scaling, ctx.drop_scale, ctx.has_bias = scaling, drop_scale, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, keep, down, weight, lora_a, lora_b = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_x = grad_w = grad_bias = grad_a = grad_b = None
        grad_down = onednn_linear(grad, lora_b.t()).mul_(ctx.scaling)
        if needs[4]:
            grad_b = weight_grad(rows(grad), rows(down)).mul_(ctx.scaling)
        if keep is not None:
            grad_down.mul_(ctx.drop_scale)  # d(down)/d(x * keep) carries the dropout scale
        if needs[3]:
            grad_a = weight_grad(rows(grad_down), rows(x if keep is None else x * keep))
        if needs[0]:
            grad_x = onednn_linear(grad, weight.t())
            lora_part = onednn_linear(grad_down, lora_a.t())
            grad_x += lora_part if keep is None else lora_part.mul_(keep)
        if needs[1]:
            grad_w = weight_grad(rows(grad), rows(x))
        if ctx.has_bias and needs[2]:
            grad_bias = rows(grad).sum(0)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None, None


class FusedLoraLinear(LoraLinear):
    """PEFT's lora.Linear whose plain single-adapter fp32 CPU case runs as one function."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        plan = None if args or kwargs else self._plan(x)
        if plan is None:
            return super().forward(x, *args, **kwargs)
        lora_a, lora_b, scaling, p = plan
        base = self.base_layer
        return _LoraLinearFn.apply(x, base.weight, base.bias, lora_a.weight, lora_b.weight, scaling, p)

    def _plan(self, x: torch.Tensor):
        """(A, B, scaling, dropout p) when the fused function computes exactly PEFT's forward."""
        if self.disable_adapters or self.merged or not fp32_cpu(x):
            return None
        active = [name for name in self.active_adapters if name in self.lora_A]
        if len(active) != 1 or active[0] in self.lora_variant:
            return None
        name = active[0]
        lora_a, lora_b, dropout = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
        layers = (self.base_layer, lora_a, lora_b)
        if any(type(m) not in _PLAIN_LINEAR or m.weight.dtype is not torch.float32 for m in layers):
            return None
        if lora_a.bias is not None or lora_b.bias is not None:
            return None
        if isinstance(dropout, nn.Identity):
            p = 0.0
        elif type(dropout) in _PLAIN_DROPOUT and not dropout.inplace and 0 <= dropout.p < 1:
            p = dropout.p if dropout.training else 0.0
        else:
            return None
        return lora_a, lora_b, float(self.scaling[name]), p


def fuse_lora_layers(model: nn.Module) -> int:
    """Turn the model's PEFT lora.Linear layers into FusedLoraLinear; how many."""
    layers = [m for m in model.modules() if type(m) is LoraLinear]
    for module in layers:
        module.__class__ = FusedLoraLinear
    return len(layers)
