"""The validation task, run in-process on real databases: valid and invalid files, token counts
with the built-in model's real tokenizer, the CSV mapping step, crashes and missing rows."""

from __future__ import annotations

import orjson
import pytest

from app.datasets import repository as repo
from app.datasets import service
from app.models import BaseModel, Dataset, DatasetStatus
from app.models_registry.service import BUILTIN_SLUG
from app.storage import ArtifactStore
from datacheck import ColumnMapping
from tests.datacheck.factories import chats, jsonl
from tests.datasets.test_service import create, put
from tests.factories import make_account
from worker.tasks import datasets as dataset_tasks
from worker.tasks.datasets import validate_dataset


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """The built-in model's real tokenizer (read from its GGUF once per test session)."""
    from worker.training.builtin import save_builtin_tokenizer

    return save_builtin_tokenizer(tmp_path_factory.mktemp("builtin-tokenizer"))


@pytest.fixture
def store(settings) -> ArtifactStore:
    return ArtifactStore(settings.artifact_dir)


@pytest.fixture
def team(db) -> int:
    return make_account(db).team_id


def reload(db, dataset_id: int) -> Dataset:
    db.expire_all()
    return db.get(Dataset, dataset_id)


def lines_of(store: ArtifactStore, key: str) -> list[dict]:
    return [orjson.loads(line) for line in store.path(key).read_bytes().splitlines()]


def leftovers(settings) -> list:
    scratch = settings.data_dir / "tmp"
    return list(scratch.iterdir()) if scratch.exists() else []


def test_a_valid_file_is_normalised_split_and_stored(db, store, sent, team, settings):
    d = create(db, store, team, data=jsonl(*chats(50)), goal=service.Goal.SUPPORT_ANSWERS).dataset
    assert validate_dataset(d.id) == "valid"
    d = reload(db, d.id)
    assert d.status == DatasetStatus.valid and d.format == "chat" and d.num_examples == 50
    report = d.report
    assert report["status"] == "valid" and report["counts"]["train_examples"] + report["counts"]["eval_examples"] == 50
    train, evals = lines_of(store, d.normalized_path), lines_of(store, d.normalized_eval_path)
    assert len(train) == report["counts"]["train_examples"] and len(evals) == report["counts"]["eval_examples"]
    assert train[0]["messages"][0] == {"role": "user", "content": "Question number 0?"}
    assert d.stats["length_unit"] == "characters" and d.stats["tokens_are_estimated"]
    assert report["guidance"]["goal"] == "support_answers"
    assert [w["kind"] for w in report["warnings"]][-1] == "no_tokenizer"  # no model installed here
    kinds = sorted(a.kind for a in repo.artifacts(db, team_id=team, dataset_id=d.id))
    assert kinds == ["dataset_eval", "dataset_raw", "dataset_train"]
    assert leftovers(settings) == []


def test_a_bad_line_makes_it_invalid_with_the_exact_line_and_nothing_kept(db, store, sent, team, settings):
    data = jsonl(*chats(3)) + b'{"messages": [{"role": "user", "content": "oops"}\n' + jsonl(*chats(2, 3))
    d = create(db, store, team, data=data).dataset
    assert validate_dataset(d.id) == "invalid"
    d = reload(db, d.id)
    assert d.status == DatasetStatus.invalid
    assert [(e["line"], e["kind"]) for e in d.report["errors"]] == [(4, "bad_json")]
    assert d.report["errors"][0]["message"].startswith("Line 4: ")
    assert d.normalized_path is None and d.normalized_eval_path is None
    stored = sorted(p.name for p in (store.root / d.raw_path).parent.iterdir())
    assert stored == ["raw"], "no normalised output of an invalid dataset remains"
    assert [a.kind for a in repo.artifacts(db, team_id=team, dataset_id=d.id)] == ["dataset_raw"]
    assert leftovers(settings) == []


def _builtin(db, path, context_length=8192) -> BaseModel:
    model = BaseModel(slug=BUILTIN_SLUG, display_name="SmolLM2-135M-Instruct (built-in)", source="builtin",
                      path=str(path), context_length=context_length)
    db.add(model)
    db.commit()
    return model


def test_tokens_are_counted_with_the_models_tokenizer(db, store, sent, team, tokenizer_dir):
    model = _builtin(db, tokenizer_dir)
    d = create(db, store, team, data=jsonl(*chats(30))).dataset
    assert d.tokenizer_model_id == model.id
    assert validate_dataset(d.id) == "valid"
    d = reload(db, d.id)
    assert d.stats["length_unit"] == "tokens" and not d.stats["tokens_are_estimated"]
    # "Answer number 7." is 4 tokens for SmolLM2's tokenizer: a real count, not characters / 4
    answer = d.stats["answer_lengths"]
    assert 3 <= answer["min"] <= answer["max"] <= 6
    assert d.tokenizer_model_id == model.id
    assert "no_tokenizer" not in [w["kind"] for w in d.report["warnings"]]


def test_an_example_longer_than_the_context_is_an_error_on_its_line(db, store, sent, team, tokenizer_dir):
    _builtin(db, tokenizer_dir, context_length=64)
    long = {"messages": [{"role": "user", "content": "mot " * 200}, {"role": "assistant", "content": "ok"}]}
    d = create(db, store, team, data=jsonl(*chats(5), long, *chats(2, 5))).dataset
    assert validate_dataset(d.id) == "invalid"
    d = reload(db, d.id)
    assert [(e["line"], e["kind"]) for e in d.report["errors"]] == [(6, "too_many_tokens")]
    assert "more than the 64 tokens the model can read" in d.report["errors"][0]["message"]


def test_an_unloadable_tokenizer_falls_back_to_characters(db, store, sent, team, tmp_path):
    _builtin(db, tmp_path / "not-a-model")
    d = create(db, store, team, data=jsonl(*chats(10))).dataset
    assert validate_dataset(d.id) == "valid"
    d = reload(db, d.id)
    assert d.stats["length_unit"] == "characters" and d.tokenizer_model_id is None
    note = [w for w in d.report["warnings"] if w["kind"] == "no_tokenizer"][0]
    assert "could not be loaded" in note["message"]


def test_a_csv_needs_its_columns_chosen_then_becomes_valid(db, store, sent, team):
    data = b"id,customer_text,agent_text\n1,Where is my parcel?,It left today.\n2,Can I pay later?,Yes.\n"
    d = create(db, store, team, data=data).dataset
    assert validate_dataset(d.id) == "invalid"
    d = reload(db, d.id)
    assert d.report["columns"] == ["id", "customer_text", "agent_text"]
    assert [(e["line"], e["kind"]) for e in d.report["errors"]] == [(None, "mapping_required")]
    service.set_mapping(db, team_id=team, dataset_id=d.id,
                        mapping=ColumnMapping(prompt="customer_text", completion="agent_text"))
    db.commit()
    assert sent[-1] == ("studio.validate_dataset", [d.id], "default")
    assert validate_dataset(d.id) == "valid"
    d = reload(db, d.id)
    assert d.format == "csv" and d.num_examples == 2
    rows = lines_of(store, d.normalized_path) + lines_of(store, d.normalized_eval_path)
    assert {"role": "user", "content": "Where is my parcel?"} in rows[0]["messages"] + rows[-1]["messages"]


def test_a_separate_eval_file_is_checked_with_it(db, store, sent, team):
    d = create(db, store, team, data=jsonl(*chats(20)), eval_data=jsonl(*chats(5, 100))).dataset
    assert validate_dataset(d.id) == "valid"
    d = reload(db, d.id)
    assert d.report["eval_from"] == "file"
    assert (d.report["counts"]["train_examples"], d.report["counts"]["eval_examples"]) == (20, 5)
    assert len(lines_of(store, d.normalized_eval_path)) == 5
    held = repo.get(db, team_id=team, dataset_id=d.eval_dataset_id, purpose=repo.EVAL_FILE)
    assert (held.status, held.num_examples) == (DatasetStatus.valid, 5)


def test_a_crash_marks_it_invalid_in_plain_words(db, store, sent, team, monkeypatch, settings):
    def boom(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(dataset_tasks, "run_validation", boom)
    d = create(db, store, team, data=jsonl(*chats(5))).dataset
    assert validate_dataset(d.id) == "invalid"
    d = reload(db, d.id)
    assert d.status == DatasetStatus.invalid
    assert d.report["error_counts"] == {"internal_error": 1}
    assert "unexpected error on our side (MemoryError: out of memory)" in d.report["explanation"]
    assert service.crashed(d)
    assert leftovers(settings) == []


def test_a_crash_after_storing_removes_what_was_stored(db, store, sent, team, monkeypatch):
    def broken_finish(check, report, store):
        raise RuntimeError("database went away")

    monkeypatch.setattr(dataset_tasks, "_finish", broken_finish)
    d = create(db, store, team, data=jsonl(*chats(5))).dataset
    assert validate_dataset(d.id) == "invalid"
    d = reload(db, d.id)
    assert sorted(p.name for p in (store.root / d.raw_path).parent.iterdir()) == ["raw"]
    assert d.normalized_path is None


def test_a_missing_row_is_a_no_op_and_a_valid_one_is_left_alone(db, store, sent, team):
    assert validate_dataset(987654) == "gone"
    d = create(db, store, team, data=jsonl(*chats(5))).dataset
    assert validate_dataset(d.id) == "valid"
    before = reload(db, d.id)
    report, path = before.report, before.normalized_path
    assert validate_dataset(d.id) == "valid"  # the same message delivered twice
    after = reload(db, d.id)
    assert (after.report, after.normalized_path) == (report, path)


@pytest.mark.parametrize(("data", "filename", "line", "kind"), [
    (b"[" * 100_000, "deep.json", 1, "too_deep"),  # the reported RecursionError
    (jsonl(*chats(3)) + b"[" * 100_000 + b"\n", "deep.jsonl", 4, "too_deep"),
    (jsonl(*chats(3)) + b'{"prompt": "a\x00"}\n', "nul.jsonl", 4, "nul_byte"),
    (b'prompt,completion\nq,a\nq,"' + b"word\n" * 2_000_000, "cell.csv", 3, "line_too_long"),
])
def test_a_file_past_a_parser_limit_is_invalid_on_its_line_and_nothing_is_kept(
        db, store, sent, team, settings, data, filename, line, kind):
    d = service.create_from_upload(db, store=store, team_id=team, user_id=None,
                                   upload=put(store, team, data, filename=filename),
                                   options=service.UploadOptions(name="Limits")).dataset
    db.commit()
    assert validate_dataset(d.id) == "invalid"
    d = reload(db, d.id)
    assert [(e["line"], e["kind"]) for e in d.report["errors"]] == [(line, kind)]
    assert "unexpected error" not in d.report["explanation"] and not service.crashed(d)
    assert d.report["errors"][0]["message"].startswith(f"Line {line}: ")
    assert d.normalized_path is None and d.normalized_eval_path is None
    assert sorted(p.name for p in (store.root / d.raw_path).parent.iterdir()) == ["raw"]
    assert [a.kind for a in repo.artifacts(db, team_id=team, dataset_id=d.id)] == ["dataset_raw"]
    assert leftovers(settings) == []


def test_a_valid_dataset_gets_the_trainers_token_preview(db, store, sent, team, tokenizer_dir):
    """The preview is drawn by worker.training.data with the model's real chat template: the
    trained segments are the answers and their end-of-turn token, nothing else."""
    model = _builtin(db, tokenizer_dir)
    d = create(db, store, team, data=jsonl(*chats(12))).dataset
    assert validate_dataset(d.id) == "valid"
    d = reload(db, d.id)
    preview = d.report["token_preview"]
    assert preview["complete"] and preview["examples_scanned"] == d.report["counts"]["train_examples"]
    entry = preview["models"][str(model.id)]
    first = lines_of(store, d.normalized_path)[0]["messages"]
    shown = entry["examples"][0]
    assert [s["text"] for s in shown["segments"] if s["trained"]] == [first[1]["content"] + "<|im_end|>"]
    assert first[0]["content"] in "".join(s["text"] for s in shown["segments"] if not s["trained"])
    assert 0 < entry["first_trained_min"] <= shown["first_trained"] < shown["tokens"]
    assert entry["untrained_examples"] == 0


def test_a_preference_dataset_previews_its_prompt_with_the_better_answer(db, store, sent, team, tokenizer_dir):
    """Pairs have no messages: the preview shows each prompt with its chosen answer, trained."""
    model = _builtin(db, tokenizer_dir)
    rows = [{"prompt": f"Question {i} about my order?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."}
            for i in range(12)]
    d = create(db, store, team, data=jsonl(*rows)).dataset
    assert validate_dataset(d.id) == "valid"
    entry = reload(db, d.id).report["token_preview"]["models"][str(model.id)]
    shown = entry["examples"][0]
    trained = [s["text"] for s in shown["segments"] if s["trained"]]
    assert len(trained) == 1 and trained[0].startswith("Good answer") and trained[0].endswith("<|im_end|>")
    assert "Bad" not in "".join(s["text"] for s in shown["segments"])
