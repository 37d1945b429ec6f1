"""A member of team A cannot read, list or change anything of team B through any route.

The walk covers every route of the app with team B's ids in the path (and in the body where a
route takes an id there), as A's browser session and as A's API key. A route whose path
parameter is not in IDS fails the test: add it here when you add the route.
"""

from __future__ import annotations

from sqlalchemy import select

from app.teams import service
from app.models import Base, Role
from tests.app.routes_walk import fill, params, routes
from tests.factories import log_in, make_account, make_api_key

MARK = "TEAMB-SECRET"
# Capability URLs: holding the link is the permission (an invitation is meant for whoever has it).
CAPABILITY_ROUTES = {"/invitations/{token}"}
# Routes that may answer 2xx to A because they only ever show or change A's own things.
OWN_TEAM_ROUTES = {
    "/", "/team", "/team/api-keys", "/api/v1/me", "/api/v1/api-keys", "/team/invitations",
    "/api/v1/team/storage",  # A's own storage use
    "/healthz", "/readyz", "/login", "/signup", "/logout",
    "/datasets", "/datasets/new", "/datasets/example", "/api/v1/datasets",
    "/api/v1/models",  # shared models plus A's own: B's private model must not appear (MARK)
    "GET /api/v1/runs",  # A's own runs; POST with B's dataset and model must be refused
    "GET /runs", "/runs/new", "/runs/recent", "/runs/compare",  # POST /runs with B's ids must be refused
    "/runs/help/fine-tune-or-retrieval", "/glossary",  # the same for every team
    "GET /v1/files", "POST /v1/files", "GET /v1/fine_tuning/jobs", "GET /v1/models",  # A's own only
    "GET /ab", "/ab/new", "GET /api/v1/ab/comparisons",  # A's own; POST with B's models must be refused
    "GET /sweeps", "/sweeps/new", "/sweeps/preview", "GET /api/v1/sweeps",  # POST with B's dataset must be refused
    "/team/webhooks", "/api/v1/webhooks", "/api/v1/webhooks/events",  # A's own webhooks (B's must not appear)
    "/team/costs", "/api/v1/team/prices", "/usage", "/api/v1/usage",  # A's own prices and usage (B's row is unchanged)
    "/help/costs",  # the same for every team (at A's prices)
    "/playground", "/playground/stream", "/playground/transcripts",  # A's own; B's model names are refused
    "/api/v1/playground/transcripts",
    # the registry: A's own versions, aliases, log and gate; a release of B's version or a gate on
    # B's dataset is refused (404 / 422), and B's snapshot is checked unchanged
    "GET /models", "POST /models/releases", "POST /models/gate", "GET /api/v1/registry/models",
    "GET /api/v1/registry/aliases", "/api/v1/registry/releases", "/api/v1/registry/gate",
}


def _team_b(db):
    b = make_account(db, email="owner-b@example.com", team_name=f"{MARK} team")
    member = make_account(db, email="member-b@example.com")
    from app.models import Membership

    db.add(Membership(team_id=b.team_id, user_id=member.user_id, role=Role.member))
    inv, _ = service.invite(db, team_id=b.team_id, invited_by=b.user_id, email="guest-b@example.com",
                            role=Role.member)
    key, _ = service.create_api_key(db, team_id=b.team_id, user_id=b.user_id, name=f"{MARK} key",
                                    scopes=["read"])
    db.commit()
    ids = {"user_id": member.user_id, "key_id": key.id, "invitation_id": inv.id, "team_id": b.team_id}
    ids["dataset_id"] = _dataset_of(db, b.team_id)
    ids.update(_run_of(db, b.team_id, ids["dataset_id"]))
    ids.update(_openai_ids(db, b.team_id, ids))
    ids.update(_sweep_of(db, b.team_id, ids))
    ids.update(_comparison_of(db, b.team_id, member.user_id, ids))
    ids.update(_augmentation_of(db, b.team_id, ids))
    ids.update(_transcript_of(db, b.team_id, ids))
    ids.update(_registry_of(db, b.team_id))
    ids["variant"] = "q8_0"  # a GGUF file type of B's run
    ids.update(_webhook_of(db, b.team_id))
    from app.costs import service as costs

    costs.save(db, team_id=b.team_id, user_id=b.user_id, prices_per_hour={"h100": 7.77},
               roi={"api_price_per_request": 0.5, "monthly_requests": 1234})  # A's price changes must not touch it
    db.commit()
    return b, ids


def _webhook_of(db, team_id: int) -> dict:
    """Team B's webhook, with a delivery in its log."""
    from app.notifications import service as notifications

    hook, _ = notifications.create_webhook(db, team_id=team_id, user_id=None, url="https://hooks.example.com/b",
                                           events=["run.failed"], description=f"{MARK} webhook")
    notifications.emit(db, team_id, "run.failed", {"run": {"name": MARK}})
    db.commit()
    return {"webhook_id": hook.id}


def _augmentation_of(db, team_id: int, ids: dict) -> dict:
    """Team B's augmentation job on its dataset, with one example waiting for review."""
    from app.models import AugmentationJob, GeneratedExample

    job = AugmentationJob(team_id=team_id, dataset_id=ids["dataset_id"], status="running",
                          endpoint_url="http://127.0.0.1:9/v1", model=MARK, settings={"kinds": ["paraphrase"], "house_style": "", "sources": 1,
                                                              "max_calls": 10, "max_tokens": 5000})
    db.add(job)
    db.flush()
    example = GeneratedExample(team_id=team_id, job_id=job.id, source_example=1, kind="paraphrase",
                               messages=[{"role": "user", "content": MARK}, {"role": "assistant", "content": MARK}])
    db.add(example)
    db.commit()
    return {"job_id": job.id, "example_id": example.id}


def _transcript_of(db, team_id: int, ids: dict) -> dict:
    """Team B's saved playground transcript: two models, one turn."""
    from app.models import Transcript

    row = Transcript(team_id=team_id, title=f"{MARK} chat", system=MARK, temperature=0.0, max_tokens=64,
                     models=["b-model", ids["model"]], turns=[{"prompt": MARK, "answers": [MARK, MARK]}])
    db.add(row)
    db.commit()
    return {"transcript_id": row.id}


def _comparison_of(db, team_id: int, member_id: int, ids: dict) -> dict:
    """Team B's open A/B comparison with one pair and a vote of B's member."""
    from app.models import Comparison, ComparisonPair, Vote

    comparison = Comparison(team_id=team_id, name=f"{MARK} comparison", status="open",
                            model_a={"kind": "base", "id": ids["model_id"]}, model_b={"kind": "run", "id": ids["run_id"]},
                            prompt_source={"kind": "custom", "count": 1, "seed": 1})
    db.add(comparison)
    db.flush()
    pair = ComparisonPair(comparison_id=comparison.id, position=0, prompt=MARK, answer_a=MARK, answer_b=MARK)
    db.add(pair)
    db.flush()
    db.add(Vote(pair_id=pair.id, user_id=member_id, choice="a"))
    db.commit()
    return {"comparison_id": comparison.id, "pair_id": pair.id}


def _sweep_of(db, team_id: int, ids: dict) -> dict:
    """Team B's finished sweep with one succeeded child, its best run."""
    from app.models import Run, RunStatus, Sweep
    from app.sweeps.repository import child_key

    sweep = Sweep(team_id=team_id, name=f"{MARK} sweep", base_config={"preset": "auto"}, search_space={"lora_r": [8]},
                  status="running", dataset_id=ids["dataset_id"], base_model_id=ids["model_id"])
    db.add(sweep)
    db.flush()
    child = Run(team_id=team_id, dataset_id=ids["dataset_id"], base_model_id=ids["model_id"], method="lora",
                name=f"{MARK} child", config={"base_model": "/nonexistent/b-model", "lora_r": 8},
                status=RunStatus.succeeded, sweep_id=sweep.id, sweep_params={"lora_r": 8},
                idempotency_key=child_key(sweep.id, 0), result={"metrics": {"eval_loss": 1.0}})
    db.add(child)
    db.flush()
    sweep.status, sweep.best_run_id = "succeeded", child.id
    db.commit()
    return {"sweep_id": sweep.id}


def _registry_of(db, team_id: int) -> dict:
    """Team B's served model registered as teamb-bot v1, the alias teamb-bot:prod on it, its
    release in the log (who and why carry MARK) and a quality gate."""
    from sqlalchemy import select

    from app.models import Artifact, ModelAlias, ModelVersion, QualityGate, Release, Run, utcnow

    run = db.scalar(select(Run).join(Artifact, Artifact.run_id == Run.id).where(Run.team_id == team_id,
                                                                                   Artifact.kind == "adapter"))
    version = ModelVersion(team_id=team_id, run_id=run.id, name="teamb-bot", version=1)
    db.add(version)
    db.flush()
    alias = ModelAlias(team_id=team_id, name="teamb-bot", alias="prod", version_id=version.id, moved_at=utcnow())
    db.add(alias)
    db.flush()
    release = Release(team_id=team_id, alias_id=alias.id, status="moved", to_version_id=version.id,
                      to_label="teamb-bot v1", requested_by=f"{MARK}@example.com", override_reason=MARK,
                      message=MARK, finished_at=utcnow())
    db.add_all([release, QualityGate(team_id=team_id, metric="ab_win_rate", margin=0.1)])
    db.commit()
    return {"version_id": version.id, "alias_id": alias.id, "release_id": release.id}


def _openai_ids(db, team_id: int, ids: dict) -> dict:
    """Team B's ids as the OpenAI-compatible API names them, and a fine-tuned model of B's that
    has an adapter to serve (its name carries MARK, so a leak in any list shows)."""
    from app.models import Artifact, Run, RunStatus

    run = Run(team_id=team_id, dataset_id=ids["dataset_id"], base_model_id=ids["model_id"], method="lora",
              name=f"{MARK} tuned", config={"base_model": "/nonexistent/b-model", "epochs": 1},
              status=RunStatus.succeeded, suffix=MARK)
    db.add(run)
    db.flush()
    db.add(Artifact(team_id=team_id, run_id=run.id, kind="adapter", path=f"teams/{team_id}/jobs/{run.id}/run/adapter"))
    db.commit()
    return {"file_id": f"file-{ids['dataset_id']}", "fine_tuning_job_id": f"ftjob-{ids['run_id']}",
            "model": f"ft:b-model:team-{team_id}:{MARK}:{run.id}"}


def _run_of(db, team_id: int, dataset_id: int) -> dict:
    """Team B's private base model, a run on it, an event, a metric, a checkpoint, an artifact."""
    from app.models import Artifact, BaseModel, Checkpoint, Evaluation, Run, RunEvent, Metric

    model = BaseModel(team_id=team_id, slug="b-model", display_name=f"{MARK} model", source="local",
                      path="/nonexistent/b-model", parameter_count=1000)
    db.add(model)
    db.flush()
    run = Run(team_id=team_id, dataset_id=dataset_id, base_model_id=model.id, method="lora", name=f"{MARK} run",
              config={"base_model": model.path, "max_steps": 1})
    db.add(run)
    db.flush()
    db.add_all([RunEvent(run_id=run.id, kind="status", message=MARK), Metric(run_id=run.id, step=1, name="loss", value=1.0),
                Checkpoint(run_id=run.id, step=1, path=f"teams/{team_id}/jobs/{run.id}/run/checkpoints/checkpoint-1"),
                Evaluation(team_id=team_id, run_id=run.id, status="succeeded", samples=[{"prompt": MARK}],
                           metrics={"base": {"rougeL": 0.1}, "finetuned": {"rougeL": 0.2}})])
    artifact = Artifact(team_id=team_id, run_id=run.id, kind="log", path=f"teams/{team_id}/jobs/{run.id}/run/training.log")
    db.add(artifact)
    db.commit()
    return {"run_id": run.id, "artifact_id": artifact.id, "model_id": model.id, "base_model_id": model.id}


def _dataset_of(db, team_id: int) -> int:
    """A checked CSV dataset of team B (invalid, so that its mapping step is open)."""
    from app.models import Dataset, DatasetStatus

    row = Dataset(team_id=team_id, name=f"{MARK} dataset", original_filename=f"{MARK}.csv", sha256="0" * 64,
                  size_bytes=10, raw_path=f"teams/{team_id}/datasets/b/raw", status=DatasetStatus.invalid,
                  report={"status": "invalid", "explanation": MARK, "columns": ["q", "a"], "errors": [],
                          "error_counts": {"mapping_required": 1}})
    db.add(row)
    db.commit()
    return row.id


def _snapshot(db, team_id: int) -> dict:
    db.expire_all()
    snap = {}
    for table in Base.metadata.sorted_tables:
        if "team_id" in table.c:
            rows = db.execute(select(table).where(table.c.team_id == team_id).order_by(*table.primary_key)).all()
            snap[table.name] = [tuple(r) for r in rows]
    return snap


def _body(method: str, path: str, ids: dict) -> dict:
    """A well-formed body for each route that takes one, aimed at team B where it can be."""
    forms = {
        "/team/switch": {"team_id": ids["team_id"]},
        "/team/members/{user_id}/role": {"role": "owner"},
        "/team/invitations": {"email": "someone@example.com", "role": "owner"},
        "/team/api-keys": {"name": "k", "scopes": "read"},
        "/team/webhooks": {"url": "https://hooks.example.com/a", "events": "run.failed"},
        "/login": {"email": "owner-b@example.com", "password": "wrong password"},
        "/signup": {"email": "owner-b@example.com", "password": "correct horse battery"},
    }
    jsons = {"/api/v1/api-keys": {"name": "k", "scopes": ["read"]},
             "/api/v1/webhooks": {"url": "https://hooks.example.com/a", "events": ["run.failed"]},
             "/api/v1/runs": {"dataset_id": ids["dataset_id"], "base_model_id": ids["base_model_id"]},
             "/api/v1/runs/estimate": {"dataset_id": ids["dataset_id"], "base_model_id": ids["base_model_id"]},
             "/api/v1/datasets/{dataset_id}/mapping": {"prompt": "q", "completion": "a"},
             "/v1/fine_tuning/jobs": {"model": "b-model", "training_file": f"file-{ids['dataset_id']}"},
             "/v1/chat/completions": {"model": ids["model"], "messages": [{"role": "user", "content": "hi"}]},
             "/api/v1/ab/comparisons": {"model_a": {"kind": "base", "id": ids["base_model_id"]},
                                        "model_b": {"kind": "run", "id": ids["run_id"]}, "prompts": ["hi"]},
             "/api/v1/ab/comparisons/{comparison_id}/pairs/{pair_id}/vote": {"choice": "left"},
             "/playground/stream": {"models": [ids["model"]], "prompt": "hi"},
             "/api/v1/playground/transcripts": {"models": [ids["model"]], "turns": [{"prompt": "hi", "answers": ["x"]}]},
             "/api/v1/playground/transcripts/{transcript_id}": {"title": "stolen"},  # PATCH renames
             "/api/v1/playground/transcripts/{transcript_id}/ab": {"model_a": 0, "model_b": 1},
             "/api/v1/playground/transcripts/{transcript_id}/dataset": {"chosen": [0]},
             "/api/v1/datasets/{dataset_id}/augmentations": {"endpoint_url": "http://127.0.0.1:9/v1", "model": "m",
                                                             "kinds": ["paraphrase"]},
             "/api/v1/datasets/{dataset_id}/augmentations/{job_id}/examples/review": {"action": "accept",
                                                                                      "all_pending": True},
             "/api/v1/datasets/{dataset_id}/augmentations/{job_id}/examples/{example_id}": {"contents": ["a", "b"]}}
    forms["/playground/transcripts/{transcript_id}/ab"] = {"model_a": "1", "model_b": "2"}
    forms["/playground/transcripts/{transcript_id}/dataset"] = {"turn_0": "1"}
    forms["/playground/transcripts/{transcript_id}/title"] = {"title": "stolen"}
    forms["/datasets/{dataset_id}/mapping"] = {"prompt": "q", "completion": "a"}
    forms["/ab"] = {"model_a": f"base:{ids['base_model_id']}", "model_b": f"run:{ids['run_id']}",
                    "source": "custom", "prompts": "hi"}
    forms["/ab/{comparison_id}/pairs/{pair_id}/vote"] = {"choice": "left"}
    forms["/runs"] = {"dataset_id": ids["dataset_id"], "base_model_id": ids["base_model_id"], "hp_max_steps": "1"}
    jsons["/api/v1/sweeps"] = {"dataset_id": ids["dataset_id"], "base_model_id": ids["base_model_id"],
                               "search_space": {"lora_r": [8]}}
    jsons["/api/v1/registry/releases"] = {"name": "teamb-bot", "alias": "prod", "version": 1}
    jsons["/api/v1/registry/gate"] = {"dataset_id": ids["dataset_id"], "metric": "eval_loss", "margin": 0.1}
    jsons["/api/v1/registry/versions/{version_id}/name"] = {"name": "stolen"}
    forms["/models/releases"] = {"name": "teamb-bot", "alias": "prod", "version": "1"}
    forms["/models/gate"] = {"dataset_id": str(ids["dataset_id"]), "metric": "eval_loss", "margin": "0.1"}
    forms["/models/versions/{version_id}/name"] = {"name": "stolen"}
    forms["/sweeps"] = {"dataset_id": ids["dataset_id"], "base_model_id": ids["base_model_id"], "sp_lora_r": "8"}
    if path == "/v1/files" and method == "POST":
        chat = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'
        return {"files": {"file": ("a.jsonl", chat + b"\n")}, "data": {"purpose": "fine-tune"}}
    if path in ("/datasets", "/api/v1/datasets") and method == "POST":
        chat = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'
        return {"files": {"file": ("a.jsonl", chat + b"\n")}, "data": {"name": "mine"}}
    if path in jsons:
        return {"json": jsons[path]}
    return {"data": forms.get(path, {})}


def test_team_a_cannot_reach_team_b(app, make_client, db):
    a = make_account(db, email="owner-a@example.com")
    key_a = make_api_key(db, a, scopes=("read", "write", "admin"))
    b, ids = _team_b(db)
    before = _snapshot(db, b.team_id)
    browser = make_client()
    csrf = log_in(browser, a)
    walked = 0
    for method, path in routes(app):
        if path in CAPABILITY_ROUTES or path in ("/logout",):
            continue
        unknown = set(params(path)) - set(ids)
        assert not unknown, f"{path}: add an id of team B for {unknown} to this test"
        url = fill(path, ids)
        for caller, headers in (("session", {"X-CSRF-Token": csrf}), ("api key", {"Authorization": f"Bearer {key_a}"})):
            r = browser.request(method, url, headers=headers, follow_redirects=False, **_body(method, path, ids))
            walked += 1
            where = f"{caller} {method} {url} -> {r.status_code}"
            assert MARK not in r.text, f"team B's data leaked: {where}"
            assert r.status_code < 500, where
            if params(path) or path == "/team/switch":
                assert r.status_code in (403, 404), where
            else:
                own = path in OWN_TEAM_ROUTES or f"{method} {path}" in OWN_TEAM_ROUTES
                assert own or r.status_code in (401, 403, 404), where
    assert walked >= 2 * 15
    assert _snapshot(db, b.team_id) == before, "a request from team A changed team B's data"
