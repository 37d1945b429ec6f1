"""The inference process's /generate over HTTP with a real engine on a tiny model: a stream's
lines (pieces, then the whole answer) match the plain answer, and a stream closed by its reader
stops its generation at the next token."""

from __future__ import annotations

import json
import shutil
import time

MESSAGES = [{"role": "user", "content": "Bonjour, ma facture est fausse."}]


def test_generate_streams_lines_and_a_closed_stream_stops_its_answer(settings, tiny_model_dir):
    from fastapi.testclient import TestClient

    from app.inference.client import service_token
    from worker.inference.engine import Engine
    from worker.inference.server import create_inference_app

    model = shutil.copytree(tiny_model_dir, settings.model_dir / "tiny")
    tickets = []

    class Recording(Engine):  # records each request's ticket when it is queued
        def submit(self, req):
            ticket = super().submit(req)
            tickets.append(ticket)
            return ticket

    engine = Recording()
    app = create_inference_app(settings, engine)
    headers = {"Authorization": f"Bearer {service_token(settings)}"}
    body = {"base": str(model), "messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    with TestClient(app) as client:
        plain = client.post("/generate", json=body, headers=headers).json()
        assert plain["completion_tokens"] > 0 and plain["finish_reason"] in ("stop", "length")
        r = client.post("/generate", json={**body, "stream": True}, headers=headers)
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert "".join(line.get("delta", "") for line in lines) == plain["text"] == lines[-1]["text"]
        assert lines[-1]["done"] and lines[-1]["completion_tokens"] == plain["completion_tokens"]

        with client.stream("POST", "/generate", json={**body, "max_tokens": 4000, "stream": True},
                           headers=headers) as r:
            first = next(r.iter_lines())
            assert "delta" in json.loads(first) or "note" in json.loads(first)
        # leaving the `with` waited for the response to end: the answer is cancelled now, and
        # ends at its next token (or before its batch, if it was still queued behind the last one)
        long = next(t for t in tickets if t.req.max_tokens == 4000)
        assert long.cancelled
        deadline = time.monotonic() + 120
        while not long.done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert long.cancelled and long.done and len(long.tokens) < 4000  # stopped, not run to the end
        assert client.post("/generate", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_web_joins_the_pieces_that_arrived_together_and_keeps_the_text():
    from app.inference.client import ndjson_items

    chunks = [b'{"note": "wait"}\n{"delta": "Bon"}\n{"delta": "jour"}\n{"del', b'ta": " \\u00e0\\n"}\n',
              b'{"delta": "vous"}\n{"done": true, "text": "Bonjour \\u00e0\\nvous"}\n']
    items = list(ndjson_items(iter(chunks)))
    assert items == [{"note": "wait"}, {"delta": "Bonjour"}, {"delta": " à\n"}, {"delta": "vous"},
                     {"done": True, "text": "Bonjour à\nvous"}]
    assert list(ndjson_items(iter([b'{"delta": "a"}\n', b'{"delta": "b"}']))) == [{"delta": "a"}, {"delta": "b"}]
