"""Small factories for training tests: tiny models, records and configs."""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM = "Tu es l'assistant du support de Nuage."
GREETING = "Bonjour et merci de votre message !"
SIGNATURE = "— L'équipe Nuage ☁️"
TOPICS = ["ma facture", "mon mot de passe", "la synchronisation", "un remboursement", "mon espace de stockage"]


def build_tiny_model(directory: Path, tokenizer, *, hidden: int = 64, layers: int = 2, seed: int = 0,
                     initializer_range: float = 0.1) -> Path:
    """A 2-layer Llama with the real tokenizer's vocabulary, saved as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # wider than the default 0.02, so that a frozen (tied) output head can express confident
        # predictions and LoRA-only runs show a clear loss drop within a few steps
        initializer_range=initializer_range,
    )
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def answer(topic: str) -> str:
    return f"{GREETING} Voici l'aide pour {topic}.\n{SIGNATURE}"


def record(topic: str, *, weight: int | None = None) -> dict:
    assistant = {"role": "assistant", "content": answer(topic)}
    if weight is not None:
        assistant["weight"] = weight
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"J'ai une question sur {topic}."},
        assistant,
    ]}


def records(count: int) -> list[dict]:
    return [record(TOPICS[i % len(TOPICS)]) for i in range(count)]


def tiny_config(model_dir: Path, **overrides):
    from planner.config import TrainingConfig

    values = dict(
        base_model=str(model_dir), method="lora", lora_r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules="all_linear", learning_rate=1e-2, epochs=None, max_steps=8,
        per_device_batch_size=4, grad_accum=2, warmup=0.0, scheduler="constant",
        max_length=128, save_strategy="no", eval_strategy="no", save_total_limit=None,
        precision="fp32",  # the tests compare numbers; auto would pick bf16 on CPUs with native bf16
    )
    values.update(overrides)
    if values["method"] == "full":
        values.setdefault("learning_rate", 1e-3)
    return TrainingConfig(**values)


# -- tool calling --------------------------------------------------------------------------------
# A Qwen2.5-style chat template with tool support (Hermes <tool_call> blocks), set on the real
# SmolLM2 tokenizer, whose own template has none.
TOOL_TEMPLATE = (Path(__file__).parent / "tool_template.jinja").read_text()
CITIES = ["Paris", "Lyon", "Nice", "Lille", "Brest"]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
]
ASKS = {"get_weather": ["What is the weather in {}?", "Is it raining in {}?", "Weather for {} please.",
                        "How warm is it in {}?"],
        "get_time": ["What time is it in {}?", "Tell me the time in {}.", "Clock in {} please?",
                     "What hour is it now in {}?"]}
RESULTS = {"get_weather": "21 C, sunny", "get_time": "14:05"}


def tool_record(tool: str, ask: int, city: str, *, answered: bool = True) -> dict:
    """One conversation: the user asks, the assistant calls the tool, the result comes back and the
    assistant answers with it (or, answered=False, the conversation ends on the call)."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": tool, "arguments": json.dumps({"city": city})}}
    messages = [{"role": "user", "content": ASKS[tool][ask].format(city)},
                {"role": "assistant", "content": "", "tool_calls": [call]}]
    if answered:
        messages += [{"role": "tool", "tool_call_id": "call_1", "content": RESULTS[tool]},
                     {"role": "assistant", "content": f"{city}: {RESULTS[tool]}."}]
    return {"tools": TOOLS, "messages": messages}


def tool_records() -> tuple[list[dict], list[dict]]:
    """(training, held-out): every tool x phrasing x city; held out, one phrasing x city pair per tool
    and city that training never shows together."""
    train, held = [], []
    for tool in ASKS:
        for ask in range(4):
            for c, city in enumerate(CITIES):
                (held if ask == c % 4 and c < 4 else train).append(tool_record(tool, ask, city))
    return train, held


def plain_answer(topic: str) -> str:
    return f"Voici l'aide pour {topic}."


def pair(topic: str) -> dict:
    """A preference pair in the normalised form: the brand-voice answer is the better one."""
    return {
        "prompt": [{"role": "system", "content": SYSTEM},
                   {"role": "user", "content": f"J'ai une question sur {topic}."}],
        "chosen": [{"role": "assistant", "content": answer(topic)}],
        "rejected": [{"role": "assistant", "content": plain_answer(topic)}],
    }


def pairs(count: int, offset: int = 0) -> list[dict]:
    return [pair(TOPICS[(i + offset) % len(TOPICS)]) for i in range(count)]


def probe_text() -> str:
    return "<|im_start|>user\nBonjour, une question sur ma facture<|im_end|>\n<|im_start|>assistant\n"
