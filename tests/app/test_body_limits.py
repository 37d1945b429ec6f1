"""Oversized request bodies against a real web process (`studio serve`): each is refused with
413 (or 400 for too many fields) before it is buffered, and the process's memory stays flat.

The body is sent over a raw socket, chunked or with a Content-Length, by a thread that stops
when the server stops reading; another thread reads the answer as soon as it comes. The web
process's peak resident memory (VmHWM in /proc/<pid>/status) after all of them is compared
with its resident memory (VmRSS) before.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import httpx
import pytest

from tests.factories import make_account, make_api_key
from tests.processes import Processes, free_port, wait_for

UPLOAD_LIMIT = 1024 * 1024  # STUDIO_MAX_UPLOAD_BYTES in the web process
BIG = 300 * 1024 * 1024
CHUNK = 256 * 1024
MAX_GROWTH = 50 * 1024 * 1024

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)



def _kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


@pytest.fixture
def web(settings, db, tmp_path):
    port = free_port()
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir),
           "STUDIO_DATABASE_URL": settings.database_url, "STUDIO_BROKER_URL": settings.broker_url,
           "STUDIO_SECRET_KEY": settings.secret_key, "STUDIO_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
           "HF_HUB_OFFLINE": "1"}
    procs = Processes(env, tmp_path)
    proc = procs.start("web", "serve", "--port", str(port))
    try:
        wait_for(lambda: _up(port), 60, "the web process", log=tmp_path / "web.log")
        yield {"port": port, "pid": proc.pid, "key": make_api_key(db, make_account(db))}
    finally:
        procs.stop()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Sent:
    """One request whose body is streamed by a thread; the answer is read as it comes."""

    def __init__(self, port: int, path: str, headers: dict[str, str], body_size: int,
                 head: bytes = b"", chunked: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sent, self.answer, self.sent_when_answered = 0, b"", None
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(head) + body_size}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.head, self.size, self.chunked = head, body_size, chunked
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer.start()
        self.reader.start()

    def _piece(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data

    def _write(self) -> None:
        block = b"x" * CHUNK
        try:
            if self.head:
                self.sock.sendall(self._piece(self.head))
            while self.sent < self.size and self.sent_when_answered is None:
                self.sock.sendall(self._piece(block))
                self.sent += CHUNK
            if self.chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection: it stopped reading
            pass

    def _read(self) -> None:
        try:
            while b"\r\n\r\n" not in self.answer or len(self.answer) < self._length():
                data = self.sock.recv(65536)
                if not data:
                    break
                if not self.answer:
                    self.sent_when_answered = self.sent
                self.answer += data
        except OSError:
            pass

    def _length(self) -> int:
        head, _, _ = self.answer.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(head) + 4 + int(line.split(b":")[1])
        return 1 << 62

    def result(self, timeout: float = 30) -> tuple[int, dict]:
        self.reader.join(timeout)
        self.sock.close()
        self.writer.join(5)
        assert self.answer, f"no answer after {timeout} s ({self.sent:,} bytes sent)"
        head, _, body = self.answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body or b"{}")


def _multipart_head(boundary: str, name: str = "file") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"big.jsonl\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def test_oversized_bodies_are_refused_early_and_memory_stays_flat(web):
    port, pid = web["port"], web["pid"]
    bearer = {"Authorization": f"Bearer {web['key']}"}
    boundary = uuid.uuid4().hex
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    rss_before = _kib(pid, "VmRSS")
    started = time.monotonic()

    cases = {
        # the API upload, chunked and declared: the file passes STUDIO_MAX_UPLOAD_BYTES
        "api upload, chunked": ("/api/v1/datasets", {**bearer, **multipart}, True),
        "api upload, declared": ("/api/v1/datasets", {**bearer, **multipart}, False),
        # the browser form (no key, no CSRF header): the framework would spool it whole to read
        # its CSRF field; it is cut at the upload bound instead
        "browser upload, chunked": ("/datasets", multipart, True),
        # a multipart form where no upload is taken: the JSON limit
        "form elsewhere, chunked": ("/login", multipart, True),
        "openai files, chunked": ("/v1/files", {**bearer, **multipart}, True),
        # JSON over max_json_bytes
        "json, chunked": ("/v1/chat/completions", {**bearer, "Content-Type": "application/json"}, True),
        "json, declared": ("/api/v1/runs", {**bearer, "Content-Type": "application/json"}, False),
    }
    for what, (path, headers, chunked) in cases.items():
        head = _multipart_head(boundary) if "multipart" in headers.get("Content-Type", "") else b'{"x": "'
        request = Sent(port, path, headers, BIG, head=head, chunked=chunked)
        status, body = request.result()
        assert status == 413, (what, status, body)
        assert body["error"]["type"] == "too_large", what
        assert "larger than" in body["error"]["message"], what
        assert request.sent_when_answered is not None and request.sent_when_answered < 64 * 1024 * 1024, (
            what, request.sent_when_answered)  # refused early, not after reading 300 MB

    growth = _kib(pid, "VmHWM") - rss_before
    print(f"web process: VmRSS before {rss_before / 2**20:.0f} MiB, peak growth "
          f"{growth / 2**20:.1f} MiB over {len(cases)} bodies of 300 MB "
          f"({time.monotonic() - started:.1f} s)")
    assert growth < MAX_GROWTH
    assert _up(port)  # and it still serves


def test_too_many_form_fields_get_400(web):
    port = web["port"]
    fields = "&".join(f"f{i}=1" for i in range(10_000))
    r = httpx.post(f"http://127.0.0.1:{port}/login", content=fields,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "Too many fields" in r.text
    boundary = uuid.uuid4().hex
    parts = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n1\r\n"
                    for i in range(10_000)) + f"--{boundary}--\r\n"
    for path, headers in (("/datasets", {}), ("/api/v1/datasets", {"Authorization": f"Bearer {web['key']}"})):
        r = httpx.post(f"http://127.0.0.1:{port}{path}", content=parts.encode(),
                       headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert "fields" in r.text  # a page for the browser, the error shape for the API
