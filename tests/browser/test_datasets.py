"""A person uploads the example dataset and sees it validated with statistics; uploads a broken
file, reads the error with its line number, and uploads a corrected version that is valid.

The validation task runs for real, in a thread started when the upload's transaction commits
(as a worker would pick it up), with the built-in model's real tokenizer.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from app import queue
from app.models import BaseModel
from app.models_registry.service import BUILTIN_SLUG
from tests.browser.conftest import shoot
from tests.factories import PASSWORD, make_account
from worker.tasks.datasets import validate_dataset

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_fr_brand_voice.jsonl"
GOOD = [
    '{"messages": [{"role": "user", "content": "How do I reset my password?"}, '
    '{"role": "assistant", "content": "Open Settings > Security and choose Reset password."}]}',
    '{"messages": [{"role": "user", "content": "Can I get an invoice?"}, '
    '{"role": "assistant", "content": "Yes: Account > Billing > Invoices."}]}',
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from worker.training.builtin import save_builtin_tokenizer

    return save_builtin_tokenizer(tmp_path_factory.mktemp("builtin-tokenizer"))


@pytest.fixture
def worker_thread(monkeypatch):
    """Each message starts the real task in a thread, a moment after the commit."""
    threads: list[threading.Thread] = []

    def run(dataset_id: int) -> None:
        time.sleep(1.2)  # long enough to see the page waiting for the check
        validate_dataset(dataset_id)

    def send(task, args, queue):
        thread = threading.Thread(target=run, args=args, daemon=True)
        thread.start()
        threads.append(thread)

    monkeypatch.setattr(queue, "send", send)
    yield threads
    for thread in threads:
        thread.join(timeout=30)


@pytest.fixture
def person(db, tokenizer_dir):
    db.add(BaseModel(slug=BUILTIN_SLUG, display_name="SmolLM2-135M-Instruct (built-in)", source="builtin",
                     path=str(tokenizer_dir), context_length=8192))
    return make_account(db, email="camille@example.com", team_name="Nuage Support")


def log_in(page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(base + "/")


def upload(page, base: str, files, *, name: str | None = None, goal: str | None = None) -> None:
    if not page.url.endswith("/datasets/new") and "/datasets/new?" not in page.url:
        page.goto(base + "/datasets/new")
    page.set_input_files("#f-file", files)
    if name is not None:
        page.fill("#f-name", name)
    if goal is not None:
        page.select_option("#f-goal", goal)
    page.click("button:has-text('Upload and check')")
    page.wait_for_url(re.compile(r".*/datasets/\d+$"))


def wait_for_result(page) -> None:
    page.locator("#report-title").wait_for(timeout=30_000)


def test_upload_example_then_fix_a_broken_file(live_server, page, person, worker_thread):
    log_in(page, live_server, person.email)
    page.click("nav >> text=Datasets")
    assert "No datasets yet" in page.locator("main").inner_text()
    shoot(page, "datasets-1-empty")

    page.click("a:has-text('Upload a dataset')")
    page.set_input_files("#f-file", str(EXAMPLE))
    page.select_option("#f-goal", "brand_voice")
    assert "support_fr_brand_voice.jsonl" in page.locator("#dropzone-file").inner_text()
    shoot(page, "datasets-2-upload")
    page.click("button:has-text('Upload and check')")
    page.wait_for_url(re.compile(r".*/datasets/\d+$"))
    assert page.locator("#dataset-status .badge").inner_text() in ("Waiting", "Checking")
    shoot(page, "datasets-3-checking")
    wait_for_result(page)
    report = page.locator(".report").inner_text()
    assert "Chat format (OpenAI): 360 conversations" in report
    assert page.locator(".report .badge").inner_text() == "Valid"
    stats = page.locator(".stats").inner_text()
    assert "Lengths in tokens, counted with the tokenizer of SmolLM2-135M-Instruct" in stats
    assert page.locator(".histogram rect.bar").count() >= 8
    assert "French" in stats
    assert page.locator(".bubble-assistant").count() == 5
    shoot(page, "datasets-4-valid")

    page.fill("#preview-q", "remboursement")
    page.locator("#preview", has_text="Showing examples that contain").wait_for()
    first = page.locator(".conversation").first.inner_text().lower()
    assert "remboursement" in first
    shoot(page, "datasets-5-search")

    broken = "\n".join([GOOD[0], GOOD[1], '{"messages": [{"role": "user", "content": "Hello?"}]}', GOOD[0]])
    upload(page, live_server, {"name": "faq.jsonl", "mimeType": "application/json",
                               "buffer": broken.encode()}, name="Support FAQ")
    wait_for_result(page)
    assert page.locator(".report .badge").inner_text() == "Invalid"
    first_error = page.locator(".errors-table tbody tr").first.inner_text()
    assert first_error.startswith("3") and "Line 3:" in first_error
    shoot(page, "datasets-6-invalid")

    page.click(".next-step >> text=Upload a corrected file")
    assert page.locator("h1").inner_text() == "Upload a new version of “Support FAQ”"
    assert page.input_value("#f-name") == "Support FAQ"
    fixed = "\n".join([GOOD[0], GOOD[1], GOOD[1].replace("invoice", "refund"), GOOD[0].replace("password", "e-mail")])
    upload(page, live_server, {"name": "faq.jsonl", "mimeType": "application/json", "buffer": fixed.encode()})
    wait_for_result(page)
    assert page.locator(".report .badge").inner_text() == "Valid"
    assert "version 2" in page.locator("h1").inner_text()
    assert "v1" in page.locator(".versions").inner_text()
    shoot(page, "datasets-7-corrected")

    page.click("nav >> text=Datasets")
    rows = page.locator(".datasets-table tbody tr")
    assert rows.count() == 3
    shoot(page, "datasets-8-list")


def test_a_csv_needs_its_columns_chosen(live_server, page, person, worker_thread):
    log_in(page, live_server, person.email)
    table = "ticket,client_wrote,we_replied\n1,Where is my parcel?,It left our warehouse today.\n" \
            "2,Can I pay later?,Yes: choose 'Pay in 30 days' at checkout.\n"
    upload(page, live_server, {"name": "tickets.csv", "mimeType": "text/csv", "buffer": table.encode()})
    wait_for_result(page)
    mapping = page.locator("#mapping")
    if page.locator(".report .badge").inner_text() == "Valid":
        pytest.fail("the columns were guessed; this test needs a table whose columns cannot be")
    assert "client_wrote" in mapping.inner_text()
    shoot(page, "datasets-9-mapping")
    page.select_option("#m-prompt", "client_wrote")
    page.select_option("#m-completion", "we_replied")
    page.click("button:has-text('Use these columns and check again')")
    wait_for_result(page)
    assert page.locator(".report .badge").inner_text() == "Valid"
    assert "prompt from \"client_wrote\"" in page.locator(".report").inner_text()


def test_a_run_on_a_file_being_checked_says_so_then_joins_the_queue(live_server, page, db, settings, tmp_path, sent):
    """The run page of a run created while its file is checked says so in plain words, and turns
    into a queued run by itself once the check passes."""
    from app.models import DatasetStatus
    from app.runs import service as runs_service
    from app.storage import ArtifactStore
    from tests.runs.factories import make_dataset, register_model, write_model_dir

    account = make_account(db, email="sam@example.com", team_name="Nuage Support")
    model = register_model(db, write_model_dir(tmp_path / "tiny"), name="Tiny Llama")
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, status=DatasetStatus.validating)
    run, _ = runs_service.submit(db, sub=runs_service.Submission(
        team_id=account.team_id, user_id=account.user_id, dataset_id=dataset.id, base_model_id=model.id),
        settings=settings)
    db.commit()
    log_in(page, live_server, account.email)
    page.goto(f"{live_server}/runs/{run.id}")
    status = page.locator("#run-status")
    assert status.get_attribute("data-status") == "validating_files"
    assert "Checking your files..." in status.inner_text() and "Checking files" in status.inner_text()
    shoot(page, "runs-validating-files")
    dataset.status = DatasetStatus.valid  # the check ends: the task's hook moves the run on
    runs_service.files_checked(db, dataset_id=dataset.id)
    db.commit()
    page.locator("#run-status[data-status='queued']").wait_for(timeout=15_000)
    assert "Waiting for a training worker" in page.locator("#run-status").inner_text()
    assert "Files checked. Queued" in page.locator("main").inner_text()
    shoot(page, "runs-validating-files-queued")
