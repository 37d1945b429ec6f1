"""One team with something on every page (datasets, runs in each state, a sweep, an A/B test),
and the address of every full page, for the tests that look at all of them: the plain-language
check (tests/app/test_plain_pages.py) and the browser walk with axe-core at desktop and phone
widths (tests/browser/test_pages_walk.py). Fragments polled by htmx are left out; the pages
that include them are walked."""

from __future__ import annotations

from datetime import timedelta

from app.costs import service as costs
from app.models import Artifact, Metric, RunStatus, Worker, utcnow
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
    evaluation point and an adapter, a queued run, and a saved playground transcript."""
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
    db.add(Worker(name="gpu-host-1", device="cuda", device_name="NVIDIA A100-SXM4-80GB", device_count=8,
                  queues="train", last_seen_at=now - timedelta(days=2)))  # long gone: nothing plans on it
    costs.save(db, team_id=team, user_id=owner.user_id, prices_per_hour={"a100_80": 1.6},
               roi={"api_price_per_request": 0.002, "monthly_requests": 2_000_000})  # the return on investment shows
    done = make_run(db, team, good, model, status=RunStatus.succeeded, name="first try", worker_id="gpu-host-1",
                    created_by_id=owner.user_id,
                    device_ids=[0, 1],
                    config={"base_model": model.path, "epochs": 1, "lora_r": 16, "grad_accum": 2},
                    started_at=now - timedelta(minutes=5), finished_at=now, current_step=50, total_steps=50,
                    estimate={"time_s": 240.0, "device_kind": "cpu", "device_known": True})
    db.add_all([Metric(run_id=done.id, step=s, name="loss", value=2.0 - s / 50) for s in range(1, 51, 7)])
    db.add(Metric(run_id=done.id, step=50, name="eval_loss", value=1.234))
    db.add(Artifact(team_id=team, run_id=done.id, kind="adapter", path=f"teams/{team}/jobs/{done.id}/run/adapter",
                    size_bytes=1234))
    queued = make_run(db, team, good, model, name="second try")
    _webhook_log(db, team)
    transcript = _transcript(db, team, model, done, owner.user_id)
    db.commit()
    ids.update(done_id=done.id, queued_id=queued.id, good_dataset_id=good.id, transcript_id=transcript.id)
    ids.update(_registry(db, team, owner.email, model, good, done))
    return owner, ids


def _webhook_log(db, team: int) -> None:  # noqa: ANN001
    """A webhook with a delivery log: one delivered after a retry, one still waiting for its next try."""
    from app.models import DeliveryAttempt
    from app.notifications import service as notifications

    hook, _ = notifications.create_webhook(db, team_id=team, user_id=None, url="https://hooks.example.com/studio",
                                           events=["run.succeeded", "run.failed"], description="deploy bot")
    done, waiting = notifications.emit(db, team, "run.succeeded", {"run": {"id": 1}}) + \
        notifications.emit(db, team, "run.failed", {"run": {"id": 2}})
    now = utcnow()
    done.status, done.attempts, done.last_status_code, done.finished_at = "succeeded", 2, 200, now
    waiting.attempts, waiting.last_status_code, waiting.last_error = 1, 503, "HTTP 503: busy"
    waiting.next_attempt_at = now + timedelta(seconds=15)
    db.add_all([DeliveryAttempt(team_id=team, delivery_id=done.id, attempt=1, status_code=500, error="HTTP 500",
                                duration_ms=40),
                DeliveryAttempt(team_id=team, delivery_id=done.id, attempt=2, status_code=200, duration_ms=35),
                DeliveryAttempt(team_id=team, delivery_id=waiting.id, attempt=1, status_code=503,
                                error="HTTP 503: busy", duration_ms=20)])


def _transcript(db, team_id: int, model, run, user_id: int):  # noqa: ANN001, ANN202
    """A saved playground conversation: the base model and the finished run, two turns."""
    from app.api.openai import names
    from app.models import Transcript

    row = Transcript(team_id=team_id, created_by_id=user_id, title="Login trouble", system="Answer in French, briefly.",
                     temperature=0.0, max_tokens=128, models=[names.base_name(model), names.fine_tuned_name(run, model.slug)],
                     turns=[{"prompt": "Je n'arrive plus à me connecter.",
                             "answers": ["Try resetting your password.", "Bonjour ! Réinitialisez votre mot de passe."]},
                            {"prompt": "Et si je n'ai plus accès à mon e-mail ?",
                             "answers": ["Contact support.", ""]}])
    db.add(row)
    db.flush()
    return row


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
             f"/datasets/{ids['good_dataset_id']}", f"/playground?transcript={ids['transcript_id']}"]
    return urls
