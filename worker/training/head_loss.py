"""Cross-entropy through the output head, a chunk of rows at a time, never holding all the logits.

`head_cross_entropy(hidden, weight, labels)` equals
`F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum")`, but projects
`rows` positions at a time onto the vocabulary and turns each chunk of logits into its gradient
(softmax minus one-hot) on the spot, keeping only the gradients of the hidden states (and of the
head, when it trains) for the backward pass: the technique of Liger Kernel's fused linear
cross-entropy, in plain PyTorch.

Why: with a 49,152-token vocabulary the logits of one CPU micro-batch (~330 answer positions)
are 65 MB in fp32, and the usual path writes, normalises, zero-fills and reads them again in
full. Blocks that size are mapped fresh from the kernel on every allocation (glibc serves
anything above 32 MiB with mmap), so each pass paid page faults: log-softmax, its backward and
the gradient's zero-fill took ~18% of a LoRA step of the built-in model. A chunk of <= 16 MB
stays on the heap and largely in the cache. Peak memory for the loss drops from
answer_positions x vocab x 8 bytes to one chunk (plus, when the head trains, its fp32 gradient,
accumulated over the chunks and held until the backward pass).

The backward work is done in the forward call, so evaluation (no gradients wanted) takes a
separate loop that computes only the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from planner.estimate import head_chunk_rows
from worker.training.cpu_kernels import linear


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, rows):
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], rows):
            h, y = hidden[start : start + rows], labels[start : start + rows]
            log_probs = torch.log_softmax(linear(h, weight).float(), dim=-1)
            picked = torch.arange(len(y), device=log_probs.device), y
            total -= log_probs[picked].sum()
            # d(sum of losses)/d(logits) = softmax - one-hot, computed in place over the chunk
            grad = log_probs.exp_()
            grad[picked] -= 1
            grad = grad.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + rows] = linear(grad, weight.t())
            if grad_weight is not None:
                grad_weight += linear(grad.t(), h.t()).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = float(grad_total)  # a Python float keeps the scale exact for bf16/fp16 gradients
        return (
            grad_hidden * scale if grad_hidden is not None else None,
            grad_weight.mul_(scale).to(ctx.weight_dtype) if grad_weight is not None else None,
            None,
            None,
        )


def head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                       rows: int | None = None) -> torch.Tensor:
    """Summed cross-entropy of F.linear(hidden, weight) against labels (hidden: [N, H], labels: [N])."""
    rows = rows or head_chunk_rows(weight.shape[0], hidden.device.type)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _HeadCrossEntropy.apply(hidden, weight, labels, rows)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], rows):
        logits = linear(hidden[start : start + rows], weight).float()
        total += F.cross_entropy(logits, labels[start : start + rows], reduction="sum")
    return total
