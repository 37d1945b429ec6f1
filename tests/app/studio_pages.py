"""One team with something on every page (datasets, runs in each state, a sweep, an A/B test),
and the address of every full page, for the tests that look at all of them: the plain-language
check (tests/app/test_plain_pages.py) and the browser walk with axe-core at desktop and phone
widths (tests/browser/test_pages_walk.py). Fragments polled by htmx are left out; the pages
that include them are walked."""

from __future__ import annotations

from datetime import timedelta

from app.models import Artifact, Metric, RunStatus, utcnow
from app.storage import ArtifactStore
from tests.app import test_tenancy as tenancy
from tests.app.routes_walk import fill, params, routes
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir

# htmx fragments, API-like and logged-out pages: not pages a person lands on while logged in
NOT_PAGES = ("/status", "/rows", "/recent", "/evaluation", "/preview")
SKIP = {"/healthz", "/readyz", "/invitations/{token}", "/signup", "/login", "/logout"}


def seed(db, settings, tmp_path):  # noqa: ANN001, ANN201
    """The owner's account and the ids of its things: the tenancy walk's set (an augmentation job
    included), plus a checked
    dataset and a real model directory (so the wizard plans), a finished run with one
    evaluation point and an adapter, and a queued run."""
    owner = make_account(db, email="owner@example.com", team_name="Support team")
    team = owner.team_id
    ids = {"team_id": team, "user_id": owner.user_id}
    ids["dataset_id"] = tenancy._dataset_of(db, team)
    ids.update(tenancy._run_of(db, team, ids["dataset_id"]))
    from app.models import BaseModel

    shape = db.get(BaseModel, ids["model_id"])  # the tenancy walk's model row has no shape: a registered one does
    shape.parameter_count, shape.hidden_size, shape.num_layers, shape.vocab_size, shape.context_length = (
        135_000_000, 576, 30, 49152, 2048)
    ids.update(tenancy._openai_ids(db, team, ids))
    ids.update(tenancy._sweep_of(db, team, ids))
    ids.update(tenancy._comparison_of(db, team, owner.user_id, ids))
    ids.update(tenancy._augmentation_of(db, team, ids))  # its review page, one example waiting
    store = ArtifactStore(settings.artifact_dir)
    good = make_dataset(db, store, team)
    good.stats = {**good.stats, "example_lengths": {"p50": 30, "p90": 38, "p99": 40, "max": 42}, "duplicates": 0,
                  "length_unit": "tokens", "tokens_are_estimated": False}  # what the dataset page shows
    model = register_model(db, write_model_dir(tmp_path / "tiny-model"), team_id=team)
    now = utcnow()
    done = make_run(db, team, good, model, status=RunStatus.succeeded, name="first try",
                    config={"base_model": model.path, "epochs": 1, "lora_r": 16, "grad_accum": 2},
                    started_at=now - timedelta(minutes=5), finished_at=now, current_step=50, total_steps=50,
                    estimate={"time_s": 240.0, "device_kind": "cpu", "device_known": True})
    db.add_all([Metric(run_id=done.id, step=s, name="loss", value=2.0 - s / 50) for s in range(1, 51, 7)])
    db.add(Metric(run_id=done.id, step=50, name="eval_loss", value=1.234))
    db.add(Artifact(team_id=team, run_id=done.id, kind="adapter", path=f"teams/{team}/jobs/{done.id}/run/adapter",
                    size_bytes=1234))
    queued = make_run(db, team, good, model, name="second try")
    db.commit()
    ids.update(done_id=done.id, queued_id=queued.id, good_dataset_id=good.id)
    ids.update(_registry(db, team, owner.email, model, good, done))
    return owner, ids


def _registry(db, team: int, who: str, model, golden, done) -> dict:  # noqa: ANN001
    """The Models page with everything on it: first-try v1 on the alias prod, v2 (a rank vLLM
    needs a flag for) refused by the quality gate with both scores, v3 waiting for its golden-set
    evaluation."""
    from app.config import get_settings
    from app.models import Evaluation, Release
    from app.registry import gate, service

    runs = [make_run(db, team, golden, model, status=RunStatus.succeeded, name="first try", finished_at=utcnow(),
                     config={"base_model": model.path, "lora_r": r, "target_modules": "attention_mlp"})
            for r in (64, 16)]
    for run in runs:
        db.add(Artifact(team_id=team, run_id=run.id, kind="adapter", path=f"teams/{team}/jobs/{run.id}/run/adapter"))
    db.flush()
    versions = [v for v in service.sync_versions(db, team_id=team) if v.name == "first-try"]
    v1, v2, v3 = sorted(versions, key=lambda v: v.version)
    actor = service.Actor(user_id=None, label=who, is_owner=True)
    gate.set_gate(db, team_id=team, user_id=None, dataset_id=golden.id, metric="eval_loss", margin=0.05)
    settings = get_settings()
    gate.promote(db, team_id=team, name="first-try", alias_name="prod", version=v1, actor=actor,
                 override_reason=None, settings=settings)
    refused = gate.promote(db, team_id=team, name="first-try", alias_name="prod", version=v2, actor=actor,
                           override_reason=None, settings=settings)
    for evaluation_id, loss in ((refused.candidate_evaluation_id, 1.9), (refused.holder_evaluation_id, 1.2)):
        row = db.get(Evaluation, evaluation_id)
        row.status, row.metrics = "succeeded", {"base": {"eval_loss": 2.5}, "finetuned": {"eval_loss": loss}}
    gate.settle_release(db, refused, settings)
    pending = gate.promote(db, team_id=team, name="first-try", alias_name="prod", version=v3, actor=actor,
                           override_reason=None, settings=settings)
    assert isinstance(pending, Release) and pending.status == "pending" and refused.status == "refused"
    db.commit()
    return {"version_id": v1.id, "alias_id": refused.alias_id, "release_id": pending.id}


def page_urls(app, ids: dict) -> list[str]:  # noqa: ANN001
    urls = []
    for method, path in routes(app):
        if method != "GET" or path.startswith(("/api", "/v1")) or path in SKIP or path.endswith(NOT_PAGES):
            continue
        values = {**ids, "run_id": ids["done_id"]}
        if set(params(path)) - set(values):
            continue  # a thing the seed does not make: its page cannot be walked
        urls.append(fill(path, values) if params(path) else path)
    urls += [f"/runs/{ids['queued_id']}", f"/runs/{ids['run_id']}",
             f"/runs/compare?ids={ids['done_id']},{ids['queued_id']}",
             f"/runs/new?dataset_id={ids['good_dataset_id']}&base_model_id={ids['model_id']}",
             f"/datasets/{ids['good_dataset_id']}"]
    return urls
