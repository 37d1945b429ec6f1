"""A bounded soak: a few simulated users (Locust) browse the pages and call both APIs of an embedded
studio for a fixed time while one of its runs trains; 5xx, failures, latency and the web process's
memory show whether the studio holds up.

    .venv/bin/python bench/soak.py [--minutes 10] [--users 6] [--keep]

Sets everything up in a temporary data directory, without any network: `studio up` (web, train and
default workers, inference process; SQLite database and broker) on free loopback ports, the
built-in SmolLM2-135M model, an account, an API key, an uploaded dataset, a run that trains for
longer than the soak and a second one queued behind it. Then each page and call is made once
(warm-up), the web's resident memory is read (/proc/<pid>/status), and the users run:

- browser users (logged in): home, runs list, the training run's page and its status fragment
  (as htmx asks for it), datasets list, a dataset's page, the comparison of the two runs, A/B list;
- API users (Bearer key): /api/v1/runs, /api/v1/datasets, the run's metrics and events,
  /v1/models, /v1/fine_tuning/jobs;
- one chat user: a /v1/chat/completions on the base model (max_tokens 8) every 20-40 s.

Every user waits 1-3 s between requests (the chat user longer): about 2.5 requests a second in all,
well under the API key's rate limit. Only 127.0.0.1 is ever addressed. At the end it prints the
requests, failures, 5xx, p95 latency (overall and per group), the web's memory at the start and
the end, and a PASS/FAIL line: no 5xx, under 1 % failures, memory growth under 10 %, the web
never restarted and the run still training. Exit status 1 on FAIL, 2 when it could not set up.
It stops by itself at the time limit; Ctrl-C (or SIGTERM) stops the users and everything it
started, and the temporary directory is removed (--keep leaves it, with the studio's log).

Needs Locust (`pip install 'locust>=2.30,<3'`), used as a library.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # the only address this benchmark ever talks to
PASSWORD = "soak bench password"
GROUPS = ("pages", "native API", "OpenAI API")
MAX_USERS = 20
RUN_HYPER = {"method": "lora", "per_device_batch_size": 2, "grad_accum": 1, "max_length": 128, "warmup": 0.0,
             "scheduler": "constant", "learning_rate": 1e-4, "lora_r": 8, "lora_alpha": 16, "packing": True,
             "epochs": None, "eval_strategy": "no", "save_strategy": "steps", "save_steps": 50}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the users run (default 10)")
    parser.add_argument("--users", type=int, default=6,
                        help=f"simulated users, one of them the chat user (2 to {MAX_USERS}; default 6)")
    parser.add_argument("--setup-timeout", type=float, default=600.0,
                        help="seconds allowed for the studio to start and the run to begin training")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and its logs")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be above 0 and at most 1440")
    if not 2 <= args.users <= MAX_USERS:
        parser.error(f"--users must be between 2 and {MAX_USERS}")
    return args


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def rss_kib(pid: int) -> int:
    """The process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class SetupError(Exception):
    """The studio could not be brought to the state the soak needs; the message says what failed."""


# -- the studio under test ------------------------------------------------------------------------


@dataclass
class Target:
    base: str
    key: str = ""
    dataset_id: int = 0
    run_id: int = 0
    queued_run_id: int = 0
    model_slug: str = ""
    web_pid: int = 0


@dataclass
class Studio:
    """`studio up` in its own process group, its output in a log file."""

    data_dir: Path
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / "studio-up.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("STUDIO_DATABASE_URL", "STUDIO_BROKER_URL", "STUDIO_SECRET_KEY", "STUDIO_ARTIFACT_DIR",
                            "STUDIO_MODEL_DIR")}
        return {**env, "STUDIO_DATA_DIR": str(self.data_dir), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "STUDIO_INFERENCE_URL": f"http://{HOST}:{free_port()}", "STUDIO_LOG_LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))}

    def start(self) -> None:
        self._env = self.env
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--host", HOST, "--port", str(self.port)],
                                     env=self._env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_stop_with_parent)
        log.close()

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "app.cli", *args], env=self._env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SetupError(f"`studio {' '.join(args[:2])}` failed: {(done.stderr or done.stdout).strip()[-500:]}")
        return done.stdout

    def status(self) -> dict:
        from app.supervisor import STATUS_FILE, read_status

        return read_status(self.data_dir / STATUS_FILE) or {}

    def pid_of(self, name: str) -> int:
        for p in self.status().get("processes", []):
            if p["name"] == name and p.get("state") == "running" and p.get("pid"):
                return p["pid"]
        return 0

    def restarts_of(self, name: str) -> int:
        return next((p.get("restarts", 0) for p in self.status().get("processes", []) if p["name"] == name), 0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Ctrl-C to the supervisor (it stops its children), SIGKILL to everything if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = [p["pid"] for p in self.status().get("processes", []) if p.get("pid")]
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pgid in [self.proc.pid, *children]:  # each child runs in its own process group
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10)


def _stop_with_parent() -> None:
    """In the child before exec: SIGTERM (a clean stop of `studio up` and its children) when this
    benchmark dies, even by SIGKILL, so that nothing it started is left running."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def chat_line(i: int) -> bytes:
    record = {"messages": [{"role": "user", "content": f"Question {i}: how do I reset my password?"},
                           {"role": "assistant", "content": f"Answer {i}: open Settings, then use the reset link."}]}
    return json.dumps(record).encode() + b"\n"


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not found:
        raise SetupError("no CSRF token on the page")
    return found.group(1)


def log_in(session, base: str, email: str) -> None:  # noqa: ANN001 (a requests.Session or Locust's client)
    token = csrf_from(session.get(f"{base}/login").text)
    r = session.post(f"{base}/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                     allow_redirects=False)
    if r.status_code != 303:
        raise SetupError(f"log in failed: {r.status_code} {r.text[:300]}")


def wait_until(predicate, timeout: float, what: str, studio: Studio, interval: float = 1.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not studio.alive():
            raise SetupError(f"`studio up` exited while waiting for {what}:\n{studio.tail()}")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}:\n{studio.tail()}")


def set_up(studio: Studio, timeout: float) -> Target:
    import requests

    target = Target(base=f"http://{HOST}:{studio.port}")
    started = time.monotonic()

    def ready() -> bool:
        try:
            r = requests.get(f"{target.base}/readyz", timeout=5)
        except requests.RequestException:
            return False
        names = {w["name"].split("@")[0] for w in r.json().get("workers", [])} if r.status_code == 200 else set()
        return names >= {"train", "default"} and bool(studio.pid_of("web")) and bool(studio.pid_of("inference"))

    print("starting the studio (`studio up`: migrations, built-in model, web, workers, inference)...", flush=True)
    wait_until(ready, timeout, "the studio to be ready", studio)
    target.web_pid = studio.pid_of("web")
    email = "soak@example.com"
    studio.cli("users", "create", email, "--password", PASSWORD, "--team-name", "Soak")
    browser = requests.Session()
    log_in(browser, target.base, email)
    token = csrf_from(browser.get(f"{target.base}/").text)
    r = browser.post(f"{target.base}/api/v1/api-keys", json={"name": "soak", "scopes": ["read", "write"]},
                     headers={"X-CSRF-Token": token})
    if r.status_code != 201:
        raise SetupError(f"creating an API key failed: {r.status_code} {r.text[:300]}")
    target.key = r.json()["key"]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {target.key}"
    r = api.post(f"{target.base}/api/v1/datasets", data={"name": "soak support"},
                 files={"file": ("support.jsonl", b"".join(chat_line(i) for i in range(400)), "application/jsonl")})
    if r.status_code != 201:
        raise SetupError(f"uploading the dataset failed: {r.status_code} {r.text[:300]}")
    target.dataset_id = r.json()["id"]

    def dataset_valid() -> bool:
        status = api.get(f"{target.base}/api/v1/datasets/{target.dataset_id}").json()["status"]
        if status not in ("uploaded", "pending", "validating", "valid"):
            raise SetupError(f"the dataset was found {status}")
        return status == "valid"

    wait_until(dataset_valid, timeout, "the dataset to be validated", studio)
    models = api.get(f"{target.base}/api/v1/models").json()
    builtin = next((m for m in models if m.get("source") == "builtin"), None)
    if builtin is None:
        raise SetupError(f"the built-in model is not registered: {models}")
    target.model_slug = builtin["slug"]
    for name, steps in (("soak: trains during the soak", 1_000_000), ("soak: queued behind it", 20)):
        r = api.post(f"{target.base}/api/v1/runs", json={
            "dataset_id": target.dataset_id, "base_model_id": builtin["id"], "preset": "classic", "name": name,
            "hyperparameters": {**RUN_HYPER, "max_steps": steps}})
        if r.status_code != 201:
            raise SetupError(f"creating a run failed: {r.status_code} {r.text[:300]}")
        if not target.run_id:
            target.run_id = r.json()["id"]
        else:
            target.queued_run_id = r.json()["id"]

    def training() -> bool:
        run = api.get(f"{target.base}/api/v1/runs/{target.run_id}").json()
        if run["status"] in ("failed", "cancelled", "succeeded"):
            raise SetupError(f"the run ended {run['status']} before the soak: {run.get('error') or run}")
        return run["status"] == "running" and run["current_step"] >= 1

    wait_until(training, timeout, "the run to train its first step", studio)
    print(f"set up in {time.monotonic() - started:.0f}s: web pid {target.web_pid}, run #{target.run_id} training, "
          f"run #{target.queued_run_id} queued, dataset #{target.dataset_id}", flush=True)
    return target


def run_state(target: Target) -> tuple[str, int]:
    import requests

    run = requests.get(f"{target.base}/api/v1/runs/{target.run_id}",
                       headers={"Authorization": f"Bearer {target.key}"}, timeout=30).json()
    return run["status"], run["current_step"]


def cancel_runs(target: Target) -> None:
    import requests

    for run_id in (target.run_id, target.queued_run_id):
        if run_id:
            try:
                requests.post(f"{target.base}/api/v1/runs/{run_id}/cancel",
                              headers={"Authorization": f"Bearer {target.key}"}, timeout=10)
            except requests.RequestException:
                pass


# -- the users ------------------------------------------------------------------------------------


def user_classes(target: Target) -> list[type]:
    from locust import HttpUser, between, task

    pages = "pages"

    class BrowserUser(HttpUser):
        """A logged-in person looking at the studio while the run trains."""

        weight = 3
        wait_time = between(1, 3)

        def on_start(self) -> None:
            token = csrf_from(self.client.get("/login", name=f"{pages}: /login").text)
            self.client.post("/login", name=f"{pages}: /login (POST)", allow_redirects=False,
                             data={"email": "soak@example.com", "password": PASSWORD, "csrf_token": token})

        def get(self, path: str, name: str, **kwargs) -> None:  # noqa: ANN003
            self.client.get(path, name=f"{pages}: {name}", **kwargs)

        @task(2)
        def home(self) -> None:
            self.get("/", "/")

        @task(2)
        def runs(self) -> None:
            self.get("/runs", "/runs")

        @task(2)
        def run_page(self) -> None:
            self.get(f"/runs/{target.run_id}", "/runs/[id]")

        @task(4)
        def run_status(self) -> None:  # what the open run page polls
            self.get(f"/runs/{target.run_id}/status", "/runs/[id]/status", headers={"HX-Request": "true"})

        @task
        def datasets(self) -> None:
            self.get("/datasets", "/datasets")

        @task
        def dataset_page(self) -> None:
            self.get(f"/datasets/{target.dataset_id}", "/datasets/[id]")

        @task
        def compare(self) -> None:
            self.get(f"/runs/compare?ids={target.run_id},{target.queued_run_id}", "/runs/compare")

        @task
        def ab(self) -> None:
            self.get("/ab", "/ab")

    class ApiUser(HttpUser):
        """A script polling the native and the OpenAI-compatible API with a key."""

        weight = 2
        wait_time = between(1, 3)

        def on_start(self) -> None:
            self.client.headers["Authorization"] = f"Bearer {target.key}"

        @task(2)
        def runs(self) -> None:
            self.client.get("/api/v1/runs", name="native API: /api/v1/runs")

        @task
        def datasets(self) -> None:
            self.client.get("/api/v1/datasets", name="native API: /api/v1/datasets")

        @task(2)
        def metrics(self) -> None:
            self.client.get(f"/api/v1/runs/{target.run_id}/metrics", name="native API: /api/v1/runs/[id]/metrics")

        @task(2)
        def events(self) -> None:
            self.client.get(f"/api/v1/runs/{target.run_id}/events", name="native API: /api/v1/runs/[id]/events")

        @task
        def models(self) -> None:
            self.client.get("/v1/models", name="OpenAI API: /v1/models")

        @task(2)
        def jobs(self) -> None:
            self.client.get("/v1/fine_tuning/jobs", name="OpenAI API: /v1/fine_tuning/jobs")

    class ChatUser(HttpUser):
        """Someone trying the base model now and then (generation runs in the inference process)."""

        fixed_count = 1
        wait_time = between(20, 40)

        def on_start(self) -> None:
            self.client.headers["Authorization"] = f"Bearer {target.key}"

        @task
        def chat(self) -> None:
            self.client.post("/v1/chat/completions", name="OpenAI API: /v1/chat/completions", timeout=180, json={
                "model": target.model_slug, "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": f"Say hello to user {random.randrange(1000)}."}]})

    return [BrowserUser, ApiUser, ChatUser]


@dataclass
class Tally:
    """Every request the users made, by name ("group: path"): latencies (ms), failures, 5xx."""

    times: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def record(self, name: str, response_time: float, response, exception) -> None:  # noqa: ANN001
        self.times.setdefault(name, []).append(response_time)
        status = getattr(response, "status_code", 0) or 0
        if status >= 500:
            self.server_errors.append(f"{status} {name}")
        if exception is not None:
            self.failures[name] = self.failures.get(name, 0) + 1
            key = f"{name}: {str(exception)[:160]}"
            self.errors[key] = self.errors.get(key, 0) + 1

    def select(self, prefix: str = "") -> tuple[list[float], int]:
        """The latencies and the failure count of every name that starts with prefix."""
        names = [n for n in self.times if n.startswith(prefix)]
        return [t for n in names for t in self.times[n]], sum(self.failures.get(n, 0) for n in names)


def warm_up(target: Target) -> None:
    """Each page and call once, so that first-use costs (templates compiled, the inference
    process loading the model) are not counted as growth or latency."""
    import requests

    browser = requests.Session()
    log_in(browser, target.base, "soak@example.com")
    for path in ("/", "/runs", f"/runs/{target.run_id}", f"/runs/{target.run_id}/status", "/datasets",
                 f"/datasets/{target.dataset_id}", f"/runs/compare?ids={target.run_id},{target.queued_run_id}", "/ab"):
        r = browser.get(f"{target.base}{path}", timeout=60)
        if r.status_code != 200:
            raise SetupError(f"warm-up: GET {path} answered {r.status_code}: {r.text[:300]}")
    api = {"Authorization": f"Bearer {target.key}"}
    for path in ("/api/v1/runs", "/api/v1/datasets", f"/api/v1/runs/{target.run_id}/metrics",
                 f"/api/v1/runs/{target.run_id}/events", "/v1/models", "/v1/fine_tuning/jobs"):
        r = requests.get(f"{target.base}{path}", headers=api, timeout=60)
        if r.status_code != 200:
            raise SetupError(f"warm-up: GET {path} answered {r.status_code}: {r.text[:300]}")
    r = requests.post(f"{target.base}/v1/chat/completions", headers=api, timeout=300, json={
        "model": target.model_slug, "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]})
    if r.status_code != 200:
        raise SetupError(f"warm-up: a chat completion answered {r.status_code}: {r.text[:300]}")


def soak(target: Target, studio: Studio, minutes: float, users: int) -> Tally:
    import gevent
    from locust import events
    from locust.env import Environment

    tally = Tally()

    @events.request.add_listener
    def _on_request(request_type, name, response_time, response_length, response=None, exception=None,  # noqa: ANN001, ARG001
                    **kwargs) -> None:  # noqa: ANN003
        tally.record(name, response_time, response, exception)

    env = Environment(user_classes=user_classes(target), events=events, host=target.base)
    runner = env.create_local_runner()
    try:
        runner.start(users, spawn_rate=users)
        deadline = time.monotonic() + minutes * 60
        next_print = time.monotonic() + 60
        while time.monotonic() < deadline:
            gevent.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            if not studio.alive():
                print("`studio up` exited during the soak", flush=True)
                break
            if time.monotonic() >= next_print:
                next_print += 60
                total = env.stats.total
                print(f"  {(minutes * 60 - (deadline - time.monotonic())) / 60:4.1f} min: {total.num_requests} requests, "
                      f"{total.num_failures} failures, web RSS {rss_kib(target.web_pid) / 1024:.0f} MiB", flush=True)
    finally:
        runner.quit()
        runner.greenlet.join(timeout=60)
    return tally


# -- the report -----------------------------------------------------------------------------------


def report(tally: Tally, rss_start: int, rss_end: int, minutes: float, users: int, steps: tuple[int, int],
           run_status: str, web_restarts: int) -> bool:
    every, failures = tally.select()
    growth = (rss_end - rss_start) / rss_start if rss_start else float("inf")
    print(f"\nsoak: {minutes:g} min, {users} users (1 chat user), the run trained steps {steps[0]} -> {steps[1]} "
          f"({run_status} at the end)")
    print(f"{'':44} {'requests':>8} {'failures':>8} {'median':>8} {'p95':>8}")

    def row(label: str, times: list[float], failed: int) -> None:
        median = sorted(times)[len(times) // 2] if times else float("nan")
        print(f"{label:44} {len(times):8d} {failed:8d} {median:6.0f}ms {p95(times):6.0f}ms")

    for name in sorted(tally.times):
        row(f"  {name}", tally.times[name], tally.failures.get(name, 0))
    for group in GROUPS:
        row(group, *tally.select(f"{group}: "))
    row("all", every, failures)
    print(f"5xx: {len(tally.server_errors)}" + (f"  ({', '.join(sorted(set(tally.server_errors))[:5])})"
                                                 if tally.server_errors else ""))
    for error, count in sorted(tally.errors.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  failure x{count}: {error}")
    print(f"web RSS: {rss_start / 1024:.1f} MiB at the start, {rss_end / 1024:.1f} MiB at the end "
          f"({growth:+.1%}); web restarts: {web_restarts}")
    rate = failures / len(every) if every else 1.0
    checks = [(len(tally.server_errors) == 0, f"{len(tally.server_errors)} x 5xx"),
              (rate < 0.01, f"{rate:.2%} failures (< 1%)"),
              (growth < 0.10, f"memory growth {growth:+.1%} (< 10%)"),
              (web_restarts == 0, "web never restarted"),
              (run_status == "running" and steps[1] > steps[0], "the run kept training")]
    ok = all(passed for passed, _ in checks)
    print(f"{'PASS' if ok else 'FAIL'}: " + ", ".join(f"{text}{'' if passed else ' <- FAILED'}" for passed, text in checks))
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import locust  # noqa: F401  (patches the standard library for gevent: before anything else)
    except ImportError:
        print("bench/soak.py needs Locust, which is not installed in this environment.\n"
              f"Install it with:  {sys.executable} -m pip install 'locust>=2.30,<3'", file=sys.stderr)
        return 2
    from locust.log import setup_logging

    setup_logging("WARNING")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    def on_term(signum, frame) -> None:  # noqa: ANN001, ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it even when started in the background
    tmp = Path(tempfile.mkdtemp(prefix="studio-soak-"))
    studio = Studio(data_dir=tmp / "data", port=free_port())
    target = None
    try:
        studio.start()
        target = set_up(studio, args.setup_timeout)
        warm_up(target)
        restarts = studio.restarts_of("web")
        rss_start = rss_kib(target.web_pid)
        status, step_start = run_state(target)
        print(f"soak for {args.minutes:g} min with {args.users} users; web RSS {rss_start / 1024:.1f} MiB", flush=True)
        tally = soak(target, studio, args.minutes, args.users)
        if not studio.alive():
            raise SetupError(f"`studio up` exited during the soak:\n{studio.tail()}")
        web_pid_now = studio.pid_of("web")
        rss_end = rss_kib(web_pid_now or target.web_pid)
        status, step_end = run_state(target)
        web_restarts = max(studio.restarts_of("web") - restarts, int(web_pid_now != target.web_pid))
        ok = report(tally, rss_start, rss_end, args.minutes, args.users, (step_start, step_end), status,
                    web_restarts)
        return 0 if ok else 1
    except SetupError as exc:
        print(f"soak could not run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the studio", file=sys.stderr)
        return 130
    finally:
        if target is not None and studio.alive():
            cancel_runs(target)
        studio.stop()
        if args.keep:
            print(f"kept {tmp} (the studio's output: {studio.log_path})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
