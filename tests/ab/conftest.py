"""Fixtures for A/B tests: a team with an owner, a member and a viewer, a base model, a succeeded
run with an adapter, and comparisons in every state."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from app.ab import service
from app.models import Artifact, RunStatus, Membership, Role
from app.storage import ArtifactStore
from tests.factories import Account, log_in, make_account
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir


@pytest.fixture
def store(settings):
    return ArtifactStore(settings.artifact_dir)


@dataclass
class Team:
    owner: Account
    member: Account
    viewer: Account

    @property
    def team_id(self) -> int:
        return self.owner.team_id


def add_member(db, team_id: int, role: Role) -> Account:  # noqa: ANN001
    """A person whose only team is team_id (their sign-up team is swapped for it)."""
    acc = make_account(db)
    membership = db.scalar(select(Membership).where(Membership.user_id == acc.user_id))
    membership.team_id, membership.role = team_id, role
    db.commit()
    return Account(user_id=acc.user_id, team_id=team_id, email=acc.email)


@pytest.fixture
def team(db) -> Team:
    owner = make_account(db, team_name="Nuage")
    return Team(owner=owner, member=add_member(db, owner.team_id, Role.member),
                viewer=add_member(db, owner.team_id, Role.viewer))


@pytest.fixture
def model(db, tmp_path):
    return register_model(db, write_model_dir(tmp_path / "tiny-model"), name="Tiny Base")


@pytest.fixture
def dataset(db, store, team):
    return make_dataset(db, store, team.team_id)


def succeeded_run(db, team_id: int, dataset, model, *, name: str = "support v1"):  # noqa: ANN001
    run = make_run(db, team_id, dataset, model, status=RunStatus.succeeded, name=name)
    db.add(Artifact(team_id=team_id, run_id=run.id, kind="adapter", path=f"teams/{team_id}/jobs/{run.id}/run/adapter"))
    db.commit()
    return run


@pytest.fixture
def run(db, team, dataset, model):
    return succeeded_run(db, team.team_id, dataset, model)


def make_comparison(db, store, team_id: int, user_id: int, model, run, *, prompts: int = 4,  # noqa: ANN001
                    status: str = service.OPEN, name: str = "base vs tuned"):
    """A comparison as the worker leaves it: answers written, sides placed, open for votes."""
    new = service.NewComparison(team_id=team_id, user_id=user_id, name=name,
                                model_a={"kind": "base", "id": model.id}, model_b={"kind": "run", "id": run.id},
                                prompts=[f"Question {i}?" for i in range(prompts)])
    comparison = service.create(db, new=new, store=store)
    pairs = service.repo.pairs(db, comparison_id=comparison.id)
    service.assign_sides(pairs, comparison.prompt_source["seed"])
    for pair in pairs:
        pair.answer_a, pair.answer_b = f"base answer {pair.position}", f"tuned answer {pair.position}"
    comparison.status = status
    db.commit()
    return comparison


@pytest.fixture
def comparison(db, store, team, model, run, sent):
    return make_comparison(db, store, team.team_id, team.owner.user_id, model, run)


@pytest.fixture
def browser_of(make_client):
    """A logged-in browser for an account, sending its CSRF token on every request."""
    def login(account: Account):  # noqa: ANN202
        client = make_client()
        client.headers["X-CSRF-Token"] = log_in(client, account)
        return client

    return login
