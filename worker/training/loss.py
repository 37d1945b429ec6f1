"""The engine's loss: training steps and the eval loss / perplexity both use it.

`answer_loss_sum` is the one loss of the engine: the training loop and evaluation both use
it. It projects only the positions whose next token is a trained answer token onto the
vocabulary, so the (large) output head never runs on prompt tokens: for architectures whose
logits are plain lm_head outputs it takes the decoder's hidden states there and runs the head
chunk by chunk (`head_loss.head_cross_entropy`), for the others it asks the model for those
logits only (`logits_to_keep` as a boolean mask).

Shared prompt prefix: when every row of a micro-batch starts with the same tokens before its
first trained token (a dataset's common system prompt, or the one a chat template adds), those
tokens give the same hidden states, keys and values in every row, since attention is causal.
On that decoder path the first row runs whole and the others continue from its prefix keys and
values (a KV cache that keeps its autograd graph; the backward pass sums the rows' gradients into
the one prefix). The loss and gradients are the ones of the full rows, up to
summation order; LoRA dropout draws one mask for the prefix instead of one per row.
"""

from __future__ import annotations

import inspect
import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from worker.training.data import IGNORE_INDEX
from worker.training.head_loss import head_cross_entropy


# Architectures whose logits are exactly lm_head(last hidden state): no soft-capping or scaling.
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo", "olmo2", "phi3"}


def _causal_lm(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder_and_head(model):
    """(decoder, output head) when the loss may run the head itself, else None."""
    lm = _causal_lm(model)
    if getattr(lm.config, "model_type", None) not in _PLAIN_HEAD or not hasattr(lm, "get_decoder"):
        return None
    head = lm.get_output_embeddings()
    if not isinstance(head, nn.Linear) or head.bias is not None or type(head).__module__.startswith("bitsandbytes"):
        return None  # an adapter or a quantized layer on the head: let the model run it
    return lm.get_decoder(), head


# Splitting a micro-batch into two passes has a cost of its own (smaller matrix products, one more
# trip through every layer): share a prefix of at least this many tokens, and only when the rows
# that skip it skip at least this share of the micro-batch. Measured on the built-in model
# (bench/shared_prefix.py, Zen 4 CPU): a 31-token prefix over rows of ~136 tokens (17% skipped)
# made a step 0.91-1.07x as fast, a 174-token one (47% skipped) 1.46-1.60x.
MIN_SHARED_PREFIX = 8
MIN_SKIPPED_SHARE = 0.1


def _full_attention_only(config) -> bool:
    """No sliding-window layers: a KV cache of such a layer may keep only the window."""
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False
    return not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))


def _can_share_prefix(decoder) -> bool:
    from transformers.modeling_layers import GradientCheckpointingLayer

    config = decoder.config
    # a checkpointed layer drops the KV cache it is given (it would replay its writes)
    checkpointing = any(m.gradient_checkpointing for m in decoder.modules() if isinstance(m, GradientCheckpointingLayer))
    return (not (checkpointing and decoder.training) and _full_attention_only(config)
            and getattr(config, "_attn_implementation", "eager") in ("eager", "sdpa"))


def shared_prefix_length(model, batch: dict) -> int:
    """Leading tokens all rows of the micro-batch share before any trained token; 0 when not worth it.

    Only where the loss runs the head itself (a plain decoder, see `_decoder_and_head`), one row
    per example (not packed), no padding inside the prefix, and at least one token after it.
    """
    input_ids = batch["input_ids"]
    rows, width = input_ids.shape
    if rows < 2 or "position_ids" in batch or not (parts := _decoder_and_head(model)) or not _can_share_prefix(parts[0]):
        return 0
    limit = (input_ids == input_ids[:1]).all(dim=0)
    limit &= ~(batch["shift_labels"] != IGNORE_INDEX).any(dim=0)  # the prefix holds no trained position
    if "attention_mask" in batch:
        limit &= batch["attention_mask"].bool().all(dim=0)
    prefix = min(int(limit.long().cumprod(0).sum()), width - 1)
    if prefix < MIN_SHARED_PREFIX or prefix * (rows - 1) < MIN_SKIPPED_SHARE * real_tokens(batch):
        return 0
    return prefix


def _trained_hidden_sharing_prefix(decoder, inputs: dict, keep, shift_labels, prefix: int):
    """Last hidden states and labels of the trained positions, the shared prefix computed once.

    The first row runs whole, which leaves the prefix's keys and values in the cache; the other
    rows run only past the prefix, reading the first row's prefix keys and values, expanded to
    them. (Running the prefix alone as a first pass measured the same within this CPU's spread.)
    """
    from transformers.cache_utils import DynamicCache

    input_ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    first = int(mask[0].sum()) if mask is not None else input_ids.shape[1]
    cache = DynamicCache(config=decoder.config)
    name = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    row = decoder(input_ids=input_ids[:1, :first], use_cache=True, **{name: cache}).last_hidden_state[0]
    for layer in cache.layers:  # the same keys and values for every other row; their gradients add up
        layer.keys = layer.keys[:, :, :prefix].expand(len(input_ids) - 1, -1, -1, -1)
        layer.values = layer.values[:, :, :prefix].expand(len(input_ids) - 1, -1, -1, -1)
    extra = {"attention_mask": mask[1:]} if mask is not None else {}
    rest = decoder(input_ids=input_ids[1:, prefix:], use_cache=True, **{name: cache}, **extra).last_hidden_state
    keep_row, keep_rest = keep[0, :first], keep[1:, prefix:]
    hidden = torch.cat([row[keep_row], rest[keep_rest]])
    return hidden, torch.cat([shift_labels[0, :first][keep_row], shift_labels[1:, prefix:][keep_rest]])


def _accepts_logits_mask(model) -> bool:
    return "logits_to_keep" in inspect.signature(_causal_lm(model).forward).parameters


def answer_loss_sum(model, batch: dict, prefix: int | None = None) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over trained answer tokens, and how many there were.

    `prefix`: the shared prefix to run once (`shared_prefix_length`, computed here when None; 0: none).
    """
    shift_labels = batch["shift_labels"]
    keep = shift_labels != IGNORE_INDEX
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    count = int(keep.sum())
    if parts := _decoder_and_head(model):
        decoder, head = parts
        prefix = shared_prefix_length(model, batch) if prefix is None else prefix
        if prefix:
            hidden, labels = _trained_hidden_sharing_prefix(decoder, inputs, keep, shift_labels, prefix)
        else:
            hidden, labels = decoder(**inputs, use_cache=False).last_hidden_state[keep], shift_labels[keep]
        return head_cross_entropy(hidden, head.weight, labels), count
    if _accepts_logits_mask(model):
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
        logits = logits.reshape(-1, logits.shape[-1])
    else:
        logits = model(**inputs, use_cache=False).logits[keep]
    loss = F.cross_entropy(logits.float(), shift_labels[keep], reduction="sum")
    return loss, count


def real_tokens(batch: dict) -> int:
    """Tokens that are not padding."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())


@torch.no_grad()
def evaluate_loss(model, batches: Iterable[dict]) -> dict[str, float]:
    """Token-weighted eval loss over answer tokens and its perplexity."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        loss_sum, n = answer_loss_sum(model, batch)
        total += float(loss_sum)
        count += n
    model.train(was_training)
    loss = total / max(count, 1)
    return {"eval_loss": loss, "perplexity": perplexity(loss), "eval_tokens": count}


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
