"""Greedy answers of a model to conversations: the end-of-run evaluation, A/B answers and the
benches use this one function, so "base vs fine-tuned" answers match the trainer's output."""

from __future__ import annotations

import torch

from planner.tools import template_messages


@torch.no_grad()
def generate_answers(
    model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 128, batch_size: int = 8,
    tools: list[list[dict] | None] | None = None,
) -> list[str]:
    """Greedy answers (one per conversation) to conversations that end with a user turn (or a tool
    result). ``tools``: each conversation's tool definitions (None: no tools), rendered by the template."""
    tools = tools or [None] * len(conversations)
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # generation continues from the right end of each row
    device = next(model.parameters()).device
    answers = []
    try:
        for start in range(0, len(conversations), batch_size):
            prompts = [
                tokenizer.apply_chat_template(template_messages(messages), tools=defs, add_generation_prompt=True,
                                              tokenize=False) if defs else
                tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                for messages, defs in zip(conversations[start : start + batch_size], tools[start : start + batch_size])
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
