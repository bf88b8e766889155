"""Request bodies bounded before anything reads them: ASGI middleware, outermost in the app.

FastAPI reads a JSON body whole before it runs a route's dependencies, token checks
included, so without this a client with no token could make the fleet hold any body it
sends (400 MB took 1.4 GB) before it hears 401. :class:`BoundedBodies` looks at a request
first:

- On an app with tokens (:func:`edgetally.fleet.http.auth.install_auth`), a request that
  carries a body (a Content-Length above 0, a chunked one, or any POST, PUT or PATCH)
  needs a known bearer token: without one it is answered 401 before a byte of its body
  is read. Its role is the route's to check (403).
- A body is at most ``max_body`` bytes (1 MiB; the API's JSON bodies are a few hundred
  bytes): a larger Content-Length is 413 at once, and a body that passes the limit as it
  arrives (chunked, or longer than announced) is cut off there with 413.
- The streaming uploads (:data:`STREAMING_UPLOADS`: ``PUT /bundles``) are written to disk
  as they arrive and keep their own limit (``fleet serve --max-bundle-mb``), so only the
  token is checked here.
"""

from __future__ import annotations

import json
from typing import Any

from edgetally.fleet.http.auth import Authenticator, authenticate_header, stored_tokens
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1 << 20
BUNDLE_UPLOAD_PATH = "/bundles"
# (method, path) of the routes that stream their body to disk under their own limit.
STREAMING_UPLOADS = frozenset({("PUT", BUNDLE_UPLOAD_PATH)})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    # the unread body stays unread: the connection closes after this answer
    raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes, the most this endpoint takes"


class BoundedBodies:
    """See the module's docstring. ``streaming``: (method, path) pairs whose body the route
    bounds itself (token still checked first)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int = DEFAULT_MAX_BODY_BYTES,
        streaming: frozenset[tuple[str, str]] = STREAMING_UPLOADS,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.streaming = streaming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        has_body = (
            chunked
            or scope["method"] in _BODY_METHODS
            or (declared is not None and declared.strip() not in ("", "0"))
        )
        if not has_body:
            await self.app(scope, receive, send)
            return
        tokens: Authenticator | None = stored_tokens(scope.get("app"))
        if tokens is not None:
            principal, why = authenticate_header(headers.get("authorization", ""), tokens)
            if principal is None:
                await _answer(send, 401, why, {"WWW-Authenticate": "Bearer"})
                return
        if (scope["method"], scope["path"]) in self.streaming:
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit), {})
            return
        await self._capped(scope, receive, send, limit)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The app with a receive that stops at ``limit`` bytes: past it, 413 goes out (if
        the app has not answered yet), the app is told the client left, and what it would
        answer to a cut-off body is dropped."""
        state: dict[str, Any] = {"received": 0, "refused": False, "started": False}

        async def limited() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _answer(send, 413, _too_large(limit), {})
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited, guarded)
