"""Sweep pages in the browser's HTML: the list, the new-sweep form with its preview, the
dashboard in every state (table, waiting points, charts, live region), cancel and promote."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import Run, Sweep
from tests.factories import log_in


@pytest.fixture
def browser(client, team):
    csrf = log_in(client, team[0])
    client.csrf = csrf
    return client


def _children(db, sweep_id: int) -> list[Run]:
    db.expire_all()
    return list(db.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def test_empty_list_invites_a_first_sweep_and_the_nav_has_sweeps(browser):
    html = browser.get("/sweeps").text
    assert "No sweeps yet" in html and 'href="/sweeps/new"' in html
    assert re.search(r'<a href="/sweeps" aria-current="page">Sweeps</a>', html)


def test_new_form_previews_the_runs(browser, dataset, model):
    html = browser.get("/sweeps/new").text
    assert 'name="sp_learning_rate"' in html and 'value="1e-4, 3e-4"' in html and 'name="extra_field_1"' in html
    assert "<strong>4 runs</strong>" in html and "<code>r=8 lr=0.0001</code>" in html
    assert 'hx-get="/sweeps/preview"' in html and 'hx-params="not csrf_token"' in html
    r = browser.get("/sweeps/preview", params={"sp_lora_r": "4, 8, 16", "extra_field_1": "seed",
                                               "extra_values_1": "1, 2"})
    assert "<strong>6 runs</strong>" in r.text and "<code>r=16 seed=2</code>" in r.text
    r = browser.get("/sweeps/preview", params={"sp_lora_r": "4, x"})
    assert "lora_r: &#39;x&#39; is not a valid value" in r.text
    r = browser.get("/sweeps/preview", params={"sp_lora_r": ", ".join(str(i) for i in range(1, 70))})
    assert "makes 69 runs" in r.text


def test_form_creates_a_sweep_and_errors_keep_what_was_typed(browser, dataset, model, db, sent):
    form = {"csrf_token": browser.csrf, "dataset_id": dataset.id, "base_model_id": model.id, "name": "my sweep",
            "sp_learning_rate": "1e-4, 2e-4", "sp_lora_r": "4", "extra_field_1": "lora_alpha",
            "extra_values_1": "8, 16", "fixed": "max_steps = 3\nsave_strategy = no", "metric": "eval_loss",
            "max_parallel": "3"}
    r = browser.post("/sweeps", data={**form, "extra_values_1": "8, -1"})
    assert r.status_code == 422 and "lora_alpha: &#39;-1&#39; is not a valid value" in r.text
    assert 'value="my sweep"' in r.text and "max_steps = 3" in r.text
    r = browser.post("/sweeps", data={**form, "fixed": "max_steps"})
    assert r.status_code == 422 and "Line 1 of the settings for every run" in r.text
    assert db.scalar(select(Sweep)) is None and sent == []
    r = browser.post("/sweeps", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    sweep = db.scalar(select(Sweep))
    assert r.headers["location"] == f"/sweeps/{sweep.id}" and sweep.max_parallel == 3
    assert sweep.search_space == {"lora_r": [4], "lora_alpha": [8.0, 16.0], "learning_rate": [1e-4, 2e-4]}
    children = _children(db, sweep.id)
    assert len(children) == 3 and children[0].config["max_steps"] == 3 and children[0].config["save_strategy"] == "no"
    html = browser.get(r.headers["location"]).text
    assert "“my sweep” started: 4 runs, 3 at a time." in html


def test_dashboard_while_running_then_finished(browser, make_sweep, finish, db):
    sweep_id = make_sweep()["id"]
    first, second = _children(db, sweep_id)
    finish(first.id, eval_loss=1.25)
    html = browser.get(f"/sweeps/{sweep_id}").text
    assert 'id="sweep-dashboard"' in html and f'hx-get="/sweeps/{sweep_id}/status?x=lora_r"' in html
    assert html.count("status-waiting") == 1 and "point 4" in html  # the fourth point has no run yet
    assert "1 finished · 2 queued · 1 waiting" in " ".join(html.split())
    assert "<circle" in html and "Cancel sweep" in html
    fragment = browser.get(f"/sweeps/{sweep_id}/status?x=learning_rate", headers={"HX-Request": "true"}).text
    assert 'id="sweep-dashboard"' in fragment and "<html" not in fragment
    assert "Against <code>learning_rate</code>" in fragment
    finish(second.id, eval_loss=0.75)
    for run, loss in zip(_children(db, sweep_id)[2:], (1.5, 0.9)):
        finish(run.id, eval_loss=loss)
    html = browser.get(f"/sweeps/{sweep_id}?x=learning_rate").text
    assert 'hx-trigger="load delay:3s"' not in html and "Cancel sweep" not in html  # no longer live
    assert f'The best run is <a href="/runs/{second.id}">#{second.id} (r=8 lr=0.0003)</a>' in html
    rows = re.findall(r'<a href="/runs/(\d+)">#\d+</a>', html)
    assert int(rows[0]) == second.id  # sorted by the metric, best first
    assert html.count("badge-best") == 1 and "dot-best" in html and "<polyline" in html
    r = browser.post(f"/sweeps/{sweep_id}/promote", data={"csrf_token": browser.csrf, "run_id": second.id},
                     follow_redirects=False)
    assert r.status_code == 303
    html = browser.get(f"/sweeps/{sweep_id}").text
    assert f"Run #{second.id}" in html and "is now the promoted run of this sweep" in html
    assert "It is promoted: the team's chosen model from this sweep." in html
    assert "Promote the best run" not in html
    listing = browser.get("/sweeps").text
    assert f'href="/runs/{second.id}">#{second.id}</a> <span class="badge badge-promoted">' in listing
    assert "4 of 4 finished" in listing


def test_cancel_from_the_page(browser, make_sweep, db):
    sweep_id = make_sweep()["id"]
    r = browser.post(f"/sweeps/{sweep_id}/cancel", data={"csrf_token": browser.csrf}, follow_redirects=False)
    assert r.status_code == 303
    html = browser.get(f"/sweeps/{sweep_id}").text
    assert "Sweep cancelled" in html and "This sweep was cancelled" in html and html.count("status-not_run") == 2
    assert all(j.status.value == "cancelled" for j in _children(db, sweep_id))


def test_a_viewer_sees_no_buttons_and_cannot_post(client, make_sweep, db, team):
    from app.models import Membership, Role
    from tests.factories import make_account

    sweep_id = make_sweep()["id"]
    viewer = make_account(db)
    db.add(Membership(team_id=team[0].team_id, user_id=viewer.user_id, role=Role.viewer))
    db.commit()
    csrf = log_in(client, viewer)
    client.post("/team/switch", data={"team_id": team[0].team_id, "csrf_token": csrf})
    html = client.get(f"/sweeps/{sweep_id}").text
    assert "Cancel sweep" not in html and "New sweep" not in client.get("/sweeps").text
    r = client.post(f"/sweeps/{sweep_id}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 403
