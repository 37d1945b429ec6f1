"""Streamed multipart uploads: memory stays flat, the limit stops reading, nothing half-written
remains, and both the streamed path and the already-parsed browser form store the same bytes."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from pathlib import Path

import pytest
from starlette.requests import Request

from app.datasets.upload import clean_filename, human_bytes, receive_upload
from app.errors import InvalidInput, TooLarge
from app.models import Dataset
from app.storage import ArtifactStore
from tests.factories import log_in, make_account, make_api_key

BOUNDARY = "studio-test-boundary"
CHUNK = 64 * 1024


def _part_head(name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def body_chunks(fields: dict[str, str], files: list[tuple[str, str, int]], *, finish: bool = True):
    """A multipart body, generated chunk by chunk: files are ``size`` bytes of a repeating line."""
    for name, value in fields.items():
        yield _part_head(name) + value.encode() + b"\r\n"
    line = b'{"messages": [{"role": "user", "content": "hi"}]}\n'
    for name, filename, size in files:
        yield _part_head(name, filename)
        block = (line * (CHUNK // len(line) + 1))[:CHUNK]
        sent = 0
        while sent < size:
            piece = block[: min(CHUNK, size - sent)]
            sent += len(piece)
            yield piece
        yield b"\r\n"
    if finish:
        yield f"--{BOUNDARY}--\r\n".encode()


def expected_sha(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in body_chunks({}, [("file", "x", size)]):
        if not chunk.startswith(b"--") and chunk != b"\r\n":
            digest.update(chunk)
    return digest.hexdigest()


class Counter:
    def __init__(self) -> None:
        self.bytes = 0


def fake_request(chunks, counter: Counter | None = None, *, header: bool = True) -> Request:
    iterator = iter(chunks)

    async def receive() -> dict:
        try:
            chunk = next(iterator)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        if counter is not None:
            counter.bytes += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if header:
        headers.append((b"x-csrf-token", b"token"))
    scope = {"type": "http", "method": "POST", "path": "/datasets", "headers": headers,
             "query_string": b""}
    return Request(scope, receive)


def receive(request: Request, store: ArtifactStore, max_bytes: int = 10**12):
    keys = {"file": "teams/1/datasets/u/raw", "eval_file": "teams/1/datasets/u/eval_raw"}
    return asyncio.run(receive_upload(request, store=store, file_keys=keys, max_bytes=max_bytes))


def files_in(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_large_file_streams_to_the_store_in_flat_memory(tmp_path):
    store = ArtifactStore(tmp_path)
    size = 48 * 1024 * 1024
    tracemalloc.start()
    try:
        got = receive(fake_request(body_chunks({"name": "Big one", "goal": "code"},
                                               [("file", "big.jsonl", size)])), store)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"peak {peak:,} bytes for a {size:,}-byte upload"
    assert got.fields == {"name": "Big one", "goal": "code"}
    received = got.files["file"]
    assert (received.filename, received.size) == ("big.jsonl", size)
    assert received.sha256 == expected_sha(size)
    assert store.path(received.key).stat().st_size == size


def test_reading_stops_once_the_limit_is_passed_and_nothing_remains(tmp_path):
    store, counter = ArtifactStore(tmp_path), Counter()
    request = fake_request(body_chunks({}, [("file", "huge.jsonl", 64 * 1024 * 1024)]), counter)
    with pytest.raises(TooLarge) as err:
        receive(request, store, max_bytes=1024 * 1024)
    assert '"huge.jsonl" is larger than the upload limit of 1.0 MB' in err.value.message
    assert counter.bytes < 1024 * 1024 + 3 * CHUNK  # it did not read the other 63 MB
    assert files_in(tmp_path) == []


def test_a_second_file_over_the_limit_removes_the_first(tmp_path):
    store = ArtifactStore(tmp_path)
    request = fake_request(body_chunks({}, [("file", "a.jsonl", 1000), ("eval_file", "b.jsonl", 5000)]))
    with pytest.raises(TooLarge):
        receive(request, store, max_bytes=2000)
    assert files_in(tmp_path) == []


def test_a_body_cut_off_in_a_file_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)
    chunks = list(body_chunks({}, [("file", "a.jsonl", 200_000)], finish=False))[:-1]
    with pytest.raises(InvalidInput) as err:
        receive(fake_request(chunks), store)
    assert "cut off" in err.value.message
    assert files_in(tmp_path) == []


def test_empty_file_inputs_and_unknown_file_fields_are_skipped(tmp_path):
    store = ArtifactStore(tmp_path)
    got = receive(fake_request(body_chunks({"seed": "7"}, [
        ("file", "", 10), ("other", "x.bin", 100), ("eval_file", "C:\\Users\\me\\eval.jsonl", 50)])), store)
    assert got.fields == {"seed": "7"}
    assert list(got.files) == ["eval_file"]
    assert got.files["eval_file"].filename == "eval.jsonl"
    assert len(files_in(tmp_path)) == 1


def test_not_multipart_or_malformed_is_a_clear_error(tmp_path):
    store = ArtifactStore(tmp_path)
    request = fake_request([b"garbage without any boundary at all"])
    with pytest.raises(InvalidInput):
        receive(request, store)
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", b"application/json")]}
    with pytest.raises(InvalidInput) as err:
        receive(Request(scope), store)
    assert "multipart/form-data" in err.value.message
    assert files_in(tmp_path) == []


def test_clean_filename_and_sizes():
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("C:\\data\\set.csv") == "set.csv"
    assert clean_filename("a\x00b\n.jsonl") == "ab.jsonl"
    assert clean_filename("") == ""
    assert human_bytes(512) == "512 bytes"
    assert human_bytes(2 * 1024**3) == "2.0 GB"


# -- through HTTP ---------------------------------------------------------------------------


def _rows(db) -> list[Dataset]:
    db.expire_all()
    return list(db.query(Dataset))


def _stored(settings) -> list[Path]:
    return files_in(Path(settings.artifact_dir) / "teams") if (Path(settings.artifact_dir) / "teams").exists() else []


def test_streamed_and_form_parsed_uploads_store_the_same_bytes(client, db, settings, sent):
    token = log_in(client, make_account(db))
    data = b'{"prompt": "a", "completion": "b"}\n' * 5000
    streamed = client.post("/datasets", files={"file": ("one.jsonl", data)}, data={"name": "one"},
                           headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert streamed.status_code == 201, streamed.text
    parsed = client.post("/datasets", files={"file": ("two.jsonl", data)},
                         data={"name": "two", "goal": "code", "csrf_token": token}, follow_redirects=False)
    assert parsed.status_code == 303, parsed.text
    rows = sorted(_rows(db), key=lambda r: r.id)
    assert parsed.headers["location"] == f"/datasets/{rows[1].id}"
    assert streamed.json()["url"] == f"/datasets/{rows[0].id}"
    assert [r.name for r in rows] == ["one", "two"]
    assert {r.sha256 for r in rows} == {hashlib.sha256(data).hexdigest()}
    assert {r.size_bytes for r in rows} == {len(data)}
    assert len(sent) == 2


def test_no_file_or_an_empty_file_name_is_refused(client, db, settings, sent):
    token = log_in(client, make_account(db))
    headers = {"X-CSRF-Token": token, "Accept": "application/json"}
    r = client.post("/datasets", data={"name": "x"}, files={"other": ("o.txt", b"x")}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["message"] == "Choose a dataset file to upload."
    r = client.post("/datasets", files={"file": ("", b"")}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["param"] == "file"
    assert _rows(db) == [] and _stored(settings) == [] and sent == []


@pytest.mark.parametrize("path", ["streamed", "form"])
def test_over_the_limit_is_413_with_no_file_and_no_row(client, app, db, settings, sent, path):
    app.state.settings = settings.model_copy(update={"max_upload_bytes": 10_000})
    token = log_in(client, make_account(db))
    data = b'{"prompt": "a", "completion": "b"}\n' * 1000
    extra = {"headers": {"X-CSRF-Token": token}} if path == "streamed" else {"data": {"csrf_token": token}}
    r = client.post("/datasets", files={"file": ("big.jsonl", data)}, **extra)
    assert r.status_code == 413
    assert "larger than the upload limit of 9.8 KB" in r.text
    assert _rows(db) == [] and _stored(settings) == [] and sent == []


def test_the_api_streams_too(client, db, settings, sent):
    key = make_api_key(db, make_account(db))
    data = b'{"input": "a", "output": "b"}\n' * 100
    r = client.post("/api/v1/datasets", files={"file": ("api.jsonl", data)}, data={"seed": "3"},
                    headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest() and r.json()["split_seed"] == 3
