"""Losses, eval loss / perplexity, and greedy generation.

`answer_loss_sum` is the one loss of the engine: the training loop and evaluation both use
it. It projects only the positions whose next token is a trained answer token onto the
vocabulary (`logits_to_keep` as a boolean mask), so the (large) output head never runs on
prompt tokens. More metrics (BLEU, ROUGE) plug into `evaluate_model` later.
"""

from __future__ import annotations

import inspect
import math
from typing import Iterable

import torch
import torch.nn.functional as F

from worker.training.data import IGNORE_INDEX


def _accepts_logits_mask(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def answer_loss_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over trained answer tokens, and how many there were."""
    shift_labels = batch["shift_labels"]
    keep = shift_labels != IGNORE_INDEX
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    count = int(keep.sum())
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
