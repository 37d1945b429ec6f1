"""Dataset pages and REST endpoints, with the validation task run in-process after each commit:
uploads, reports for every bad input of the issue (none a 500), rows and search, the mapping
step, scopes, and team isolation."""

from __future__ import annotations

import os
import re

import orjson
import pytest

from app import queue
from app.models import Dataset
from tests.datacheck.factories import chat, chats, jsonl
from tests.factories import log_in, make_account, make_api_key
from worker.tasks.datasets import validate_dataset


@pytest.fixture
def worker_inline(monkeypatch) -> list:
    """Messages run the real task right after the commit that sent them."""
    ran = []

    def send(task, args, queue):
        assert queue == "default" and task in ("studio.validate_dataset", "studio.scan_dataset")
        if task == "studio.validate_dataset":  # the cleaning scan it queues is run by its own tests
            ran.append(validate_dataset(*args))

    monkeypatch.setattr(queue, "send", send)
    return ran


@pytest.fixture
def browser(client, db):
    account = make_account(db)
    token = log_in(client, account)
    client.headers["X-CSRF-Token"] = token
    return client


@pytest.fixture
def api(client, db):
    key = make_api_key(db, make_account(db))
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def upload(client, data: bytes, filename: str = "set.jsonl", **fields):
    return client.post("/api/v1/datasets", files={"file": (filename, data)}, data=fields)


# -- pages ------------------------------------------------------------------------------------


def test_empty_list_explains_and_offers_the_example(browser):
    html = browser.get("/datasets").text
    assert "No datasets yet" in html and "Try with an example" in html
    assert 'action="/datasets/example"' in html
    assert '<a href="/datasets" aria-current="page">Datasets</a>' in html


def test_the_example_is_validated_with_statistics_and_a_preview(browser, worker_inline):
    r = browser.post("/datasets/example", follow_redirects=False)
    assert r.status_code == 303 and worker_inline == ["valid"]
    page = browser.get(r.headers["location"]).text
    assert "Support FR brand voice (example)" in page and "was uploaded" in page  # the flash
    assert "Chat format (OpenAI): 360 conversations" in page
    assert 'class="badge badge-valid"' in page and "hx-trigger" not in page.split("dataset-status")[1][:200]
    assert page.count('<rect class="bar"') >= 4 and "Prompt lengths" in page and "Answer lengths" in page
    assert "Is it enough for writing in your brand" in page
    assert 'class="bubble bubble-assistant"' in page and "L&#39;équipe Nuage" in page
    again = browser.post("/datasets/example", follow_redirects=True).text
    assert "already uploaded" in again and worker_inline == ["valid"]
    listing = browser.get("/datasets").text
    assert listing.count('href="/datasets/') >= 2 and "badge-valid" in listing and "360" in listing


def test_the_status_fragment_polls_until_the_check_ends(browser, db, monkeypatch):
    monkeypatch.setattr(queue, "send", lambda task, args, queue: None)  # no worker yet
    r = browser.post("/datasets", files={"file": ("a.jsonl", jsonl(*chats(30)))},
                     headers={"Accept": "application/json"})
    assert r.status_code == 201
    url = r.json()["url"]
    dataset_id = int(url.rsplit("/", 1)[1])
    fragment = browser.get(f"{url}/status", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<div id="dataset-status"')
    assert f'hx-get="/datasets/{dataset_id}/status" hx-trigger="load delay:1s"' in fragment
    assert "<html" not in fragment and "Waiting" in fragment
    validate_dataset(dataset_id)
    done = browser.get(f"{url}/status", headers={"HX-Request": "true"}).text
    assert 'hx-trigger="load delay:1s"' not in done and "Validation report" in done
    # What still polls is the near-duplicate and personal-data scan, a step of its own.
    assert 'hx-select="#cleaning"' in done


def test_preview_pages_and_search_are_htmx_fragments_and_plain_pages(browser, worker_inline):
    rows = [chat(f"Question {i}?", f"Answer {i}, with apples." if i % 10 == 3 else f"Answer {i}.")
            for i in range(40)]
    url = browser.post("/datasets", files={"file": ("a.jsonl", jsonl(*rows))}, data={"eval_fraction": "0"},
                       headers={"Accept": "application/json"}).json()["url"]
    page2 = browser.get(f"{url}/rows?page=2", headers={"HX-Request": "true"}).text
    assert page2.lstrip().startswith('<section class="card preview" id="preview"')
    assert "#6" in page2 and "Question 5?" in page2 and "Question 4?" not in page2 and "<html" not in page2
    found = browser.get(f"{url}/rows?q=APPLES", headers={"HX-Request": "true"}).text
    assert re.findall(r"Question (\d+)\?", found) == ["3", "13", "23", "33"]
    none = browser.get(f"{url}/rows?q=pears").text  # without htmx: the whole page
    assert "<html" in none and "No example contains “pears”" in none


def test_the_csv_mapping_step_in_the_page(browser, worker_inline):
    data = b"id,customer_text,agent_text\n1,Where is my parcel?,It left today.\n2,Can I pay later?,Yes.\n"
    url = browser.post("/datasets", files={"file": ("t.csv", data)},
                       headers={"Accept": "application/json"}).json()["url"]
    page = browser.get(url).text
    assert "Choose the columns" in page and "<code>customer_text</code>" in page
    bad = browser.post(f"{url}/mapping", data={"prompt": "id", "completion": "id"})
    assert bad.status_code == 422 and "two different columns" in bad.text
    r = browser.post(f"{url}/mapping", data={"prompt": "customer_text", "completion": "agent_text"},
                     follow_redirects=False)
    assert r.status_code == 303 and worker_inline == ["invalid", "valid"]
    page = browser.get(url).text
    assert "Columns saved" in page and "badge-valid" in page and "Choose the columns" not in page


def test_a_corrected_file_becomes_a_new_version(browser, worker_inline):
    broken = jsonl(*chats(4)) + b'{"messages": [{"role": "assistant", "content": "Hi"}]}\n'
    url = browser.post("/datasets", files={"file": ("faq.jsonl", broken)}, data={"name": "FAQ"},
                       headers={"Accept": "application/json"}).json()["url"]
    page = browser.get(url).text
    assert "Line 5: " in page and "Upload a corrected file" in page and "It becomes version 2" in page
    assert 'href="/datasets/new?name=FAQ"' in page
    assert 'value="FAQ"' in browser.get("/datasets/new?name=FAQ").text
    fixed = browser.post("/datasets", files={"file": ("faq.jsonl", jsonl(*chats(5)))}, data={"name": "FAQ"},
                         headers={"Accept": "application/json"}).json()["url"]
    page = browser.get(fixed).text
    assert "version 2" in page and "badge-valid" in page and 'aria-current="page">v2' in page


# -- the bad inputs of the issue, through the HTTP upload --------------------------------------

BAD_INPUTS = {
    "random bytes": (os.urandom(4096) + b"\x00\x01", "x.jsonl", "invalid", "binary"),
    "empty file": (b"", "empty.jsonl", "invalid", "empty_file"),
    "0-byte line": (jsonl(*chats(3)) + b"\n" + jsonl(*chats(2, 3)), "x.jsonl", "valid", "blank_lines"),
    "10 MB single line": (b'{"prompt": "' + b"a" * (10 * 1024 * 1024) + b'", "completion": "b"}\n'
                          + jsonl({"prompt": "p", "completion": "c"}), "x.jsonl", "invalid", "line_too_long"),
    "UTF-16": (jsonl(*chats(3)).decode().encode("utf-16"), "x.jsonl", "invalid", "utf16"),
    "JSON array as JSONL": (orjson.dumps(chats(3)), "x.jsonl", "valid", "json_array"),
    "CSV with a missing column": (b"prompt,completion\nhello,world\nonly one value\n", "x.csv", "invalid",
                                  "wrong_field_count"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_gets_a_clear_report_and_no_500(api, worker_inline, case):
    data, filename, status, kind = BAD_INPUTS[case]
    r = upload(api, data, filename)
    assert r.status_code == 201, r.text
    body = api.get(f"/api/v1/datasets/{r.json()['id']}/report").json()
    report = body["report"]
    assert body["status"] == status == report["status"]
    assert report["explanation"]
    if status == "invalid":
        assert kind in report["error_counts"] and all(e["message"] for e in report["errors"])
    elif kind == "json_array":
        assert report["container"] == "json_array" and "one JSON array" in report["explanation"]
    else:
        assert kind in [w["kind"] for w in report["warnings"]]
    if case == "10 MB single line":
        assert [(e["line"], e["kind"]) for e in report["errors"]] == [(1, "line_too_long")]
    if case == "CSV with a missing column":
        assert [(e["line"], e["kind"]) for e in report["errors"]] == [(3, "wrong_field_count")]
    page_status = api.get(f"/api/v1/datasets/{r.json()['id']}").json()
    assert page_status["explanation"] == report["explanation"]


# -- REST ---------------------------------------------------------------------------------------


def test_rest_upload_list_get_report_rows_and_duplicates(api, worker_inline):
    data = jsonl(*[chat(f"Q{i}", "Bananas!" if i in (2, 7) else f"A{i}") for i in range(12)])
    r = upload(api, data, "fruit.jsonl", name="Fruit", goal="classification", eval_fraction="0", seed="5")
    assert r.status_code == 201
    d = r.json()
    assert (d["name"], d["version"], d["goal"], d["split_seed"], d["duplicate_of"]) == ("Fruit", 1, "classification", 5, None)
    again = upload(api, data, "fruit.jsonl", name="Fruit", goal="classification", eval_fraction="0", seed="5")
    assert again.status_code == 200 and again.json()["duplicate_of"] == d["id"] == again.json()["id"]
    got = api.get(f"/api/v1/datasets/{d['id']}").json()
    assert (got["status"], got["format"], got["num_examples"], got["train_examples"]) == ("valid", "chat", 12, 12)
    upload(api, jsonl(*chats(3)), "other.jsonl")
    listing = api.get("/api/v1/datasets?limit=1").json()
    assert (listing["total"], len(listing["data"]), listing["data"][0]["name"]) == (2, 1, "other")
    assert api.get("/api/v1/datasets?offset=1&limit=1").json()["data"][0]["id"] == d["id"]
    rows = api.get(f"/api/v1/datasets/{d['id']}/rows?offset=10&limit=5").json()
    assert [row["index"] for row in rows["rows"]] == [10, 11] and rows["has_more"] is False
    assert rows["rows"][0]["messages"][0] == {"role": "user", "content": "Q10"}
    found = api.get(f"/api/v1/datasets/{d['id']}/rows?q=banana&limit=1").json()
    assert [row["index"] for row in found["rows"]] == [2] and found["has_more"]
    found = api.get(f"/api/v1/datasets/{d['id']}/rows?q=banana&limit=1&offset=1").json()
    assert [row["index"] for row in found["rows"]] == [7] and not found["has_more"]
    bad = api.get(f"/api/v1/datasets/{d['id']}/rows?q=banana&limit=2&offset=1")
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "offset"
    assert api.get(f"/api/v1/datasets/{d['id']}/rows?split=eval").json()["rows"] == []
    assert api.get(f"/api/v1/datasets/{d['id']}/rows?limit=500").status_code == 422


def test_rest_mapping_and_rows_of_an_invalid_dataset(api, worker_inline):
    data = b"a\tb\nhello\tworld\nbye\tnow\n"
    d = upload(api, data, "t.tsv").json()
    assert api.get(f"/api/v1/datasets/{d['id']}").json()["status"] == "invalid"
    r = api.get(f"/api/v1/datasets/{d['id']}/rows")
    assert r.status_code == 409 and "once the dataset is valid" in r.json()["error"]["message"]
    bad = api.post(f"/api/v1/datasets/{d['id']}/mapping", json={"prompt": "a", "completion": "c"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "completion"
    r = api.post(f"/api/v1/datasets/{d['id']}/mapping", json={"prompt": "a", "completion": "b"})
    assert r.status_code == 200 and r.json()["column_mapping"] == {"prompt": "a", "completion": "b", "system": None}
    assert api.get(f"/api/v1/datasets/{d['id']}").json()["status"] == "valid"
    again = api.post(f"/api/v1/datasets/{d['id']}/mapping", json={"prompt": "b", "completion": "a"})
    assert again.status_code == 409


def test_scopes_read_only_keys_and_viewers_cannot_upload(client, db, worker_inline):
    account = make_account(db)
    key = make_api_key(db, account, scopes=("read",))
    r = client.post("/api/v1/datasets", files={"file": ("a.jsonl", jsonl(*chats(3)))},
                    headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and "'write' scope" in r.json()["error"]["message"]
    assert client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert db.query(Dataset).count() == 0


def test_another_teams_dataset_is_always_404(make_client, db, worker_inline):
    owner_b = make_client()
    log_in(owner_b, make_account(db))
    key_b = make_api_key(db, make_account(db))
    theirs = owner_b.post("/api/v1/datasets", files={"file": ("b.jsonl", jsonl(*chats(5)))},
                          headers={"Authorization": f"Bearer {key_b}"}).json()
    a = make_client()
    token = log_in(a, make_account(db))
    key_a = make_api_key(db, make_account(db))
    for path in ("", "/report", "/rows"):
        assert a.get(f"/api/v1/datasets/{theirs['id']}{path}", headers={"Authorization": f"Bearer {key_a}"}).status_code == 404
    assert a.post(f"/api/v1/datasets/{theirs['id']}/mapping", json={"prompt": "a", "completion": "b"},
                  headers={"Authorization": f"Bearer {key_a}"}).status_code == 404
    for path in ("", "/status", "/rows"):
        assert a.get(f"/datasets/{theirs['id']}{path}").status_code == 404
    assert a.post(f"/datasets/{theirs['id']}/mapping", data={"prompt": "a", "completion": "b"},
                  headers={"X-CSRF-Token": token}).status_code == 404
    assert a.get("/api/v1/datasets", headers={"Authorization": f"Bearer {key_a}"}).json()["total"] == 0
    assert "No datasets yet" in a.get("/datasets").text
