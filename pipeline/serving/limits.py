"""ASGI middleware that caps request bodies, because BentoML 1.4 has no request size limit,
and refuses paths with control characters before BentoML's router sees them.

`max_request_size` was dropped with config v2, so without this a 100 MB POST is read into
memory in full before any handler can refuse it. Checking Content-Length refuses honest
clients at once; counting the streamed bytes catches chunked or lying ones.

Why the overflow is a RequestError (status 413) and not a private exception: it is raised inside
the app's `await request.body()`, where the routes' own handlers see it first. A private type
fell through to the catch-all handler and came back as a 500 (issue 15.7); as a RequestError
every route answers 413, and the middleware still answers 413 itself if nothing else did.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.serving.errors import RequestError

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyTooLarge(RequestError):
    """The streamed body passed the cap: a 413 wherever it surfaces."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__([f"body: request body over {max_bytes} bytes"], 413)


class BodySizeLimit:
    """413 for any request whose body exceeds `max_bytes`; everything else passes through untouched."""

    def __init__(self, app: Any, max_bytes: int = 1 << 20) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(send, 400, "bad Content-Length header")
                    return
                if declared > self.max_bytes:
                    await self._reply(send, 413, f"request body over {self.max_bytes} bytes")
                    return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._reply(send, 413, f"request body over {self.max_bytes} bytes")

    @staticmethod
    async def _reply(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"error": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F))


class PathGuard:
    """400 (JSON) for a path holding a control character, e.g. `/cached_score/a%0Ab`.

    Why: BentoML mounts Keel's app at "/" with a route pattern whose `.` does not match a newline,
    so such a path never reached Keel's routes and came back as Starlette's text/plain 404 (found by
    the schemathesis suite). No entity id or route contains one; refusing it here keeps every
    answer JSON.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not CONTROL.isdisjoint(scope.get("path", "")):
            await BodySizeLimit._reply(send, 400, "path: control characters are not allowed")
            return
        await self.app(scope, receive, send)
