"""One fine-tuning run as a straight line: setup -> train -> save.

    result = run(config, train_records, eval_records, output_dir, reporter)

Layout of output_dir:
    training_config.json   the config, as run
    data_report.json       tokenization report (examples, tokens, truncation, masking)
    checkpoints/           checkpoint-N/ (Trainer state + studio_checkpoint.json), resumable
    adapter/               PEFT adapter (LoRA methods)      } each with a model card
    merged/ or model/      merged model (LoRA) / full model  } (README.md)
    result.json            final metrics and paths
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainerState, TrainingArguments, set_seed
from transformers.trainer_utils import TrainOutput

from planner.config import TrainingConfig
from worker.training import allocator, checkpoints, distributed, export
from worker.training.callbacks import ReporterCallback, TokenCounter
from worker.training.cpu_speedup import speed_up_for_cpu
from worker.training.data import LengthGroupedSampler, TorchDataset, make_collator, tokenize_records
from worker.training.gpu_kernels import apply_liger
from worker.training.loss import answer_loss_sum, evaluate_loss, real_tokens, shared_prefix_length
from worker.training.modeling import (
    detect_device,
    load_model,
    load_tokenizer,
    parameter_report,
    resolve_precision,
    torch_dtype,
)
from worker.training.reporter import Reporter

CHECKPOINTS = "checkpoints"


@dataclass
class RunResult:
    status: str  # "completed" or "stopped"
    output_dir: str
    global_step: int
    max_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    adapter_dir: str | None = None
    merged_dir: str | None = None
    model_dir: str | None = None
    last_checkpoint: str | None = None
    warnings: list[str] = field(default_factory=list)
    model: Any = field(default=None, repr=False, compare=False)  # the trained model, in memory

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


class EngineTrainer(Trainer):
    """Trainer whose loss covers answer tokens only and skips the output head elsewhere."""

    loss_is_scaled_for_ga = True

    def __init__(self, *args, token_counter: TokenCounter, length_grouped: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter
        self.length_grouped = length_grouped
        self.model_accepts_loss_kwargs = True  # so the Trainer counts answer tokens per step

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.length_grouped:
            return super()._get_train_sampler(train_dataset)
        # one optimizer step's examples over all ranks: each rank takes every N-th micro-batch of it
        step_batch = (self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
                      * self.args.world_size)
        return LengthGroupedSampler(dataset.lengths, step_batch, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        wrapped, model = model, self.accelerator.unwrap_model(model)
        prefix = shared_prefix_length(model, inputs)
        if model.training:
            self.token_counter.tokens += real_tokens(inputs)
            self.token_counter.slots += inputs["input_ids"].numel()
            self.token_counter.shared += prefix * (len(inputs["input_ids"]) - 1)
        if self.args.world_size > 1:  # inside DDP's / FSDP's forward (distributed.call_through)
            loss_sum, count = distributed.call_through(wrapped, model, answer_loss_sum, model, inputs, prefix)
        else:
            loss_sum, count = answer_loss_sum(model, inputs, prefix)
        # Normalise by the answer tokens of the whole optimizer step, so gradient accumulation
        # gives the same update as one big batch. Under torch.distributed the Trainer counts them
        # over all ranks and the gradients are averaged over the ranks, hence the world size.
        denominator = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
        loss = loss_sum / denominator
        if num_items_in_batch is not None and self.args.world_size > 1:
            loss = loss * self.args.world_size
        return (loss, None) if return_outputs else loss

    def train(self, resume_from_checkpoint=None, **kwargs) -> TrainOutput:
        """Trainer.train, except from a checkpoint taken at the last step: nothing more is trained.

        The Trainer checks for the last step only after a step, so resuming from the final
        checkpoint of a run that ends mid-epoch would train one step too many.
        """
        if resume_from_checkpoint:
            state = TrainerState.load_from_json(str(Path(resume_from_checkpoint) / checkpoints.TRAINER_STATE))
            if state.global_step >= state.max_steps:
                return self._restore_finished(resume_from_checkpoint, state)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _restore_finished(self, checkpoint: str, state: TrainerState) -> TrainOutput:
        self._load_from_checkpoint(checkpoint)
        self.state = state
        self.control = self.callback_handler.on_train_begin(self.args, self.state, self.control)
        losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        return TrainOutput(state.global_step, sum(losses) / len(losses) if losses else float("nan"), {})

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if self.args.world_size > 1:
            metrics = self._evaluate_distributed(eval_dataset if eval_dataset is not None else self.eval_dataset)
        else:
            metrics = evaluate_loss(self.model, self.get_eval_dataloader(eval_dataset))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _evaluate_distributed(self, dataset) -> dict[str, float]:
        """Each rank evaluates every N-th micro-batch of the eval set; the sums are added up over
        the ranks. A rank with no micro-batch left runs the first one again and counts nothing, so
        that every rank runs as many forwards (FSDP gathers parameters in each)."""
        from torch.utils.data import DataLoader

        world, me = self.args.world_size, distributed.rank()
        batches = list(DataLoader(dataset, batch_size=self.args.per_device_eval_batch_size,
                                  collate_fn=self.data_collator))
        mine = batches[me::world]
        rounds = -(-len(batches) // world)
        inner = self.accelerator.unwrap_model(self.model)
        total, count = 0.0, 0
        was_training = inner.training
        self.model.eval()
        with torch.no_grad():
            for i in range(rounds):
                batch = mine[i] if i < len(mine) else batches[0]
                batch = {k: v.to(self.args.device) for k, v in batch.items()}
                loss_sum, n = distributed.call_through(self.model, inner, answer_loss_sum, inner, batch, 0)
                if i < len(mine):
                    total, count = total + float(loss_sum), count + n
        self.model.train(was_training)
        total, count = distributed.all_reduce_sum([total, count])
        loss = total / max(count, 1)
        return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": int(count)}


def run(
    config: TrainingConfig,
    train_records: list[dict],
    eval_records: list[dict] | None,
    output_dir: str | Path,
    reporter: Reporter,
    resume_from: str | Path | bool | None = None,
    *,
    export_merged: bool = True,
    liger_kernels: bool = False,
    dist_timeout_s: int = 300,
) -> RunResult:
    """Fine-tune config.base_model on train_records; resume_from: a checkpoint dir, or True for the latest.
    liger_kernels: use Liger's fused kernels where they can run (worker/training/gpu_kernels.py).

    Under torch.distributed (worker/training/distributed.py) every rank calls it; rank 0 alone
    writes the run's files and outputs, the others' reporter reports nothing."""
    output_dir = Path(output_dir)
    main = distributed.is_main()
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        config.save(output_dir)

    # setup
    _quiet_libraries()
    allocator.tune()  # a fresh worker would otherwise page-fault its activations in every step
    device = detect_device()
    precision = resolve_precision(config.precision, device)
    reporter.on_log(f"Device {device.name} ({device.kind}), precision {precision}, method {config.method}"
                    + (f", objective {config.objective} (beta {config.beta:g})" if config.is_preference else "")
                    + (", DoRA" if config.use_dora else "") + ".")
    tokenizer = load_tokenizer(config.base_model)
    counter = TokenCounter()
    world = distributed.world_size()
    callback = ReporterCallback(reporter, counter, {"method": config.method, "base_model": config.base_model,
                                                    "objective": config.objective, "world_size": world},
                                keep_checkpoints=config.save_total_limit)
    before: dict[str, float] = {}
    if config.is_preference:
        trainer, report, before = _setup_preference(config, tokenizer, train_records, eval_records, output_dir,
                                                    device, precision, callback, counter, reporter)
        eval_examples = eval_records if before else []
        parameters = parameter_report(trainer.model)
    else:
        train_examples, eval_examples, report = _prepare_data(config, tokenizer, train_records, eval_records,
                                                              reporter)
    if main:
        (output_dir / "data_report.json").write_text(json.dumps(report.as_dict(per_example=True)) + "\n")
    if not config.is_preference:
        set_seed(config.seed)
        model = load_model(config, device, precision)
        liger = apply_liger(model, device.kind, liger_kernels)
        if liger:
            reporter.on_log(liger)
        if device.kind == "cpu":
            for change in speed_up_for_cpu(model):
                reporter.on_log(f"Faster CPU kernels: {change}.")
        parameters = parameter_report(model)
        trainer = _build_trainer(config, model, tokenizer, train_examples, eval_examples, output_dir, device,
                                 precision, callback, counter, distributed.training_arguments(config.method,
                                                                                              device.kind,
                                                                                              dist_timeout_s))
    reporter.on_log(
        f"Trainable parameters: {parameters['trainable_params']:,} of {parameters['total_params']:,} "
        f"({parameters['trainable_percent']}%)."
    )

    # train
    if world > 1:
        reporter.on_log(f"{world} processes under torch.distributed ({'FSDP full sharding' if config.method == 'full' else 'DDP'}"
                        f", {trainer.args.ddp_backend}): {config.per_device_batch_size} x {config.grad_accum} x {world} = "
                        f"{config.per_device_batch_size * config.grad_accum * world} examples per optimizer step.")
    checkpoint = _resolve_resume(resume_from, output_dir / CHECKPOINTS, reporter)
    if checkpoint:
        distributed.check_resume(checkpoint, checkpoints.read_metadata(Path(checkpoint)))
        reporter.on_log(f"Resuming from {checkpoint}.")
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.monotonic() - started
    tokens, slots, shared = counter.tokens, counter.slots, counter.shared
    if world > 1:  # the job's figures: every rank's tokens
        tokens, slots, shared = distributed.all_reduce_sum([tokens, slots, shared])
    metrics = {
        "train_loss": float(output.training_loss),
        "train_runtime_s": seconds,
        "tokens_per_s": tokens / max(seconds, 1e-9),
        "padding_share": 1 - tokens / slots if slots else 0.0,
        "shared_prefix_share": shared / tokens if tokens else 0.0,
        **{k: v for k, v in callback.last_metrics.items() if k in ("loss", "peak_memory_mb")},
    }
    result = RunResult(
        status="stopped" if callback.stopped else "completed",
        output_dir=str(output_dir),
        global_step=trainer.state.global_step,
        max_steps=trainer.state.max_steps,
        metrics=metrics,
        data_report=report.as_dict(),
        parameters=parameters,
        last_checkpoint=checkpoints.latest_complete(output_dir / CHECKPOINTS),
        model=trainer.model,
    )
    if counter.shared:
        reporter.on_log(f"A prompt prefix common to each micro-batch (such as the system prompt) ran once per "
                        f"micro-batch instead of once per example: {metrics['shared_prefix_share']:.0%} of the "
                        "tokens trained on were not computed again.")
    if callback.stopped:
        reporter.on_log(f"Stopped at step {result.global_step}; checkpoint: {result.last_checkpoint}.")
        if main:
            _write_result(output_dir, result)
        return result

    # save
    if eval_examples and callback.last_eval_step != trainer.state.global_step:
        trainer.evaluate()
    result.metrics.update({k: v for k, v in callback.last_metrics.items()
                           if k in ("eval_loss", "perplexity", "eval_reward_accuracy", "eval_reward_margin")})
    if before:
        _report_preference(config, trainer, tokenizer, eval_records, device, before, result, reporter)
    state_dict = None
    if world > 1:
        # Gathered from the shards (FSDP) on every rank, saved by rank 0 alone; DDP ranks hold the same model.
        state_dict = distributed.full_state_dict(trainer) if not config.uses_adapter else None
        result.model = trainer.accelerator.unwrap_model(trainer.model)
        if not main:
            result.model = None
            return result
        if state_dict is not None:
            result.model = None  # sharded: the saved directory is the model
    _save_outputs(config, trainer.model if world == 1 else trainer.accelerator.unwrap_model(trainer.model), tokenizer,
                  train_records, output_dir, result, precision, export_merged, state_dict)
    for warning in result.warnings:
        reporter.on_log(f"Warning: {warning}")
    reporter.on_log(f"Finished: {result.global_step} steps, outputs in {output_dir}.")
    _write_result(output_dir, result)
    return result


def _quiet_libraries() -> None:
    """The run's log is for people: no progress bars drawn into it, no library-internal deprecation
    notices nobody running a run can act on (transformers calls its own deprecated property)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _prepare_data(config, tokenizer, train_records, eval_records, reporter):
    train_examples, report = tokenize_records(train_records, tokenizer, config.max_length)
    reporter.on_log(f"Training data: {report.summary()}.")
    eval_examples = []
    if eval_records:
        eval_examples, eval_report = tokenize_records(eval_records, tokenizer, config.max_length)
        reporter.on_log(f"Evaluation data: {eval_report.summary()}.")
    return train_examples, eval_examples, report


def _setup_preference(config, tokenizer, train_records, eval_records, output_dir, device, precision, callback,
                      counter, reporter):
    """The TRL trainer of a DPO/ORPO run, its data report and the held-out scores of the base model."""
    from worker.training.modeling import lora_config, prepare_base
    from worker.training.preference import build_trainer, pair_dataset, preference_scores

    train_dataset, report = pair_dataset(train_records, tokenizer, config.max_length, "training")
    reporter.on_log(f"Training data: {report.kept} preference pairs, {report.total_tokens} tokens, "
                    f"{report.trained_tokens} answer tokens (both answers)"
                    + (f"; {report.truncated_examples} pairs longer than max_length={config.max_length} are cut"
                       if report.truncated_examples else "") + ".")
    eval_dataset = pair_dataset(eval_records, tokenizer, config.max_length, "evaluation")[0] if eval_records else None
    set_seed(config.seed)
    model = prepare_base(config, device, precision)
    before = {}
    if eval_records:  # the base model, before any training (also when resuming)
        before = preference_scores(model, tokenizer, eval_records, config.max_length, device.torch_device)
        reporter.on_log(f"Before training, on {before['preference_pairs']} held-out pairs: the better answer is "
                        f"preferred in {before['preference_accuracy']:.0%}, mean margin "
                        f"{before['preference_margin']:+.2f} (log-probability, chosen minus rejected).")
    ref_model, peft_config = None, None
    if config.uses_adapter:
        peft_config = lora_config(model, config)  # the reference is the same model, adapters off
    else:
        ref_model = prepare_base(config, device, precision).eval()
        ref_model.requires_grad_(False)
    warmup = config.warmup_steps(planned_steps(config, len(train_dataset)))
    trainer = build_trainer(config, model, ref_model, peft_config, tokenizer, train_dataset, eval_dataset,
                            output_dir / CHECKPOINTS, device, precision, callback, counter, warmup)
    return trainer, report, before


def _report_preference(config, trainer, tokenizer, eval_records, device, before, result, reporter) -> None:
    from worker.training.preference import preference_scores

    after = preference_scores(trainer.model, tokenizer, eval_records, config.max_length, device.torch_device)
    for key in ("preference_accuracy", "preference_margin"):
        result.metrics[f"{key}_before"] = before[key]
        result.metrics[key] = after[key]
    reporter.on_metrics(result.global_step, {k: result.metrics[k] for k in (
        "preference_accuracy_before", "preference_margin_before", "preference_accuracy", "preference_margin")})
    reporter.on_log(f"After training, on the same {after['preference_pairs']} held-out pairs: the better answer is "
                    f"preferred in {after['preference_accuracy']:.0%} (before: {before['preference_accuracy']:.0%}), "
                    f"mean margin {after['preference_margin']:+.2f} (before: {before['preference_margin']:+.2f}).")


def _build_trainer(config, model, tokenizer, train_examples, eval_examples, output_dir, device, precision,
                   callback, counter, extra_args=None) -> EngineTrainer:
    args = _training_arguments(config, output_dir / CHECKPOINTS, device, precision, len(train_examples),
                               bool(eval_examples), **(extra_args or {}))
    trainer = EngineTrainer(
        model=model,
        args=args,
        train_dataset=TorchDataset(train_examples),
        eval_dataset=TorchDataset(eval_examples) if eval_examples else None,
        data_collator=make_collator(config.packing, tokenizer.pad_token_id),
        callbacks=[callback],
        token_counter=counter,
        length_grouped=not config.packing,
    )
    trainer.remove_callback(PrinterCallback)  # the reporter prints; the Trainer should not
    return trainer


def planned_steps(config: TrainingConfig, examples: int) -> int:
    """Optimizer steps the Trainer will run (for warmup, progress and estimates)."""
    if config.max_steps:
        return config.max_steps
    batches = math.ceil(examples / config.per_device_batch_size)
    batches = math.ceil(batches / config.devices)  # each rank takes every N-th micro-batch
    per_epoch = max(batches // config.grad_accum + int(batches % config.grad_accum > 0), 1)
    return math.ceil(config.epochs * per_epoch)


def _training_arguments(config, checkpoint_dir, device, precision, examples, has_eval, **extra) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs or 1.0,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_steps(planned_steps(config, examples)),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.kind == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy=config.eval_strategy if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy=config.save_strategy,
        save_steps=config.save_steps,
        save_total_limit=None,  # the callback deletes old checkpoints, by step and crash-safely
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        optim="adamw_torch",
        **extra,
    )


def _resolve_resume(resume_from, checkpoint_dir: Path, reporter: Reporter) -> str | None:
    if resume_from is True:
        if distributed.is_main():  # one rank cleans, the others wait for it
            for name in checkpoints.clean(checkpoint_dir):  # none is mistaken for a good one
                reporter.on_log(f"Removed {name}: it was left incomplete by an interrupted worker.")
        distributed.barrier()
        return checkpoints.latest_complete(checkpoint_dir)
    return str(resume_from) if resume_from else None


def _save_outputs(config, model, tokenizer, records, output_dir, result, precision, export_merged,
                  state_dict=None) -> None:
    card = dict(
        config=config,
        dataset_hash=export.dataset_sha256(records),
        metrics=result.metrics,
        parameters=result.parameters,
        data_report=result.data_report,
    )
    if not config.uses_adapter:
        result.model_dir = str(export.save_full_model(model, tokenizer, output_dir / "model", state_dict))
        export.write_model_card(result.model_dir, **card)
        return
    result.adapter_dir = str(export.save_adapter(model, tokenizer, output_dir / "adapter"))
    export.write_model_card(result.adapter_dir, **card)
    result.warnings += export.adapter_serving_warnings(result.adapter_dir)
    if export_merged:
        dtype = torch.float32 if precision == "fp32" else torch_dtype(precision)
        result.merged_dir = str(export.save_merged(config.base_model, result.adapter_dir, output_dir / "merged", dtype))
        export.write_model_card(result.merged_dir, **card)


def _write_result(output_dir: Path, result: RunResult) -> None:
    (output_dir / "result.json").write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
