"""Real receivers on free local ports, each in a thread: an HTTP server that checks the studio's
signature as a team's receiver would, and an SMTP server (aiosmtpd). The browser tests use them too."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.notifications import signing


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each call with the next of `answers` (then 200); refuses a bad signature with 401."""

    url: str = ""
    secret: str = ""
    answers: list[int] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            header = self.headers.get(signing.HEADER, "")
            with receiver.lock:
                verified = bool(receiver.secret) and signing.verify(receiver.secret, header, body)
                receiver.calls.append(Call(dict(self.headers), body, verified))
                code = receiver.answers.pop(0) if receiver.answers else 200
            if not verified:
                code = 401
            reply = b'{"ok": true}' if code < 300 else b"receiver says no"
            self.send_response(code)
            if code in (301, 302, 307, 308):
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/studio"
    return receiver, server


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list = field(default_factory=list)  # email.message.Message


def start_smtp():  # noqa: ANN201
    from email import message_from_bytes

    from aiosmtpd.controller import Controller

    from tests.processes import free_port

    box = Mailbox("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
            box.messages.append(message_from_bytes(envelope.original_content or envelope.content))
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=box.host, port=box.port)
    controller.start()
    return box, controller
