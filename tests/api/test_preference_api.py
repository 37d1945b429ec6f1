"""Preference (DPO) jobs through the OpenAI-compatible API and the native API."""

from __future__ import annotations

from app.storage import ArtifactStore
from tests.api.test_openai_api import _error, team  # noqa: F401 (the fixture)
from tests.runs.factories import make_dataset, make_pair_dataset


def test_dpo_job_with_beta_on_a_pair_file(client, db, settings, team):  # noqa: F811
    account, headers, model = team
    pairs = make_pair_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    r = client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": f"file-{pairs.id}",
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25, "n_epochs": 2}}}})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["method"]["type"] == "dpo" and job["method"]["dpo"]["hyperparameters"]["beta"] == 0.25
    assert job["method"]["dpo"]["hyperparameters"]["n_epochs"] == 2
    config = client.get(f"/api/v1/runs/{job['id'].removeprefix('ftjob-')}", headers=headers).json()["config"]
    assert config["objective"] == "dpo" and config["beta"] == 0.25 and config["epochs"] == 2
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=headers).json()["data"]
    assert events[-1]["message"].startswith("Queued: DPO preference training (LoRA)")


def test_dpo_needs_pairs_and_pairs_need_a_preference_method(client, db, settings, team):  # noqa: F811
    account, headers, model = team
    store = ArtifactStore(settings.artifact_dir)
    chats, pairs = make_dataset(db, store, account.team_id), make_pair_dataset(db, store, account.team_id)
    body = _error(client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": f"file-{chats.id}", "method": {"type": "dpo"}}), 422, "invalid_input")
    assert "preference pairs" in body["message"] and body["param"] == "objective"
    body = _error(client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": f"file-{pairs.id}", "method": {"type": "supervised"}}),
        422, "invalid_input")
    assert "dpo or orpo" in body["message"]
    body = _error(client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": f"file-{pairs.id}",
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}}), 422, "invalid_input")
    assert "beta" in body["message"]
    body = _error(client.post("/v1/fine_tuning/jobs", headers=headers, json={
        "model": model.slug, "training_file": f"file-{pairs.id}", "validation_file": f"file-{chats.id}",
        "method": {"type": "dpo"}}), 422, "invalid_input")
    assert body["param"] == "validation_file"


def test_native_api_takes_the_same_method(client, db, settings, team):  # noqa: F811
    account, headers, model = team
    pairs = make_pair_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    body = {"dataset_id": pairs.id, "base_model_id": model.id,
            "method": {"type": "orpo", "orpo": {"hyperparameters": {"beta": 0.2}}}}
    estimate = client.post("/api/v1/runs/estimate", headers=headers, json=body).json()
    assert estimate["config"]["objective"] == "orpo" and estimate["config"]["beta"] == 0.2
    assert any("ORPO learning rate" in reason for reason in estimate["reasons"])
    plain = client.post("/api/v1/runs/estimate", headers=headers,
                        json={"dataset_id": pairs.id, "base_model_id": model.id}).json()
    assert plain["config"]["objective"] == "dpo"  # a pair dataset trains with dpo unless told otherwise
    reasons = " ".join(plain["reasons"])
    assert "DPO learning rate" in reasons and "Beta 0.1" in reasons and "epoch(s) over 24 pairs" in reasons
    assert plain["config"]["learning_rate"] < client.post("/api/v1/runs/estimate", headers=headers, json={
        "dataset_id": make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id).id,
        "base_model_id": model.id}).json()["config"]["learning_rate"]
    r = client.post("/api/v1/runs", headers=headers, json={**body, "hyperparameters": {"use_dora": True}})
    assert r.status_code == 201, r.text
    assert r.json()["config"]["objective"] == "orpo" and r.json()["config"]["use_dora"] is True


def test_the_official_sdk_sends_method_dpo(client, db, settings, team):  # noqa: F811
    """The openai SDK's own request (its method types), answered by the studio in process."""
    from openai import OpenAI

    account, headers, model = team
    pairs = make_pair_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    sdk = OpenAI(base_url=f"{client.base_url}/v1", api_key=headers["Authorization"].removeprefix("Bearer "),
                 http_client=client, max_retries=0)
    job = sdk.fine_tuning.jobs.create(model=model.slug, training_file=f"file-{pairs.id}",
                                      method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3}}})
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.3
    again = sdk.fine_tuning.jobs.retrieve(job.id)
    assert again.method.dpo.hyperparameters.beta == 0.3 and again.status == "queued"
