"""The storage interface on both backends: the local directory and a real S3-protocol server
(moto's standalone server, a process on 127.0.0.1), and checkpoints in the store: a manifest
written last, an interrupted upload that resume never trusts."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from pathlib import Path

import pytest

from app.errors import InvalidInput, NotFound, TooLarge
from app.storage import ArtifactStore, open_store
from app.storage.checkpoints import MANIFEST, read_manifest, stored_checkpoints, trusted, upload_checkpoint
from tests.services import s3_env, s3_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the store is the point, not the database


@pytest.fixture(params=["local", "s3"])
def store(request, settings):
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        return open_store(settings)
    return ArtifactStore(settings.artifact_dir)


def test_files_round_trip_stream_and_delete(store, tmp_path):
    written = store.write_chunks("teams/1/a/data.jsonl", [b'{"a": 1}\n', b'{"a": 2}\n'])
    assert written.size == 18 and len(written.sha256) == 64
    with store.open("teams/1/a/data.jsonl") as fh:
        assert [json.loads(line) for line in fh] == [{"a": 1}, {"a": 2}]
    assert store.tail("teams/1/a/data.jsonl", 9) == b'{"a": 2}\n' and store.tail("teams/1/a/none", 9) == b""
    assert store.size("teams/1/a/data.jsonl") == 18 and store.size("teams/1/a/none") is None
    big = bytes(range(256)) * (3 * 4096 + 7)  # > 3 chunks of 1 MiB: read back in pieces
    store.write_bytes("teams/1/big.bin", big)
    chunks = list(store.iter_bytes("teams/1/big.bin"))
    assert len(chunks) >= 3 and b"".join(chunks) == big and max(map(len, chunks)) <= 1024 * 1024

    with pytest.raises(TooLarge):
        store.write_chunks("teams/1/a/too-big", [b"x" * 10, b"y" * 10], max_bytes=15)
    assert not store.exists("teams/1/a/too-big")
    for bad in ("../x", "teams/../../etc/passwd", "/abs", "a//b", "a/./b", "a b"):
        with pytest.raises(InvalidInput):
            store.exists(bad)
    with pytest.raises(NotFound):
        store.open("teams/1/a/none")

    tree = tmp_path / "adapter"
    (tree / "sub").mkdir(parents=True)
    (tree / "adapter_config.json").write_text("{}")
    (tree / "sub" / "w.bin").write_bytes(b"w" * 100)
    assert store.upload_tree("teams/1/run/adapter", tree) == 102
    assert store.list_tree("teams/1/run/adapter") == [("adapter_config.json", 2), ("sub/w.bin", 100)]
    (tree / "sub" / "w.bin").unlink()
    store.upload_tree("teams/1/run/adapter", tree)  # uploaded again: what is gone from it goes
    assert store.list_tree("teams/1/run/adapter") == [("adapter_config.json", 2)]
    copy = tmp_path / "copy"
    store.download_tree("teams/1/run/adapter", copy)
    assert (copy / "adapter_config.json").read_text() == "{}"
    store.delete("teams/1/run")
    assert not store.exists("teams/1/run/adapter") and store.list_tree("teams/1/run") == []
    store.check_writable()


def test_presigned_url_serves_the_file_from_the_server(s3_env, settings, monkeypatch):
    from app import config
    from app.downloads import store_response

    store = open_store(settings)
    store.write_bytes("teams/1/card.md", b"# card\n")
    url = store.presigned_url("teams/1/card.md", filename="README.md", expires_s=60)
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read() == b"# card\n"
        assert "README.md" in answer.headers["Content-Disposition"]
    assert store_response(store, "teams/1/card.md", "README.md", "text/markdown").status_code == 200  # streamed
    monkeypatch.setenv("STUDIO_DOWNLOAD_REDIRECT", "true")
    config.get_settings.cache_clear()
    redirect = store_response(store, "teams/1/card.md", "README.md", "text/markdown")
    assert redirect.status_code == 307 and "X-Amz-Expires=300" in redirect.headers["location"]
    with urllib.request.urlopen(redirect.headers["location"], timeout=10) as answer:
        assert answer.read() == b"# card\n"
    config.get_settings.cache_clear()


def _checkpoint(root: Path, step: int) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"w" * (1000 + step))
    (path / "optimizer.pt").write_bytes(b"o" * 2000)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


class FailingAfter:
    """The store, except that uploads fail after `n` files: a network cut in mid-checkpoint."""

    def __init__(self, store, n: int) -> None:  # noqa: ANN001
        self.store, self.left = store, n

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self.store, name)

    def write_file(self, key, source):  # noqa: ANN001, ANN201
        if self.left == 0:
            raise ConnectionError("upload cut")
        self.left -= 1
        return self.store.write_file(key, source)


def test_an_upload_interrupted_mid_checkpoint_is_never_trusted(s3_env, settings, tmp_path):
    from worker.runtime.sync import restore_checkpoint

    store = open_store(settings)
    key = "teams/1/jobs/7/run/checkpoints"
    manifest = upload_checkpoint(store, f"{key}/checkpoint-2", _checkpoint(tmp_path / "w", 2))
    assert read_manifest(store, f"{key}/checkpoint-2") == manifest
    assert set(manifest["files"]) == {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json"}
    with pytest.raises(ConnectionError):
        upload_checkpoint(FailingAfter(store, 2), f"{key}/checkpoint-4", _checkpoint(tmp_path / "w", 4))
    assert len(stored_checkpoints(store, key)[4]) == 2  # two files made it, no manifest
    assert trusted(store, f"{key}/checkpoint-4") is None

    # A manifest whose file was replaced by a shorter one (a torn re-upload) is not trusted either.
    upload_checkpoint(store, f"{key}/checkpoint-6", _checkpoint(tmp_path / "w", 6))
    store.write_bytes(f"{key}/checkpoint-6/optimizer.pt", b"o" * 10)
    assert trusted(store, f"{key}/checkpoint-6") is None
    # Same size, other bytes: listed as whole, refused once its sha256 is checked after download.
    upload_checkpoint(store, f"{key}/checkpoint-8", _checkpoint(tmp_path / "w", 8))
    store.write_bytes(f"{key}/checkpoint-8/optimizer.pt", b"X" * 2000)
    assert trusted(store, f"{key}/checkpoint-8") is not None

    said: list[str] = []
    local = tmp_path / "resume" / "checkpoints"
    assert restore_checkpoint(store, key, local, said.append) == 2
    assert sorted(p.name for p in local.iterdir()) == ["checkpoint-2"]
    assert (local / "checkpoint-2" / "adapter_model.safetensors").read_bytes() == b"w" * 1002
    assert any("checkpoint-8" in line and "sha256" in line for line in said)
    assert 4 not in stored_checkpoints(store, key) and 6 not in stored_checkpoints(store, key)  # torn: removed


def test_a_failed_checkpoint_upload_writes_no_row_and_keeps_older_ones(s3_env, settings, tmp_path):
    from worker.runtime.sync import SyncingReporter, Workspace

    class Inner:
        def __init__(self) -> None:
            self.rows, self.deleted, self.lines = [], [], []

        def on_checkpoint(self, step, path, metadata):  # noqa: ANN001
            self.rows.append(step)

        def on_checkpoints_deleted(self, steps):  # noqa: ANN001
            self.deleted += steps

        def on_log(self, line):  # noqa: ANN001
            self.lines.append(line)

    settings.work_dir = tmp_path / "work"
    workspace = Workspace(open_store(settings), settings)
    run_dir = workspace.path("teams/1/jobs/9/run")
    inner = Inner()
    reporter = SyncingReporter(inner, workspace, run_dir / "training.log")
    reporter.on_checkpoint(2, str(_checkpoint(run_dir / "checkpoints", 2)), {})
    workspace.store = FailingAfter(workspace.store, 1)
    reporter.on_checkpoint(4, str(_checkpoint(run_dir / "checkpoints", 4)), {})
    reporter.on_checkpoints_deleted([2])  # the engine rotated locally: the store keeps step 2
    assert inner.rows == [2] and inner.deleted == [] and "could not be uploaded" in inner.lines[-1]
    assert trusted(workspace.store, "teams/1/jobs/9/run/checkpoints/checkpoint-2") is not None
    assert MANIFEST not in dict(workspace.store.list_tree("teams/1/jobs/9/run/checkpoints/checkpoint-4"))


def test_directories_download_as_a_zip_built_on_the_fly(store, tmp_path):
    from app.downloads import store_response

    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "config.json").write_text('{"a": 1}')
    (tree / "model.safetensors").write_bytes(b"m" * (2 * 1024 * 1024 + 5))
    store.upload_tree("teams/1/model", tree)
    response = store_response(store, "teams/1/model", "run-1-model", "application/zip")
    assert "content-length" not in response.headers

    async def body() -> list[bytes]:
        return [chunk async for chunk in response.body_iterator]

    import asyncio

    parts = asyncio.run(body())
    assert len(parts) > 2 and max(map(len, parts)) <= 1024 * 1024 + 4096  # streamed, one chunk at a time
    with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as archive:
        assert archive.read("model.safetensors") == b"m" * (2 * 1024 * 1024 + 5)
        assert archive.read("config.json") == b'{"a": 1}'


def test_the_inference_process_fetches_a_stored_adapter_once(s3_env, settings, tmp_path):
    from fastapi import HTTPException

    from app.inference.targets import STORE_SCHEME, stored_directory
    from worker.inference.server import _local, allowed

    store = open_store(settings)
    tree = tmp_path / "adapter"
    tree.mkdir()
    (tree / "adapter_config.json").write_text("{}")
    store.upload_tree("teams/1/jobs/3/run/adapter", tree)
    raw = stored_directory(store, "teams/1/jobs/3/run/adapter")
    assert raw == f"{STORE_SCHEME}teams/1/jobs/3/run/adapter"
    local = _local(settings, raw)
    assert (Path(local) / "adapter_config.json").read_text() == "{}" and allowed(settings, local)
    store.delete("teams/1/jobs/3/run/adapter")
    assert _local(settings, raw) == local  # cached: not downloaded again
    with pytest.raises(HTTPException) as missing:
        _local(settings, f"{STORE_SCHEME}teams/1/jobs/4/run/adapter")
    assert missing.value.status_code == 404
    with pytest.raises(InvalidInput):
        _local(settings, f"{STORE_SCHEME}../../etc")
    assert stored_directory(ArtifactStore(settings.artifact_dir), "teams/1/x") == str(settings.artifact_dir / "teams/1/x")


def test_a_dataset_uploaded_validated_and_served_from_the_bucket(s3_env, settings, db, client, sent):
    import asyncio

    from app.models import Dataset, DatasetStatus
    from tests.datacheck.factories import chats, jsonl
    from tests.factories import make_account, make_api_key
    from worker.tasks.datasets import validate_dataset

    headers = {"Authorization": f"Bearer {make_api_key(db, make_account(db))}"}
    answer = client.post("/api/v1/datasets", files={"file": ("set.jsonl", jsonl(*chats(20)))}, headers=headers)
    assert answer.status_code in (200, 201, 202), answer.text
    dataset_id = answer.json()["id"]
    assert [m[0] for m in sent] == ["studio.validate_dataset"]
    assert validate_dataset(dataset_id) == "valid"  # the task reads the raw file from the bucket, writes its splits there
    db.expire_all()
    dataset = db.get(Dataset, dataset_id)
    assert dataset.status == DatasetStatus.valid
    store = client.app.state.store
    with store.open(dataset.normalized_path) as fh:
        assert sum(1 for _ in fh) == dataset.report["counts"]["train_examples"]
    assert not any(p.is_file() for p in settings.artifact_dir.rglob("*"))
    assert client.get(f"/api/v1/datasets/{dataset_id}", headers=headers).status_code == 200
    rows = client.get(f"/api/v1/datasets/{dataset_id}/rows", headers=headers)
    assert rows.status_code == 200 and rows.json()["rows"], rows.text  # read from the bucket, line by line
    raw = client.get(f"/v1/files/file-{dataset_id}/content", headers=headers)
    assert raw.status_code == 200 and raw.content == jsonl(*chats(20))  # the uploaded bytes, streamed back

    async def chunks():  # noqa: ANN202
        for part in (b"a" * 10, b"b" * 10):
            yield part

    with pytest.raises(TooLarge):
        asyncio.run(store.write_async_chunks("teams/1/up/too-big", chunks(), max_bytes=15))
    assert not store.exists("teams/1/up/too-big")
    assert asyncio.run(store.write_async_chunks("teams/1/up/ok", chunks())).size == 20


def test_a_bucket_that_does_not_answer_fails_the_readiness_check_at_once(settings):
    import time

    from app.health import check_storage
    from app.storage.s3 import S3Store
    from tests.processes import free_port

    store = S3Store("s3://studio/x", endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1",
                    access_key_id="k", secret_access_key="s")
    started = time.monotonic()
    ok, detail = check_storage(store)
    assert not ok and "Could not connect" in detail and time.monotonic() - started < 5
    with pytest.raises(InvalidInput):
        S3Store("s3://", endpoint_url="http://127.0.0.1:1")


def test_the_artifact_url_is_a_bucket_or_nothing(settings):
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="s3://bucket/prefix"):
        Settings(artifact_url="/mnt/shared/artifacts")
    assert isinstance(open_store(Settings()), ArtifactStore)  # the embedded default


def test_checkpoint_retention_keeps_the_newest_rows_and_files(store, settings, db, tmp_path):
    from sqlalchemy import select

    from app.models import Checkpoint
    from app.runs import retention
    from tests.factories import make_account
    from app.models import BaseModel, RunStatus
    from tests.runs.factories import make_dataset, make_run

    team = make_account(db).team_id
    model = BaseModel(team_id=team, slug="m", display_name="M", source="local", path="/nowhere")
    db.add(model)
    db.commit()
    run = make_run(db, team, make_dataset(db, store, team), model, status=RunStatus.succeeded)
    key = f"teams/{team}/jobs/{run.id}/run/checkpoints"
    for step in (2, 4, 6):
        upload_checkpoint(store, f"{key}/checkpoint-{step}", _checkpoint(tmp_path / "local", step))
        db.add(Checkpoint(run_id=run.id, step=step, path=f"{key}/checkpoint-{step}", size_bytes=3000))
    db.commit()
    assert retention.after_run(store, run.id, keep=0) == []  # 0 keeps all
    assert retention.after_run(store, run.id, keep=2) == [2]
    db.expire_all()
    assert db.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run.id)).all() == [4, 6]
    assert sorted(stored_checkpoints(store, key)) == [4, 6]
    assert trusted(store, f"{key}/checkpoint-6") is not None
