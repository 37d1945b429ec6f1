"""A person sees the near duplicates and personal data of a dataset, makes a redacted version,
generates examples through an OpenAI-compatible endpoint (a local fake one), reviews them on the
review page (edit and accept one, reject ticked ones, accept the rest) and makes a new version.

Tasks run for real in threads started after each commit, as a worker would pick them up.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from app import queue
from tests.browser.conftest import shoot
from tests.browser.test_datasets import log_in, upload
from tests.datacheck.factories import chat, jsonl
from tests.datasets.test_cleaning import FakeEndpoint, questions
from tests.factories import make_account
from worker.tasks.augment import augment_dataset
from worker.tasks.cleaning import scan_dataset
from worker.tasks.datasets import validate_dataset


@pytest.fixture
def worker_thread(monkeypatch):
    threads: list[threading.Thread] = []
    tasks = {"studio.validate_dataset": validate_dataset, "studio.scan_dataset": scan_dataset,
             "studio.augment_dataset": augment_dataset}

    def run(task: str, args: list) -> None:
        time.sleep(0.5)
        tasks[task](*args)

    def send(task, args, queue):
        thread = threading.Thread(target=run, args=(task, args), daemon=True)
        thread.start()
        threads.append(thread)

    monkeypatch.setattr(queue, "send", send)
    yield threads
    for thread in threads:
        thread.join(timeout=60)


@pytest.fixture
def endpoint():
    fake = FakeEndpoint()
    yield fake
    fake.server.shutdown()


def test_clean_then_augment_with_review(live_server, page, db, worker_thread, endpoint, tmp_path):
    person = make_account(db, email="noor@example.com", team_name="Nuage Support")
    records = questions()
    records.append(chat(records[0]["messages"][0]["content"].lower() + "!", records[0]["messages"][1]["content"]))
    records.append(chat("My card 4111 1111 1111 1111 was charged twice, write me at noor@example.com",
                        "Sorry! We refunded it; call +33 1 23 45 67 89 if it is not back in 3 days."))
    path = tmp_path / "support.jsonl"
    path.write_bytes(jsonl(*records))
    log_in(page, live_server, person.email)
    upload(page, live_server, str(path), name="Support answers")
    page.locator("#cleaning h3:has-text('Personal data')").wait_for(timeout=60_000)
    cleaning = page.locator("#cleaning").inner_text()
    assert "1 training example nearly repeats an earlier one" in cleaning
    assert re.search(r"Training examples \d+, \d+ say nearly the same thing\.", cleaning)
    assert "Card numbers" in cleaning and "411* **** **** **11" in cleaning and "4111 1111 1111 1111" not in cleaning
    page.locator("#cleaning").scroll_into_view_if_needed()
    shoot(page, "dataclean-1-scan")

    page.click("button:has-text('Make a new version with them replaced')")
    page.wait_for_url(re.compile(r".*/datasets/\d+$"))
    page.locator("#cleaning h3:has-text('Personal data')").wait_for(timeout=60_000)
    text = page.locator("main").inner_text()
    assert "version 2" in text and "personal data replaced (1 × card, 1 × email, 1 × phone)" in text
    assert "No e-mail address, phone number, IBAN or card number was found." in text
    v2 = page.url

    page.click("a:has-text('Generate more examples')")
    page.fill("#f-endpoint_url", endpoint.url)
    page.fill("#f-api_key", "sk-browser-secret")
    page.fill("#f-model", "house-model")
    page.check("input[name=kinds][value=new_question]")
    page.fill("#f-sources", "3")
    shoot(page, "dataclean-2-augment-form")
    endpoint.delay = 0.5  # about 3 s in all: the review page shows the job running, then reloads itself
    page.click("button:has-text('Start generating')")
    page.wait_for_url(re.compile(r".*/augment/\d+$"))
    # The progress region polls while the job runs; when it ends the page reloads itself once.
    page.locator("article.generated").nth(5).wait_for(timeout=60_000)
    assert "succeeded" in page.locator("#augment-progress .badge").inner_text()
    assert "sk-browser-secret" not in page.content()
    assert "(API key set, not shown)" in page.locator("#augment-progress").inner_text()
    assert page.locator("article.generated").count() == 6
    progress = page.locator("#augment-progress").inner_text()
    assert "6 of 6" in progress and "240 of 50,000" in progress
    shoot(page, "dataclean-3-review")

    first = page.locator("article.generated").first
    first.locator("textarea").last.fill("Edited by Noor: the answer, checked.")
    first.locator("button:has-text('Save and accept')").click()
    page.wait_for_load_state()
    assert page.locator("article.generated").count() == 5
    page.locator("article.generated input[name=selected]").nth(0).check()
    page.locator("article.generated input[name=selected]").nth(1).check()
    page.click("button:has-text('Reject ticked')")
    page.wait_for_load_state()
    assert "2 examples rejected." in page.locator("body").inner_text()
    page.click("button:has-text('Accept all 3 to review')")
    page.wait_for_load_state()
    assert "3 examples accepted." in page.locator("body").inner_text()
    page.click("nav.tabs >> text=Accepted")
    assert page.locator("article.generated").count() == 4
    values = page.locator("article.generated textarea").evaluate_all("els => els.map(e => e.value)")
    assert "Edited by Noor: the answer, checked." in values
    assert page.locator("article.generated .muted:has-text('edited')").count() == 1
    shoot(page, "dataclean-4-accepted")

    page.click("button:has-text('Make the new version with 4 accepted examples')")
    page.wait_for_url(re.compile(r".*/datasets/\d+$"))
    page.locator("#report-title").wait_for(timeout=60_000)
    text = page.locator("main").inner_text()
    assert "version 3" in text and "4 reviewed examples generated by house-model added" in text
    assert page.url != v2
    shoot(page, "dataclean-5-new-version")


def test_the_page_says_how_many_near_duplicates_moved_out_of_evaluation(live_server, page, db, worker_thread,
                                                                        tmp_path):
    """Reworded near copies that the first split put on both sides are moved into training by the
    scan; the dataset page says so, in words, with the new counts."""
    from tests.datacheck.factories import chats, near_duplicate_families

    person = make_account(db, email="lea@example.com", team_name="Nuage Support")
    path = tmp_path / "families.jsonl"
    path.write_bytes(jsonl(*near_duplicate_families(60), *chats(300)))  # families, and examples with no near copy
    log_in(page, live_server, person.email)
    upload(page, live_server, str(path), name="Families")
    page.locator("#cleaning h3:has-text('Near duplicates')").wait_for(timeout=90_000)
    text = page.locator("#cleaning").inner_text()
    moved = re.search(r"(\d+) evaluation examples? nearly repeated a training example, so (it was|they were) "
                      r"moved into training: no evaluation example is a near copy of a training one", text)
    assert moved, text
    counts = re.search(r"\((\d+) training, (\d+) evaluation examples now\)", text)
    assert counts and int(counts[1]) + int(counts[2]) == 540 and int(counts[2]) > 0, text
    page.reload()  # the report above says the new counts too
    report = page.locator("main").inner_text()
    assert f"{counts[1]} are used for training and {counts[2]} for evaluation" in report
    page.locator("#cleaning").scroll_into_view_if_needed()
    shoot(page, "dataclean-0-resplit")
