"""The REST API for cleaning and augmentation (/api/v1/datasets/{id}/cleaning, /versions/...,
/augmentations/...): the scan's findings, the new versions, a job from start to the new version
through review and edit, clear refusals, and team scoping (another team gets 404)."""

from __future__ import annotations

import orjson
import pytest

from app.models import Dataset
from app.storage import ArtifactStore
from tests.datacheck.factories import chat, jsonl
from tests.datasets.test_cleaning import endpoint, lines, questions, run_queue  # noqa: F401 (fixture)
from tests.datasets.test_service import create
from tests.factories import make_account, make_api_key


@pytest.fixture
def store(settings) -> ArtifactStore:
    return ArtifactStore(settings.artifact_dir)


@pytest.fixture
def caller(db):
    acc = make_account(db)
    return acc.team_id, {"Authorization": f"Bearer {make_api_key(db, acc, scopes=('read', 'write'))}"}


@pytest.fixture
def stranger(db):
    acc = make_account(db)
    return {"Authorization": f"Bearer {make_api_key(db, acc, scopes=('read', 'write'))}"}


def valid(db, store, team, sent, records, **options) -> Dataset:
    d = create(db, store, team, data=jsonl(*records), **options).dataset
    run_queue(sent)
    db.expire_all()
    return db.get(Dataset, d.id)


def with_findings() -> list[dict]:
    records = questions()
    records.insert(3, chat(records[0]["messages"][0]["content"].lower().replace(",", "") + " !",
                           records[0]["messages"][1]["content"]))     # a near copy of example 1
    records.append(chat("Please write to me at jean.dupont@example.fr about my refund",
                        "We will, within two days."))
    return records


def test_the_scan_is_read_and_both_clean_versions_are_made(client, db, store, caller, sent):
    team, headers = caller
    d = valid(db, store, team, sent, with_findings(), eval_fraction=0.0)
    r = client.get(f"/api/v1/datasets/{d.id}/cleaning", headers=headers)
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["status"] == "done" and found["near_duplicates"]["drop_train"] == [4]
    assert found["personal_data"]["email"]["count"] == 1 and found["personal_total"] == 1
    assert "jean.dupont@example.fr" not in r.text  # partly hidden

    r = client.post(f"/api/v1/datasets/{d.id}/versions/without-near-duplicates", headers=headers)
    assert r.status_code == 201, r.text
    clean = r.json()["dataset"]
    assert clean["version"] == 2 and clean["status"] == "uploaded"
    r = client.post(f"/api/v1/datasets/{d.id}/versions/redacted", headers=headers)
    assert r.status_code == 201 and r.json()["dataset"]["version"] == 3
    run_queue(sent)
    db.expire_all()
    assert len(lines(store, db.get(Dataset, clean["id"]).normalized_path)) == len(with_findings()) - 1
    redacted = lines(store, db.get(Dataset, r.json()["dataset"]["id"]).normalized_path)
    assert any("[EMAIL]" in m["content"] for rec in redacted for m in rec["messages"])

    # the new version has nothing left to remove: a clear 409; the scan can be queued again
    r = client.post(f"/api/v1/datasets/{clean['id']}/versions/without-near-duplicates", headers=headers)
    assert r.status_code == 409 and "no near duplicates" in r.json()["error"]["message"]
    r = client.post(f"/api/v1/datasets/{d.id}/cleaning/scan", headers=headers)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert sent == [("studio.scan_dataset", [d.id], "default")]


def test_a_dataset_still_checked_refuses_clearly(client, db, store, caller, sent):
    team, headers = caller
    d = create(db, store, team, data=jsonl(*questions())).dataset
    r = client.get(f"/api/v1/datasets/{d.id}/cleaning", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "not_run"
    for path in ("cleaning/scan", "versions/without-near-duplicates", "versions/redacted"):
        r = client.post(f"/api/v1/datasets/{d.id}/{path}", headers=headers)
        assert r.status_code == 409, (path, r.text)
        assert "valid dataset" in r.json()["error"]["message"]


def test_augmentation_from_start_to_new_version(client, db, store, caller, sent, endpoint):  # noqa: F811
    team, headers = caller
    d = valid(db, store, team, sent, questions(), eval_fraction=0.0)
    body = {"endpoint_url": endpoint.url, "api_key": "sk-secret-123", "model": "house-model",
            "kinds": ["paraphrase", "new_question"], "sources": 3, "max_tokens": 10_000}
    r = client.post(f"/api/v1/datasets/{d.id}/augmentations", json=body, headers=headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["has_api_key"] and "sk-secret" not in r.text
    assert job["settings"]["max_calls"] == 6
    run_queue(sent)  # the worker runs it

    r = client.get(f"/api/v1/datasets/{d.id}/augmentations/{job['id']}", headers=headers)
    assert r.json()["status"] == "succeeded" and r.json()["counts"]["pending"] == 6
    assert r.json()["calls_used"] == 6 and r.json()["tokens_used"] == 240
    assert [j["id"] for j in client.get(f"/api/v1/datasets/{d.id}/augmentations", headers=headers).json()] == [job["id"]]
    page = client.get(f"/api/v1/datasets/{d.id}/augmentations/{job['id']}/examples?status=pending&limit=4",
                      headers=headers).json()
    assert page["total"] == 6 and len(page["data"]) == 4
    ids = [e["id"] for e in page["data"]]

    base = f"/api/v1/datasets/{d.id}/augmentations/{job['id']}"
    r = client.post(f"{base}/examples/review", json={"action": "reject", "ids": ids[:1]}, headers=headers)
    assert r.status_code == 200 and r.json()["changed"] == 1 and r.json()["counts"]["rejected"] == 1
    first = page["data"][1]
    edited = [m["content"] for m in first["messages"]]
    edited[-1] = "An answer edited by a person, short and exact."
    r = client.patch(f"{base}/examples/{first['id']}", json={"contents": edited}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted" and r.json()["edited"]
    assert r.json()["messages"][-1]["content"] == edited[-1]
    r = client.patch(f"{base}/examples/{first['id']}", json={"contents": edited[:1]}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["param"] == "content"
    r = client.post(f"{base}/examples/review", json={"action": "accept", "all_pending": True}, headers=headers)
    assert r.json()["changed"] == 4 and r.json()["counts"] == {"pending": 0, "accepted": 5, "rejected": 1,
                                                               "duplicate": 0}
    r = client.post(f"{base}/examples/review", json={"action": "accept"}, headers=headers)
    assert r.status_code == 422 and "ids or all_pending" in r.json()["error"]["message"]

    r = client.post(f"{base}/version", headers=headers)
    assert r.status_code == 201, r.text
    made = r.json()["dataset"]
    assert made["version"] == 2 and r.json()["dropped_duplicates"] == 0
    assert client.post(f"{base}/version", headers=headers).status_code == 409  # made once
    run_queue(sent)
    db.expire_all()
    records = lines(store, db.get(Dataset, made["id"]).normalized_path)
    assert len(records) == len(questions()) + 5
    assert any(m["content"] == edited[-1] for rec in records for m in rec["messages"])


def test_augmentation_input_is_checked(client, db, store, caller, sent, endpoint):  # noqa: F811
    team, headers = caller
    d = valid(db, store, team, sent, questions(), eval_fraction=0.0)
    good = {"endpoint_url": endpoint.url, "model": "m", "kinds": ["paraphrase"]}
    for change, param in (({"endpoint_url": "file:///etc/passwd"}, "endpoint_url"),
                          ({"kinds": ["house_style"]}, "house_style"),
                          ({"sources": 0}, "sources"), ({"max_tokens": 5}, "max_tokens"),
                          ({"model": " "}, "model")):
        r = client.post(f"/api/v1/datasets/{d.id}/augmentations", json=good | change, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["param"] == param, (change, r.text)
    r = client.post(f"/api/v1/datasets/{d.id}/augmentations", json=good | {"kinds": ["shout"]}, headers=headers)
    assert r.status_code == 422
    assert sent == []


def test_cancel_a_queued_job(client, db, store, caller, sent, endpoint):  # noqa: F811
    team, headers = caller
    d = valid(db, store, team, sent, questions(), eval_fraction=0.0)
    job = client.post(f"/api/v1/datasets/{d.id}/augmentations", headers=headers,
                      json={"endpoint_url": endpoint.url, "model": "m", "kinds": ["paraphrase"]}).json()
    r = client.post(f"/api/v1/datasets/{d.id}/augmentations/{job['id']}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(f"/api/v1/datasets/{d.id}/augmentations/{job['id']}/cancel", headers=headers).status_code == 409
    r = client.post(f"/api/v1/datasets/{d.id}/augmentations/{job['id']}/version", headers=headers)
    assert r.status_code == 409 and "Accept at least one" in r.json()["error"]["message"]


def test_another_team_gets_404_everywhere_and_reading_needs_no_write(client, db, store, caller, stranger,
                                                                     sent, endpoint):  # noqa: F811
    team, headers = caller
    d = valid(db, store, team, sent, with_findings(), eval_fraction=0.0)
    job = client.post(f"/api/v1/datasets/{d.id}/augmentations", headers=headers,
                      json={"endpoint_url": endpoint.url, "model": "m", "kinds": ["paraphrase"], "sources": 1}).json()
    run_queue(sent)
    example = client.get(f"/api/v1/datasets/{d.id}/augmentations/{job['id']}/examples", headers=headers).json()["data"][0]
    base = f"/api/v1/datasets/{d.id}"
    calls = [("get", f"{base}/cleaning", None), ("post", f"{base}/cleaning/scan", None),
             ("post", f"{base}/versions/without-near-duplicates", None), ("post", f"{base}/versions/redacted", None),
             ("get", f"{base}/augmentations", None),
             ("post", f"{base}/augmentations", {"endpoint_url": endpoint.url, "model": "m", "kinds": ["paraphrase"]}),
             ("get", f"{base}/augmentations/{job['id']}", None),
             ("post", f"{base}/augmentations/{job['id']}/cancel", None),
             ("get", f"{base}/augmentations/{job['id']}/examples", None),
             ("post", f"{base}/augmentations/{job['id']}/examples/review", {"action": "accept", "ids": [example["id"]]}),
             ("patch", f"{base}/augmentations/{job['id']}/examples/{example['id']}",
              {"contents": [m["content"] for m in example["messages"]]}),
             ("post", f"{base}/augmentations/{job['id']}/version", None)]
    for method, path, body in calls:
        r = getattr(client, method)(path, headers=stranger, **({"json": body} if body is not None else {}))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # the owner's example is untouched, and nothing was queued for the stranger
    db.expire_all()
    again = client.get(f"{base}/augmentations/{job['id']}/examples", headers=headers).json()["data"][0]
    assert again == example and sent == []
    # a job of one dataset is not found under another dataset of the same team
    other = valid(db, store, team, sent, questions()[:4], name="Other", eval_fraction=0.0)
    assert client.get(f"/api/v1/datasets/{other.id}/augmentations/{job['id']}", headers=headers).status_code == 404


def test_read_only_keys_may_read_but_not_change(client, db, store, sent):
    acc = make_account(db)
    d = valid(db, store, acc.team_id, sent, with_findings(), eval_fraction=0.0)
    reader = {"Authorization": f"Bearer {make_api_key(db, acc, scopes=('read',))}"}
    assert client.get(f"/api/v1/datasets/{d.id}/cleaning", headers=reader).status_code == 200
    r = client.post(f"/api/v1/datasets/{d.id}/versions/redacted", headers=reader)
    assert r.status_code == 403 and orjson.loads(r.content)["error"]["message"]
    assert sent == []
