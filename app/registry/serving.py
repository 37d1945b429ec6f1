"""Serving check before a release: will the version load in the common serving engines?

What is checked, and why (vLLM's LoRA config and PEFT helper, llama.cpp's convert_lora_to_gguf.py):
- vLLM loads LoRA adapters up to `--max-lora-rank` (16 unless set; its accepted settings are
  8, 16, 32, 64, 128 and 256 on common versions); a larger rank needs the flag, beyond 256 it
  does not load.
- vLLM applies adapters to the attention and MLP projections; an adapter with `modules_to_save`
  or adapters on the embeddings or the output head (lm_head) is refused ("unsupported LoRA weight").
- vLLM does not load DoRA adapters (their `lora_magnitude_vector` weights are refused); merging the
  adapter into the base model (the run page's merged copy) gives a plain model any engine serves.
- llama.cpp converts PEFT LoRA adapters of linear layers to GGUF (convert_lora_to_gguf.py, f32,
  f16, bf16 or q8_0); DoRA and embedding adapters are not converted, and an adapter trained on a
  4-bit (QLoRA) copy is converted and used against the 16-bit base model.
The adapter's own adapter_config.json (in the store) is read when it is there; the run's
configuration otherwise. Findings are warnings: a release is never blocked by them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from app.models import Artifact, Run
from app.storage import Store

VLLM_DEFAULT_MAX_RANK = 16
VLLM_RANKS = (8, 16, 32, 64, 128, 256)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
NOT_LINEAR = ("embed_tokens", "wte", "lm_head", "embed_out", "word_embeddings")


@dataclass
class Finding:
    engine: str  # vllm | llama.cpp
    level: str  # ok | warning | error (error: that engine will not load it as it is)
    message: str


@dataclass
class ServingCheck:
    kind: str  # adapter | model
    rank: int | None
    target_modules: list[str] | str
    dtype: str
    use_dora: bool
    source: str  # adapter_config.json | run configuration
    findings: list[Finding]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level != "ok"]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = not self.warnings
        return out


def _targets(config: dict[str, Any]) -> list[str] | str:
    choice = config.get("target_modules") or "attention"
    return {"attention": ATTENTION, "attention_mlp": ATTENTION + MLP}.get(choice, "all-linear")


def _vllm(rank: int, targets: list[str] | str, use_dora: bool, saved: list[str], bias: str) -> list[Finding]:
    out: list[Finding] = []
    if use_dora:
        out.append(Finding("vllm", "error", "DoRA adapters do not load in vLLM (their magnitude weights are "
                                            "refused). Serve the merged model instead (Merge on the run page)."))
    if rank > VLLM_RANKS[-1]:
        out.append(Finding("vllm", "error", f"Rank {rank} is above the largest rank vLLM loads "
                                            f"({VLLM_RANKS[-1]}). Retrain with a smaller rank or serve the merged model."))
    elif rank > VLLM_DEFAULT_MAX_RANK:
        flag = next(r for r in VLLM_RANKS if r >= rank)
        out.append(Finding("vllm", "warning", f"Rank {rank} is above vLLM's default limit of "
                                              f"{VLLM_DEFAULT_MAX_RANK}: start vLLM with --max-lora-rank {flag}."))
    odd = [m for m in ([targets] if isinstance(targets, str) else targets) if m in NOT_LINEAR] + list(saved)
    if odd:
        out.append(Finding("vllm", "error", f"Adapters or saved copies of {', '.join(sorted(set(odd)))} "
                                            "(embeddings or output head) are refused by vLLM's LoRA loader."))
    if bias != "none":
        out.append(Finding("vllm", "warning", f"The adapter trains bias terms (lora_bias={bias}): vLLM ignores "
                                              "or refuses them depending on its version; retrain with lora_bias=none."))
    return out or [Finding("vllm", "ok", f"Loads as a LoRA adapter (rank {rank} within the default limit of "
                                         f"{VLLM_DEFAULT_MAX_RANK}; attention and MLP projections).")]


def _llama_cpp(targets: list[str] | str, use_dora: bool, saved: list[str], method: str) -> list[Finding]:
    out: list[Finding] = []
    if use_dora:
        out.append(Finding("llama.cpp", "error", "convert_lora_to_gguf.py converts plain LoRA only, not DoRA: "
                                                 "export the merged model to GGUF instead."))
    odd = [m for m in ([targets] if isinstance(targets, str) else targets) if m in NOT_LINEAR] + list(saved)
    if odd:
        out.append(Finding("llama.cpp", "error", f"Only adapters of linear layers convert to GGUF; this one "
                                                 f"also changes {', '.join(sorted(set(odd)))}."))
    if method == "qlora":
        out.append(Finding("llama.cpp", "warning", "Trained on a 4-bit copy (QLoRA): convert the adapter and use "
                                                   "it with the 16-bit base model's GGUF, or export the merged model."))
    return out or [Finding("llama.cpp", "ok", "Converts to a GGUF LoRA adapter (linear layers only).")]


def check(run: Run, adapter_config: dict[str, Any] | None) -> ServingCheck:
    """The findings for a run's output; adapter_config is its adapter_config.json when read."""
    config = dict(run.config or {})
    dtype = str(config.get("precision") or "auto")
    if run.method == "full":
        finding = "A full fine-tune: served as a model directory, no adapter limits apply."
        return ServingCheck("model", None, [], dtype, False, "run configuration",
                            [Finding("vllm", "ok", finding), Finding("llama.cpp", "ok", "Converts with convert_hf_to_gguf.py.")])
    source = "adapter_config.json" if adapter_config else "run configuration"
    adapter_config = adapter_config or {}
    rank = int(adapter_config.get("r") or config.get("lora_r") or 16)
    targets = adapter_config.get("target_modules") or _targets(config)
    if isinstance(targets, list):
        targets = sorted(str(t) for t in targets)
    use_dora = bool(adapter_config.get("use_dora", config.get("use_dora", False)))
    saved = [str(m) for m in (adapter_config.get("modules_to_save") or [])]
    bias = str(adapter_config.get("bias") or config.get("lora_bias") or "none")
    findings = _vllm(rank, targets, use_dora, saved, bias) + _llama_cpp(targets, use_dora, saved, run.method)
    return ServingCheck("adapter", rank, targets, dtype, use_dora, source, findings)


def read_adapter_config(store: Store, output: Artifact | None) -> dict[str, Any] | None:
    """The adapter's adapter_config.json from the store; None when there is none or it is unreadable."""
    if output is None or output.kind != "adapter":
        return None
    key = f"{output.path.rstrip('/')}/adapter_config.json"
    try:
        if not store.exists(key):
            return None
        with store.open(key) as fh:
            data = json.loads(fh.read(1_000_000) or b"{}")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
