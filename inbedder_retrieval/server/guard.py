"""The outer layer of every request: API key, body size limit, request metrics.

A plain ASGI middleware, so it sees the raw request before any parsing and can refuse it
without reading more than ``max_body_bytes``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from .metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: served without the API key: the health probe and the explorer's static shell (the
#: page asks for the key and sends it with every API call)
PUBLIC_PATHS = frozenset({"/health", "/", "/explorer.js", "/explorer.css", "/favicon.ico"})


def error_body(message: str, kind: str, param: str | None = None, **extra: Any) -> dict[str, Any]:
    """OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``) plus extras."""
    return {"error": {"message": message, "type": kind, "param": param, "code": kind, **extra}}


class Guard:
    """Refuses requests without the API key (constant-time comparison) and bodies over the
    limit (413), and counts every request in the metrics under its route template."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, metrics: ServerMetrics) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._check_key(scope)
            if refusal is None:
                receive, refusal = await self._read_body(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send_counted)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(scope["method"], route, status, time.perf_counter() - started)

    def _check_key(self, scope: Scope) -> JSONResponse | None:
        if self._expected is None or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            return None
        given = Headers(scope=scope).get("authorization", "").encode()
        if hmac.compare_digest(given, self._expected):
            return None
        message = "missing API key: send 'Authorization: Bearer <key>'" if not given else "invalid API key"
        return JSONResponse(error_body(message, "authentication_error"), 401, headers={"WWW-Authenticate": "Bearer"})

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[Receive, JSONResponse | None]:
        """Read the whole body (at most the limit) and replay it to the app."""
        too_large = JSONResponse(error_body(
            f"request body exceeds the limit of {self.max_body_bytes} bytes (max_body_bytes)",
            "limit_exceeded", limit="max_body_bytes", value=self.max_body_bytes), 413)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return receive, too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return receive, None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return receive, too_large
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, None
