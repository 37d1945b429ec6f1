"""Dataset service: rows, versions, identical re-uploads, the eval file, the mapping step,
files removed when the transaction rolls back, and every query scoped by team."""

from __future__ import annotations

import uuid

import pytest

from app.datasets import repository as repo
from app.datasets import service
from app.datasets.upload import ReceivedFile, ReceivedUpload
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Artifact, BaseModel, Dataset, DatasetStatus
from app.models_registry.service import BUILTIN_SLUG
from app.storage import ArtifactStore
from datacheck import ColumnMapping, Goal
from tests.factories import make_account

CHAT = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}\n'


@pytest.fixture
def store(settings) -> ArtifactStore:
    return ArtifactStore(settings.artifact_dir)


def put(store: ArtifactStore, team_id: int, data: bytes = CHAT, filename: str = "set.jsonl",
        eval_data: bytes | None = None) -> ReceivedUpload:
    """What receive_upload returns: the files already in the store."""
    prefix = f"teams/{team_id}/datasets/{uuid.uuid4().hex}"
    upload = ReceivedUpload()
    for field, content, key in (("file", data, f"{prefix}/raw"), ("eval_file", eval_data, f"{prefix}/eval_raw")):
        if content is not None:
            w = store.write_bytes(key, content)
            upload.files[field] = ReceivedFile(field=field, filename=filename, key=key, sha256=w.sha256,
                                               size=w.size)
    return upload


def create(db, store, team_id, *, data=CHAT, name="Support", eval_data=None, **options):
    created = service.create_from_upload(
        db, store=store, team_id=team_id, user_id=None, upload=put(store, team_id, data, eval_data=eval_data),
        options=service.UploadOptions(name=name, **options))
    db.commit()
    return created


def test_an_upload_makes_a_row_an_artifact_and_a_message_after_commit(db, store, sent):
    team = make_account(db).team_id
    upload = put(store, team)
    created = service.create_from_upload(db, store=store, team_id=team, user_id=None, upload=upload,
                                         options=service.UploadOptions(name="Support", goal=Goal.CODE))
    assert sent == []  # not before the commit
    db.commit()
    d = created.dataset
    assert not created.duplicate
    assert (d.name, d.version, d.status, d.goal, d.eval_fraction, d.split_seed) == (
        "Support", 1, DatasetStatus.uploaded, "code", 0.1, 42)
    assert d.sha256 == upload.files["file"].sha256 and d.size_bytes == len(CHAT)
    assert sent == [("studio.validate_dataset", [d.id], "default")]
    [artifact] = repo.artifacts(db, team_id=team, dataset_id=d.id)
    assert (artifact.kind, artifact.path, artifact.sha256) == ("dataset_raw", d.raw_path, d.sha256)


def test_same_name_is_a_new_version_and_identical_uploads_are_recognised(db, store, sent):
    team = make_account(db).team_id
    first = create(db, store, team).dataset
    again = create(db, store, team, name="Another name")
    assert again.duplicate and again.dataset.id == first.id
    assert len(sent) == 1  # nothing queued for the duplicate
    stored = [p for p in (store.root / f"teams/{team}/datasets").rglob("*") if p.is_file()]
    assert len(stored) == 1, "the duplicate's copy was deleted"
    second = create(db, store, team, data=CHAT * 2).dataset
    assert (second.name, second.version) == ("Support", 2)
    other_settings = create(db, store, team, eval_fraction=0.2).dataset
    assert other_settings.version == 3 and other_settings.id != first.id
    assert [d.version for d in repo.versions(db, team_id=team, name="Support")] == [3, 2, 1]


def test_a_crashed_check_is_not_a_reason_to_refuse_the_same_file(db, store, sent):
    team = make_account(db).team_id
    first = create(db, store, team).dataset
    first.status = DatasetStatus.invalid
    first.report = {"error_counts": {service.INTERNAL_ERROR: 1}}
    db.commit()
    again = create(db, store, team)
    assert not again.duplicate and again.dataset.version == 2


def test_a_separate_eval_file_is_kept_on_its_own_row(db, store, sent):
    team = make_account(db).team_id
    d = create(db, store, team, eval_data=CHAT * 3).dataset
    held = repo.get(db, team_id=team, dataset_id=d.eval_dataset_id, purpose=repo.EVAL_FILE)
    assert held.name == "Support (evaluation)" and held.purpose == "eval" and held.size_bytes == 3 * len(CHAT)
    assert repo.get(db, team_id=team, dataset_id=held.id) is None  # not a dataset of its own
    assert repo.list_page(db, team_id=team, offset=0, limit=10) == ([d], 1)
    assert create(db, store, team, eval_data=CHAT * 3).duplicate
    assert not create(db, store, team, eval_data=CHAT * 4).duplicate
    assert not create(db, store, team).duplicate  # same file without an eval file


def test_the_builtin_model_is_the_default_tokenizer_and_a_chosen_one_must_be_visible(db, store, sent):
    acc, other = make_account(db), make_account(db)
    builtin = BaseModel(slug=BUILTIN_SLUG, display_name="SmolLM2", source="builtin", path="/nowhere")
    theirs = BaseModel(team_id=other.team_id, slug="theirs", display_name="Theirs", source="local", path="/x")
    db.add_all([builtin, theirs])
    db.commit()
    assert create(db, store, acc.team_id).dataset.tokenizer_model_id == builtin.id
    with pytest.raises(InvalidInput) as err:
        create(db, store, acc.team_id, data=CHAT * 2, base_model_id=theirs.id)
    assert err.value.param == "base_model_id"


def test_form_options_are_checked_with_clear_messages():
    opts = service.parse_options({"name": "  my   set ", "goal": "classification", "eval_fraction": "0.2",
                                  "seed": "7", "base_model_id": "3"}, filename="x.csv")
    assert opts == service.UploadOptions(name="my set", goal=Goal.CLASSIFICATION, eval_fraction=0.2, seed=7,
                                         base_model_id=3)
    assert service.parse_options({}, filename="support_fr.jsonl").name == "support_fr"
    for fields, param in (({"goal": "poetry"}, "goal"), ({"eval_fraction": "0.9"}, "eval_fraction"),
                          ({"eval_fraction": "ten"}, "eval_fraction"), ({"seed": "1.5"}, "seed"),
                          ({"name": "x" * 201}, "name")):
        with pytest.raises(InvalidInput) as err:
            service.parse_options(fields, filename="a.jsonl")
        assert err.value.param == param


def test_the_example_is_created_once(db, store, sent):
    team = make_account(db).team_id
    first = service.create_from_example(db, store=store, team_id=team, user_id=None)
    db.commit()
    assert first.dataset.name == service.EXAMPLE_NAME and first.dataset.goal == "brand_voice"
    assert first.dataset.original_filename == "support_fr_brand_voice.jsonl"
    second = service.create_from_example(db, store=store, team_id=team, user_id=None)
    assert second.duplicate and second.dataset.id == first.dataset.id


def test_files_are_removed_when_the_transaction_rolls_back(db, store, sent):
    team = make_account(db).team_id
    upload = put(store, team)
    service.create_from_upload(db, store=store, team_id=team, user_id=None, upload=upload,
                               options=service.UploadOptions(name="x"))
    db.rollback()
    assert not store.exists(upload.files["file"].key)
    assert db.query(Dataset).count() == 0 and sent == []
    kept = create(db, store, team).dataset
    db.rollback()  # after the commit, a later rollback leaves the committed files alone
    assert store.exists(kept.raw_path)


def _csv(db, store, team, status=DatasetStatus.invalid) -> Dataset:
    d = create(db, store, team, data=b"q,a\nhello,world\n").dataset
    d.status = status
    d.report = {"columns": ["q", "a", "note"], "error_counts": {"mapping_required": 1}}
    db.commit()
    return d


def test_the_mapping_is_checked_and_queues_a_new_check(db, store, sent):
    team = make_account(db).team_id
    d = _csv(db, store, team)
    for mapping, param in ((ColumnMapping(prompt="x", completion="a"), "prompt"),
                           (ColumnMapping(prompt="q", completion="q"), "completion"),
                           (ColumnMapping(prompt="q", completion="a", system="a"), "system")):
        with pytest.raises(InvalidInput) as err:
            service.set_mapping(db, team_id=team, dataset_id=d.id, mapping=mapping)
        assert err.value.param == param
    service.set_mapping(db, team_id=team, dataset_id=d.id,
                        mapping=ColumnMapping(prompt="q", completion="a", system="note"))
    db.commit()
    assert d.column_mapping == {"prompt": "q", "completion": "a", "system": "note"}
    assert d.status == DatasetStatus.uploaded and d.report is None
    assert sent[-1] == ("studio.validate_dataset", [d.id], "default")
    with pytest.raises(Conflict, match="still being checked"):
        service.set_mapping(db, team_id=team, dataset_id=d.id, mapping=ColumnMapping(prompt="q", completion="a"))


def test_a_valid_dataset_never_changes_and_only_tables_have_columns(db, store, sent):
    team = make_account(db).team_id
    valid = _csv(db, store, team, status=DatasetStatus.valid)
    with pytest.raises(Conflict, match="valid datasets never change"):
        service.set_mapping(db, team_id=team, dataset_id=valid.id, mapping=ColumnMapping(prompt="q", completion="a"))
    chat = create(db, store, team, data=CHAT * 5).dataset
    chat.status, chat.report = DatasetStatus.invalid, {"columns": None}
    db.commit()
    with pytest.raises(InvalidInput, match="Only CSV and TSV"):
        service.set_mapping(db, team_id=team, dataset_id=chat.id, mapping=ColumnMapping(prompt="q", completion="a"))


def test_another_team_sees_nothing(db, store, sent):
    a, b = make_account(db), make_account(db)
    theirs = create(db, store, b.team_id).dataset
    with pytest.raises(NotFound):
        service.get(db, team_id=a.team_id, dataset_id=theirs.id)
    with pytest.raises(NotFound):
        service.set_mapping(db, team_id=a.team_id, dataset_id=theirs.id,
                            mapping=ColumnMapping(prompt="q", completion="a"))
    assert repo.list_page(db, team_id=a.team_id, offset=0, limit=10) == ([], 0)
    assert repo.artifacts(db, team_id=a.team_id, dataset_id=theirs.id) == []
    mine = create(db, store, a.team_id)  # the same bytes in another team are not a duplicate
    assert not mine.duplicate and mine.dataset.version == 1
    assert db.query(Artifact).filter_by(team_id=a.team_id).count() == 1


def test_rows_need_a_valid_dataset(db, store, sent):
    team = make_account(db).team_id
    d = create(db, store, team).dataset
    with pytest.raises(Conflict, match="once the dataset is valid"):
        service.rows(store, d)
