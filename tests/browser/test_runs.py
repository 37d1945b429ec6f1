"""A person who never saw the studio signs up, uses the example dataset, trains with the
recommended preset (a few hundred steps kept short), watches the loss curve move while it runs,
cancels a second run, compares the two and downloads the adapter.

Real worker processes (`python -m app.cli worker`) validate the dataset and train, on the
embedded SQLite broker, with a tiny Llama that carries the built-in model's real tokenizer,
registered as the built-in model. Screenshots of each page go to test-artifacts/screenshots/.

    .venv/bin/python -m pytest tests/browser/test_runs.py -q
"""

from __future__ import annotations

import os
import re
import time
import zipfile

import pytest
from sqlalchemy import select

from app.models import Worker
from app.models_registry import service as models_service
from app.models_registry.service import BUILTIN_SLUG
from tests.browser.conftest import shoot
from tests.processes import free_port, spawn, stop_all, wait_for

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tests.worker.training.factories import build_tiny_model
    from worker.training.builtin import convert_builtin
    from worker.training.modeling import load_tokenizer

    builtin = convert_builtin(tmp_path_factory.mktemp("models"))
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), load_tokenizer(str(builtin)))


@pytest.fixture
def worker(settings, db, tiny_model_dir, tmp_path):
    """The tiny model as the built-in one, and one real worker on both queues."""
    from app import queue

    models_service.register(db, model_dir=tiny_model_dir, display_name="SmolLM2-135M-Instruct (tiny test copy)",
                            source="builtin", slug=BUILTIN_SLUG)
    db.commit()
    queue._celery.cache_clear()
    os.environ["STUDIO_BROKER_URL"] = settings.broker_url
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": settings.broker_url, "STUDIO_SECRET_KEY": settings.secret_key,
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = spawn(["worker", "--queues", "train,default", "--name", "train@browser-test"], env, tmp_path / "worker.log")

    def started():  # noqa: ANN202
        db.expire_all()
        return db.scalar(select(Worker).where(Worker.name == "train@browser-test"))

    wait_for(started, 90, "the worker to start", interval=0.3, log=tmp_path / "worker.log")
    yield proc
    stop_all([proc])
    os.environ.pop("STUDIO_BROKER_URL", None)
    queue._celery.cache_clear()


@pytest.fixture
def inference(settings, worker, tmp_path):
    """The real inference process, for "Try it" (the web talks to it over HTTP)."""
    
    import httpx

    port = free_port()
    settings.inference_url = f"http://127.0.0.1:{port}"  # the live server's settings object
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_SECRET_KEY": settings.secret_key, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = spawn(["inference", "--port", str(port)], env, tmp_path / "inference.log")

    def up() -> bool:
        try:
            return httpx.get(f"{settings.inference_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 90, "the inference process to start", interval=0.3, log=tmp_path / "inference.log")
    yield proc
    stop_all([proc])


def points(page) -> int:  # noqa: ANN001
    return int(page.locator("figure.chart").first.get_attribute("data-points") or 0)


def status(page) -> str:  # noqa: ANN001
    return page.locator("#run-status").get_attribute("data-status")


def until(page, predicate, timeout_s: float, what: str):  # noqa: ANN001, ANN201
    """Polls from Python: the studio's CSP forbids evaluating strings in the page."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(250)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


def start_run(page, base: str, max_steps: int, name: str) -> int:  # noqa: ANN001
    page.goto(base + "/runs/new")
    page.locator("summary:has-text('Advanced settings')").click()
    for field, value in (("max_steps", max_steps), ("max_length", 128)):
        with page.expect_response(re.compile(r".*/runs/new\?.*")):
            page.fill(f"#hp-{field}", str(value))
            page.locator(f"#hp-{field}").press("Tab")
    page.wait_for_load_state("networkidle")
    page.fill("#f-name", name)
    page.click("button:has-text('Train')")
    page.wait_for_url(re.compile(r".*/runs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_first_fine_tune_in_the_browser(live_server, page, worker, inference, tmp_path):
    base = live_server
    page.goto(base + "/signup")
    page.fill("#f-name", "Camille")
    page.fill("#f-email", "camille@example.com")
    page.fill("#f-password", PASSWORD)
    page.fill("#f-team_name", "Nuage Support")
    page.click("button:has-text('Create account')")
    page.wait_for_url(base + "/")
    page.locator(".recent-runs, .card .empty").first.wait_for()
    shoot(page, "runs-0-home")

    page.click("ol.first-steps a:has-text('Start a fine-tune')")
    assert "You have no checked dataset yet" in page.locator("main").inner_text()
    shoot(page, "runs-1-new-empty")
    page.click("button:has-text('Try with the example')")
    page.wait_for_url(re.compile(r".*/datasets/\d+$"))
    page.locator("#report-title").wait_for(timeout=120_000)

    page.goto(base + "/runs/new")
    wizard = page.locator("#wizard").inner_text()
    assert "324 training examples" in wizard or "training examples" in wizard
    assert re.search(r"LoRA trains [\d.]+% of the weights", wizard), wizard
    page.click("#f-goal-brand_voice")
    page.wait_for_load_state("networkidle")
    assert "writing in your brand's voice" in page.locator("#wizard").inner_text()
    shoot(page, "runs-2-new")
    page.click("a:has-text('Fine-tune or retrieval')")
    assert "facts change often" in page.locator("main").inner_text()
    shoot(page, "runs-3-retrieval-help")

    first = start_run(page, base, 160, "Brand voice, first try")
    shoot(page, "runs-4-queued")
    until(page, lambda: status(page) == "running", 90, "the run to start")
    until(page, lambda: points(page) > 0, 60, "the first loss points")
    seen = points(page)
    until(page, lambda: points(page) > seen, 60, "the curve to move")
    assert status(page) == "running", "the curve moved while the run was running"
    shoot(page, "runs-5-running")
    until(page, lambda: status(page) != "running", 300, "the run to end")
    assert status(page) == "succeeded", page.locator("#run-status").inner_text()
    page.locator("#run-activity a:has-text('Adapter')").wait_for()
    shoot(page, "runs-6-finished")
    with page.expect_download() as download:
        page.click("#run-activity a:has-text('Adapter')")
    path = tmp_path / "adapter.zip"
    download.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        assert any(n.endswith("adapter_model.safetensors") for n in z.namelist()), z.namelist()

    page.goto(page.url)  # "Try it" appears once the run has trained weights
    page.fill("#try-prompt", "Bonjour, je n'arrive plus à me connecter à mon compte.")
    page.click("button:has-text('Ask both models')")
    status_line = page.locator("[data-try-status]")
    assert page.locator("[data-try-stop]").is_visible()  # the answers stream in and can be stopped
    until(page, lambda: "complete" in status_line.inner_text(), 180, "both answers to stream in")
    assert not page.locator("[data-try-stop]").is_visible()
    base_answer = page.locator(".try-col:not(.tuned) .bubble").inner_text()
    tuned_answer = page.locator(".try-col.tuned .bubble").inner_text()
    assert base_answer.strip() and tuned_answer.strip() and base_answer != tuned_answer
    shoot(page, "runs-6b-try-it")
    page.click("button:has-text('Ask both models')")  # again, stopped at the first words
    page.locator(".try-col.tuned .bubble:not(:empty), .try-col:not(.tuned) .bubble:not(:empty)").first.wait_for(
        timeout=120_000)
    page.click("[data-try-stop]")
    until(page, lambda: "Stopped" in status_line.inner_text(), 30, "the answers to stop")
    assert len(page.locator(".try-col.tuned .bubble").inner_text()) <= len(tuned_answer)
    shoot(page, "runs-6c-try-it-stopped")

    second = start_run(page, base, 5000, "Brand voice, long")
    until(page, lambda: status(page) == "running", 90, "the run to start")
    until(page, lambda: points(page) > 0, 60, "the first loss points")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("button:has-text('Cancel run')")
    page.wait_for_url(re.compile(rf".*/runs/{second}$"))
    until(page, lambda: status(page) == "cancelled", 60, "the run to stop")
    assert asked and asked[0].startswith("Cancel this run?")
    shoot(page, "runs-7-cancelled")

    page.click("nav >> text=Runs")
    shoot(page, "runs-8-list")
    page.check(f"#cmp-{first}")
    page.check(f"#cmp-{second}")
    page.click("button:has-text('Compare selected')")
    page.wait_for_url(re.compile(rf".*/runs/compare\?ids={second},{first}$|.*/runs/compare\?ids={first},{second}$"))
    assert page.locator("tr.best").count() == 1
    assert page.locator("figure.chart svg polyline").count() >= 2
    shoot(page, "runs-9-compare")
