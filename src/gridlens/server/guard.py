"""What every route checks before it reads a byte of its body.

:class:`GuardedRoute` is the route class of the REST API and of the dashboard. Before the
endpoint (and FastAPI's parsing of the body) runs, it

1. refuses a write authenticated by the session cookie whose ``Origin`` (or ``Referer``)
   is not this server (:func:`gridlens.server.auth.same_origin`), 403;
2. runs the route's credential dependencies (:data:`gridlens.server.auth.PRE_BODY`): no
   or bad credentials 401, the wrong role or device 403, so nobody unknown makes the
   server read, parse or keep a body;
3. refuses a body whose ``Content-Length`` is over the route's limit (413), and stops
   reading one that passes it while it streams in (413).

Limits: :data:`JSON_MAX_BYTES` unless the endpoint is marked with :func:`body_limit`
(a number of bytes, or a function of the server :class:`~gridlens.server.settings.Settings`).
``body_limit(None)`` marks an endpoint that reads its body itself through
:mod:`gridlens.server.bodies` with a limit of its own (to answer 413 in its own words).

:class:`PageRoute` is the dashboard's: there every write must come from this server's own
pages, whether or not a cookie came with it (the login form too). A subclass may render a
refusal (:meth:`GuardedRoute.refusal`) as a page instead of the API's JSON error.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from gridlens.server import auth
from gridlens.server.settings import Settings

__all__ = ["JSON_MAX_BYTES", "GuardedRoute", "PageRoute", "body_limit"]

#: Largest request body of a route without its own limit (JSON documents, forms). [bytes]
JSON_MAX_BYTES = 128 * 1024

_F = TypeVar("_F", bound=Callable[..., Any])
_ATTR = "__gridlens_body_limit__"
Limit = int | Callable[[Settings], int] | None

CROSS_ORIGIN = HTTPException(
    403,
    "cross-origin request refused: a write with the session cookie must come from this "
    "server's own pages (send Origin), or use a bearer token",
)


def body_limit(limit: Limit) -> Callable[[_F], _F]:
    """Mark an endpoint's body limit: bytes, or a function of the server settings."""

    def mark(fn: _F) -> _F:
        setattr(fn, _ATTR, limit)
        return fn

    return mark


def _too_large(size: int | None, limit: int) -> HTTPException:
    if size is None:
        return HTTPException(413, f"the request body is over this route's {limit:,}-byte limit")
    return HTTPException(
        413, f"the request body is {size:,} bytes; this route's limit is {limit:,}"
    )


class GuardedRoute(APIRoute):
    """An API route that checks origin, credentials and body size before reading the body."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.pre_body = [d.call for d in self.dependant.dependencies if d.call in auth.PRE_BODY]
        self.limit: Limit = getattr(endpoint, _ATTR, JSON_MAX_BYTES)

    def cross_origin(self, request: Request) -> bool:
        """A write that must prove its origin and does not: here, one by cookie."""
        return auth.cookie_write(request) and not auth.same_origin(request)

    def refusal(self, request: Request, exc: HTTPException) -> Response | None:
        """The response to a refused request; None raises ``exc`` (the API's JSON error)."""
        return None

    async def check(self, request: Request) -> None:
        """Raise the first refusal: cross-origin, credentials, declared body size."""
        if self.cross_origin(request):
            raise CROSS_ORIGIN
        for call in self.pre_body:
            assert call is not None
            await run_in_threadpool(call, request)
        limit = self.body_bytes(request)
        declared = request.headers.get("content-length", "")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)

    def body_bytes(self, request: Request) -> int | None:
        if callable(self.limit):
            settings: Settings = request.app.state.settings
            return int(self.limit(settings))
        return self.limit

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                await self.check(request)
            except HTTPException as exc:
                response = self.refusal(request, exc)
                if response is None:
                    raise
                return response
            limit = self.body_bytes(request)
            if limit is not None:
                request = Request(request.scope, _capped(request.receive, limit))
            return await handler(request)

        return guarded


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise _too_large(None, limit)
        return msg

    return counted


class PageRoute(GuardedRoute):
    """A dashboard route: every write must come from this server's pages, with or without
    a session cookie."""

    def cross_origin(self, request: Request) -> bool:
        return request.method not in auth.SAFE_METHODS and not auth.same_origin(request)
