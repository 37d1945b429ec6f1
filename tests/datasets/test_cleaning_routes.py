"""The cleaning and augmentation pages over HTTP: team isolation, form errors
that keep what was typed (but never the API key), and the key never shown back."""

from __future__ import annotations

import pytest

from app.datasets import augment
from app.models import Dataset
from tests.datasets.test_cleaning import questions, run_queue
from tests.datasets.test_service import create
from tests.datacheck.factories import jsonl
from tests.factories import log_in, make_account


@pytest.fixture
def owner(db, client, store, sent):
    account = make_account(db)
    token = log_in(client, account)
    client.headers["X-CSRF-Token"] = token
    d = create(db, store, account.team_id, data=jsonl(*questions())).dataset
    run_queue(sent)
    db.expire_all()
    return account, db.get(Dataset, d.id)


@pytest.fixture
def store(settings):
    from app.storage import ArtifactStore

    return ArtifactStore(settings.artifact_dir)


def test_pages_show_the_scan_and_the_augment_form(client, owner):
    _, d = owner
    page = client.get(f"/datasets/{d.id}").text
    assert "Near duplicates and personal data" in page and "No near duplicates" in page
    form = client.get(f"/datasets/{d.id}/augment").text
    assert 'name="csrf_token"' in form and 'type="password"' in form
    assert "http://testserver/v1" in form  # the studio's own /v1 is the default endpoint


def test_a_wrong_form_keeps_what_was_typed_but_not_the_key(client, owner, sent):
    _, d = owner
    r = client.post(f"/datasets/{d.id}/augment", data={
        "endpoint_url": "ftp://example.com/v1", "api_key": "sk-typed-secret", "model": "my-model",
        "kinds": ["paraphrase"], "sources": "5"})
    assert r.status_code == 422 or r.status_code == 400
    assert "http:// or https://" in r.text and "my-model" in r.text and "sk-typed-secret" not in r.text
    assert not sent


def test_the_review_page_never_shows_the_key(client, owner, db, sent):
    _, d = owner
    r = client.post(f"/datasets/{d.id}/augment", data={
        "endpoint_url": "http://127.0.0.1:9/v1", "api_key": "sk-typed-secret", "model": "m",
        "kinds": ["paraphrase"]}, follow_redirects=False)
    assert r.status_code == 303 and [t for t, _, _ in sent] == ["studio.augment_dataset"]
    page = client.get(r.headers["location"]).text
    assert "sk-typed-secret" not in page and "API key set, not shown" in page
    assert "Cancel the generation" in page


def test_another_team_sees_nothing_and_changes_nothing(client, owner, db, make_client, sent):
    _, d = owner
    client.post(f"/datasets/{d.id}/augment", data={"endpoint_url": "http://x/v1", "model": "m",
                                                   "kinds": ["paraphrase"]})
    job = augment.jobs_of(db, team_id=d.team_id, dataset_id=d.id)[0]
    other = make_client()
    other.headers["X-CSRF-Token"] = log_in(other, make_account(db))
    for path in (f"/datasets/{d.id}/augment", f"/datasets/{d.id}/augment/{job.id}"):
        assert other.get(path).status_code == 404
    for path in (f"/datasets/{d.id}/redact", f"/datasets/{d.id}/without-near-duplicates",
                 f"/datasets/{d.id}/scan", f"/datasets/{d.id}/augment/{job.id}/cancel",
                 f"/datasets/{d.id}/augment/{job.id}/version"):
        assert other.post(path, follow_redirects=False).status_code == 404, path
    r = other.post(f"/datasets/{d.id}/augment/{job.id}/review", data={"action": "accept_all_pending"},
                   follow_redirects=False)
    assert r.status_code == 404

