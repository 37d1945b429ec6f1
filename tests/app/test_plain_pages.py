"""Every page speaks to a person, not to the code: rendered with a team that has something on
every page, no page shows None, an internal snake_case name (a setting such as grad_accum, a
status such as worker_lost) or template syntax outside the places meant for technical names
(code samples, <code>, and the wizard's Advanced settings). Every term page links resolve in
the glossary."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from app.home import glossary
from planner.config import TrainingConfig
from tests.app.studio_pages import page_urls, seed
from tests.factories import log_in

RAW = [re.compile(p) for p in (r"\bNone\b(?! yet)", r"\b[a-z0-9]+_[a-z0-9_]+\b", r"\{\{|\}\}|\{%", r"\bRunStatus\.")]
SETTING_NAMES = {n for n in TrainingConfig.model_fields if "_" in n}


class VisibleText(HTMLParser):
    """The text a reader sees, less <script>/<style>, code (<code>, <pre>) and the Advanced section."""

    SKIP = {"script", "style", "code", "pre", "textarea"}
    VOID = {"br", "img", "input", "meta", "link", "hr", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []  # per open element: whether it hides its content
        self.parts: list[str] = []
        self.term_links: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001, ANN201
        a = dict(attrs)
        if tag == "a" and (a.get("href") or "").startswith("/glossary#"):
            self.term_links.append(a["href"].split("#", 1)[1])
        if tag in self.VOID:
            return
        hides = tag in self.SKIP or (tag == "details" and "advanced" in (a.get("class") or "").split())
        self.stack.append(hides)

    def handle_endtag(self, tag):  # noqa: ANN001, ANN201
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):  # noqa: ANN001, ANN201
        if not any(self.stack):
            self.parts.append(data)


def visible(html: str) -> VisibleText:
    parser = VisibleText()
    parser.feed(html)
    return parser


def test_the_checker_sees_what_it_must():
    seen = visible('<p>grad_accum None</p><details class="advanced"><p>lora_r</p></details><code>max_length</code>')
    text = " ".join(seen.parts)
    assert RAW[0].search(text) and RAW[1].search(text) and "lora_r" not in text and "max_length" not in text


def test_no_page_shows_raw_internal_strings(app, make_client, db, settings, tmp_path):
    owner, ids = seed(db, settings, tmp_path)
    client = make_client()
    log_in(client, owner)
    urls = page_urls(app, ids)
    assert len(urls) >= 20
    problems, term_links = [], set()
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, f"{url} -> {r.status_code}"
        seen = visible(r.text)
        term_links.update(seen.term_links)
        text = " ".join(seen.parts)
        found = {}
        for pattern in RAW:
            for m in pattern.finditer(text):
                found.setdefault(m.group(0), " ".join(text[max(0, m.start() - 60):m.end() + 60].split()))
        problems += [f"{url}: {token!r} in …{where}…" for token, where in found.items()]
    assert not problems, "\n".join(problems)
    assert term_links, "no page links a term to the glossary"
    assert term_links <= set(glossary.BY_SLUG), f"links to missing glossary entries: {term_links - set(glossary.BY_SLUG)}"


def test_every_setting_has_a_plain_name_and_a_glossary_entry():
    for name in TrainingConfig.model_fields:
        label = glossary.setting_label(name)
        assert label and "_" not in label, name
        assert glossary.setting_term(name) in glossary.BY_SLUG, name
    assert SETTING_NAMES  # the check above covered the snake_case ones


def test_the_wizard_estimate_follows_every_choice_and_is_a_calibrated_range(app, make_client, db, settings, tmp_path):
    owner, ids = seed(db, settings, tmp_path)
    client = make_client()
    log_in(client, owner)
    base = f"/runs/new?dataset_id={ids['good_dataset_id']}&base_model_id={ids['model_id']}"  # 135M parameters

    def estimate(query: str = "") -> tuple[str, str]:
        html = client.get(base + query).text
        time = re.search(r'<p class="label">Time</p><p class="big">([^<]+)</p>', html)[1]
        memory = re.search(r'<p class="big">([\d.]+ GB)</p>', html)[1]
        return time, memory

    plain = estimate()
    assert " to " in plain[0]  # a range, not one number
    for change in ("&preset=classic", "&hp_method=full", "&hp_epochs=9", "&hp_max_length=16",
                   "&hp_gradient_checkpointing=true"):
        assert estimate(change) != plain, f"{change} did not change the estimate"
    html = client.get(base).text
    # no training worker online and one finished run of the kind: the range says it is rough
    assert "A rough range" in html and 'href="/glossary#estimate"' in html
    assert "How strongly to adapt" in html and "How long to train" in html and "How many examples at once" in html


def test_evaluation_merged_model_and_gguf_waits_say_what_is_ahead(app, make_client, db, settings, tmp_path, sent):
    """Both run on the training workers: while not taken yet, each says what is ahead in the
    queue and when it should start, and its region keeps asking for itself."""
    from app.models import Evaluation, RunStatus, Worker, utcnow
    from app.models import Run

    owner, ids = seed(db, settings, tmp_path)
    client = make_client()
    client.headers["X-CSRF-Token"] = log_in(client, owner)
    db.add(Worker(name="train@host", queues="train", device="cpu", last_seen_at=utcnow()))
    training = db.get(Run, ids["run_id"])
    training.status, training.eta_s, training.started_at = RunStatus.running, 1200.0, utcnow()
    db.add(Evaluation(team_id=owner.team_id, run_id=ids["done_id"], status="pending"))
    db.commit()
    expected = ("by a training worker, after what is ahead: 1 training run in progress and 1 queued before it "
                "(place 3 in line). The start time is not known yet: a run ahead has no time estimate.")
    section = client.get(f"/runs/{ids['done_id']}/evaluation", headers={"HX-Request": "true"}).text
    assert "The base model and the fine-tuned one are compared " + expected in section, section
    assert 'hx-trigger="load delay:3s"' in section
    assert client.post(f"/runs/{ids['done_id']}/merged", follow_redirects=False).status_code in (200, 303)
    queued = db.get(Run, ids["queued_id"])
    queued.estimate = {"time_s": 600.0}  # now every run ahead has a time: 20 min left + 10 min queued
    db.commit()
    page = client.get(f"/runs/{ids['done_id']}/merged", headers={"HX-Request": "true"}).text
    assert ("The merged model is built by a training worker, after what is ahead: 1 training run in progress "
            "and 1 queued before it (place 3 in line). Expected to start in about 30 minutes.") in page, page
    assert 'hx-trigger="every 2s"' in page
    # the GGUF export waits the same way
    assert client.post(f"/runs/{ids['done_id']}/gguf", follow_redirects=False).status_code in (200, 303)
    page = client.get(f"/runs/{ids['done_id']}/gguf", headers={"HX-Request": "true"}).text
    assert ("The GGUF files are written by a training worker, after what is ahead: 1 training run in progress "
            "and 1 queued before it (place 3 in line). Expected to start in about 30 minutes.") in page, page
    assert 'hx-trigger="every 2s"' in page
