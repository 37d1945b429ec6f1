"""A/B pages in the browser's HTML: the list and the nav, the new-comparison form (prefilled from a
run, errors), progress polling, blind voting one pair at a time, the reveal, close and retry."""

from __future__ import annotations

import re

from app.ab import service
from app.models import Comparison, ComparisonPair, Vote


def test_list_and_nav(browser_of, team):
    b = browser_of(team.member)
    r = b.get("/ab")
    assert r.status_code == 200
    assert '<a href="/ab" aria-current="page">A/B tests</a>' in r.text
    assert "No A/B test yet" in r.text and 'href="/ab/new"' in r.text


def test_list_shows_comparisons(browser_of, team, comparison):
    r = browser_of(team.viewer).get("/ab")
    assert "base vs tuned" in r.text and "Open for votes" in r.text and "Tiny Base" in r.text
    assert 'href="/ab/new"' not in r.text  # a viewer cannot create one


def test_new_form_is_prefilled_from_a_run(browser_of, team, model, run, dataset):
    r = browser_of(team.member).get(f"/ab/new?run_id={run.id}")
    assert r.status_code == 200
    assert f'<option value="base:{model.id}" selected>' in r.text
    assert re.search(rf'<select id="f-model_b".*?<option value="run:{run.id}" selected>', r.text, re.S)
    assert f'<option value="{dataset.id}" selected>' in r.text
    assert "support v1: base vs fine-tuned" in r.text


def test_new_form_without_two_models_says_what_to_do(browser_of, team, model):
    r = browser_of(team.member).get("/ab/new")
    assert "You need two models to compare" in r.text


def test_create_from_the_form_then_watch_progress(browser_of, db, team, model, run, sent):
    b = browser_of(team.member)
    form = {"model_a": f"base:{model.id}", "model_b": f"run:{run.id}", "source": "custom",
            "prompts": "First question?\n\nSecond question?", "count": "20", "max_new_tokens": "128"}
    r = b.post("/ab", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    comparison = db.query(Comparison).one()
    assert r.headers["location"] == f"/ab/{comparison.id}"
    assert comparison.prompt_source["max_new_tokens"] == 128 and comparison.created_by_id == team.member.user_id
    assert sent == [(service.GENERATE_TASK, [comparison.id], "train")]
    page = b.get(f"/ab/{comparison.id}")
    assert "none is online: it starts as soon as one does" in page.text and "voting opens when they are done" in page.text
    assert f'hx-get="/ab/{comparison.id}/status"' in page.text
    comparison.status = service.GENERATING
    comparison.prompt_source = {**comparison.prompt_source, "progress": {"done": 1, "total": 4}}
    db.commit()
    fragment = b.get(f"/ab/{comparison.id}/status", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and "1 of 4 answers generated (25%)" in fragment.text
    assert "The time left is known once the first answers are written." in fragment.text  # no start recorded
    from app.models import utcnow

    started = utcnow().timestamp() - 120  # 1 answer in 2 minutes: 3 more take about 6
    comparison.prompt_source = {**comparison.prompt_source, "progress": {"done": 1, "total": 4, "started_at": started}}
    db.commit()
    fragment = b.get(f"/ab/{comparison.id}/status", headers={"HX-Request": "true"})
    assert "About 6 minutes left at the pace so far." in fragment.text, fragment.text
    assert 'hx-trigger="load delay:2s"' in fragment.text
    comparison.status = service.OPEN
    db.commit()
    fragment = b.get(f"/ab/{comparison.id}/status", headers={"HX-Request": "true"})
    assert "hx-get" not in fragment.text and "Start voting" in fragment.text  # polling stops


def test_form_errors_are_shown_on_the_form(browser_of, db, team, model, run, sent):
    b = browser_of(team.member)
    r = b.post("/ab", data={"model_a": f"base:{model.id}", "model_b": f"base:{model.id}", "source": "custom",
                            "prompts": "hi"})
    assert r.status_code == 422 and "Choose two different models" in r.text
    assert 'name="prompts"' in r.text and ">hi</textarea>" in r.text  # what was typed is kept
    r = b.post("/ab", data={"model_a": f"base:{model.id}", "model_b": f"run:{run.id}", "source": "custom",
                            "prompts": ""})
    assert r.status_code == 422 and "Give at least one prompt" in r.text
    r = b.post("/ab", data={"model_a": "", "model_b": f"run:{run.id}", "source": "custom", "prompts": "x"})
    assert r.status_code == 422 and "Choose a base model or a fine-tuned run." in r.text
    assert db.query(Comparison).count() == 0 and sent == []


def test_blind_voting_one_pair_at_a_time_then_the_reveal(browser_of, db, team, comparison):
    b = browser_of(team.member)
    page = b.get(f"/ab/{comparison.id}")
    assert "Start voting" in page.text and "Pair by pair" not in page.text
    assert "stay hidden from you" in page.text
    seen = []
    for number in range(1, 5):
        r = b.get(f"/ab/{comparison.id}/vote")
        assert r.status_code == 200 and f"Pair {number} of 4" in r.text
        # nothing on the voting page names the models or the sides' mapping
        for secret in ("Tiny Base", "support v1", "swapped", "Model A", "Model B"):
            assert secret not in r.text
        pair_id = int(re.search(r'action="/ab/\d+/pairs/(\d+)/vote"', r.text).group(1))
        seen.append(pair_id)
        r = b.post(f"/ab/{comparison.id}/pairs/{pair_id}/vote", data={"choice": "right"}, follow_redirects=False)
        assert r.status_code == 303
    assert r.headers["location"] == f"/ab/{comparison.id}"
    assert len(set(seen)) == 4
    page = b.get(f"/ab/{comparison.id}")
    assert "Pair by pair" in page.text and "you voted on every pair" in page.text
    assert "No significant difference yet" in page.text and "Model B · support v1" in page.text
    assert "Start voting" not in page.text
    assert b.get(f"/ab/{comparison.id}/vote", follow_redirects=False).headers["location"] == f"/ab/{comparison.id}"
    # a second vote (the back button) is refused with a clear message
    r = b.post(f"/ab/{comparison.id}/pairs/{seen[0]}/vote", data={"choice": "left"})
    assert "You already voted on this pair" in r.text
    assert db.query(Vote).count() == 4


def test_each_voter_gets_their_own_order(db, team, comparison):
    pairs = service.repo.pairs(db, comparison_id=comparison.id)
    orders = {tuple(p.id for p in service.voter_order(pairs, comparison_id=comparison.id, user_id=u))
              for u in range(1, 30)}
    assert len(orders) > 1
    assert service.voter_order(pairs, comparison_id=comparison.id, user_id=7) == \
        service.voter_order(list(reversed(pairs)), comparison_id=comparison.id, user_id=7)  # stable


def test_close_from_the_page_reveals_to_everyone(browser_of, db, team, comparison):
    viewer = browser_of(team.viewer)
    page = viewer.get(f"/ab/{comparison.id}")
    assert "Only owners and members vote" in page.text and "Close and reveal" not in page.text
    assert viewer.get(f"/ab/{comparison.id}/vote", follow_redirects=False).status_code == 303
    assert "Close and reveal" not in browser_of(team.member).get(f"/ab/{comparison.id}").text
    owner = browser_of(team.owner)
    assert "Close and reveal to everyone" in owner.get(f"/ab/{comparison.id}").text
    r = owner.post(f"/ab/{comparison.id}/close")
    assert r.status_code == 200 and "Closed: the results are now visible to everyone." in r.text
    page = viewer.get(f"/ab/{comparison.id}")
    assert "Pair by pair" in page.text and "No votes yet." in page.text


def test_a_failed_comparison_explains_and_can_be_generated_again(browser_of, db, team, comparison, sent):
    comparison.status, comparison.error_message = service.FAILED, "Model B (support v1) ran out of memory."
    db.commit()
    b = browser_of(team.member)
    page = b.get(f"/ab/{comparison.id}")
    assert "The answers could not be generated." in page.text and "ran out of memory" in page.text
    r = b.post(f"/ab/{comparison.id}/retry", follow_redirects=False)
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Comparison, comparison.id).status == service.PENDING
    assert sent[-1] == (service.GENERATE_TASK, [comparison.id], "train")
    r = b.post(f"/ab/{comparison.id}/retry")
    assert r.status_code == 409


def test_another_team_gets_404(browser_of, db, comparison):
    from tests.factories import make_account

    b = browser_of(make_account(db))
    pair = db.query(ComparisonPair).filter_by(comparison_id=comparison.id).first()
    for method, url in (("GET", f"/ab/{comparison.id}"), ("GET", f"/ab/{comparison.id}/vote"),
                        ("POST", f"/ab/{comparison.id}/pairs/{pair.id}/vote"), ("POST", f"/ab/{comparison.id}/close")):
        r = b.request(method, url, data={"choice": "left"}, follow_redirects=False)
        assert r.status_code == 404, (method, url)
        assert "base vs tuned" not in r.text


def test_a_waiting_comparison_says_what_is_ahead_and_when_it_should_start(browser_of, db, team, model, run,
                                                                          dataset, sent):
    """The answers are generated on the training workers: the page counts the training runs in
    progress and queued before it, and the expected start from their time left and estimates."""
    from datetime import timedelta

    from app.models import RunStatus, Worker, utcnow
    from tests.runs.factories import make_run

    now = utcnow()
    db.add(Worker(name="train@host", queues="train", device="cpu", last_seen_at=now))
    make_run(db, team.team_id, dataset, model, status=RunStatus.running, eta_s=600.0, started_at=now)
    make_run(db, team.team_id, dataset, model, estimate={"time_s": 300.0}).enqueued_at = now - timedelta(minutes=1)
    b = browser_of(team.member)
    form = {"model_a": f"base:{model.id}", "model_b": f"run:{run.id}", "source": "custom", "prompts": "Hi?"}
    assert b.post("/ab", data=form, follow_redirects=False).status_code == 303
    later = make_run(db, team.team_id, dataset, model, estimate={"time_s": 900.0})
    later.enqueued_at = utcnow() + timedelta(seconds=5)  # queued after it: not ahead
    db.commit()
    comparison = db.query(Comparison).one()
    fragment = b.get(f"/ab/{comparison.id}/status", headers={"HX-Request": "true"}).text
    assert ("The answers are generated by a training worker, after what is ahead: 1 training run in progress and 1 queued before it (place 3 in line). "
            "Expected to start in about 15 minutes.") in fragment, fragment
    assert 'hx-trigger="load delay:2s"' in fragment  # updated live
