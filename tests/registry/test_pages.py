"""The Models page's forms: release, roll back, gate, rename; CSRF and roles as everywhere."""

from __future__ import annotations

from app.models import ModelAlias, Release
from tests.factories import log_in
from tests.registry.conftest import tuned


def test_release_and_rollback_from_the_page(make_client, db, store, team, dataset, model, golden):
    tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    browser = make_client()
    csrf = log_in(browser, team.owner)
    page = browser.get("/models").text
    assert "support-bot v2" in page and "support-bot v1" in page and "Tiny Base" in page
    for version in ("1", "v2"):
        r = browser.post("/models/releases", data={"name": "support-bot", "version": version, "alias": "prod",
                                                   "csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 303
    alias = db.query(ModelAlias).one()
    db.refresh(alias)
    r = browser.post(f"/models/aliases/{alias.id}/rollback", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    page = browser.get("/models").text
    assert "Rolled back: support-bot v2 → support-bot v1." in page
    assert [x.kind for x in db.query(Release).order_by(Release.id)] == ["promote", "promote", "rollback"]
    # without the CSRF token nothing moves
    r = browser.post(f"/models/aliases/{alias.id}/rollback", data={}, follow_redirects=False)
    assert r.status_code == 403


def test_errors_are_shown_on_the_page_and_viewers_cannot_act(make_client, db, store, team, dataset, model, golden):
    tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    browser = make_client()
    csrf = log_in(browser, team.owner)
    r = browser.post("/models/releases", data={"name": "support-bot", "version": "9", "alias": "prod",
                                               "csrf_token": csrf})
    assert r.status_code == 404 and "has no version v9" in r.text
    r = browser.post("/models/gate", data={"metric": "eval_loss", "margin": "a lot", "dataset_id": str(golden.id),
                                           "csrf_token": csrf})
    assert r.status_code == 422 and "The margin is a number" in r.text
    r = browser.post("/models/gate", data={"metric": "eval_loss", "margin": "0.1", "dataset_id": str(golden.id),
                                           "csrf_token": csrf}, follow_redirects=True)
    assert "on the golden set" in r.text and "golden" in r.text
    viewer = make_client()
    vcsrf = log_in(viewer, team.viewer)
    page = viewer.get("/models").text
    assert "Release a version" not in page and "Save the gate" not in page
    r = viewer.post("/models/releases", data={"name": "support-bot", "version": "1", "alias": "prod", "csrf_token": vcsrf})
    assert r.status_code == 403
