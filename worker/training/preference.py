"""Preference training (DPO, ORPO) through TRL's trainers, on the engine's path.

A preference record (the studio's normalised form, written by datacheck):
    {"prompt": [{"role": "system"|"user"|"assistant", "content": str}, ...],
     "chosen": [{"role": "assistant", "content": str}],
     "rejected": [{"role": "assistant", "content": str}]}
The prompt ends with a user turn; chosen and rejected are the better and the worse answer to it.

dpo runs trl.DPOTrainer (the reference model is the base model: with adapters, the same model
with its adapters switched off; with full weights, a frozen copy). orpo runs
trl.experimental.orpo.ORPOTrainer (no reference model). Both train LoRA, QLoRA, DoRA or full
weights as the config says, report through the same callback (loss, reward accuracy and margin,
checkpoints, stop), resume from the same checkpoints and save the same outputs as run.py.

`preference_scores` is the held-out measure reported before and after training: on each pair,
the mean log-probability per answer token the model gives the chosen answer minus the one it
gives the rejected answer (per token, so that a longer answer is not worse for its length alone);
accuracy is the share of pairs where the chosen answer wins. It needs no reference model, so the
base model's figures (before) and the trained model's (after) compare directly. DPO's own
eval_reward_accuracy / eval_reward_margin (rewards relative to the base model) are reported too.
"""

from __future__ import annotations

from typing import Any

import torch

from planner.config import TrainingConfig
from worker.training.data import IGNORE_INDEX, DataError, DataReport, Example, tokenize_record

ROLES = ("system", "user", "assistant")


def is_preference_record(record: Any) -> bool:
    return isinstance(record, dict) and "chosen" in record and "rejected" in record


def check_pair(record: Any, index: int) -> tuple[list[dict], str, str]:
    """(prompt messages, chosen text, rejected text) of a normalised record, or DataError."""
    where = f"Pair {index + 1}"
    if not is_preference_record(record) or not isinstance(record.get("prompt"), list):
        raise DataError(f'{where} must be an object with "prompt" (a list of messages), "chosen" and "rejected".')
    prompt = record["prompt"]
    if not prompt or not isinstance(prompt[-1], dict) or prompt[-1].get("role") != "user":
        raise DataError(f"{where}: the prompt must end with a user message.")
    for turn, message in enumerate(prompt, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise DataError(f"{where}, prompt message {turn}: needs a role ({', '.join(ROLES)}) and text content.")
    answers = []
    for key in ("chosen", "rejected"):
        value = record[key]
        if (not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict)
                or value[0].get("role") != "assistant" or not isinstance(value[0].get("content"), str)):
            raise DataError(f"{where}: {key} must be one assistant message.")
        answers.append(value[0]["content"])
    if answers[0] == answers[1]:
        raise DataError(f"{where}: the chosen and rejected answers are the same, so there is nothing to prefer.")
    plain = [{"role": m["role"], "content": m["content"]} for m in prompt]
    return plain, answers[0], answers[1]


def pair_dataset(records: list[dict], tokenizer, max_length: int, label: str):
    """A datasets.Dataset of conversational pairs for TRL, and the data report."""
    from datasets import Dataset

    report = DataReport(max_length=max_length)
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for index, record in enumerate(records):
        prompt, chosen, rejected = check_pair(record, index)
        report.examples += 1
        encoded = [_encode_pair(tokenizer, prompt, answer) for answer in (chosen, rejected)]
        lengths = [len(e.input_ids) for e in encoded]
        if max(lengths) > max_length:
            report.truncated_examples += 1
            report.truncated_tokens += max(lengths) - max_length
        trained = sum(Example(e.input_ids[:max_length], e.labels[:max_length]).trained_tokens for e in encoded)
        report.kept += 1
        report.total_tokens += sum(min(n, max_length) for n in lengths)
        report.trained_tokens += trained  # the tokens of both answers: both enter the loss
        report.trained_tokens_per_example.append(trained)
        rows["prompt"].append(prompt)
        rows["chosen"].append([{"role": "assistant", "content": chosen}])
        rows["rejected"].append([{"role": "assistant", "content": rejected}])
    if not report.kept:
        raise DataError(f"The {label} data has no preference pairs: add lines with a prompt, a chosen and a "
                        "rejected answer.")
    return Dataset.from_dict(rows), report


def _encode_pair(tokenizer, prompt: list[dict], answer: str):
    return tokenize_record(tokenizer, prompt + [{"role": "assistant", "content": answer}])


def preference_scores(model, tokenizer, records: list[dict], max_length: int, device) -> dict[str, float]:
    """Held-out preference accuracy and mean margin (per-token log-probability, chosen minus rejected)."""
    margins = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for index, record in enumerate(records):
            prompt, chosen, rejected = check_pair(record, index)
            logps = [_answer_logp(model, _encode_pair(tokenizer, prompt, answer), max_length, device)
                     for answer in (chosen, rejected)]
            margins.append(logps[0] - logps[1])
    model.train(was_training)
    if not margins:
        return {}
    return {
        "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
        "preference_margin": sum(margins) / len(margins),
        "preference_pairs": len(margins),
    }


def _answer_logp(model, example, max_length: int, device) -> float:
    ids = torch.tensor([example.input_ids[:max_length]], device=device)
    labels = torch.tensor([example.labels[:max_length]], device=device)
    logits = model(input_ids=ids).logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((logp * mask).sum() / mask.sum().clamp(min=1))


def build_trainer(config: TrainingConfig, model, ref_model, peft_config, tokenizer, train_dataset, eval_dataset,
                  checkpoint_dir, device, precision: str, callback, counter, warmup_steps: int):
    """DPOTrainer or ORPOTrainer for config.objective, reporting through the engine's callback."""
    from transformers import PrinterCallback

    common = dict(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs or 1.0,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        warmup_steps=warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.kind == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy=config.eval_strategy if eval_dataset is not None else "no",
        eval_steps=config.eval_steps,
        save_strategy=config.save_strategy,
        save_steps=config.save_steps,
        save_total_limit=None,  # the callback deletes old checkpoints, by step and crash-safely
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        optim="adamw_torch",
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        beta=config.beta,
        max_length=config.max_length,
    )
    if config.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        class CountingDPOTrainer(DPOTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                if model.training:
                    _count(counter, inputs)
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        args = DPOConfig(**common, dataset_num_proc=None)
        trainer = CountingDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                                     eval_dataset=eval_dataset, processing_class=tokenizer,
                                     callbacks=[callback], peft_config=peft_config)
    else:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        class CountingORPOTrainer(ORPOTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                if model.training:
                    _count(counter, inputs)
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        args = ORPOConfig(**common, remove_unused_columns=False)
        trainer = CountingORPOTrainer(model=model, args=args, train_dataset=train_dataset,
                                      eval_dataset=eval_dataset, processing_class=tokenizer,
                                      callbacks=[callback], peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)  # the reporter prints; the Trainer should not
    return trainer


def _count(counter, inputs: dict) -> None:
    """Real and laid-out tokens of a micro-batch (both answers of each pair)."""
    masks = [v for k, v in inputs.items()  # DPO: one mask over both answers; ORPO: one per answer
             if k.endswith("attention_mask") and not k.startswith("prompt") and hasattr(v, "sum")]
    for mask in masks:
        counter.tokens += int(mask.sum())
        counter.slots += int(mask.numel())
