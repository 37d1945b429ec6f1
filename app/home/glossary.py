"""Plain words for the studio's terms: the glossary page, the outcome-worded name of every
training setting (the ML name stays on hover and in the Advanced section), and the sentences
the wizard shows instead of the planner's technical ones. Pure data and string building."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Term:
    slug: str
    term: str
    plain: str  # one or two sentences a non-ML reader understands
    also: tuple[str, ...] = ()  # other names the studio or the literature uses


GLOSSARY: tuple[Term, ...] = (
    Term("dataset", "Dataset (examples)", "A file of examples: a question or instruction and the answer you want "
         "the model to give. The studio checks it before anything is trained on it."),
    Term("base-model", "Base model", "The ready-made model you start from. Training adapts it to your examples."),
    Term("fine-tune", "Fine-tune (training run)", "Teaching a base model your way of answering by showing it "
         "your examples many times.", ("run",)),
    Term("lora", "LoRA (adapter training)", "Trains a small add-on (an adapter) instead of the whole model: fast, "
         "small files, nearly the same quality.", ("adapter",)),
    Term("qlora", "QLoRA", "LoRA on a compressed (4-bit) copy of the model: uses the least memory, a little "
         "slower."),
    Term("full", "Full fine-tuning", "Trains every part of the model: the most memory and the largest files."),
    Term("lora-r", "How strongly to adapt (LoRA rank)", "The size of the adapter. Larger learns more detail from "
         "your examples but uses more memory and can copy them too closely.", ("lora_r", "rank")),
    Term("lora-alpha", "Adapter strength (LoRA alpha)", "How much weight the adapter's changes get; usually "
         "twice the rank.", ("lora_alpha",)),
    Term("target-modules", "Which parts adapt (target modules)", "The layers of the model that get an adapter: "
         "the attention parts only, or attention and feed-forward (all linear layers).",
         ("target_modules", "linear layers")),
    Term("learning-rate", "Learning speed (learning rate)", "How big a step the model takes after each batch of "
         "examples. Too high makes training unstable, too low learns little.", ("learning_rate", "LR")),
    Term("epochs", "How long to train (epochs)", "How many times the training reads all your examples. One epoch "
         "is one full pass.", ("epoch", "epochs")),
    Term("max-steps", "Stop after (max steps)", "Ends the training after this many updates, whatever the number "
         "of passes.", ("max_steps", "step")),
    Term("batch", "How many examples at once (batch size)", "Examples the model reads together before one update. "
         "Larger is steadier but needs more memory.", ("per_device_batch_size", "micro-batch",
                                                        "effective batch")),
    Term("grad-accum", "Batches added up (gradient accumulation)", "Several small batches are added up before one "
         "update, so a large batch fits in little memory.", ("grad_accum",)),
    Term("devices", "Devices (GPUs)", "How many graphics cards train the run at once. DDP copies the model to "
         "each; FSDP splits it over them.", ("devices", "DDP", "FSDP")),
    Term("scheduler", "Slowing down over time (schedule, warmup)", "The learning speed rises during a short "
         "warmup, then slows down towards the end (cosine or linear decay).", ("scheduler", "warmup",
                                                                              "cosine decay")),
    Term("precision", "Number format (precision)", "How precisely numbers are stored while training: fp32 is "
         "exact and large, bf16 and fp16 use half the memory.", ("precision", "fp32", "bf16", "fp16")),
    Term("max-length", "Longest example (max length, tokens)", "Examples longer than this are cut. Longer limits "
         "need more memory and time.", ("max_length",)),
    Term("token", "Token", "A piece of a word: the unit models read and write. 100 tokens are roughly 75 English "
         "words."),
    Term("loss", "Loss (training loss)", "How wrong the model's answers are on the examples it trains on. Going "
         "down means it is learning."),
    Term("eval-loss", "Evaluation loss", "The same measure on examples kept aside and never trained on. If it "
         "goes up while training loss goes down, the model is memorising (overfitting).", ("eval_loss",)),
    Term("perplexity", "Perplexity", "How surprised the model is by the held-out answers; lower is better."),
    Term("checkpoint", "Checkpoint", "A saved copy of the training in progress, so that a stopped run can "
         "continue."),
    Term("adapter-file", "Adapter download", "The trained add-on only. Load it on top of the same base model "
         "(in Python, with the peft library; the download page shows the two lines)."),
    Term("merged", "Merged model", "The base model with the adapter built in: one folder any transformers-"
         "compatible tool loads directly."),
    Term("queue", "Queue and worker", "A worker is a machine process that trains or answers. Runs wait in the "
         "queue, in order, until a worker is free."),
    Term("ab-test", "Blind A/B test", "Two models answer the same prompts; people vote for the better answer "
         "without knowing which model wrote it."),
    Term("estimate", "Estimate range", "The likely time, from the model size and your data, corrected by how "
         "long earlier finished runs on the same kind of machine really took."),
    Term("device-hours", "Device-hours (GPU-hours)", "How much machine time a run uses: hours of training x "
         "the GPUs it uses (a CPU server counts once). Times your team's price per hour, it is the run's cost.",
         ("GPU-hours", "host-hours")),
    Term("break-even", "Break-even (return on investment)", "The number of requests, or months, after which "
         "what a fine-tuned model saves on each request has paid back what training it cost."),
)
BY_SLUG = {t.slug: t for t in GLOSSARY}

# Outcome-worded names of the training settings, and the glossary entry that explains each.
SETTING_LABELS: dict[str, tuple[str, str]] = {
    "method": ("Training method", "lora"),
    "lora_r": ("How strongly to adapt", "lora-r"),
    "lora_alpha": ("Adapter strength", "lora-alpha"),
    "lora_dropout": ("Adapter dropout (guards against copying examples)", "lora-r"),
    "target_modules": ("Which parts of the model adapt", "target-modules"),
    "lora_bias": ("Train the adapter's offsets too", "lora"),
    "learning_rate": ("Learning speed", "learning-rate"),
    "epochs": ("How long to train (passes over your examples)", "epochs"),
    "max_steps": ("Stop after this many updates", "max-steps"),
    "per_device_batch_size": ("How many examples at once", "batch"),
    "grad_accum": ("Batches added up before each update", "grad-accum"),
    "devices": ("Graphics cards used", "devices"),
    "scheduler": ("How learning slows down", "scheduler"),
    "warmup": ("Warm-up share at the start", "scheduler"),
    "weight_decay": ("Pull towards the original (weight decay)", "learning-rate"),
    "max_grad_norm": ("Limit on the size of one update", "learning-rate"),
    "precision": ("Number format", "precision"),
    "max_length": ("Longest example (tokens)", "max-length"),
    "packing": ("Pack short examples together", "max-length"),
    "seed": ("Random seed (same seed, same run)", "fine-tune"),
    "eval_strategy": ("When to measure progress", "eval-loss"),
    "eval_steps": ("Measure progress every (updates)", "eval-loss"),
    "save_strategy": ("When to save a checkpoint", "checkpoint"),
    "save_steps": ("Save a checkpoint every (updates)", "checkpoint"),
    "save_total_limit": ("Checkpoints to keep", "checkpoint"),
    "logging_steps": ("Report progress every (updates)", "loss"),
    "gradient_checkpointing": ("Save memory by recomputing (slower)", "precision"),
    "base_model": ("Base model", "base-model"),
}


def setting_label(name: str) -> str:
    return SETTING_LABELS.get(name, (name.replace("_", " ").capitalize(), ""))[0]


def setting_term(name: str) -> str:
    return SETTING_LABELS.get(name, ("", "fine-tune"))[1] or "fine-tune"


def _level(value: float, low: float, high: float, words: tuple[str, str, str]) -> str:
    return words[0] if value < low else words[2] if value > high else words[1]


def plain_choices(config: dict[str, Any], train_examples: int) -> list[dict[str, str]]:
    """What the planned settings mean, as outcomes: (label, plain value, ML term and value, glossary slug)."""
    out = []
    method = config.get("method", "lora")
    if method != "full":
        r = int(config.get("lora_r") or 16)
        out.append({"label": "How strongly to adapt", "value": _level(r, 12, 32, ("lightly", "moderately", "strongly")),
                    "term": f"LoRA rank {r}, alpha {config.get('lora_alpha', 2 * r):g}", "slug": "lora-r"})
    epochs = config.get("epochs")
    if config.get("max_steps"):
        value, term = f"{config['max_steps']} updates", f"max_steps {config['max_steps']}"
    else:
        e = float(epochs or 1)
        value = f"reads your {train_examples:,} examples {'once' if e == 1 else 'twice' if e == 2 else f'{e:g} times'}"
        term = f"{e:g} epoch{'s' if e != 1 else ''}"
    out.append({"label": "How long to train", "value": value, "term": term, "slug": "epochs"})
    batch = int(config.get("per_device_batch_size") or 1)
    accum = int(config.get("grad_accum") or 1)
    devices = int(config.get("devices") or 1)
    out.append({"label": "How many examples at once",
                "value": f"{batch} read together, {batch * accum * devices} per update",
                "term": f"batch {batch} x accumulation {accum}" + (f" x {devices} devices" if devices > 1 else ""),
                "slug": "batch"})
    lr = float(config.get("learning_rate") or 0)
    out.append({"label": "Learning speed", "value": _level(lr, 5e-5, 5e-4, ("careful", "usual", "fast")),
                "term": f"learning rate {lr:.0e}", "slug": "learning-rate"})
    out.append({"label": "Longest example", "value": f"{int(config.get('max_length') or 0):,} tokens",
                "term": "max_length", "slug": "max-length"})
    return out


def memory_sentence(est: dict[str, Any], labels: dict[str, str]) -> str:
    """The fit verdict in words: what is needed, where, and what to do when it does not fit."""
    mem = est.get("memory") or {}
    method_label = labels.get(mem.get("method", ""), "This method")
    need = f"about {mem.get('total_gb', 0):.1f} GB"
    where = "the training machine"
    if est.get("device_known"):
        where = est.get("device") or where
        if est.get("device_memory_gb"):
            where += f", {est['device_memory_gb']:.0f} GB"
    if mem.get("fits") is None:
        return f"{method_label} needs {need} of memory; it is checked when a worker takes the run."
    if mem.get("fits"):
        return f"{method_label} needs {need} of memory: it fits on {where}."
    other = est.get("recommended_method")
    tail = " Choose a smaller model, shorter examples or fewer at once."
    needed, devices = est.get("devices_needed"), est.get("devices") or 1
    if needed and needed > devices:
        tail = (f" It fits when split over {needed} graphics cards of this size: set devices to {needed} "
                "(Graphics cards used, under Advanced settings).")
    elif other:
        tail = f" {labels.get(other, 'Another method')} would fit: choose it under Advanced settings."
    return f"{method_label} needs {need} of memory: more than {where} has.{tail}"
