"""Costs over HTTP: prices (owners only, checked input, CSRF), usage per month / person / model
scoped to the team, a run's measured cost and return on investment, the estimate's cost."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.models import RunStatus, Worker, utcnow
from app.storage import ArtifactStore
from tests.factories import log_in, make_account, make_api_key
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def team(db, settings, tmp_path):  # noqa: ANN001, ANN201
    owner = make_account(db, email="owner@example.com", team_name="Support")
    store = ArtifactStore(settings.artifact_dir)
    dataset = make_dataset(db, store, owner.team_id)
    model = register_model(db, write_model_dir(tmp_path / "tiny"), team_id=owner.team_id)
    db.add(Worker(name="gpu-host", device="cuda", device_name="NVIDIA H100 80GB HBM3", device_count=8,
                  queues="train", last_seen_at=utcnow()))
    now = utcnow()
    done = make_run(db, owner.team_id, dataset, model, status=RunStatus.succeeded, worker_id="gpu-host",
                    device_ids=[0, 1], started_at=now - timedelta(hours=3), finished_at=now - timedelta(hours=1),
                    created_by_id=owner.user_id)
    queued = make_run(db, owner.team_id, dataset, model)
    db.commit()
    return {"owner": owner, "done": done.id, "queued": queued.id, "model": model, "dataset": dataset}


def test_prices_default_then_owner_sets_them(client, db, team):
    key = make_api_key(db, team["owner"], scopes=("read", "write", "admin"))
    got = client.get("/api/v1/team/prices", headers=bearer(key)).json()
    h100 = next(d for d in got["device_types"] if d["key"] == "h100")
    assert got["currency"] == "USD" and h100["custom"] is False and h100["price_per_hour"] == h100["default_price_per_hour"]
    r = client.put("/api/v1/team/prices", headers=bearer(key), json={
        "currency": "eur", "prices": {"h100": 2.0}, "api_price_per_request": 0.01, "monthly_requests": 50000})
    assert r.status_code == 200, r.text
    h100 = next(d for d in r.json()["device_types"] if d["key"] == "h100")
    assert r.json()["currency"] == "EUR" and h100 == {**h100, "price_per_hour": 2.0, "custom": True}
    assert r.json()["api_price_per_request"] == 0.01 and r.json()["monthly_requests"] == 50000
    # null goes back to the default; a price not given stays
    r = client.put("/api/v1/team/prices", headers=bearer(key), json={"prices": {"h100": None, "t4": 0.2}})
    types = {d["key"]: d for d in r.json()["device_types"]}
    assert types["h100"]["custom"] is False and types["t4"]["price_per_hour"] == 0.2
    assert r.json()["monthly_requests"] == 50000  # not given: kept


@pytest.mark.parametrize(("body", "param"), [
    ({"prices": {"h100": -1}}, "price_h100"), ({"prices": {"tpu": 1.0}}, "prices"), ({"currency": "XYZ"}, "currency"),
    ({"monthly_requests": -5}, "monthly_requests"), ({"serving_device": "abacus"}, "serving_device"),
])
def test_bad_prices_are_refused_in_words(client, db, team, body, param):
    key = make_api_key(db, team["owner"], scopes=("read", "write", "admin"))
    r = client.put("/api/v1/team/prices", headers=bearer(key), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_only_admin_keys_and_owners_change_prices(client, db, team, make_client):
    key = make_api_key(db, team["owner"], scopes=("read", "write"))
    assert client.put("/api/v1/team/prices", headers=bearer(key), json={"prices": {"h100": 1}}).status_code == 403
    # a member's browser form is refused; the owner's without a CSRF token too
    from app.models import Membership, Role

    member = make_account(db, email="member@example.com")
    db.add(Membership(team_id=team["owner"].team_id, user_id=member.user_id, role=Role.member))
    db.commit()
    browser = make_client()
    member_token = log_in(browser, member)
    browser.post("/team/switch", data={"team_id": team["owner"].team_id, "csrf_token": member_token})
    assert "Only a team owner can change prices" in browser.get("/team/costs").text
    refused = browser.post("/team/costs", data={"csrf_token": member_token, "price_h100": "0.01"})
    assert refused.status_code == 403
    owner = make_client()
    token = log_in(owner, team["owner"])
    assert owner.post("/team/costs", data={"price_h100": "1"}).status_code == 403  # no CSRF token
    r = owner.post("/team/costs", data={"csrf_token": token, "currency": "USD", "price_h100": "1.75",
                                        "api_price_per_request": "0.004", "monthly_requests": "200000"},
                   follow_redirects=False)
    assert r.status_code == 303
    page = owner.get("/team/costs").text
    assert 'value="1.75"' in page and "yours" in page
    bad = owner.post("/team/costs", data={"csrf_token": token, "currency": "USD", "price_h100": "lots"})
    assert bad.status_code == 422 and "enter a number" in bad.text
    # "Use the default prices" clears every price the team set, even those still in the boxes
    r = owner.post("/team/costs", data={"csrf_token": token, "currency": "USD", "price_h100": "1.75",
                                        "reset": "defaults", "api_price_per_request": "0.004"},
                   follow_redirects=False)
    assert r.status_code == 303
    key = make_api_key(db, team["owner"])
    got = client.get("/api/v1/team/prices", headers=bearer(key)).json()
    assert not any(d["custom"] for d in got["device_types"]) and got["api_price_per_request"] == 0.004


def test_run_cost_measured_and_roi(client, db, team):
    key = make_api_key(db, team["owner"], scopes=("read", "write", "admin"))
    client.put("/api/v1/team/prices", headers=bearer(key), json={
        "prices": {"h100": 3.0}, "api_price_per_request": 0.01, "monthly_requests": 1_000_000})
    got = client.get(f"/api/v1/runs/{team['done']}/cost", headers=bearer(key)).json()
    actual = got["actual"]
    assert actual["device_type"] == "h100" and actual["devices"] == 2 and actual["measured"] is True
    assert actual["device_hours"] == pytest.approx(4.0, rel=1e-3) and actual["cost"] == pytest.approx(12.0, rel=1e-3)
    roi = got["roi"]
    assert roi["training_cost"] == pytest.approx(12.0, rel=1e-3) and roi["device_type"] == "h100"
    # a dedicated H100 all month ($2,190) over a million requests: $0.00219 a request, under $0.01
    assert roi["cost_per_request"] == pytest.approx(3.0 * 730 / 1_000_000) and roi["pays_back"] is True
    assert roi["break_even_requests"] == pytest.approx(12.0 / (0.01 - roi["cost_per_request"]), rel=1e-3)
    queued = client.get(f"/api/v1/runs/{team['queued']}/cost", headers=bearer(key)).json()
    assert queued["actual"] is None and queued["roi"] is None
    # the run page says the same in words
    assert client.get(f"/api/v1/runs/{team['done']}/cost").status_code == 401


def test_usage_per_month_person_and_model_is_the_teams_own(client, db, team, settings, tmp_path):
    other = make_account(db, email="other@example.com", team_name="Other")
    store = ArtifactStore(settings.artifact_dir)
    o_data = make_dataset(db, store, other.team_id)
    o_model = register_model(db, write_model_dir(tmp_path / "other"), team_id=other.team_id, name="Other model")
    now = utcnow()
    make_run(db, other.team_id, o_data, o_model, status=RunStatus.succeeded, worker_id="gpu-host", device_ids=[0],
             started_at=now - timedelta(hours=10), finished_at=now)
    key = make_api_key(db, team["owner"])
    u = client.get("/api/v1/usage", headers=bearer(key)).json()
    assert u["total"]["runs"] == 1 and u["total"]["device_hours"] == pytest.approx(4.0, rel=1e-3)
    h100 = next(d for d in client.get("/api/v1/team/prices", headers=bearer(key)).json()["device_types"]
                if d["key"] == "h100")["price_per_hour"]
    assert u["total"]["cost"] == pytest.approx(4.0 * h100, rel=1e-3)
    assert [r["label"] for r in u["by_person"]] == ["Test User"]
    assert [r["label"] for r in u["by_model"]] == [team["model"].display_name]
    assert [r["key"] for r in u["by_month"]] == [(now - timedelta(hours=3)).strftime("%Y-%m")]
    assert client.get("/api/v1/usage?months=-1", headers=bearer(key)).status_code == 422


def test_estimate_api_includes_the_cost(client, db, team):
    key = make_api_key(db, team["owner"])
    r = client.post("/api/v1/runs/estimate", headers=bearer(key),
                    json={"dataset_id": team["dataset"].id, "base_model_id": team["model"].id})
    assert r.status_code == 200, r.text
    est = r.json()["estimate"]
    cost = est["cost"]
    assert cost["device_type"] == "h100" and cost["currency"] == "USD"
    hours = est["time_range"]["likely_s"] / 3600 * est["devices"]
    assert cost["device_hours"]["likely"] == pytest.approx(hours, rel=1e-3)
    assert cost["cost"]["low"] <= cost["cost"]["likely"] <= cost["cost"]["high"]


def test_pages_show_costs_in_words(make_client, db, team):
    browser = make_client()
    log_in(browser, team["owner"])
    run_page = browser.get(f"/runs/{team['done']}").text
    assert "device-hours" in run_page and "NVIDIA H100 (80 GB)" in run_page
    assert "Does it pay for itself?" in run_page and "prices page" in run_page  # no API price yet
    usage = browser.get("/usage").text
    assert "Test User" in usage and team["model"].display_name in usage
    help_page = browser.get("/help/costs").text
    assert help_page.count('<tr class="case-') == 9 and "QLoRA" in help_page
    wizard = browser.get(f"/runs/new?dataset_id={team['dataset'].id}&base_model_id={team['model'].id}").text
    assert "GPU-hours" in wizard and "/help/costs" in wizard
