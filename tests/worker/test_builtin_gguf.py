"""The must-show of the GGUF export: the built-in SmolLM2-135M-Instruct, fine-tuned with LoRA for a
few steps on the demo dataset, merged and written as GGUF, answers a fixed prompt the same way
in llama.cpp (llama-cpp-python) and in transformers' GGUF loader as in the studio's own inference
(worker/inference/engine.py serving the base model with the run's adapter):

- f16: the same greedy answer, word for word, from all three;
- q8_0: teacher-forced on the f16 answer, llama.cpp's q8_0 file predicts the same next token at
  90% or more of its positions, and its own greedy answer starts with the same first 8 tokens.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m slow -s tests/worker/test_builtin_gguf.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "support_fr_brand_voice.jsonl"
PROMPT = [{"role": "system", "content": "Tu es l'assistant du support client de Nuage, le service de stockage en ligne."},
          {"role": "user", "content": "Bonjour, comment changer mon mot de passe ? Merci !"}]
MAX_TOKENS = 40


@pytest.mark.slow
def test_builtin_model_fine_tuned_then_exported_answers_the_same_in_llama_cpp_and_transformers(builtin_dir, tmp_path):
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from planner.config import TrainingConfig
    from worker.inference.engine import Engine, Request
    from worker.training.data import read_jsonl
    from worker.training.export import save_merged
    from worker.training.generate import generate_answers
    from worker.training.gguf_export import export_gguf
    from worker.training.reporter import NullReporter
    from worker.training.run import run as run_engine

    started = time.monotonic()
    config = TrainingConfig(base_model=str(builtin_dir), method="lora", lora_r=16, lora_alpha=32, lora_dropout=0.0,
                            target_modules="all_linear", learning_rate=2e-3, epochs=None, max_steps=4,
                            per_device_batch_size=6, grad_accum=1, warmup=0.0, scheduler="constant",
                            max_length=160, packing=True, gradient_checkpointing=False, save_strategy="no",
                            eval_strategy="no", save_total_limit=None)
    result = run_engine(config, read_jsonl(DEMO)[:60], None, tmp_path / "run", NullReporter(), export_merged=False)
    merged = save_merged(str(builtin_dir), result.adapter_dir, tmp_path / "merged")
    exported = export_gguf(merged, tmp_path / "gguf", name="run", variants=("f16", "q8_0"))
    prepared_s = time.monotonic() - started

    studio = Engine().generate(Request(base=str(builtin_dir), adapter=str(result.adapter_dir), messages=PROMPT,
                                       max_tokens=MAX_TOKENS, temperature=0.0)).text.strip()

    f16 = Llama(model_path=str(exported.files["f16"]), n_ctx=512, verbose=False, n_threads=2, seed=0)
    answer = f16.create_chat_completion(messages=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)
    llama_f16 = answer["choices"][0]["message"]["content"].strip()  # prompt built from the GGUF's chat template

    gguf_dir, name = exported.files["f16"].parent, exported.files["f16"].name
    hf_model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=name)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=name)
    transformers_f16 = generate_answers(hf_model, hf_tokenizer, [PROMPT], max_new_tokens=MAX_TOKENS)[0]

    print(f"\nfine-tune + merge + export in {prepared_s:.0f}s; the studio answers: {studio!r}")
    assert studio.startswith("Bonjour et merci de votre message")  # the fine-tune took: the brand greeting
    assert llama_f16 == studio
    assert transformers_f16 == studio

    # q8_0: teacher-forced on the f16 answer (prompt from the same template), then its own greedy start.
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    answer_ids = f16.tokenize(llama_f16.encode(), add_bos=False, special=False)
    q8 = Llama(model_path=str(exported.files["q8_0"]), n_ctx=512, logits_all=True, verbose=False, n_threads=2, seed=0)
    q8.eval(prompt_ids + answer_ids)
    scores = np.asarray(q8.scores[: len(prompt_ids) + len(answer_ids)])
    predicted = scores[len(prompt_ids) - 1: -1].argmax(-1)
    agreement = float((predicted == np.asarray(answer_ids)).mean())
    q8.reset()
    q8_answer = q8.create_chat_completion(messages=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)
    q8_text = q8_answer["choices"][0]["message"]["content"].strip()
    q8_ids = q8.tokenize(q8_text.encode(), add_bos=False, special=False)
    print(f"q8_0: next-token agreement {agreement:.0%} on the f16 answer; its answer: {q8_text!r}")
    print(f"whole test {time.monotonic() - started:.0f}s")
    assert agreement >= 0.9
    assert q8_ids[:8] == answer_ids[:8]
