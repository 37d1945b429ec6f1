"""The faster CPU kernels compute what PyTorch and PEFT compute: same outputs, same gradients.

The swaps are forced here (class by class) rather than left to the probe, so the kernels are
checked on any machine with oneDNN, whether or not they are the faster choice there.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worker.training.cpu_kernels import (
    FastDropout,
    OneDNNLinear,
    keep_mask,
    onednn_speedup,
    weight_grad,
)
from worker.training.cpu_lora import FusedLoraLinear, fuse_lora_layers
from worker.training.cpu_speedup import speed_up_for_cpu
from worker.training.head_loss import head_cross_entropy

pytestmark = pytest.mark.skipif(onednn_speedup() == 0.0, reason="this PyTorch build has no oneDNN")


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max() + 1e-7)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("trains_weight", [True, False])
def test_onednn_linear_matches_nn_linear(bias, trains_weight):
    torch.manual_seed(0)
    plain = nn.Linear(96, 200, bias=bias)
    fast = copy.deepcopy(plain)
    fast.__class__ = OneDNNLinear
    for layer in (plain, fast):
        layer.weight.requires_grad_(trains_weight)
    x = torch.randn(3, 37, 96, requires_grad=True)
    x_fast = x.detach().clone().requires_grad_()
    grad = torch.randn(3, 37, 200)
    out, out_fast = plain(x), fast(x_fast)
    out.backward(grad)
    out_fast.backward(grad)
    assert close(out_fast, out) and close(x_fast.grad, x.grad)
    if trains_weight:
        assert close(fast.weight.grad, plain.weight.grad)
    else:
        assert fast.weight.grad is None
    if bias:
        assert close(fast.bias.grad, plain.bias.grad)
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_onednn_linear_leaves_other_dtypes_and_autocast_to_pytorch():
    fast = nn.Linear(16, 8)
    fast.__class__ = OneDNNLinear
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x).dtype is torch.bfloat16  # F.linear under autocast, as nn.Linear would
    fast.to(torch.float64)
    assert fast(x.double()).dtype is torch.float64


@pytest.mark.parametrize(("outputs", "inputs"), [(576, 16), (16, 576), (64, 64)])
def test_weight_gradient_in_either_orientation(outputs, inputs):
    grad_rows, input_rows = torch.randn(300, outputs), torch.randn(300, inputs)
    result = weight_grad(grad_rows, input_rows)
    assert result.shape == (outputs, inputs) and result.is_contiguous()
    assert close(result, grad_rows.t() @ input_rows)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3])
def test_keep_mask_drops_each_element_with_probability_p(p):
    generator = torch.Generator().manual_seed(0)
    masks = [keep_mask(torch.Size([4, 150, 576]), p, generator) for _ in range(10)]
    assert all(m.dtype is torch.uint8 and m.shape == (4, 150, 576) for m in masks)
    assert torch.cat(masks).unique().tolist() == [0, 1]
    dropped = torch.cat([(m == 0).flatten() for m in masks]).double()
    n = dropped.numel()
    assert abs(dropped.mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # independent elements: neighbours are both dropped p^2 of the time
    both = (dropped[1:] * dropped[:-1]).mean().item()
    assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / n)


def test_keep_mask_is_seeded_by_the_torch_generator():
    torch.manual_seed(7)
    first = keep_mask(torch.Size([1000]), 0.05)
    torch.manual_seed(7)
    assert torch.equal(keep_mask(torch.Size([1000]), 0.05), first)
    assert keep_mask(torch.Size([1]), 0.05).shape == (1,)


def test_fast_dropout_trains_like_dropout_and_is_identity_in_eval():
    layer = FastDropout(p=0.1)
    x = torch.randn(64, 64, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / 0.9) and torch.allclose(x.grad[kept], torch.full_like(x[kept], 1 / 0.9))
    assert (x.grad[~kept] == 0).all()
    layer.eval()
    assert torch.equal(layer(x), x)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.o = nn.Linear(64, 48), nn.Linear(64, 16, bias=False), nn.Linear(48, 64)

    def forward(self, x):
        return self.o(self.q(x)) + self.k(x).sum(-1, keepdim=True)


def lora_pair(dropout: float):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(Tiny(), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q", "k", "o"]))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param, std=0.1)  # B starts at zero: give the adapters something to say
    fused = copy.deepcopy(peft_model)
    for model in (peft_model, fused):  # the same dropout masks for both, drawn in the same order
        for module in model.modules():
            if type(module) is nn.Dropout:
                module.__class__ = FastDropout
    for module in fused.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
    assert fuse_lora_layers(fused) == 3
    return peft_model, fused


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_lora_layer_matches_peft(dropout):
    peft_model, fused = lora_pair(dropout)
    x = torch.randn(3, 11, 64, requires_grad=True)
    x_fused = x.detach().clone().requires_grad_()
    torch.manual_seed(1)
    out = peft_model(x)
    torch.manual_seed(1)
    out_fused = fused(x_fused)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_fused.backward(grad)
    assert close(out_fused, out) and close(x_fused.grad, x.grad)
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    for name, param in fused.named_parameters():
        if param.requires_grad:
            assert close(param.grad, grads[name], rel=1e-4), name
    assert fused.state_dict().keys() == peft_model.state_dict().keys()


def test_fused_lora_layer_falls_back_to_peft_where_it_does_not_apply():
    peft_model, fused = lora_pair(0.0)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        with fused.disable_adapter(), peft_model.disable_adapter():
            assert close(fused(x), peft_model(x))  # the base alone
        peft_model.merge_adapter()
        fused.merge_adapter()
        assert close(fused(x), peft_model(x))  # merged weights, adapters not added twice
    assert isinstance(fused.base_model.model.q, FusedLoraLinear)


def test_speed_up_for_cpu_swaps_only_plain_fp32_layers():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1), nn.Linear(8, 8).double(), nn.Dropout(0.0))
    changes = speed_up_for_cpu(model)
    assert type(model[1]) is FastDropout and type(model[3]) is nn.Dropout and type(model[2]) is nn.Linear
    if onednn_speedup() >= 1.15:
        assert type(model[0]) is OneDNNLinear and "oneDNN" in changes[0]
    else:
        assert type(model[0]) is nn.Linear


@pytest.mark.parametrize("trains_head", [False, True])
def test_chunked_head_loss_matches_cross_entropy(trains_head):
    torch.manual_seed(0)
    hidden = torch.randn(301, 64, requires_grad=True)
    weight = torch.randn(1000, 64, requires_grad=trains_head)
    labels = torch.randint(0, 1000, (301,))
    reference = F.cross_entropy(F.linear(hidden, weight), labels, reduction="sum")
    (reference * 0.37).backward()
    hidden_c, weight_c = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_(trains_head)
    chunked = head_cross_entropy(hidden_c, weight_c, labels, rows=7)  # 43 chunks, the last one short
    (chunked * 0.37).backward()
    assert chunked.item() == pytest.approx(reference.item(), rel=1e-5)
    assert close(hidden_c.grad, hidden.grad)
    if trains_head:
        assert close(weight_c.grad, weight.grad)
    with torch.no_grad():
        assert head_cross_entropy(hidden, weight, labels, rows=50).item() == pytest.approx(reference.item(), rel=1e-5)
