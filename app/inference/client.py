"""The web's client of the inference process (worker/inference/server.py), over HTTP.

The web never loads a model: it sends the directories it resolved from its own rows, with a
token derived from the secret key, and relays the answer (or the stream of pieces).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.errors import InvalidInput, StudioError, Unavailable

if TYPE_CHECKING:
    import httpx


def _client(settings: Settings) -> httpx.Client:
    # httpx is imported on the first request, not at start: with it come rich and click (its
    # command line), a fifth of the web's start-up time.
    import httpx

    timeout = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=30.0)
    return httpx.Client(base_url=settings.inference_url, timeout=timeout)


def service_token(settings: Settings) -> str:
    """What the web presents to the inference process (both read the same secret key)."""
    return hashlib.sha256(f"studio-inference:{settings.resolved_secret_key()}".encode()).hexdigest()


@dataclass(frozen=True)
class Target:
    """Directories resolved from database rows, never from what a caller sent."""

    base: str
    adapter: str | None = None


class InferenceFailed(StudioError):
    status_code = 502
    code = "inference_failed"


def _unreachable(settings: Settings) -> Unavailable:
    return Unavailable(f"The inference server at {settings.inference_url} is not reachable. Start it with "
                       "`studio inference` (or `studio up`), or set STUDIO_INFERENCE_URL.")


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = json.loads(response.read()).get("detail")
    except ValueError:
        detail = None
    message = detail if isinstance(detail, str) else f"The inference server answered {response.status_code}."
    if response.status_code == 422:
        raise InvalidInput(message)
    raise InferenceFailed(message)


def _payload(target: Target, params: dict[str, Any], stream: bool) -> dict[str, Any]:
    return {"base": target.base, "adapter": target.adapter, "stream": stream, **params}


def generate(settings: Settings, target: Target, params: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {service_token(settings)}"}
    import httpx

    try:
        with _client(settings) as client:
            response = client.post("/generate", json=_payload(target, params, False), headers=headers)
    except httpx.TransportError:
        raise _unreachable(settings) from None
    _raise_for(response)
    return response.json()


def open_stream(settings: Settings, target: Target, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Opens the stream first (so an unreachable server or a refusal is an ordinary error before
    any byte is sent), then yields the server's NDJSON items."""
    headers = {"Authorization": f"Bearer {service_token(settings)}"}
    import httpx

    client = _client(settings)
    try:
        request = client.build_request("POST", "/generate", json=_payload(target, params, True), headers=headers)
        response = client.send(request, stream=True)
        _raise_for(response)
    except httpx.TransportError:
        client.close()
        raise _unreachable(settings) from None
    except BaseException:
        client.close()
        raise

    def items() -> Iterator[dict[str, Any]]:
        try:
            yield from ndjson_items(response.iter_bytes())
        finally:
            response.close()
            client.close()

    return items()


def ndjson_items(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The items of an NDJSON stream read in chunks as they arrive; the text pieces ({"delta"})
    that came in one chunk (the web fell behind the tokens) are joined into one item, so the
    web sends one event for them instead of one per token. The text is the same."""
    buffer = b""
    for chunk in chunks:
        *lines, buffer = (buffer + chunk).split(b"\n")
        yield from _joined_deltas(json.loads(line) for line in lines if line.strip())
    if buffer.strip():
        yield json.loads(buffer)


def _joined_deltas(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``items`` with each run of consecutive {"delta"} items made one."""
    pending: dict[str, Any] | None = None
    for item in items:
        if item.keys() == {"delta"}:
            if pending is None:
                pending = item
            else:
                pending["delta"] += item["delta"]
            continue
        if pending is not None:
            yield pending
            pending = None
        yield item
    if pending is not None:
        yield pending


async def merged_lines(streams: dict[str, Iterator[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """The items of several streams as they come, each tagged with its name; when the reader goes
    away, each stream is closed at its next item (which stops its generation)."""
    lines: asyncio.Queue = asyncio.Queue()
    loop, stop = asyncio.get_running_loop(), threading.Event()

    def pump(who: str, items: Iterator[dict[str, Any]]) -> None:
        try:
            for item in items:
                loop.call_soon_threadsafe(lines.put_nowait, {"who": who, **item})
                if stop.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - told to the page as this answer's error
            loop.call_soon_threadsafe(lines.put_nowait, {"who": who, "error": str(exc)})
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(lines.put_nowait, None)

    for who, items in streams.items():
        threading.Thread(target=pump, args=(who, items), daemon=True, name=f"stream-{who}").start()
    try:
        ended = 0
        while ended < len(streams):
            item = await lines.get()
            if item is None:
                ended += 1
            else:
                yield json.dumps(item).encode() + b"\n"
    finally:
        stop.set()
