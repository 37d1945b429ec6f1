"""The must-show of the GGUF export: the built-in SmolLM2-135M-Instruct, fine-tuned with LoRA for a
few steps on the demo dataset, merged and written as GGUF, answers a fixed prompt the same way
in llama.cpp (llama-cpp-python) and in transformers' GGUF loader as in the studio's own inference
(worker/inference/engine.py serving the base model with the run's adapter):

- f16: the same greedy answer from all three, token for token, up to the first near-tie of the
  studio's own model (top-2 logits within 0.2: there f16 rounding of the weights, a few
  hundredths on a logit, may pick the other token, and the texts may part); the whole answer
  when it has none. Teacher-forced on the studio's answer, llama.cpp and transformers pick the
  studio's token at every position that is not a near-tie, with logits within 0.1 of the
  studio's (fp32) ones;
- q8_0: teacher-forced on the studio's answer, llama.cpp's q8_0 file predicts the same next token
  at 90% or more of its positions, and its own greedy answer starts with the same tokens (up to
  8, and not past the first near-tie).

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m slow -s tests/worker/test_builtin_gguf.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

DEMO = Path(__file__).resolve().parents[2] / "examples" / "support_fr_brand_voice.jsonl"
PROMPT = [{"role": "system", "content": "Tu es l'assistant du support client de Nuage, le service de stockage en ligne."},
          {"role": "user", "content": "Bonjour, comment changer mon mot de passe ? Merci !"}]
MAX_TOKENS = 40
TIE = 0.2  # top-2 logits closer than this are a near-tie: f16 rounding (logits move by < TIE / 2) may flip it


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~4 min on a quiet machine; 20 on two cores shared with other suites
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
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(studio, add_special_tokens=False)["input_ids"]
    rows = slice(len(prompt_ids) - 1, len(prompt_ids) + len(answer_ids) - 1)  # the logits that chose each answer token
    reference = _logits(AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32), prompt_ids + answer_ids)[rows]
    top2 = np.sort(reference, axis=-1)[:, -2:]
    confident = (top2[:, 1] - top2[:, 0]) >= TIE
    tie = int(np.argmin(confident)) if not confident.all() else len(answer_ids)  # the first near-tie, if any

    f16 = Llama(model_path=str(exported.files["f16"]), n_ctx=512, logits_all=True, verbose=False, n_threads=2, seed=0)
    reply = f16.create_chat_completion(messages=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)
    llama_f16 = reply["choices"][0]["message"]["content"].strip()  # prompt built from the GGUF's own chat template
    f16.reset()
    f16.eval(prompt_ids + answer_ids)
    llama_logits = np.asarray(f16.scores[: len(prompt_ids) + len(answer_ids)])[rows]

    gguf_dir, name = exported.files["f16"].parent, exported.files["f16"].name
    hf_model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=name)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=name)
    transformers_f16 = generate_answers(hf_model, hf_tokenizer, [PROMPT], max_new_tokens=MAX_TOKENS)[0]
    transformers_logits = _logits(hf_model, prompt_ids + answer_ids)[rows]

    print(f"\nfine-tune + merge + export in {prepared_s:.0f}s\n  studio:       {studio!r}\n"
          f"  llama.cpp:    {llama_f16!r}\n  transformers: {transformers_f16!r}\n"
          f"  first near-tie (top-2 logits within {TIE}) at answer token {tie} of {len(answer_ids)}")
    assert studio.startswith("Bonjour et merci de votre message")  # the fine-tune took: the brand greeting
    for name, logits, answer in (("llama.cpp", llama_logits, llama_f16), ("transformers", transformers_logits,
                                                                          transformers_f16)):
        deviation = float(np.abs(logits - reference).max())
        print(f"  {name} f16: largest logit difference from the studio's weights {deviation:.3f}")
        assert deviation < TIE / 2, name  # f16 rounding moves logits by a few hundredths here
        assert (logits.argmax(-1) == np.asarray(answer_ids))[confident].all(), name  # same choice wherever it is clear
        if tie == len(answer_ids):
            assert answer == studio, name  # no near-tie: the very same greedy answer
        else:  # the same greedy answer up to the near-tie, where f16 rounding may pick the other token
            assert tokenizer(answer, add_special_tokens=False)["input_ids"][:tie] == answer_ids[:tie], name

    # q8_0, close rather than equal: teacher-forced on the studio's answer, the same next token at
    # 90% of its positions or more, and its own greedy answer starts like the studio's.
    q8 = Llama(model_path=str(exported.files["q8_0"]), n_ctx=512, logits_all=True, verbose=False, n_threads=2, seed=0)
    q8.eval(prompt_ids + answer_ids)
    q8_logits = np.asarray(q8.scores[: len(prompt_ids) + len(answer_ids)])[rows]
    agreement = float((q8_logits.argmax(-1) == np.asarray(answer_ids)).mean())
    q8.reset()
    q8_text = q8.create_chat_completion(messages=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)["choices"][0][
        "message"]["content"].strip()
    print(f"  q8_0: next-token agreement {agreement:.0%}, largest logit difference "
          f"{float(np.abs(q8_logits - reference).max()):.3f}; its answer: {q8_text!r}\n"
          f"  whole test {time.monotonic() - started:.0f}s")
    assert agreement >= 0.9
    assert tokenizer(q8_text, add_special_tokens=False)["input_ids"][:min(8, tie)] == answer_ids[:min(8, tie)]


def _logits(model, ids: list[int]) -> np.ndarray:  # noqa: ANN001
    with torch.no_grad():
        return model.eval()(torch.tensor([ids])).logits[0].float().numpy()
