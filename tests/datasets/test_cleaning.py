"""Cleaning and augmentation on real databases, tasks run in-process: the scan after validation,
the versions without near duplicates or with personal data redacted (the source unchanged),
per-example provenance, and augmentation against a local fake OpenAI-compatible endpoint
(budget, duplicates dropped, cancel, resume after a lost worker, review, the new version)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from app.datasets import augment, derive
from app.datasets import repository as repo
from app.errors import Conflict, InvalidInput
from app.models import AugmentationJob, AugmentationStatus, Dataset, DatasetStatus, GeneratedExample, utcnow
from app.storage import ArtifactStore
from tests.datacheck.factories import chat, jsonl
from tests.datasets.test_service import create
from tests.factories import make_account
from worker.tasks import augment as augment_task
from worker.tasks.cleaning import scan_dataset
from worker.tasks.datasets import validate_dataset

TOPICS = ["the delivery address of my parcel", "the opening hours of the Lyon shop", "a refund for a broken mug",
          "the size guide for winter coats", "my loyalty points balance", "the warranty of a coffee machine",
          "a gift card that does not work", "the student discount on yearly plans"]


def questions() -> list[dict]:
    return [chat(f"Hello, I have a question about {t}, can you help me with it please?",
                 f"Of course. For {t}, go to your account and open the help section.") for t in TOPICS]


@pytest.fixture
def store(settings) -> ArtifactStore:
    return ArtifactStore(settings.artifact_dir)


@pytest.fixture
def team(db) -> int:
    return make_account(db).team_id


def run_queue(sent: list) -> None:
    """Run the queued messages (and those they queue) like a worker would."""
    tasks = {"studio.validate_dataset": validate_dataset, "studio.scan_dataset": scan_dataset,
             "studio.augment_dataset": augment_task.augment_dataset}
    while sent:
        task, args, _ = sent.pop(0)
        tasks[task](*args)


def lines(store, key) -> list[dict]:
    return [orjson.loads(x) for x in store.path(key).read_bytes().splitlines()]


def valid_dataset(db, store, team, sent, records, **options) -> Dataset:
    d = create(db, store, team, data=jsonl(*records), **options).dataset
    run_queue(sent)
    db.expire_all()
    d = db.get(Dataset, d.id)
    assert d.status == DatasetStatus.valid and d.cleaning["status"] == "done"
    return d


def test_validation_queues_the_scan_which_finds_near_duplicates_and_a_clean_version_drops_them(
        db, store, team, sent):
    records = questions()
    records.insert(3, chat(records[0]["messages"][0]["content"].lower().replace(",", "").replace("?", " ?!"),
                           records[0]["messages"][1]["content"]))   # a near copy of example 1
    original = valid_dataset(db, store, team, sent, records, eval_fraction=0.0)
    nd = original.cleaning["near_duplicates"]
    assert nd["drop_train"] == [4] and nd["examples"] == [[1, 4]]
    before = store.path(original.normalized_path).read_bytes()

    made = derive.without_near_duplicates(db, store, team_id=team, user_id=None, dataset_id=original.id)
    db.commit()
    run_queue(sent)
    db.expire_all()
    made = db.get(Dataset, made.id)
    assert made.status == DatasetStatus.valid and made.version == original.version + 1
    assert made.origin == {"kind": "without_near_duplicates", "removed_train": 1, "removed_eval": 0,
                           "from_dataset_id": original.id, "from_version": 1}
    assert lines(store, made.normalized_path) == [r for i, r in enumerate(records) if i != 3]
    assert made.cleaning["near_duplicates"]["extra"] == 0
    prov = derive.provenance(db, store, made)
    assert [p["example"] for p in prov] == [1, 2, 3, 5, 6, 7, 8, 9]
    assert all(p["source"] == "original" and p["dataset_id"] == original.id for p in prov)
    assert store.path(original.normalized_path).read_bytes() == before  # the source never changes
    with pytest.raises(Conflict, match="no near duplicates"):
        derive.without_near_duplicates(db, store, team_id=team, user_id=None, dataset_id=made.id)


def test_evaluation_examples_that_resemble_training_ones_leave_the_clean_version(db, store, team, sent):
    train, evals = questions()[:6], [questions()[1], chat("Is there parking near the Grenoble shop for cars",
                                                          "Yes, behind it.")]
    d = create(db, store, team, data=jsonl(*train), eval_data=jsonl(*evals)).dataset
    run_queue(sent)
    db.expire_all()
    d = db.get(Dataset, d.id)
    assert d.cleaning["near_duplicates"]["between_examples"] == [[1, 2]]
    made = derive.without_near_duplicates(db, store, team_id=team, user_id=None, dataset_id=d.id)
    db.commit()
    run_queue(sent)
    db.expire_all()
    made = db.get(Dataset, made.id)
    assert lines(store, made.normalized_eval_path) == [evals[1]]
    assert lines(store, made.normalized_path) == train


def test_redaction_makes_a_new_version_and_leaves_the_source_alone(db, store, team, sent):
    records = questions()[:4] + [chat("My IBAN is DE89 3704 0044 0532 0130 00, mail me at ana@example.org",
                                      "Thanks, call us on +33 1 23 45 67 89.")]
    d = valid_dataset(db, store, team, sent, records, eval_fraction=0.0)
    assert d.cleaning["personal_total"] == 3
    assert {k: v["count"] for k, v in d.cleaning["personal_data"].items()} == {
        "email": 1, "phone": 1, "iban": 1, "card": 0}
    made = derive.redacted(db, store, team_id=team, user_id=None, dataset_id=d.id)
    db.commit()
    run_queue(sent)
    db.expire_all()
    made = db.get(Dataset, made.id)
    assert made.origin["replaced"] == {"iban": 1, "email": 1, "phone": 1}
    last = lines(store, made.normalized_path)[-1]["messages"]
    assert last[0]["content"] == "My IBAN is [IBAN], mail me at [EMAIL]"
    assert last[1]["content"] == "Thanks, call us on [PHONE]."
    assert made.cleaning["personal_total"] == 0
    assert "ana@example.org" in store.path(d.normalized_path).read_text()


# -- augmentation ------------------------------------------------------------------------------


class FakeEndpoint:
    """A local OpenAI-compatible /chat/completions: replies derived from the prompt."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str] = []
        self.repeat_source = False  # paraphrase: answer with the question itself (a duplicate)
        self.delay = 0.0  # seconds per answer (the browser test watches the progress)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(owner.delay)
                owner.requests.append(body)
                owner.auth.append(self.headers.get("Authorization", ""))
                prompt = body["messages"][-1]["content"]
                question = prompt.split("Question:\n", 1)[1].split("\n\nAnswer:", 1)[0]
                n = len(owner.requests)
                if "Reply with JSON only" in prompt:
                    text = json.dumps({"question": f"Brand new question {n} about gift wrapping options in December?",
                                       "answer": f"Generated answer {n}."})
                elif "house style" in prompt:
                    text = f"Dear customer, here is answer {n} in the house style. Kind regards."
                elif owner.repeat_source:
                    text = question
                else:
                    text = f"Paraphrase {n}: a wholly reworded question number {n} on a separate subject?"
                reply = {"id": f"c{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint():
    fake = FakeEndpoint()
    yield fake
    fake.server.shutdown()


def start_job(db, settings, team, dataset, endpoint, **form) -> AugmentationJob:
    fields = {"endpoint_url": endpoint.url, "api_key": "sk-secret-123", "model": "house-model",
              "sources": "4", "max_tokens": "10000", "house_style": "warm and formal"} | form
    kinds = fields.pop("kinds", ["paraphrase", "new_question", "house_style"])
    job = augment.start(db, settings, team_id=team, user_id=None, dataset_id=dataset.id,
                        values=augment.parse_form(fields, kinds))
    db.commit()
    return job


def test_the_form_is_checked_and_the_key_is_stored_encrypted(db, settings, team, store, sent, endpoint):
    with pytest.raises(InvalidInput, match="http:// or https://"):
        augment.parse_form({"endpoint_url": "file:///etc/passwd", "model": "m"}, ["paraphrase"])
    with pytest.raises(InvalidInput, match="at least one kind"):
        augment.parse_form({"endpoint_url": "http://x/v1", "model": "m"}, ["bogus"])
    with pytest.raises(InvalidInput, match="house style"):
        augment.parse_form({"endpoint_url": "http://x/v1", "model": "m"}, ["house_style"])
    with pytest.raises(InvalidInput, match="most calls"):
        augment.parse_form({"endpoint_url": "http://x/v1", "model": "m", "max_calls": "0"}, ["paraphrase"])
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint)
    assert "sk-secret-123" not in job.api_key_encrypted
    assert augment.unseal(settings, job.api_key_encrypted) == "sk-secret-123"


def test_generation_review_and_the_new_version_with_provenance(db, settings, team, store, sent, endpoint):
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint)
    run_queue(sent)
    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    assert job.status == AugmentationStatus.succeeded and job.total_steps == job.done_steps == 12
    assert (job.calls_used, job.tokens_used) == (12, 480)
    assert set(endpoint.auth) == {"Bearer sk-secret-123"} and {r["model"] for r in endpoint.requests} == {"house-model"}
    made = augment.examples_of(db, job)
    assert len(made) == 12 and {e.status for e in made} == {"pending"}
    assert [e.source_example for e in made if e.kind == "paraphrase"] == [1, 3, 5, 7]
    para = next(e for e in made if e.kind == "paraphrase" and e.source_example == 3)
    assert para.messages[1] == questions()[2]["messages"][1]  # the answer is kept
    style = next(e for e in made if e.kind == "house_style")
    assert style.messages[0] == questions()[style.source_example - 1]["messages"][0]

    with pytest.raises(Conflict, match="Accept at least one"):
        augment.make_version(db, store, job=job, user_id=None)
    assert augment.review(db, job, [e.id for e in made[:3]], "accept") == 3
    assert augment.review(db, job, [made[3].id], "reject") == 1
    edited = augment.edit(db, job, made[4].id, [m["content"] + " (checked by Ana)" for m in made[4].messages])
    assert edited.status == "accepted" and edited.edited
    db.commit()
    new, dropped = augment.make_version(db, store, job=job, user_id=None)
    db.commit()
    assert dropped == 0 and new.origin["added"] == 4
    run_queue(sent)
    db.expire_all()
    new = db.get(Dataset, new.id)
    assert new.status == DatasetStatus.valid and new.num_examples == 12
    prov = derive.provenance(db, store, new)
    assert [p["source"] for p in prov] == ["original"] * 8 + ["generated"] * 4
    generated = prov[8:]
    accepted = sorted((e for e in augment.examples_of(db, job, "accepted")), key=lambda e: (e.source_example, e.id))
    assert [(p["kind"], p["from_example"], p["model"], p["job_id"], p["edited"]) for p in generated] == [
        (e.kind, e.source_example, "house-model", job.id, e.edited) for e in accepted]
    assert generated[0]["from"] == {"source": "original", "dataset_id": d.id, "version": 1,
                                    "example": accepted[0].source_example}
    assert lines(store, new.normalized_path)[8:] == [{"messages": e.messages} for e in accepted]
    with pytest.raises(Conflict, match="already made"):
        augment.review(db, job, [made[5].id], "accept")


def test_generated_examples_that_repeat_existing_ones_are_dropped(db, settings, team, store, sent, endpoint):
    endpoint.repeat_source = True
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint, kinds=["paraphrase"])
    run_queue(sent)
    db.expire_all()
    assert {e.status for e in augment.examples_of(db, job)} == {"duplicate"}
    assert augment.counts(db, job)["duplicate"] == 4 and augment.counts(db, job)["pending"] == 0


def test_the_budget_stops_the_generation(db, settings, team, store, sent, endpoint):
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint, max_calls="3", max_tokens="100000")
    run_queue(sent)
    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    assert job.status == AugmentationStatus.succeeded and job.calls_used == 3 and len(endpoint.requests) == 3
    assert "budget" in job.message
    tokens = start_job(db, settings, team, d, endpoint, max_tokens="100")  # 40 tokens a call: 3 calls
    run_queue(sent)
    db.expire_all()
    assert db.get(AugmentationJob, tokens.id).calls_used == 3


def test_cancel_before_and_during_the_generation(db, settings, team, store, sent, endpoint, monkeypatch):
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint)
    augment.cancel(db, job)
    db.commit()
    run_queue(sent)
    db.expire_all()
    assert db.get(AugmentationJob, job.id).status == AugmentationStatus.cancelled and not endpoint.requests

    job = start_job(db, settings, team, d, endpoint)
    real = augment_task.example_from

    def cancel_after_two(kind, messages, reply):  # noqa: ANN001
        if len(endpoint.requests) == 2:
            with augment_task.session_scope() as s:
                s.get(AugmentationJob, job.id).cancel_requested = True
        return real(kind, messages, reply)

    monkeypatch.setattr(augment_task, "example_from", cancel_after_two)
    run_queue(sent)
    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    assert job.status == AugmentationStatus.cancelled and job.calls_used == 2
    assert len(augment.examples_of(db, job)) == 2  # what was made can still be reviewed


def test_a_job_whose_worker_was_lost_is_requeued_and_resumes_after_its_last_example(
        db, settings, team, store, sent, endpoint):
    from worker.runtime import reconciler

    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint, kinds=["paraphrase"])
    sent.clear()
    # As if a worker had made the first example, then died: running, heartbeat long gone.
    first = questions()[0]["messages"]
    db.add(GeneratedExample(team_id=team, job_id=job.id, source_example=1, kind="paraphrase", status="pending",
                            messages=[{"role": "user", "content": "An earlier worker's paraphrase of it?"}, first[1]]))
    job = db.get(AugmentationJob, job.id)
    job.status, job.attempt, job.calls_used, job.done_steps = AugmentationStatus.running, 1, 1, 1
    job.heartbeat_at = utcnow() - timedelta(seconds=augment_task.STALE_AFTER_S + 5)
    db.commit()
    assert reconciler.reconcile(settings)["augmentations"] == 1
    assert [t for t, _, _ in sent] == ["studio.augment_dataset"]
    run_queue(sent)
    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    assert job.status == AugmentationStatus.succeeded and job.attempt == 2
    assert len(endpoint.requests) == 3 and job.calls_used == 4  # examples 3, 5, 7; 1 was made before
    assert [e.source_example for e in augment.examples_of(db, job)] == [1, 3, 5, 7]
    assert reconciler.reconcile(settings)["augmentations"] == 0


def test_an_endpoint_error_fails_the_job_without_showing_the_key(db, settings, team, store, sent):
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    fake = type("E", (), {"url": "http://127.0.0.1:9/v1"})()  # nothing listens on port 9
    job = start_job(db, settings, team, d, fake)
    run_queue(sent)
    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    assert job.status == AugmentationStatus.failed and "APIConnectionError" in job.message
    assert "sk-secret-123" not in job.message


def test_another_teams_job_does_not_exist(db, settings, team, store, sent, endpoint):
    from app.errors import NotFound

    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint)
    other = make_account(db).team_id
    with pytest.raises(NotFound):
        augment.get_job(db, team_id=other, dataset_id=d.id, job_id=job.id)
    assert repo.get(db, team_id=other, dataset_id=d.id) is None


def test_replies_become_examples_or_are_refused():
    source = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"},
              {"role": "assistant", "content": "A."}]
    fenced = '```json\n{"question": "New Q?", "answer": "New A."}\n```'
    assert augment_task.example_from("new_question", source, fenced) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "New Q?"},
        {"role": "assistant", "content": "New A."}]
    assert augment_task.example_from("paraphrase", source, " Other Q? ")[1:] == [
        {"role": "user", "content": "Other Q?"}, {"role": "assistant", "content": "A."}]
    assert augment_task.example_from("house_style", source, "Styled A.")[2] == {"role": "assistant",
                                                                                "content": "Styled A."}
    for kind, reply in (("paraphrase", "  "), ("new_question", "Sure! Here is one: New Q?"),
                        ("new_question", '{"question": "", "answer": "x"}')):
        with pytest.raises(augment_task.Unusable):
            augment_task.example_from(kind, source, reply)


def test_an_edit_needs_every_message(db, settings, team, store, sent, endpoint):
    d = valid_dataset(db, store, team, sent, questions(), eval_fraction=0.0)
    job = start_job(db, settings, team, d, endpoint, kinds=["paraphrase"])
    run_queue(sent)
    db.expire_all()
    job = db.get(AugmentationJob, job.id)
    example = augment.examples_of(db, job)[0]
    with pytest.raises(InvalidInput, match="Message 2 \\(assistant\\) is empty"):
        augment.edit(db, job, example.id, ["A question?", "  "])
    with pytest.raises(InvalidInput, match="needs its text"):
        augment.edit(db, job, example.id, ["only one"])
    assert augment.examples_of(db, job)[0].status == "pending"
