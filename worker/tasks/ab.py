"""`studio.ab_generate(comparison_id)`: the answers of a blind A/B comparison, on the "train" queue.

A straight line: load the row (pending -> generating), resolve model A and model B to directories
(a base model, a base with a run's LoRA adapter, or a run's full model), place the sides (a
seeded, balanced left/right arrangement, stored per pair) -> load A, answer every prompt
greedily in batches, unload -> the same for B -> open for votes. Answers and progress are
committed after each batch, so the page shows them advance.

- A comparison that no longer exists is a no-op; one already open or closed is left alone (a
  message delivered twice changes nothing).
- Any error marks the comparison failed with a plain-language reason, never leaves it generating.

Run a worker that takes it: `studio worker --queues train`.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from app.ab import repository as repo
from app.ab import service
from app.config import get_settings
from app.db import session_scope
from app.errors import StudioError
from app.inference import targets
from app.inference.client import Target
from app.models import utcnow
from app.runs import repository as runs_repo
from app.models_registry import repository as models_repo
from app.storage import Store, open_store
from planner.weights import check_model_dir
from worker.celery_app import celery_app

log = logging.getLogger(__name__)
BATCH_SIZE = 8


class ModelUnavailable(Exception):
    """Model A or B cannot be loaded any more (removed, or without trained weights)."""


@dataclass
class Work:
    comparison_id: int
    targets: dict[str, Target]  # "a" / "b" -> directories
    labels: dict[str, str]
    pair_ids: list[int]
    prompts: list[str]
    system: str | None
    max_new_tokens: int


@celery_app.task(name=service.GENERATE_TASK, ignore_result=True)
def generate_comparison(comparison_id: int) -> str:
    """Generates both models' answers; returns the comparison's final status (or "gone")."""
    try:
        work = _start(comparison_id)
    except ModelUnavailable as exc:
        _fail(comparison_id, str(exc))
        return service.FAILED
    if isinstance(work, str):
        return work
    side = "a"
    try:
        for side in ("a", "b"):
            _answer(work, side)
        return _open(comparison_id)
    except Exception as exc:  # any crash: say so on the comparison instead of leaving it stuck
        log.exception("generating the answers of comparison %s failed", comparison_id)
        _fail(comparison_id, _explain(exc, side, work.labels[side]))
        return service.FAILED


def _target(session, team_id: int, ref: dict, label: str) -> Target:  # noqa: ANN001
    store = open_store(get_settings())
    if ref.get("kind") == "base":
        model = models_repo.get_visible(session, team_id=team_id, model_id=int(ref["id"]))
        if model is None:
            raise ModelUnavailable(f"The base model {label} was removed, so it cannot answer.")
        return targets.base_target(model)
    run = runs_repo.get(session, team_id=team_id, run_id=int(ref["id"]))
    if run is None:
        raise ModelUnavailable(f"The run {label} was removed, so it cannot answer.")
    try:
        return targets.run_target(session, store, team_id=team_id, run=run)[1]
    except StudioError as exc:
        raise ModelUnavailable(f"{label}: {exc.message}") from exc


def _start(comparison_id: int) -> Work | str:
    with session_scope() as s:
        comparison = repo.by_id(s, comparison_id)
        if comparison is None:
            log.info("comparison %s no longer exists; nothing to generate", comparison_id)
            return "gone"
        if comparison.status not in (service.PENDING, service.GENERATING):
            return comparison.status
        labels = {k: service.model_label(s, team_id=comparison.team_id, ref=ref)
                  for k, ref in (("a", comparison.model_a), ("b", comparison.model_b))}
        found = {k: _target(s, comparison.team_id, ref, labels[k])
                 for k, ref in (("a", comparison.model_a), ("b", comparison.model_b))}
        source = dict(comparison.prompt_source or {})
        pairs = repo.pairs(s, comparison_id=comparison.id)
        service.assign_sides(pairs, int(source.get("seed", comparison.id)))
        comparison.status, comparison.error_message = service.GENERATING, None
        comparison.prompt_source = {**source, "progress": {"done": 0, "total": 2 * len(pairs),
                                                           "started_at": utcnow().timestamp()}}
        return Work(comparison_id=comparison.id, targets=found, labels=labels, pair_ids=[p.id for p in pairs],
                    prompts=[p.prompt for p in pairs], system=source.get("system"),
                    max_new_tokens=int(source.get("max_new_tokens") or service.DEFAULT_MAX_NEW_TOKENS))


def load(target: Target):  # noqa: ANN201
    """(model, tokenizer) of a target: safetensors only, no remote code, nothing downloaded.
    The tokenizer (with its chat template) comes from the fine-tuned directory when it has one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_dir(target.base)
    own = target.adapter and (Path(target.adapter) / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(target.adapter if own else target.base, local_files_only=True,
                                              trust_remote_code=False)
    if not tokenizer.chat_template:
        raise ValueError("the model has no chat template, so it cannot answer chat prompts")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    cuda = torch.cuda.is_available()
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(target.base, local_files_only=True, trust_remote_code=False,
                                                 use_safetensors=True, dtype=dtype)
    if target.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, target.adapter)
    from worker.training.cpu_speedup import speed_up_for_cpu

    model = model.to("cuda" if cuda else "cpu").eval()
    speed_up_for_cpu(model)  # fp32 CPU layers only (1.4x faster answers on the AMD dev CPU)
    return model, tokenizer


def _answer(work: Work, side: str) -> None:
    from worker.training.generate import generate_answers

    model, tokenizer = load(work.targets[side])
    head = [{"role": "system", "content": work.system}] if work.system else []
    try:
        for start in range(0, len(work.prompts), BATCH_SIZE):
            batch = [head + [{"role": "user", "content": p}] for p in work.prompts[start:start + BATCH_SIZE]]
            answers = generate_answers(model, tokenizer, batch, max_new_tokens=work.max_new_tokens,
                                       batch_size=BATCH_SIZE)
            _save(work, side, work.pair_ids[start:start + BATCH_SIZE], answers)
    finally:
        del model
        _free_memory()


def _save(work: Work, side: str, pair_ids: list[int], answers: list[str]) -> None:
    with session_scope() as s:
        for pair_id, answer in zip(pair_ids, answers, strict=True):
            pair = repo.pair_by_id(s, pair_id)
            if pair is not None:
                setattr(pair, f"answer_{side}", answer)
        comparison = repo.by_id(s, work.comparison_id)
        if comparison is not None:
            source = dict(comparison.prompt_source or {})
            progress = source.get("progress") or {}
            done = int(progress.get("done", 0)) + len(pair_ids)
            comparison.prompt_source = {**source, "progress": {**progress, "done": done,
                                                               "total": 2 * len(work.pair_ids)}}


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _open(comparison_id: int) -> str:
    with session_scope() as s:
        comparison = repo.by_id(s, comparison_id)
        if comparison is None:
            return "gone"
        comparison.status = service.OPEN
        return comparison.status


def _explain(exc: Exception, side: str, label: str) -> str:
    text = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return (f"Model {side.upper()} ({label}) ran out of memory while answering. Try shorter answers, "
                "fewer prompts at a time, or a worker with more memory.")
    return (f"Model {side.upper()} ({label}) could not answer the prompts ({text}). "
            "Generate again; if it fails again, the worker log has the details.")


def _fail(comparison_id: int, message: str) -> None:
    with session_scope() as s:
        comparison = repo.by_id(s, comparison_id)
        if comparison is not None:
            comparison.status, comparison.error_message = service.FAILED, message
