"""The REST API's contract: one error shape, every status code documented, one OpenAPI
document that says what the server does.

Every error answer, whatever raised it, is an :class:`Error`::

    {"detail": "since: Input should be a valid datetime ... (query parameter)"}

``detail`` is one line for a person; a request that fails validation also lists each
problem in ``errors`` (where, what, which rule), all at once. Routes document their error
codes with :func:`errors`, which gives each the :class:`Error` schema. :func:`install`
registers the exception handlers and the OpenAPI post-processing (security schemes, no
FastAPI default validation schema left over) on an app.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridlens.errors import ConflictError, GridlensError, InputError, NotFoundError
from gridlens.server.auth import SESSION_COOKIE
from gridlens.server.ingest import PayloadTooLarge
from gridlens.store.db import DatabaseError

__all__ = [
    "DESCRIPTIONS",
    "MAX_DEVICE_ID",
    "MAX_ID",
    "CommandId",
    "DateTime",
    "DeviceId",
    "Error",
    "ErrorItem",
    "errors",
    "install",
    "status_for",
]

log = logging.getLogger("gridlens.server")

#: Largest device id: ``devices.id`` is a 32-bit INTEGER in PostgreSQL.
MAX_DEVICE_ID = 2**31 - 1
#: Largest command id: ``commands.id`` is a 64-bit BIGINT.
MAX_ID = 2**63 - 1
DeviceId = Annotated[int, Path(ge=1, le=MAX_DEVICE_ID, description="the device's id", examples=[1])]
CommandId = Annotated[int, Path(ge=1, le=MAX_ID, description="the command's id", examples=[1])]

_ISO_DATE = re.compile(r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_text(value: object) -> object:
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("not an ISO 8601 date-time such as 2026-11-21T10:00:00Z")
    return value


#: An ISO 8601 date-time (RFC 3339; without an offset it is taken as UTC). Pydantic alone
#: would also take numbers as epoch seconds or milliseconds; the contract says date-time.
DateTime = Annotated[datetime, BeforeValidator(_iso_text)]


class ErrorItem(BaseModel):
    """One problem of a request that failed validation."""

    loc: list[str | int] = Field(
        description='where: "path", "query", "header" or "body", then the field',
        examples=[["query", "since"]],
    )
    msg: str = Field(description="what is wrong", examples=["Input should be a valid datetime"])
    type: str = Field(description="which rule it broke", examples=["datetime_parsing"])


class Error(BaseModel):
    """The body of every error answer of the API."""

    detail: str = Field(
        description="what was wrong, in one line for a person",
        examples=["no device with id 7"],
    )
    errors: list[ErrorItem] | None = Field(
        None, description="request validation only: every problem found, not just the first"
    )


#: What each error status means on this API (a route may say more).
DESCRIPTIONS: dict[int, str] = {
    400: "the body cannot be parsed (e.g. JSON that is not UTF-8)",
    401: "no, unknown, expired or revoked credentials (`WWW-Authenticate: Bearer`)",
    403: "the caller lacks the role, or is not this device; or a write with the session "
    "cookie that does not come from this server's pages",
    404: "no device (or command) with this id",
    409: "another device has this name",
    413: "the request body is over this route's limit",
    415: "a body of the wrong content type",
    422: "a parameter or body outside what this document allows, or content the server "
    "cannot use (the message names each problem)",
    502: "the camera gave no photo (timeout, refused, HTTP error, not a JPEG, too large)",
    503: "the database does not answer",
}

#: Every route of the API may answer these.
COMMON = (401, 403, 422, 503)


def errors(*codes: int, **say: str) -> dict[int | str, dict[str, Any]]:
    """Responses of ``codes`` (plus :data:`COMMON`), each an :class:`Error` with its
    description; ``say`` overrides a description (``say={"e404": "..."}``)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*COMMON, *codes}):
        text = say.get(f"e{code}", DESCRIPTIONS[code])
        out[code] = {"model": Error, "description": text}
    return out


def status_for(exc: GridlensError) -> int:
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, DatabaseError):
        return 503
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InputError):
        return 422
    return 500


_WHERE = {"path": "path parameter", "query": "query parameter", "header": "header"}


def _problem(e: dict[str, Any]) -> tuple[list[str | int], str]:
    loc = [x if isinstance(x, int) else str(x) for x in e.get("loc", ())]
    msg = str(e.get("msg", "invalid"))
    ctx = e.get("ctx") or {}
    if e.get("type") == "json_invalid" and ctx.get("error"):
        msg = f"not valid JSON ({ctx['error']})"
    if not loc:
        return loc, msg
    where, rest = str(loc[0]), [str(x) for x in loc[1:]]
    if where == "body":
        field = ".".join(rest) if rest and e.get("type") != "json_invalid" else ""
        return loc, f"body{' field ' + field if field else ''}: {msg}"
    return loc, f"{'.'.join(rest) or where}: {msg} ({_WHERE.get(where, where)})"


def validation_error(exc: RequestValidationError) -> JSONResponse:
    items = []
    lines = []
    for e in exc.errors():
        loc, line = _problem(e)
        items.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
        if line not in lines:
            lines.append(line)
    detail = "; ".join(lines) or "invalid request"
    return JSONResponse({"detail": detail, "errors": items}, status_code=422)


def _flat(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, the included routers' too (FastAPI >= 0.160 keeps them unflattened)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        else:
            yield route


def _allowed(request: Request) -> str:
    """The methods the routes matching this path take (for a 405's ``Allow``)."""
    methods: set[str] = set()
    path = request.scope.get("path", "")
    for route in _flat(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """The exception handlers that give every error the :class:`Error` shape, and the
    OpenAPI document's finishing (security schemes)."""

    @app.exception_handler(GridlensError)
    async def _gridlens_error(request: Request, exc: GridlensError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "request failed",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"path": request.url.path},
        )
        return JSONResponse({"detail": "internal server error (logged)"}, status_code=500)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a user's API token (`glu_...`) or a device's upload token (`gld_...`)",
    }
    schemes["session"] = {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "the dashboard's session (`gls_...`); a write with it must send an "
        "`Origin` (or `Referer`) naming this server",
    }
    for path, item in doc.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for op in item.values():
            if isinstance(op, dict) and "responses" in op:
                op.setdefault("security", [{"bearer": []}, {"session": []}])
    return doc
