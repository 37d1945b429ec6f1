"""Run pages in the browser's HTML: the guided new fine-tune, the runs list with filters, a run in
every state, cancel and retry, and the comparison (best run, config diff, shareable address)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.compare.routes import parse_ids
from app.errors import InvalidInput
from app.runs import views
from app.models import Artifact, Checkpoint, Run, RunEvent, RunStatus, Metric, utcnow
from tests.factories import log_in
from tests.runs.factories import make_dataset, make_run


@pytest.fixture
def browser(client, team):
    csrf = log_in(client, team[0])
    client.headers["X-CSRF-Token"] = csrf
    client.csrf = csrf
    return client


def _run(db, team, dataset, model, status=RunStatus.succeeded, **values) -> Run:  # noqa: ANN001
    fixed = {k: values.pop(k) for k in ("method", "config") if k in values}
    run = make_run(db, team[0].team_id, dataset, model, status=status, name=values.pop("name", f"run {status.value}"),
                   **values)
    for key, value in fixed.items():
        setattr(run, key, value)
    db.commit()
    return run


def _points(db, run: Run, name: str, values: list[float]) -> None:  # noqa: ANN001
    db.add_all([Metric(run_id=run.id, step=i + 1, name=name, value=v) for i, v in enumerate(values)])
    db.commit()


# -- the guided new fine-tune -------------------------------------------------------------

def test_new_run_without_dataset_says_what_to_do(browser, model):
    r = browser.get("/runs/new")
    assert r.status_code == 200
    assert "You have no checked dataset yet" in r.text and 'href="/datasets/new"' in r.text
    assert re.search(r'<button class="button primary" type="submit"\s+disabled>Train</button>', r.text)


def test_new_run_shows_every_step(browser, dataset, model):
    r = browser.get("/runs/new")
    assert r.status_code == 200
    text = r.text
    assert dataset.name in text and "24 training examples" in text
    assert "For your task we advise at least 2,000" in text  # the factory's goal "support" is no Goal: other
    assert model.display_name in text and "2,048 tokens" in text
    share = re.search(r"LoRA trains ([\d.]+%) of the weights: fast, small files, nearly full quality", text)
    assert share, "the recommended method is explained with the share of trained weights"
    for name in ("learning_rate", "lora_r", "max_steps", "gradient_checkpointing", "eval_strategy"):
        assert f'name="hp_{name}"' in text
    assert "Peak learning rate." in text  # the field's one-line meaning
    assert "Memory at its peak" in text and "fine-tune-or-retrieval" in text


def test_new_run_goal_changes_the_guidance_and_htmx_gets_the_fragment(browser, dataset, model):
    r = browser.get(f"/runs/new?dataset_id={dataset.id}&goal=classification", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert r.text.lstrip().startswith("{#") is False and "<html" not in r.text
    assert 'id="wizard"' in r.text and "For sorting texts into categories we advise at least 500" in r.text


def test_invalid_advanced_setting_is_explained(browser, dataset, model):
    r = browser.get("/runs/new?hp_learning_rate=5&hp_lora_r=0")
    assert r.status_code == 200
    assert "These settings are not valid" in r.text and "lora_r" in r.text
    assert "<details class=\"advanced\" open>" in r.text


def test_wizard_proposes_a_device_count_and_shows_the_effective_batch(browser, db, tmp_path, dataset):
    from app.models import Worker
    from tests.runs.factories import register_model, write_model_dir

    big = register_model(db, write_model_dir(tmp_path / "big", hidden=4096, layers=32, vocab=32000), name="Big Llama")
    db.add(Worker(name="train@gpu", queues="train", device="cuda", device_name="GPU 8 GB",
                  device_memory_bytes=8 * 1024**3, last_seen_at=utcnow()))
    db.commit()
    query = (f"/runs/new?dataset_id={dataset.id}&base_model_id={big.id}&hp_method=full&hp_learning_rate=1e-5"
             "&hp_per_device_batch_size=2&hp_grad_accum=8&hp_max_length=512&hp_gradient_checkpointing=true")
    text = browser.get(query).text
    assert 'name="hp_devices"' in text  # in the advanced settings
    proposal = re.search(r"Needs (\d+) GPUs of 8 GB: set devices to (\d+)", text)
    assert proposal and proposal[1] == proposal[2] and int(proposal[1]) > 1, text
    assert f'name="hp_devices" value="{proposal[1]}">Set devices to {proposal[1]}</button>' in text
    assert "Examples per update</a>: 2 at once x 8 added up x 1 device = <strong>16</strong>" in text
    text = browser.get(f"{query}&hp_devices={proposal[1]}").text
    n = int(proposal[1])
    assert "Needs" not in text and f"per device ({n} devices, FSDP)" in text
    assert f"x {16 // (2 * n)} added up x {n} devices = <strong>16</strong>" in text


def test_run_page_says_how_many_gpus_and_the_effective_batch(browser, db, team, dataset, model):
    config = {"method": "full", "per_device_batch_size": 2, "grad_accum": 2, "devices": 4}
    run = _run(db, team, dataset, model, status=RunStatus.queued, method="full", config=config)
    text = browser.get(f"/runs/{run.id}").text
    assert "on 4 GPUs (FSDP)" in text and "effective batch 16" in text


def test_train_submits_and_redirects_to_the_run(browser, db, dataset, model, sent):
    r = browser.post("/runs", data={"csrf_token": browser.csrf, "dataset_id": dataset.id, "goal": "brand_voice",
                                    "base_model_id": model.id, "preset": "auto", "hp_max_steps": "7",
                                    "hp_lora_r": "", "name": "first try"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    run = db.query(Run).one()
    assert r.headers["location"] == f"/runs/{run.id}"
    assert run.name == "first try" and run.goal == "brand_voice" and run.config["max_steps"] == 7
    assert run.config["lora_r"] != 0 and sent and sent[0][1] == [run.id]


def test_train_refusal_shows_the_wizard_with_the_reason(browser, db, dataset, model, sent):
    r = browser.post("/runs", data={"csrf_token": browser.csrf, "dataset_id": dataset.id, "base_model_id": model.id,
                                    "hp_learning_rate": "7"})
    assert r.status_code == 422
    assert "These settings are not valid" in r.text and 'id="wizard"' in r.text
    assert db.query(Run).count() == 0 and not sent


def test_retrieval_helper(browser):
    r = browser.get("/runs/help/fine-tune-or-retrieval")
    assert r.status_code == 200 and "facts change often" in r.text and "tone" in r.text


# -- a run in every state -----------------------------------------------------------------

@pytest.mark.parametrize("status", list(RunStatus))
def test_run_page_renders_in_every_state(browser, db, team, dataset, model, status):
    run = _run(db, team, dataset, model, status=status, current_step=3, total_steps=10, eta_s=75.0,
               started_at=None if status == RunStatus.queued else utcnow() - timedelta(seconds=30),
               finished_at=utcnow() if status.is_final else None,
               error_kind="oom" if status == RunStatus.failed else None,
               error_message="The run ran out of memory at step 3. Lower the batch size." if status == RunStatus.failed else None)
    db.add(RunEvent(run_id=run.id, kind="status", message="Queued: lora fine-tuning"))
    _points(db, run, "loss", [2.0, 1.5, 1.2])
    r = browser.get(f"/runs/{run.id}")
    assert r.status_code == 200
    text = r.text
    assert views.status_label(status) in text and "Queued: lora fine-tuning" in text
    assert 'data-chart="' in text and "Training loss" in text
    active = status in (RunStatus.validating_files, RunStatus.queued, RunStatus.running)
    assert ("Checking your files..." in text) is (status == RunStatus.validating_files)
    assert (f'hx-get="/runs/{run.id}/status"' in text) is active
    assert ("Cancel run" in text) is active
    assert ("Retry" in text) is (status in (RunStatus.failed, RunStatus.cancelled))
    if status == RunStatus.running:
        assert "Step 3 of 10" in text and "about 1 min 15 s left" in text
    if status == RunStatus.failed:
        assert "The run ran out of memory." in text and "Lower the batch size" in text


def test_run_page_lists_checkpoints_downloads_and_the_log(browser, db, team, dataset, model, store):
    run = _run(db, team, dataset, model)
    log = store.write_bytes(f"teams/{team[0].team_id}/runs/{run.id}/training.log", b"step 1 loss 2.0\nall done\n")
    db.add_all([Checkpoint(run_id=run.id, step=2, path="x", size_bytes=2048),
                Artifact(team_id=run.team_id, run_id=run.id, kind="adapter", path="a", size_bytes=10),
                Artifact(team_id=run.team_id, run_id=run.id, kind="model_card", path="b"),
                Artifact(team_id=run.team_id, run_id=run.id, kind="log", path=log.key)])
    db.commit()
    text = browser.get(f"/runs/{run.id}").text
    assert "all done" in text and "Adapter" in text and "Model card" in text
    assert re.search(rf'/api/v1/runs/{run.id}/artifacts/\d+/download', text)
    assert "<td>2</td>" in text


def test_status_fragment_is_htmx_only(browser, db, team, dataset, model):
    run = _run(db, team, dataset, model, status=RunStatus.running)
    frag = browser.get(f"/runs/{run.id}/status", headers={"HX-Request": "true"})
    assert frag.status_code == 200 and frag.text.lstrip().startswith("<div id=\"run-status\"")
    assert '<div id="run-activity" hx-swap-oob="true">' in frag.text  # events, files and log ride along
    assert browser.get(f"/runs/{run.id}/status", follow_redirects=False).status_code == 303


def test_cancel_and_retry_buttons(browser, db, team, dataset, model, sent):
    run = _run(db, team, dataset, model, status=RunStatus.queued)
    r = browser.post(f"/runs/{run.id}/cancel", data={"csrf_token": browser.csrf}, follow_redirects=False)
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Run, run.id).status == RunStatus.cancelled
    r = browser.post(f"/runs/{run.id}/retry", data={"csrf_token": browser.csrf}, follow_redirects=False)
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Run, run.id).status == RunStatus.queued
    again = browser.post(f"/runs/{run.id}/retry", data={"csrf_token": browser.csrf})
    assert again.status_code == 409 and "Only a failed or cancelled run can be retried" in again.text


# -- the runs list ------------------------------------------------------------------------

def test_runs_list_empty_state(browser):
    r = browser.get("/runs")
    assert r.status_code == 200 and "No runs yet" in r.text and "Start your first fine-tune" in r.text


def test_runs_list_filters_and_pages(browser, db, team, store, dataset, model):
    other = make_dataset(db, store, team[0].team_id, name="tickets")
    for i in range(30):
        _run(db, team, dataset if i % 2 else other, model, status=RunStatus.succeeded if i % 3 else RunStatus.failed,
             name=f"run-{i:02d}", method="qlora" if i == 7 else "lora", created_by_id=team[0].user_id)
    page1 = browser.get("/runs").text
    assert "run-29" in page1 and "run-04" not in page1 and "Older →" in page1
    older = re.search(r'href="(/runs\?before=\d+)"', page1).group(1)
    page2 = browser.get(older).text
    assert "run-04" in page2 and "run-29" not in page2 and "← Newest" in page2
    failed = browser.get("/runs?status=failed").text
    assert "run-03" in failed and "run-04" not in failed
    assert set(re.findall(r"run-\d\d", browser.get(f"/runs?dataset_id={other.id}").text)) == {
        f"run-{i:02d}" for i in range(0, 30, 2)}
    assert re.findall(r"<strong>(run-\d\d)</strong>", browser.get("/runs?method=qlora").text) == ["run-07"]
    assert "run-29" in browser.get(f"/runs?author_id={team[0].user_id}&base_model_id={model.id}").text
    assert "No run matches these filters" in browser.get("/runs?author_id=999999").text


# -- the comparison -----------------------------------------------------------------------

def test_compare_marks_the_best_run_and_the_differences(browser, db, team, dataset, model):
    a = _run(db, team, dataset, model, name="rank 8", config={"lora_r": 8, "learning_rate": 2e-4})
    b = _run(db, team, dataset, model, name="rank 32", config={"lora_r": 32, "learning_rate": 2e-4})
    _points(db, a, "loss", [2.0, 1.0])
    _points(db, b, "loss", [2.0, 1.4])
    _points(db, a, "eval_loss", [1.9, 1.6])
    _points(db, b, "eval_loss", [1.8, 1.3])
    r = browser.get(f"/runs/compare?ids={a.id},{b.id}")
    assert r.status_code == 200
    best_row = re.search(r'<tr class="best">(.*?)</tr>', r.text, re.S).group(1)
    assert "rank 32" in best_row and "lowest evaluation loss" in r.text
    differs = re.findall(r'<tr class="differs">\s*<th scope="row"><a class="term" href="/glossary#[\w-]+" '
                         r'title="(\w+): [^"]*">([^<]+)</a>', r.text)
    assert differs == [("lora_r", "How strongly to adapt")]  # the plain name, the setting's own on hover
    assert f'/runs/compare?ids={a.id},{b.id}' in r.text


def test_compare_without_eval_uses_final_training_loss(db, team, dataset, model):
    a = _run(db, team, dataset, model)
    b = _run(db, team, dataset, model)
    series = {a.id: {"loss": [(1, 2.0), (2, 0.9)]}, b.id: {"loss": [(1, 2.0), (2, 1.1)]}}
    rows = views.summaries([a, b], series)
    assert views.mark_best(rows).run.id == a.id


def test_compare_from_checkboxes_redirects_to_the_short_address(browser, db, team, dataset, model):
    a, b = _run(db, team, dataset, model), _run(db, team, dataset, model)
    r = browser.get(f"/runs/compare?ids={a.id}&ids={b.id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/runs/compare?ids={a.id},{b.id}"


def test_compare_empty_and_wrong_ids(browser):
    assert "Choose runs to compare" in browser.get("/runs/compare").text
    assert browser.get("/runs/compare?ids=12345").status_code == 404
    assert browser.get("/runs/compare?ids=abc").status_code == 422


def test_parse_ids_and_thinning():
    assert parse_ids(["3,7", "3", " 9"]) == [3, 7, 9]
    with pytest.raises(InvalidInput):
        parse_ids([",".join(str(i) for i in range(1, 30))])
    points = [(i, float(i)) for i in range(5000)]
    thin = views.thin(points)
    assert len(thin) <= views.MAX_POINTS and thin[0] == points[0] and thin[-1] == points[-1]


def test_home_shows_recent_runs(browser, db, team, dataset, model):
    _run(db, team, dataset, model, name="the latest run")
    r = browser.get("/runs/recent", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "the latest run" in r.text


def test_long_runs_are_thinned_in_the_database_keeping_the_end_and_every_eval(db, team, dataset, model):
    from app.compare import repository as reads

    run = _run(db, team, dataset, model, current_step=1000, total_steps=1000)
    db.add_all([Metric(run_id=run.id, step=s, name="loss", value=1 / s) for s in range(1, 1001)]
               + [Metric(run_id=run.id, step=s, name="eval_loss", value=1.0) for s in range(7, 1001, 99)])
    db.commit()
    rows = reads.thinned_curve_rows(db, {run.id: 1000}, views.CURVE_NAMES, dense=("loss",), max_points=100)
    loss = [r[2] for r in rows if r[1] == "loss"]
    assert len(loss) <= 110 and loss[0] == 10 and loss[-1] == 1000 and loss == sorted(loss)
    assert [r[2] for r in rows if r[1] == "eval_loss"] == list(range(7, 1001, 99))


def test_try_it_asks_the_base_and_the_fine_tuned_model(browser, db, team, dataset, model, monkeypatch):
    from app.inference import client as inference

    asked = []

    def fake_generate(settings, target, params):  # the inference process is another program
        asked.append((target, params["messages"][0]["content"], params["temperature"]))
        assert params["exact"] is True  # the trainer's own greedy answers: transformers, whatever the backend
        return {"text": "adapter answer" if target.adapter else "base answer", "finish_reason": "stop"}

    monkeypatch.setattr(inference, "generate", fake_generate)
    run = _run(db, team, dataset, model)
    running = _run(db, team, dataset, model, status=RunStatus.running)
    db.add(Artifact(team_id=run.team_id, run_id=run.id, kind="adapter", path=f"teams/{run.team_id}/jobs/{run.id}/run/adapter"))
    db.commit()
    page = browser.get(f"/runs/{run.id}").text
    assert "Try it" in page and "Ask both models" in page
    assert "Ask both models" not in browser.get(f"/runs/{running.id}").text  # nothing to try yet
    r = browser.post(f"/runs/{run.id}/try", data={"prompt": "Ma facture ?"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "base answer" in r.text and "adapter answer" in r.text
    (base, q1, t1), (tuned, q2, _) = asked
    assert base.adapter is None and base.base == model.path and q1 == q2 == "Ma facture ?" and t1 == 0.0
    assert tuned.base == model.path and tuned.adapter.endswith(f"jobs/{run.id}/run/adapter")
    r = browser.post(f"/runs/{run.id}/try", data={"prompt": "  "}, headers={"HX-Request": "true"})
    assert "Type a question" in r.text and len(asked) == 2
    r = browser.post(f"/runs/{running.id}/try", data={"prompt": "x"})
    assert r.status_code == 404 and "no trained weights" in r.text


def test_try_it_streams_both_answers_tagged_as_they_come(browser, db, team, dataset, model, monkeypatch):
    import json

    from app.inference import client as inference

    opened, closed = [], []

    def fake_open_stream(settings, target, params):  # the inference process is another program
        opened.append((target, params["temperature"], params["max_tokens"]))
        assert params["exact"] is True  # base vs fine-tuned stays on transformers
        name = "tuned" if target.adapter else "base"

        def items():
            try:
                yield {"note": "A run is training on this machine"}
                yield {"delta": f"{name} "}
                yield {"delta": "answer"}
                yield {"done": True, "text": f"{name} answer", "finish_reason": "stop"}
            finally:
                closed.append(name)

        return items()

    monkeypatch.setattr(inference, "open_stream", fake_open_stream)
    run = _run(db, team, dataset, model)
    db.add(Artifact(team_id=run.team_id, run_id=run.id, kind="adapter", path=f"teams/{run.team_id}/jobs/{run.id}/run/adapter"))
    db.commit()
    page = browser.get(f"/runs/{run.id}").text
    assert f'data-try-stream="/runs/{run.id}/try/stream"' in page and "data-try-stop" in page and "js/try.js" in page
    r = browser.post(f"/runs/{run.id}/try/stream", data={"prompt": "Ma facture ?"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    for who in ("base", "tuned"):
        mine = [line for line in lines if line["who"] == who]
        assert mine[0]["note"].startswith("A run is training")
        assert "".join(line.get("delta", "") for line in mine) == f"{who} answer" and mine[-1]["done"]
    assert sorted(closed) == ["base", "tuned"]
    (base, t1, m1), (tuned, t2, _) = opened
    assert base.adapter is None and tuned.adapter.endswith(f"jobs/{run.id}/run/adapter") and t1 == t2 == 0.0
    r = browser.post(f"/runs/{run.id}/try/stream", data={"prompt": " "}, headers={"Accept": "application/json"})
    assert r.status_code == 422 and "Type a question" in r.json()["error"]["message"] and len(opened) == 2


def test_try_it_says_when_the_inference_process_is_down(browser, db, team, dataset, model, settings):
    settings.inference_url = "http://127.0.0.1:1"
    run = _run(db, team, dataset, model)
    db.add(Artifact(team_id=run.team_id, run_id=run.id, kind="adapter", path="a"))
    db.commit()
    r = browser.post(f"/runs/{run.id}/try", data={"prompt": "Bonjour"}, headers={"HX-Request": "true"})
    assert "not reachable" in r.text and "studio inference" in r.text


def test_a_finished_run_offers_a_blind_test_and_shows_its_sweep_and_promotion(browser, db, team, dataset, model):
    from app.models import Sweep

    sweep = Sweep(team_id=team[0].team_id, name="lr sweep", base_config={}, search_space={"learning_rate": [1e-4]})
    db.add(sweep)
    db.commit()
    run = make_run(db, team[0].team_id, dataset, model, status=RunStatus.succeeded, finished_at=utcnow(),
                   promoted_at=utcnow(), sweep_id=sweep.id, sweep_params={"learning_rate": 1e-4})
    text = browser.get(f"/runs/{run.id}").text
    assert f'href="/ab/new?run_id={run.id}"' in text
    assert f'href="/sweeps/{sweep.id}"' in text and "learning_rate=0.0001" in text and ">Promoted<" in text
    plain = make_run(db, team[0].team_id, dataset, model, status=RunStatus.running)
    text = browser.get(f"/runs/{plain.id}").text
    assert "/ab/new" not in text and "/sweeps/" not in text.replace('href="/sweeps"', "") and ">Promoted<" not in text


def test_compare_keeps_every_point_of_a_run_cancelled_early(browser, db, team, dataset, model):
    """A run cancelled at step 5 of 5,000 beside a long one: its five training-loss points are drawn."""
    import html
    import json

    long = _run(db, team, dataset, model, name="long", total_steps=1200, current_step=1200)
    short = _run(db, team, dataset, model, status=RunStatus.cancelled, name="stopped early",
                 total_steps=5000, current_step=5)
    _points(db, long, "loss", [3.0 - i / 1000 for i in range(1200)])
    _points(db, short, "loss", [3.0, 2.9, 2.8, 2.7, 2.6])
    r = browser.get(f"/runs/compare?ids={long.id},{short.id}")
    assert r.status_code == 200
    charts = [json.loads(html.unescape(m)) for m in re.findall(r'data-chart="([^"]*)"', r.text)]
    loss = next(c for c in charts if c["name"] == "loss")
    lines = {line["key"]: line["points"] for line in loss["series"]}
    assert [p[0] for p in lines[str(short.id)]] == [1, 2, 3, 4, 5]
    from app.compare.routes import COMPARE_POINTS

    thinned = lines[str(long.id)]  # every k-th step and the last k: about COMPARE_POINTS, to the end
    assert COMPARE_POINTS <= len(thinned) <= 1.5 * COMPARE_POINTS and thinned[-1][0] == 1200
