"""Losses, eval loss / perplexity, and greedy generation.

`answer_loss_sum` is the one loss of the engine: the training loop and evaluation both use
it. It projects only the positions whose next token is a trained answer token onto the
vocabulary, so the (large) output head never runs on prompt tokens: for architectures whose
logits are plain lm_head outputs it takes the decoder's hidden states there and runs the head
chunk by chunk (`losses.head_cross_entropy`), for the others it asks the model for those
logits only (`logits_to_keep` as a boolean mask). More metrics (BLEU, ROUGE) plug into
`evaluate_model` later.
"""

from __future__ import annotations

import inspect
import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from worker.training.data import IGNORE_INDEX
from worker.training.losses import head_cross_entropy


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


def _accepts_logits_mask(model) -> bool:
    return "logits_to_keep" in inspect.signature(_causal_lm(model).forward).parameters


def answer_loss_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over trained answer tokens, and how many there were."""
    shift_labels = batch["shift_labels"]
    keep = shift_labels != IGNORE_INDEX
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    count = int(keep.sum())
    if parts := _decoder_and_head(model):
        decoder, head = parts
        hidden = decoder(**inputs, use_cache=False).last_hidden_state[keep]
        return head_cross_entropy(hidden, head.weight, shift_labels[keep]), count
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


def evaluate_model(model, batches: Iterable[dict]) -> dict[str, float]:
    """All evaluation metrics of a trained model (today: loss and perplexity)."""
    return evaluate_loss(model, batches)


@torch.no_grad()
def generate_answers(
    model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 128, batch_size: int = 8
) -> list[str]:
    """Greedy answers (one per conversation) to conversations that end with a user turn."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # generation continues from the right end of each row
    device = next(model.parameters()).device
    answers = []
    try:
        for start in range(0, len(conversations), batch_size):
            prompts = [
                tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                for messages in conversations[start : start + batch_size]
            ]
            encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            for row in output[:, encoded["input_ids"].shape[1]:]:
                answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers
