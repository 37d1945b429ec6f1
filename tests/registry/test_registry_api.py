"""The registry's API: versions by name agree with /v1/models, aliases resolve wherever a model
name does (chat's resolve, /v1/models, A/B tests), moves are logged and roll back in one action."""

from __future__ import annotations

from app.api.openai import models as openai_models
from app.api.openai import names
from app.errors import NotFound
from app.registry import lookup
from app.models import Comparison
from tests.registry.conftest import bearer, tuned


def _runs(db, store, team, dataset, model):  # noqa: ANN001, ANN202
    first = tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    second = tuned(db, store, team.team_id, dataset, model, suffix="support-bot")
    other = tuned(db, store, team.team_id, dataset, model, suffix="", name="FAQ answers")
    return first, second, other


def test_versions_by_name_agree_with_openai_models(client, db, store, team, dataset, model, owner_key):
    first, second, other = _runs(db, store, team, dataset, model)
    groups = client.get("/api/v1/registry/models", headers=bearer(owner_key)).json()
    by_name = {g["name"]: g["versions"] for g in groups}
    assert [(v["label"], v["run_id"]) for v in by_name["support-bot"]] == [
        ("support-bot v2", second.id), ("support-bot v1", first.id)]
    assert [v["label"] for v in by_name["faq-answers"]] == ["faq-answers v1"]  # no suffix: the run's name
    lineage = by_name["support-bot"][0]
    assert (lineage["base_model"], lineage["dataset_id"], lineage["dataset_version"]) == ("Tiny Base", dataset.id, 1)
    assert lineage["trained_by"] and lineage["config"]["method"] == "lora"
    openai_ids = {m["id"] for m in client.get("/v1/models", headers=bearer(owner_key)).json()["data"]
                  if m["id"].startswith("ft:")}
    assert openai_ids == {v["model"] for g in groups for v in g["versions"]}
    # a version answers to name:vN as well
    assert lookup.registered_run(db, team_id=team.team_id, name="support-bot:v1").id == first.id


def test_alias_moves_resolves_everywhere_and_rolls_back(client, db, store, team, dataset, model, owner_key, settings):
    from app.models import NotificationDelivery
    from app.notifications import service as notifications

    first, second, _ = _runs(db, store, team, dataset, model)
    notifications.create_webhook(db, team_id=team.team_id, user_id=None, url="https://hooks.example.com/releases",
                                 events=["release.moved"])
    db.commit()
    h = bearer(owner_key)
    r = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 1}, headers=h)
    assert r.status_code == 201 and r.json()["status"] == "moved", r.text
    # chat's resolve, /v1/models and A/B creation all take the alias
    target = openai_models.resolve(db, store, team.team_id, "support-bot:prod")
    assert target.adapter and target.adapter.endswith(f"jobs/{first.id}/run/adapter")
    assert "support-bot:prod" in {m["id"] for m in client.get("/v1/models", headers=h).json()["data"]}
    assert client.get("/v1/models/support-bot:prod", headers=h).status_code == 200
    ab = client.post("/api/v1/ab/comparisons", headers=h, json={
        "model_a": {"model": model.slug}, "model_b": {"model": "support-bot:prod"}, "prompts": ["Hello?"]})
    assert ab.status_code == 201, ab.text
    assert db.get(Comparison, ab.json()["id"]).model_b == {"kind": "run", "id": first.id}

    moved = client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 2},
                        headers=h).json()
    assert (moved["status"], moved["from_version"], moved["to_version"]) == ("moved", "support-bot v1", "support-bot v2")
    assert moved["requested_by"].startswith(team.owner.email + " (API key ")
    db.expire_all()
    assert lookup.registered_run(db, team_id=team.team_id, name="support-bot:prod").id == second.id

    alias_id = client.get("/api/v1/registry/aliases", headers=h).json()[0]["id"]
    back = client.post(f"/api/v1/registry/aliases/{alias_id}/rollback", headers=h).json()
    assert (back["kind"], back["from_version"], back["to_version"]) == ("rollback", "support-bot v2", "support-bot v1")
    db.expire_all()
    assert lookup.registered_run(db, team_id=team.team_id, name="support-bot:prod").id == first.id
    log = client.get("/api/v1/registry/releases", headers=h).json()
    assert [(e["kind"], e["to_version"]) for e in log] == [
        ("rollback", "support-bot v1"), ("promote", "support-bot v2"), ("promote", "support-bot v1")]
    # each move told the team's webhook, in the move's own transaction
    db.expire_all()
    told = [d.payload["data"]["release"] for d in db.query(NotificationDelivery).filter_by(
        team_id=team.team_id, event="release.moved").order_by(NotificationDelivery.id)]
    assert [(t["alias"], t["kind"], t["from_version"], t["to_version"], t["to_run_id"]) for t in told] == [
        ("support-bot:prod", "promote", None, "support-bot v1", first.id),
        ("support-bot:prod", "promote", "support-bot v1", "support-bot v2", second.id),
        ("support-bot:prod", "rollback", "support-bot v2", "support-bot v1", first.id)]


def test_unknown_alias_and_other_teams_alias_are_not_found(client, db, store, team, dataset, model, owner_key):
    from tests.factories import make_account, make_api_key

    _runs(db, store, team, dataset, model)
    client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 1},
                headers=bearer(owner_key))
    other = make_api_key(db, make_account(db), scopes=("read", "write"))
    for key, name in ((owner_key, "support-bot:staging"), (owner_key, "support-bot:v9"), (other, "support-bot:prod")):
        assert client.get(f"/v1/models/{name}", headers=bearer(key)).status_code == 404
    try:
        openai_models.resolve(db, store, team.team_id, "support-bot:staging")
        raise AssertionError("an alias that does not exist resolved")
    except NotFound as exc:
        assert "does not exist" in exc.message


def test_bad_names_and_version_of_another_name_are_refused(client, db, store, team, dataset, model, owner_key):
    _runs(db, store, team, dataset, model)
    h = bearer(owner_key)
    assert client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "v2", "version": 1},
                       headers=h).status_code == 422  # vN names versions
    assert client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 7},
                       headers=h).status_code == 404


def test_rename_registers_as_the_next_version_unless_released(client, db, store, team, dataset, model, owner_key):
    _runs(db, store, team, dataset, model)
    h = bearer(owner_key)
    groups = {g["name"]: g["versions"] for g in client.get("/api/v1/registry/models", headers=h).json()}
    faq = groups["faq-answers"][0]
    renamed = client.post(f"/api/v1/registry/versions/{faq['id']}/name", json={"name": "support-bot"}, headers=h)
    assert renamed.json()["label"] == "support-bot v3"
    client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 3}, headers=h)
    again = client.post(f"/api/v1/registry/versions/{faq['id']}/name", json={"name": "faq"}, headers=h)
    assert again.status_code == 409 and "support-bot:prod" in again.json()["error"]["message"]


def test_a_released_model_cannot_be_deleted(client, db, store, team, dataset, model, owner_key):
    first, _, _ = _runs(db, store, team, dataset, model)
    h = bearer(owner_key)
    client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 1}, headers=h)
    ft = next(v["model"] for g in client.get("/api/v1/registry/models", headers=h).json() for v in g["versions"]
              if v["run_id"] == first.id)
    r = client.delete(f"/v1/models/{ft}", headers=h)
    assert r.status_code == 409 and "support-bot:prod" in r.text


def test_chat_completions_takes_the_alias(client, db, store, team, dataset, model, owner_key):
    """The alias gets past name resolution to the inference process (not running in this test:
    503), where an unknown alias stops at 404."""
    _runs(db, store, team, dataset, model)
    h = bearer(owner_key)
    client.post("/api/v1/registry/releases", json={"name": "support-bot", "alias": "prod", "version": 1}, headers=h)
    messages = [{"role": "user", "content": "Hello?"}]
    known = client.post("/v1/chat/completions", json={"model": "support-bot:prod", "messages": messages}, headers=h)
    unknown = client.post("/v1/chat/completions", json={"model": "support-bot:beta", "messages": messages}, headers=h)
    assert unknown.status_code == 404 and "does not exist" in unknown.json()["error"]["message"]
    assert known.status_code == 503, known.text
