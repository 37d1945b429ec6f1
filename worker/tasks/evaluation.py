"""Automatic evaluation of a finished run: the base model against the fine-tuned one.

    evaluate_after_run(run_id, result, train_records, eval_records)  # in the training task, model in memory
    evaluate_again(evaluation_id)                                      # the studio.evaluate task (re-run)

Both models are measured the same way on the same data:
- eval loss and perplexity over the answer tokens of the eval split (as the engine's loss);
- greedy answers to a deterministic, evenly spaced sample of `eval_samples` eval prompts (the
  conversation up to its last assistant turn; that turn is the reference), scored with BLEU,
  ROUGE-1/2/L, exact match and, for classification goals, accuracy (worker/training/metrics.py).
Without an eval split the sample comes from the training data and is marked split="train": it
shows what the model learned, not how it does on unseen prompts.

Honest scores: eval examples whose prompt also appears in the training data (apart from case,
spacing and punctuation: a separate validation file, or copies the split could not see) are
counted, and every metric is also given on the examples that do not overlap
(details["overlap"]). Both models also answer the general-ability set that ships with the
studio (general_ability.py): a drop there is forgetting (metrics "general_ability",
details["general_ability"]).

Adapter runs reuse the trained model in memory: its base numbers come with the adapter disabled.
A full fine-tune loads the base model beside it. The result is one `evaluations` row (kind
"automatic"); a failure marks the row failed and never touches the run, which is already succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from app.config import get_settings
from app.datasets import repository as datasets_repo
from app.db import session_scope
from app.evaluations import judge
from app.evaluations import repository as repo
from app.evaluations import service
from app.registry import gate
from app.runs import repository as runs_repo
from app.runs import service as runs_service
from app.models import Evaluation, RunStatus, utcnow
from app.storage import Store, open_store
from datacheck.duplicates import stable_key
from datacheck.stats import split_roles
from planner.tools import calls_match, expected_calls, parse_tool_calls
from worker.tasks import general_ability

log = logging.getLogger(__name__)
MAX_LOSS_EXAMPLES = 500  # eval loss of both models on at most this many eval examples (evenly spaced)
LOSS_BATCH = 8


@dataclass
class Prompt:
    messages: list[dict]
    reference: str
    record: dict
    tools: list[dict] | None = None
    calls: list[dict] | None = None  # the reference's tool calls {"name", "arguments"}, when it makes some


def split_last_answer(record: dict) -> Prompt | None:
    """The conversation up to its last assistant turn, and that turn as the reference. With tools,
    the turn is the last one that calls tools (when one does): tool-call accuracy is measured on it."""
    messages = record.get("messages") or []
    tools = record.get("tools") or None
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    calling = [i for i in turns if messages[i].get("tool_calls")] if tools else []
    last = (calling or turns or [None])[-1]
    if last is None or not any(m.get("role") == "user" for m in messages[:last]):
        return None
    keep = ("role", "content", "tool_calls", "tool_call_id")
    prompt = [{k: m[k] for k in keep if k in m} for m in messages[:last]]
    answer = messages[last]
    calls = expected_calls(answer) if answer.get("tool_calls") else None
    reference = answer.get("content") or ""
    if calls:
        reference = "\n".join(filter(None, [reference, *(json.dumps(c, ensure_ascii=False) for c in calls)]))
    kept = {"messages": messages[: last + 1], **({"tools": tools} if tools else {})}
    return Prompt(prompt, reference, kept, tools, calls)


def tool_call_accuracy(prompts: list[Prompt], answers: list[str]) -> float | None:
    """Share of the prompts answered by tool calls whose answer makes the same calls (right function,
    same arguments); None when no prompt expects a call."""
    graded = [calls_match(p.calls, parse_tool_calls(a)[1]) for p, a in zip(prompts, answers) if p.calls]
    return sum(graded) / len(graded) if graded else None


def evenly_spaced(items: list, n: int) -> list:
    """n items spread over the list, always the same ones (the first included)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def pick_prompts(records: list[dict], n: int) -> list[Prompt]:
    return evenly_spaced([p for r in records if (p := split_last_answer(r)) is not None], n)


def loss_batches(records: list[dict], tokenizer, max_length: int) -> list[dict]:  # noqa: ANN001
    """Padded batches of tokenized records (answer-only labels), ready for evaluate_loss."""
    from worker.training.data import PaddedCollator, TorchDataset, tokenize_records

    examples, _ = tokenize_records(records, tokenizer, max_length, allow_empty=True)
    dataset, collate = TorchDataset(examples), PaddedCollator(tokenizer.pad_token_id)
    return [collate([dataset[i] for i in range(start, min(start + LOSS_BATCH, len(dataset)))])
            for start in range(0, len(dataset), LOSS_BATCH)]


def prompt_key(messages: list[dict]) -> int:
    """The normalised prompt of a conversation, as the dataset check's leakage warning keys it."""
    return stable_key(split_roles([m for m in messages if m.get("role") in ("system", "user", "assistant")])[0])


def training_prompts(train_records: list[dict]) -> set[int]:
    return {prompt_key(r.get("messages") or []) for r in train_records}


@dataclass
class Scored:
    metrics: dict[str, float]
    answers: list[str]
    clean: dict[str, float]  # the same metrics without the eval examples that overlap training
    general: list[str]  # answers to the general-ability questions


def score(model, tokenizer, batches: list[dict], prompts: list[Prompt], *, max_new_tokens: int,  # noqa: ANN001
          classification: bool, clean_batches: list[dict] | None = None,
          overlapping: list[bool] | None = None) -> Scored:
    """One model's metrics, its answers to the prompts and to the general-ability set; with
    overlapping (one flag per prompt), the metrics again on the prompts that do not overlap
    (the loss over clean_batches)."""
    from worker.training.generate import generate_answers
    from worker.training.loss import evaluate_loss
    from worker.training.metrics import text_metrics

    metrics: dict[str, float] = {}
    clean: dict[str, float] = {}
    if batches:
        metrics.update(evaluate_loss(model, batches))
    if clean_batches:
        clean.update(evaluate_loss(model, clean_batches))
    answers = generate_answers(model, tokenizer, [p.messages for p in prompts], max_new_tokens=max_new_tokens,
                               batch_size=max(len(prompts), 1), tools=[p.tools for p in prompts])
    metrics.update(text_metrics(answers, [p.reference for p in prompts], classification=classification))
    accuracy = tool_call_accuracy(prompts, answers)
    if accuracy is not None:
        metrics["tool_call_accuracy"] = accuracy
    if overlapping is not None:
        kept = [(a, p) for a, p, o in zip(answers, prompts, overlapping) if not o]
        if kept:
            clean.update(text_metrics([a for a, _ in kept], [p.reference for _, p in kept],
                                      classification=classification))
            kept_accuracy = tool_call_accuracy([p for _, p in kept], [a for a, _ in kept])
            if kept_accuracy is not None:
                clean["tool_call_accuracy"] = kept_accuracy
    return Scored(metrics, answers, clean, general_ability.ask(model, tokenizer))


def _generating(model):  # noqa: ANN001, ANN202
    """Training turns the KV cache off (model.config.use_cache); greedy generation wants it on."""
    config = getattr(model, "config", None)
    if config is not None:
        config.use_cache = True
    return model


def _overlap_details(records: list[dict], loss_records: list[dict], prompts: list[Prompt],
                     overlapping: list[bool], seen: set[int], clean_batches: list[dict]) -> dict[str, Any]:
    return {"eval_examples": len(records),
            "overlapping": sum(prompt_key(r.get("messages") or []) in seen for r in records),
            "loss_examples": len(loss_records),
            "loss_overlapping": sum(prompt_key(r.get("messages") or []) in seen for r in loss_records),
            "clean_loss_examples": sum(int(b["input_ids"].shape[0]) for b in clean_batches),
            "samples": len(prompts), "samples_overlapping": sum(overlapping)}


def evaluate_pair(tuned, tokenizer, records: list[dict], *, split: str, max_length: int, samples: int,  # noqa: ANN001
                  max_new_tokens: int, goal: str | None, base=None, train_records: list[dict] | None = None,
                  progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Base and fine-tuned metrics, and the sample generations side by side. `base` None: the
    base is `tuned` with its adapter disabled (adapter runs). With train_records (and eval
    data), eval examples whose prompt is also a training prompt are counted and the metrics
    given again without them."""
    from worker.training.metrics import is_classification
    from worker.training.preference import is_preference_record

    pairs = [r for r in records if is_preference_record(r)]
    if pairs:  # preference runs: the usual answers side by side, with the chosen answer as the reference
        records = [{"messages": r["prompt"] + r["chosen"]} for r in pairs]
    prompts = pick_prompts(records, samples)
    if not prompts:
        raise ValueError("No conversation of the data ends with an assistant answer to a user: nothing to compare.")
    loss_records = evenly_spaced(records, MAX_LOSS_EXAMPLES) if split == "eval" else [p.record for p in prompts]
    batches = loss_batches(loss_records, tokenizer, max_length)
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, classification=is_classification(goal))
    overlap = None
    if split == "eval" and train_records:
        seen = training_prompts(train_records)
        overlapping = [prompt_key(p.messages) in seen for p in prompts]
        clean_records = [r for r in loss_records if prompt_key(r.get("messages") or []) not in seen]
        clean_batches = loss_batches(clean_records, tokenizer, max_length) if len(clean_records) < len(loss_records) else []
        overlap = _overlap_details(records, loss_records, prompts, overlapping, seen, clean_batches)
        if overlap["overlapping"]:
            options.update(overlapping=overlapping, clean_batches=clean_batches)
    where = "eval" if split == "eval" else "training (no eval split)"
    progress(f"Evaluating: base model on {len(prompts)} {where} prompts and the general-ability questions…")
    if base is None:
        with tuned.disable_adapter():
            base_scored = score(_generating(tuned), tokenizer, batches, prompts, **options)
    else:
        base_scored = score(_generating(base), tokenizer, batches, prompts, **options)
    progress("Evaluating: fine-tuned model…")
    tuned_scored = score(_generating(tuned), tokenizer, batches, prompts, **options)
    if pairs:
        progress(f"Evaluating: which of two answers each model prefers, on {len(pairs)} pairs…")
        _add_preference_scores(tuned, base, tokenizer, evenly_spaced(pairs, MAX_LOSS_EXAMPLES), max_length,
                               base_scored.metrics, tuned_scored.metrics)
    general = general_ability.score(base_scored.general, tuned_scored.general)
    base_scored.metrics["general_ability"] = general["base"]
    tuned_scored.metrics["general_ability"] = general["finetuned"]
    details: dict[str, Any] = {
        "split": split, "samples": len(prompts), "max_new_tokens": max_new_tokens, "goal": goal,
        "loss_examples": sum(int(b["input_ids"].shape[0]) for b in batches), "general_ability": general}
    if overlap is not None:
        if overlap["overlapping"]:
            overlap["metrics"] = {"base": base_scored.clean, "finetuned": tuned_scored.clean}
        details["overlap"] = overlap
    flags = options.get("overlapping") or [split == "train"] * len(prompts)
    return {
        "metrics": {"base": base_scored.metrics, "finetuned": tuned_scored.metrics},
        "samples": [{"prompt": p.messages, "reference": p.reference, "base": b, "finetuned": t, "overlaps_training": o}
                    for p, b, t, o in zip(prompts, base_scored.answers, tuned_scored.answers, flags)],
        "details": details,
    }


def _add_preference_scores(tuned, base, tokenizer, pairs, max_length, base_metrics, tuned_metrics) -> None:  # noqa: ANN001
    """Preference accuracy and margin of the base and the fine-tuned model on the same pairs."""
    from worker.training.preference import preference_scores

    device = next(tuned.parameters()).device
    keys = ("preference_accuracy", "preference_margin")
    if base is None:
        with tuned.disable_adapter():
            before = preference_scores(tuned, tokenizer, pairs, max_length, device)
    else:
        before = preference_scores(base, tokenizer, pairs, max_length, next(base.parameters()).device)
    after = preference_scores(tuned, tokenizer, pairs, max_length, device)
    base_metrics.update({k: before[k] for k in keys})
    tuned_metrics.update({k: after[k] for k in keys})


def summary(metrics: dict[str, dict[str, float]]) -> str:
    """The outcome in one line, base → fine-tuned: ROUGE-L 0.31 → 0.52, eval loss 2.100 → 1.200."""
    base, tuned = metrics["base"], metrics["finetuned"]
    parts = [f"ROUGE-L {base['rougeL']:.2f} → {tuned['rougeL']:.2f}"]
    if "preference_accuracy" in base:
        parts.insert(0, f"preference accuracy {base['preference_accuracy']:.0%} → {tuned['preference_accuracy']:.0%}")
    if "accuracy" in base:
        parts.insert(0, f"accuracy {base['accuracy']:.0%} → {tuned['accuracy']:.0%}")
    if "tool_call_accuracy" in base:
        parts.insert(0, f"tool-call accuracy {base['tool_call_accuracy']:.0%} → {tuned['tool_call_accuracy']:.0%}")
    if "eval_loss" in base:
        parts.append(f"eval loss {base['eval_loss']:.3f} → {tuned['eval_loss']:.3f}")
    if "general_ability" in base and "general_ability" in tuned:
        parts.append(f"general questions right {base['general_ability']:.0%} → {tuned['general_ability']:.0%}")
    return ", ".join(parts)


# -- the evaluation row ------------------------------------------------------------------------

def worker_name() -> str:
    from celery import current_task

    request = getattr(current_task, "request", None)
    return getattr(request, "hostname", None) or f"local@{socket.gethostname()}"


def _event(run_id: int, message: str, **data: Any) -> None:
    with session_scope() as s:
        run = runs_repo.by_id(s, run_id)
        runs_service.add_event(s, run, "evaluation", message, data=data or None)


def open_after_run(run_id: int, worker: str) -> int | None:
    """A pending automatic evaluation for a run that just succeeded (None if it did not)."""
    with session_scope() as s:
        run = runs_repo.by_id(s, run_id)
        if run is None or run.status != RunStatus.succeeded:
            return None
        row = Evaluation(team_id=run.team_id, run_id=run.id, kind=service.AUTOMATIC, status="pending",
                         details={"source": "after_run", "worker": worker, "worker_pid": os.getpid()})
        s.add(row)
        s.flush()
        return row.id


def _start(evaluation_id: int, worker: str) -> dict[str, Any] | None:
    """pending -> running, compare-and-set; what the evaluation needs to know about its run."""
    with session_scope() as s:
        row = repo.get_for_update(s, evaluation_id)
        if row is None or row.status != "pending":
            return None
        run = runs_repo.by_id(s, row.run_id)
        row.status = "running"
        row.details = {**(row.details or {}), "worker": worker, "worker_pid": os.getpid()}
        return {"run_id": run.id, "team_id": run.team_id, "config": dict(run.config), "goal": run.goal,
                "dataset_id": run.dataset_id, "eval_dataset_id": run.eval_dataset_id,
                "golden_dataset_id": (row.details or {}).get("golden_dataset_id") if row.kind == gate.GOLDEN else None}


def _succeed(evaluation_id: int, outcome: dict[str, Any], seconds: float) -> None:
    with session_scope() as s:
        row = repo.get_for_update(s, evaluation_id)
        if row is None or row.status != "running":
            return
        row.status, row.finished_at = "succeeded", utcnow()
        row.metrics, row.samples = outcome["metrics"], outcome["samples"]
        row.details = {**(row.details or {}), **outcome["details"], "seconds": round(seconds, 1)}
        run = runs_repo.by_id(s, row.run_id)
        if row.kind == gate.GOLDEN:  # asked by a release: the gate compares it with the current version
            runs_service.add_event(s, run, "evaluation", f"Golden-set evaluation done: {summary(outcome['metrics'])}.",
                                   data={"evaluation_id": row.id, "status": "succeeded"})
            gate.settle(s, row.id, get_settings())
            return
        runs_service.add_event(s, run, "evaluation", f"Evaluation done: {summary(outcome['metrics'])}.",
                               data={"evaluation_id": row.id, "status": "succeeded"})
        judge.enqueue_if_configured(s, run, get_settings())  # the LLM judge scores these answers next


def _fail(evaluation_id: int, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"[:500]
    with session_scope() as s:
        row = repo.get_for_update(s, evaluation_id)
        if row is not None and row.status in repo.UNFINISHED:
            service.mark_failed(s, row, f"{message}. The fine-tuned model is not affected; re-run the evaluation "
                                        "from the run page.")
            gate.settle(s, row.id, get_settings())  # a release waiting on it is refused with the reason


def _run(evaluation_id: int, work: Callable[[dict[str, Any], Callable[[str], None]], dict[str, Any]]) -> bool:
    """Runs `work(run, progress)` for a pending evaluation and records the outcome; never raises."""
    worker = worker_name()
    run = _start(evaluation_id, worker)
    if run is None:
        return False
    started = time.monotonic()
    try:
        outcome = work(run, lambda message: _event(run["run_id"], message, evaluation_id=evaluation_id))
    except Exception as exc:
        log.exception("evaluation %s of run %s failed", evaluation_id, run["run_id"])
        _fail(evaluation_id, exc)
        return False
    _succeed(evaluation_id, outcome, time.monotonic() - started)
    return True


def _split(train_records: list[dict], eval_records: list[dict]) -> tuple[list[dict], str]:
    return (eval_records, "eval") if eval_records else (train_records, "train")


def evaluate_after_run(run_id: int, result, train_records: list[dict], eval_records: list[dict]) -> bool:  # noqa: ANN001
    """Evaluates the run that just succeeded with its trained model still in memory."""
    settings = get_settings()
    evaluation_id = open_after_run(run_id, worker_name())
    if evaluation_id is None:
        return False

    def work(run: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        from planner.config import TrainingConfig
        from worker.training.modeling import load_tokenizer

        config = TrainingConfig.model_validate(run["config"])
        tokenizer = load_tokenizer(config.base_model)
        base = None if config.uses_adapter else load_plain(config, config.base_model)
        records, split = _split(train_records, eval_records)
        try:
            return evaluate_pair(result.model, tokenizer, records, split=split, max_length=config.max_length,
                                 samples=settings.eval_samples, max_new_tokens=settings.eval_max_new_tokens,
                                 goal=run["goal"], base=base, train_records=train_records, progress=progress)
        finally:
            del base
            _free_memory()

    return _run(evaluation_id, work)


def evaluate_again(evaluation_id: int) -> bool:
    """A queued evaluation (re-run): loads the base model and the run's outputs from the store."""
    settings = get_settings()
    store = open_store(settings)

    def work(run: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        from planner.config import TrainingConfig
        from worker.training.modeling import load_tokenizer

        config = TrainingConfig.model_validate(run["config"])
        train_records, eval_records, outputs = _stored_inputs(store, run)
        if run.get("golden_dataset_id"):  # a release's gate: the team's golden set instead of the eval split
            eval_records = _golden_records(store, run)
            if not eval_records:
                raise ValueError("The golden dataset has no examples to evaluate on.")
        if not outputs:
            raise ValueError("This run has no saved adapter or model to evaluate.")
        tokenizer = load_tokenizer(config.base_model)
        models = _saved_models(config, store, outputs)
        records, split = _split(train_records, eval_records)
        try:
            return evaluate_pair(models[0], tokenizer, records, split=split, max_length=config.max_length,
                                 samples=settings.eval_samples, max_new_tokens=settings.eval_max_new_tokens,
                                 goal=run["goal"], base=models[1], train_records=train_records, progress=progress)
        finally:
            models.clear()
            _free_memory()

    return _run(evaluation_id, work)


def _saved_models(config, store: Store, outputs: dict[str, str]) -> list:  # noqa: ANN001
    """[fine-tuned, base]: the adapter on the base (base None: disable the adapter), or the full model and the base."""
    from worker.runtime.sync import Workspace
    from worker.training.cpu_speedup import speed_up_for_cpu

    base = load_plain(config, config.base_model)
    if "adapter" in outputs:
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(base, str(Workspace(store).fetch_tree(outputs["adapter"]))).eval()
        speed_up_for_cpu(tuned)  # the adapter's layers, now that PEFT has put them on
        return [tuned, None]
    return [load_plain(config, str(Workspace(store).fetch_tree(outputs["model"]))), base]


def _records(store: Store, key: str | None) -> list[dict]:
    if not key:
        return []
    with store.open(key) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _stored_inputs(store: Store, run: dict[str, Any]) -> tuple[list[dict], list[dict], dict[str, str]]:
    """The run's training and eval records (as the training task read them) and its saved outputs."""
    with session_scope() as s:
        dataset = datasets_repo.get(s, team_id=run["team_id"], dataset_id=run["dataset_id"], purpose=None)
        eval_key = dataset.normalized_eval_path
        if run["eval_dataset_id"] and run["eval_dataset_id"] != dataset.eval_dataset_id:  # OpenAI validation_file
            eval_key = datasets_repo.get(s, team_id=run["team_id"], dataset_id=run["eval_dataset_id"],
                                         purpose=None).normalized_path
        train_key = dataset.normalized_path
        outputs = {a.kind: a.path for a in runs_repo.artifacts(s, team_id=run["team_id"], run_id=run["run_id"])
                   if a.kind in ("adapter", "model")}
    return _records(store, train_key), _records(store, eval_key), outputs


def _golden_records(store: Store, run: dict[str, Any]) -> list[dict]:
    """Every example of the team's golden dataset (its training and eval splits together)."""
    with session_scope() as s:
        dataset = datasets_repo.get(s, team_id=run["team_id"], dataset_id=run["golden_dataset_id"], purpose=None)
        if dataset is None:
            raise ValueError("The golden dataset was deleted.")
        keys = [dataset.normalized_path, dataset.normalized_eval_path]
    return [record for key in keys for record in _records(store, key)]


def trained_model(config, result):  # noqa: ANN001, ANN201
    """A run's trained model read back from its outputs (a run on several devices leaves none in
    this process's memory), as a one-device run leaves it: the adapter on the base, or the model."""
    if result.adapter_dir:
        from peft import PeftModel

        from worker.training.cpu_speedup import speed_up_for_cpu

        tuned = PeftModel.from_pretrained(load_plain(config, config.base_model), result.adapter_dir).eval()
        speed_up_for_cpu(tuned)  # the adapter's layers, now that PEFT has put them on
        return tuned
    return load_plain(config, result.model_dir)


def load_plain(config, path: str):  # noqa: ANN001, ANN201
    """A model for evaluation on the training device, in the run's precision (4-bit for QLoRA)."""
    from worker.training.cpu_speedup import speed_up_for_cpu
    from worker.training.modeling import _load_base, detect_device, resolve_precision

    device = detect_device()
    model = _load_base(config.model_copy(update={"base_model": path}), device,
                       resolve_precision(config.precision, device))
    speed_up_for_cpu(model)  # fp32 CPU layers only: generation 1.4x faster on the AMD dev CPU
    return model.eval()


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fail_interrupted(this_worker: str | None = None) -> int:
    """Marks failed the evaluations that a lost or restarted worker left unfinished."""
    with session_scope() as s:
        golden = [e.id for e in repo.unfinished(s, kinds=(gate.GOLDEN,))]
        count = service.fail_interrupted(s, alive=service.alive_workers(s), this_worker=this_worker)
        for evaluation_id in golden:  # a release waiting on one that failed is refused with the reason
            gate.settle(s, evaluation_id, get_settings())
        return count
