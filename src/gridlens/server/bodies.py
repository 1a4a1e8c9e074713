"""Reading request bodies with a size limit, before any of it is parsed or kept.

Every endpoint that takes a photo or a form reads its body through these, so an oversized
request is refused (:class:`~gridlens.server.ingest.PayloadTooLarge`, HTTP 413) from its
``Content-Length`` or as soon as the bytes received pass the limit, never after it was read
whole.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import Message

from gridlens.server.ingest import PayloadTooLarge

__all__ = ["read_body", "read_form"]


def _check_declared(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the {what} is {int(declared):,} bytes; the limit is {limit:,}")


async def read_body(request: Request, limit: int, what: str = "photo") -> bytes:
    """The whole body of ``request``, refused once it passes ``limit`` bytes."""
    _check_declared(request, limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the {what} is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(
    request: Request, limit: int, *, what: str = "upload", **form_options: Any
) -> FormData:
    """The multipart form of ``request``, parsed while its bytes are counted; refused once
    they pass ``limit``. ``form_options`` go to :meth:`starlette.requests.Request.form`."""
    _check_declared(request, limit, what)
    seen = 0
    receive = request.receive

    async def counted() -> Message:
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"the {what} is over the {limit:,}-byte limit")
        return msg

    return await Request(request.scope, counted).form(**form_options)
