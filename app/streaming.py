"""A streamed response that always closes what it streams.

When a client leaves while Starlette is sending a chunk, the response's task is cancelled at that
`send`, and the generator that produced the chunk stays suspended at its `yield`: its `finally`
(which stops a generation, or closes the upstream stream of an inference answer) would run only
when the garbage collector finds it, seconds or minutes later, while the generation goes on for
nobody. This response closes its iterator as soon as the response ends, however it ends.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    def __init__(self, content: Any, *args: Any, **kwargs: Any) -> None:
        self._source = content
        super().__init__(content, *args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                if hasattr(self._source, "aclose"):
                    await self._source.aclose()
                elif hasattr(self._source, "close"):
                    self._source.close()
