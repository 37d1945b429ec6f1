"""Faster CPU kernels for the same fp32 arithmetic: oneDNN linear layers, cheaper dropout masks.

Both are swaps of a module's class (same parameters, same state dict, same results up to the
summation order), made by `cpu_speedup.speed_up_for_cpu(model)` after the adapters are on.

**oneDNN linears.** PyTorch's x86 build multiplies fp32 matrices with MKL, and MKL runs its AVX2
code on AMD CPUs, even those with AVX-512 (the development machine's Zen 5). oneDNN, also inside
PyTorch, picks its kernels by CPU feature. On that machine, for the shapes of a 135M model's
training step (512-2048 rows x 576 x 576..1536, and the 49,152-wide output head) oneDNN ran at
~2x MKL's GFLOP/s, forward, input gradient and weight gradient alike, and single rows
(generation) were no slower. Plain `nn.Linear` modules (PEFT's base layers and adapters included;
bitsandbytes' 4/8-bit subclasses left alone) become `OneDNNLinear`, only where a short probe
measures oneDNN faster than the default BLAS on this machine, so CPUs on which MKL is already
fast (Intel) keep it.

**Fast dropout.** The CPU `bernoulli_` behind `nn.Dropout` draws one number from the (serial)
mt19937 generator per element; with the matrix multiplies fast, LoRA's dropout on the q/k/v/o
inputs took ~11% of a step. `keep_mask` draws only the gaps between dropped elements (p = 0.05:
one uniform per 20 elements) from the same generator, so runs are seeded and resumed like any
other (the Trainer saves and restores the torch generator).
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

# A probe shape typical of a small model's micro-batch: rows x hidden -> MLP width.
_PROBE = (512, 576, 1536)
MIN_GAIN = 1.15  # below this the swap is not worth a second code path
_GAPS_UP_TO = 0.15  # dropout rates up to this draw the gaps between dropped elements


def fp32_cpu(x: torch.Tensor) -> bool:
    return x.dtype is torch.float32 and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")


# -- oneDNN linears ---------------------------------------------------------------------------

def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def weight_grad(grad_rows: torch.Tensor, input_rows: torch.Tensor) -> torch.Tensor:
    """grad_rows^T @ input_rows ([N, K]), in the orientation oneDNN computes fastest.

    oneDNN is slow when the product's last dimension is narrow (a LoRA B matrix: 576 x 16 took
    ~4x longer than its transpose), so the narrow side goes first and the result is transposed.
    """
    if input_rows.shape[1] >= grad_rows.shape[1]:
        return onednn_linear(grad_rows.t(), input_rows.t())
    return onednn_linear(input_rows.t(), grad_rows.t()).t().contiguous()


def rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


class _OneDNNLinearFn(torch.autograd.Function):
    """y = x W^T + b with all three products (forward, input and weight gradients) in oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        ctx.has_bias = bias is not None
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_linear(grad, weight.t())  # oneDNN reads the transposed view in place
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad(rows(grad), rows(x))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows(grad).sum(0)
        return grad_x, grad_w, grad_b


class OneDNNLinear(nn.Linear):
    """nn.Linear whose fp32 CPU products go through oneDNN; anything else takes F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fp32_cpu(x) and self.weight.dtype is torch.float32:
            return _OneDNNLinearFn.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def _best_seconds(fns, rounds: int = 8) -> list[float]:
    """Best time of each function, called in alternation so a passing load hits them alike."""
    for fn in fns:
        fn()
        fn()  # warm up: oneDNN builds its kernel on first use, MKL sizes its buffers
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


@lru_cache(maxsize=1)
def onednn_speedup() -> float:
    """How many times faster oneDNN multiplies fp32 matrices than the default BLAS here (0: unavailable).

    Measured once per process on a typical shape, in ~0.1 s.
    """
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or not hasattr(ops, "_linear_pointwise"):
        return 0.0
    rows, inner, outer = _PROBE
    generator = torch.Generator().manual_seed(0)  # leaves the global generator (dropout, data order) alone
    x = torch.randn(rows, inner, generator=generator)
    weight = torch.randn(outer, inner, generator=generator)
    try:
        onednn, default = _best_seconds([lambda: onednn_linear(x, weight), lambda: F.linear(x, weight)])
    except RuntimeError:  # a build whose oneDNN lacks the op for this CPU
        return 0.0
    return default / onednn


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """F.linear without bias, through oneDNN where OneDNNLinear would use it."""
    if fp32_cpu(x) and weight.dtype is torch.float32 and onednn_speedup() >= MIN_GAIN:
        return onednn_linear(x, weight)
    return F.linear(x, weight)


# -- lane dropout -----------------------------------------------------------------------------

def keep_mask(shape: torch.Size, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A dropout mask of 0s and 1s (uint8): each element 0 with probability p, independently.

    Instead of one random number per element, it draws where the dropped elements are: the
    number of kept elements before the next dropped one is geometric, floor(log(1 - u) /
    log(1 - p)) for a uniform u, so a mask with p = 0.05 costs ~n/20 uniforms, a logarithm
    each and one fill. Exact Bernoulli(p) up to the float32 resolution of u. Above p = 0.15 the
    gaps cost more than one draw per element (p = 0.3: 1.2 ms against 0.6 for a 4 x 161 x 576
    mask), so torch's own Bernoulli draw makes the mask.

    uint8, not bool: an fp32 tensor times a uint8 one runs as fast as two fp32 tensors here, a
    boolean mask (or masked_fill) 2-4x slower; and it is a quarter of an fp32 mask's memory.
    The caller scales the kept elements by 1 / (1 - p), where it costs least.
    """
    if p > _GAPS_UP_TO:
        return torch.empty(shape, dtype=torch.uint8).bernoulli_(1 - p, generator=generator)
    count = shape.numel()
    mask = torch.ones(count, dtype=torch.uint8)
    per_log = 1.0 / math.log1p(-p)
    start = 0  # the first position not decided yet
    while start < count:
        expected = (count - start) * p
        draws = int(expected + 6 * math.sqrt(expected * (1 - p)) + 16)  # almost always enough at once
        kept_before = torch.rand(draws, generator=generator).neg_().log1p_().mul_(per_log).floor_()
        dropped = kept_before.double().cumsum_(0).add_(torch.arange(start, start + draws, dtype=torch.float64))
        last = float(dropped[-1])
        mask.index_fill_(0, dropped[dropped < count].long(), 0)
        start = int(last) + 1
    return mask.view(shape)


class FastDropout(nn.Dropout):
    """nn.Dropout whose fp32 CPU training masks come from `keep_mask` (same distribution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or self.inplace or not fp32_cpu(x):
            return super().forward(x)
        return x * keep_mask(x.shape, self.p) * (1.0 / (1.0 - self.p))  # autograd keeps the uint8 mask
