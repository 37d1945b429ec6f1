"""Sweeps with fake outcomes: children are made final in the database as a worker would, and
the sweep advances within max_parallel and the team's limit, then picks its best."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from app.db import session_factory
from app.models import Evaluation, Run, RunEvent, RunStatus, Sweep, utcnow
from app.sweeps import service
from tests.runs.factories import make_run


def _children(db, sweep_id: int) -> list[Run]:
    db.expire_all()
    return list(db.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def _sweep(db, sweep_id: int) -> Sweep:
    db.expire_all()
    return db.get(Sweep, sweep_id)


def test_create_queues_max_parallel_children_and_the_rest_wait(make_sweep, db, sent):
    body = make_sweep()
    assert body["status"] == "running" and body["total_runs"] == 4 and body["metric"] == "eval_loss"
    assert body["mode"] == "min" and body["counts"] == {"queued": 2, "waiting": 2}
    assert [r["status"] for r in body["runs"]] == ["queued", "queued", "waiting", "waiting"]
    children = _children(db, body["id"])
    assert [c.sweep_params for c in children] == [{"lora_r": 8, "learning_rate": 1e-4},
                                                 {"lora_r": 8, "learning_rate": 3e-4}]
    assert children[0].name == "lr-rank · r=8 lr=0.0001"
    assert children[0].config["lora_r"] == 8 and children[0].config["learning_rate"] == 1e-4
    assert children[0].config["max_steps"] == 4  # the shared settings
    assert sent == [("studio.train", [c.id], "train") for c in children]


def test_advance_fills_freed_slots_then_picks_the_lowest_eval_loss(make_sweep, finish, db, sent):
    sweep_id = make_sweep()["id"]
    first, second = _children(db, sweep_id)
    finish(first.id, eval_loss=1.5)
    children = _children(db, sweep_id)
    assert len(children) == 3 and children[2].sweep_params == {"lora_r": 16, "learning_rate": 1e-4}
    assert sum(c.status in (RunStatus.queued, RunStatus.running) for c in children) == 2
    finish(second.id, eval_loss=1.2)
    third, fourth = _children(db, sweep_id)[2:]
    finish(third.id, eval_loss=1.9)
    assert _sweep(db, sweep_id).status == "running"  # the last one is still queued
    finish(fourth.id, eval_loss=1.3)
    sweep = _sweep(db, sweep_id)
    assert sweep.status == "succeeded" and sweep.best_run_id == second.id and sweep.finished_at is not None
    assert len(sent) == 4


def test_advance_is_idempotent_and_never_exceeds_max_parallel(make_sweep, db, settings, sent):
    sweep_id = make_sweep(max_parallel=3)["id"]
    for _ in range(3):
        service.advance(db, sweep_id, settings=settings)
        db.commit()
    assert len(_children(db, sweep_id)) == 3 and len(sent) == 3
    # Even a second process racing past the checks cannot queue a grid point twice.
    assert len({c.idempotency_key for c in _children(db, sweep_id)}) == 3


def test_concurrent_advances_queue_each_point_once(make_sweep, db, settings, sent):
    """Several workers advancing the same sweep at the same moment (hooks and reconcilers)."""
    import threading

    sweep_id = make_sweep(max_parallel=1)["id"]
    first = _children(db, sweep_id)[0]
    first.status = RunStatus.failed
    db.commit()
    factory, barrier, errors = session_factory(settings), threading.Barrier(4), []

    def advance() -> None:
        try:
            barrier.wait()
            with factory() as s:
                service.advance(s, sweep_id, settings=settings)
                s.commit()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    children = _children(db, sweep_id)
    assert len(children) == 2 and [c.status for c in children] == [RunStatus.failed, RunStatus.queued]


def test_ties_go_to_the_earliest_grid_point(make_sweep, finish, db):
    sweep_id = make_sweep(max_parallel=4)["id"]
    children = _children(db, sweep_id)
    for run, loss in zip(children[::-1], (0.5, 0.7, 0.5, 0.9)):  # points 3 and 1 tie
        finish(run.id, eval_loss=loss)
    assert _sweep(db, sweep_id).best_run_id == children[1].id


def _evaluation(db, run: Run, status: str = "succeeded", **scores: float) -> None:
    db.add(Evaluation(team_id=run.team_id, run_id=run.id, status=status,
                      metrics={"base": {"bleu": 1.0}, "finetuned": scores} if scores else None))
    db.commit()


def test_an_evaluation_score_picks_the_highest_and_waits_for_evaluations(make_sweep, finish, db, settings):
    sweep_id = make_sweep(max_parallel=4, metric="bleu")["id"]
    assert _sweep(db, sweep_id).mode == "max"
    a, b, c, d = _children(db, sweep_id)
    _evaluation(db, a, bleu=10.0)
    finish(a.id)
    finish(b.id, RunStatus.failed)
    _evaluation(db, c, status="running")
    finish(c.id)
    finish(d.id, RunStatus.cancelled)
    assert _sweep(db, sweep_id).status == "running"  # run c's evaluation is still going
    db.execute(update(Evaluation).where(Evaluation.run_id == c.id).values(status="succeeded",
                                                                           metrics={"finetuned": {"bleu": 30.0}}))
    db.commit()
    service.advance(db, sweep_id, settings=settings)
    db.commit()
    sweep = _sweep(db, sweep_id)
    assert sweep.status == "succeeded" and sweep.best_run_id == c.id


def test_a_run_whose_evaluation_never_came_is_skipped_after_a_while(make_sweep, finish, db, settings):
    sweep_id = make_sweep(search_space={"lora_r": [8, 16]}, metric="rougeL")["id"]
    a, b = _children(db, sweep_id)
    _evaluation(db, a, rougeL=0.4)
    finish(a.id)
    finish(b.id)  # no evaluation (yet)
    assert _sweep(db, sweep_id).status == "running"
    b = db.get(Run, b.id)
    b.finished_at = utcnow() - timedelta(seconds=service.EVALUATION_WAIT_S + 1)
    db.commit()
    service.advance(db, sweep_id, settings=settings)
    db.commit()
    assert _sweep(db, sweep_id).best_run_id == a.id


def test_all_failed_is_a_failed_sweep_with_the_reason(make_sweep, finish, db):
    sweep_id = make_sweep(max_parallel=4)["id"]
    for run in _children(db, sweep_id):
        finish(run.id, RunStatus.failed)
    sweep = _sweep(db, sweep_id)
    assert sweep.status == "failed" and sweep.best_run_id is None
    assert "None of the 4 runs succeeded (4 failed, 0 cancelled)" in sweep.error_message


def test_no_eval_split_says_how_to_fix_it(make_sweep, finish, db):
    sweep_id = make_sweep(search_space={"lora_r": [8, 16]})["id"]
    for run in _children(db, sweep_id):
        finish(run.id)  # train_loss only
    sweep = _sweep(db, sweep_id)
    assert sweep.status == "failed" and "none reported eval_loss" in sweep.error_message
    assert "pick by train_loss" in sweep.error_message


def test_the_team_limit_holds_sweep_children_back(make_sweep, finish, db, settings, team, dataset, model, sent):
    settings.max_active_runs_per_team = 3
    other = make_run(db, team[0].team_id, dataset, model)  # a run outside the sweep takes a slot
    sweep_id = make_sweep(max_parallel=4)["id"]
    assert len(_children(db, sweep_id)) == 2
    first = _children(db, sweep_id)[0]
    finish(first.id, eval_loss=1.0)
    assert len(_children(db, sweep_id)) == 3  # the freed slot goes to the next point
    other.status = RunStatus.succeeded
    db.commit()
    service.advance(db, sweep_id, settings=settings)
    db.commit()
    children = _children(db, sweep_id)
    assert len(children) == 4
    active = db.scalar(select(func.count(Run.id)).where(Run.team_id == team[0].team_id,
                                                         Run.status.in_((RunStatus.queued, RunStatus.running))))
    assert active == 3


def test_cancelling_a_queued_child_frees_its_slot_at_once(client, make_sweep, team, db):
    sweep_id = make_sweep()["id"]
    first = _children(db, sweep_id)[0]
    r = client.post(f"/api/v1/runs/{first.id}/cancel", headers=team[1])
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    children = _children(db, sweep_id)
    assert len(children) == 3 and children[2].status == RunStatus.queued


def test_cancel_sweep_stops_children_and_keeps_the_best_so_far(client, make_sweep, finish, team, db):
    sweep_id = make_sweep()["id"]
    first, second = _children(db, sweep_id)
    finish(first.id, eval_loss=1.1)
    running = _children(db, sweep_id)[1]
    running.status, running.attempt = RunStatus.running, 1
    db.commit()
    r = client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=team[1])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["best_run_id"] == first.id
    assert body["counts"] == {"succeeded": 1, "running": 1, "cancelled": 1, "not_run": 1}
    children = _children(db, sweep_id)
    assert len(children) == 3 and children[1].cancel_requested and children[2].status == RunStatus.cancelled
    assert client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=team[1]).status_code == 409
    finish(children[1].id, RunStatus.cancelled)
    assert len(_children(db, sweep_id)) == 3 and _sweep(db, sweep_id).status == "cancelled"


def test_promote_the_best_then_another(client, make_sweep, finish, team, db):
    sweep_id = make_sweep(max_parallel=4)["id"]
    children = _children(db, sweep_id)
    r = client.post(f"/api/v1/sweeps/{sweep_id}/promote", headers=team[1])
    assert r.status_code == 409 and "no best run yet" in r.json()["error"]["message"]
    r = client.post(f"/api/v1/sweeps/{sweep_id}/promote", json={"run_id": children[0].id}, headers=team[1])
    assert r.status_code == 409 and "Only a run that succeeded" in r.json()["error"]["message"]
    for run, loss in zip(children, (0.4, 0.3, 0.6, 0.5)):
        finish(run.id, eval_loss=loss)
    r = client.post(f"/api/v1/sweeps/{sweep_id}/promote", headers=team[1])
    assert r.status_code == 200 and r.json()["promoted_run_id"] == children[1].id
    db.expire_all()
    assert db.get(Run, children[1].id).promoted_at is not None
    r = client.post(f"/api/v1/sweeps/{sweep_id}/promote", json={"run_id": children[0].id}, headers=team[1])
    assert r.json()["promoted_run_id"] == children[0].id
    db.expire_all()
    assert db.get(Run, children[1].id).promoted_at is None and db.get(Run, children[0].id).promoted_at is not None
    assert [x for x in r.json()["runs"] if x["is_promoted"]] == [
        next(x for x in r.json()["runs"] if x["run_id"] == children[0].id)]
    messages = db.scalars(select(RunEvent.message).where(RunEvent.run_id == children[0].id)).all()
    assert any(m.startswith("Promoted: the chosen run of the sweep “lr-rank”") for m in messages)
    other = make_sweep(search_space={"lora_r": [4]})
    r = client.post(f"/api/v1/sweeps/{other['id']}/promote", json={"run_id": children[0].id}, headers=team[1])
    assert r.status_code == 422 and "not part of this sweep" in r.json()["error"]["message"]


def test_refusals_queue_nothing(client, team, dataset, model, db, sent):
    def post(**body):  # noqa: ANN202
        payload = {"dataset_id": dataset.id, "base_model_id": model.id, "search_space": {"lora_r": [8]}, **body}
        return client.post("/api/v1/sweeps", json=payload, headers=team[1])

    cases = [
        ({"search_space": {"lora_rank": [8]}}, 422, "'lora_rank' is not a training setting"),
        ({"search_space": {"eval_strategy": ["steps", "no"]}}, 422, "The run eval_strategy=steps would not be valid"),
        ({"search_space": {"learning_rate": [1e-4]}, "hyperparameters": {"learning_rate": 1e-3}}, 422,
         "learning_rate: set both as a fixed setting and in the search space"),
        ({"metric": "eval loss!"}, 422, "Name the metric"),
        ({"max_parallel": 0}, 422, "max_parallel"),
        ({"hyperparameters": {"method": "full"}, "search_space": {"learning_rate": [1e-5, 1e-2]}}, 422,
         "The run lr=0.01 would not be valid"),
        ({"base_model_id": 9999}, 404, "No such base model"),
    ]
    for body, status, says in cases:
        r = post(**body)
        assert r.status_code == status, (body, r.text)
        assert says in r.json()["error"]["message"], (body, r.json())
    assert sent == [] and db.scalar(select(func.count(Sweep.id))) == 0 and db.scalar(select(func.count(Run.id))) == 0


def test_list_and_get_are_team_scoped(client, make_sweep, team, db):
    from tests.factories import make_account, make_api_key

    sweep_id = make_sweep()["id"]
    listed = client.get("/api/v1/sweeps", headers=team[1]).json()
    assert [s["id"] for s in listed["data"]] == [sweep_id]
    assert listed["data"][0]["counts"] == {"queued": 2, "waiting": 2}
    other = {"Authorization": f"Bearer {make_api_key(db, make_account(db))}"}
    assert client.get("/api/v1/sweeps", headers=other).json()["data"] == []
    assert client.get(f"/api/v1/sweeps/{sweep_id}", headers=other).status_code == 404
    assert client.post(f"/api/v1/sweeps/{sweep_id}/cancel", headers=other).status_code == 404


def test_the_reconciler_advances_running_sweeps(make_sweep, db, settings, sent):
    from worker.runtime import reconciler

    sweep_id = make_sweep()["id"]
    first = _children(db, sweep_id)[0]
    first.status = RunStatus.failed  # ended without the worker's hook (e.g. given up by the reconciler)
    db.commit()
    assert reconciler.reconcile(settings)["sweeps"] == 1
    assert len(_children(db, sweep_id)) == 3
