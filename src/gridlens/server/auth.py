"""Who is calling: bearer tokens (users, devices) and dashboard session cookies.

Failures never say which part was wrong: an unknown, expired or revoked token and a missing
one all get the same 401; a valid principal without the right gets 403.

A browser sends the session cookie with every request to this server, whichever page asked
for it, so a request that changes something (any method but GET, HEAD and OPTIONS) and is
authenticated by the cookie must also say where it comes from: its ``Origin`` (else its
``Referer``) must name this server (:func:`same_origin`). Bearer tokens are never sent by a
browser on its own, so they need no such check. :class:`gridlens.server.guard.GuardedRoute`
applies the rule to every route, before the body is read.

The dependencies below (:func:`viewer`, :func:`operator`, :func:`admin`, :func:`device`,
:func:`device_or_viewer`) take only the request, so the route guard can run them before the
body; the principal is looked up once per request.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection

from gridlens.store.repo import Principal, Store

__all__ = [
    "PRE_BODY",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "Admin",
    "Device",
    "DeviceOrViewer",
    "Operator",
    "Viewer",
    "admin",
    "bearer",
    "cookie_write",
    "device",
    "device_or_viewer",
    "operator",
    "principal",
    "require_device",
    "require_user",
    "same_origin",
    "viewer",
]

SESSION_COOKIE = "gridlens_session"
#: Methods that change nothing; every other one is a write.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNAUTHORIZED = HTTPException(
    401, "invalid or missing credentials", headers={"WWW-Authenticate": "Bearer"}
)
_FORBIDDEN = HTTPException(403, "not allowed")
_SCOPE_KEY = "gridlens.principal"  # (principal or None, by cookie), once per request


def bearer(request: HTTPConnection) -> str | None:
    h = request.headers.get("authorization")
    if h:
        scheme, _, token = h.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return ""  # present but malformed: still a 401, never a fallback to the cookie
    return None


def cookie_write(request: HTTPConnection) -> bool:
    """Whether this is a write (not GET, HEAD, OPTIONS) that the session cookie would
    authenticate: no ``Authorization`` header, a session cookie present."""
    return (
        request.scope.get("method", "GET") not in SAFE_METHODS
        and bearer(request) is None
        and bool(request.cookies.get(SESSION_COOKIE))
    )


def _strip_default_port(netloc: str) -> str:
    netloc = netloc.strip().lower()
    for port in (":80", ":443"):
        if netloc.endswith(port):
            return netloc[: -len(port)]
    return netloc


def same_origin(request: HTTPConnection) -> bool:
    """True when the request's ``Origin`` (or, without one, ``Referer``) names this server:
    the same host and port as ``Host`` (or ``X-Forwarded-Host`` behind a proxy).

    A request that names neither is not known to come from this server's pages and is
    False: browsers send ``Origin`` with every POST, PATCH and DELETE, same-origin ones
    included. ``Origin: null`` (sandboxed frames, some redirects) is False too.
    """
    src = request.headers.get("origin") or request.headers.get("referer")
    if src is None:
        return False
    parts = urlsplit(src.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    hosts = {
        _strip_default_port(h)
        for key in ("host", "x-forwarded-host")
        for h in request.headers.get(key, "").split(",")
        if h.strip()
    }
    return _strip_default_port(parts.netloc) in hosts


def principal(request: HTTPConnection, *, allow_cookie: bool = True) -> Principal:
    """The caller (bearer token, else the session cookie when ``allow_cookie``); 401 when
    there is none. Looked up in the database once per request."""
    hit: tuple[Principal | None, bool] | None = request.scope.get(_SCOPE_KEY)
    if hit is None:
        store: Store = request.app.state.store
        token = bearer(request)
        by_cookie = token is None
        if by_cookie:
            token = request.cookies.get(SESSION_COOKIE)
        hit = (store.resolve(token) if token else None, by_cookie)
        request.scope[_SCOPE_KEY] = hit
    p, by_cookie = hit
    if p is None or (by_cookie and not allow_cookie):
        raise _UNAUTHORIZED
    return p


def require_user(request: HTTPConnection, role: str = "viewer") -> Principal:
    p = principal(request)
    if p.kind != "user" or not p.can(role):
        raise _FORBIDDEN
    return p


def _path_device_id(request: HTTPConnection) -> int | None:
    raw = request.path_params.get("device_id")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def require_device(request: HTTPConnection, device_id: int | None) -> Principal:
    """The device whose own token this is (never a cookie); 403 for any other."""
    p = principal(request, allow_cookie=False)
    if p.kind != "device" or device_id is None or p.device_id != device_id:
        raise _FORBIDDEN
    return p


def viewer(request: Request) -> Principal:
    return require_user(request, "viewer")


def operator(request: Request) -> Principal:
    return require_user(request, "operator")


def admin(request: Request) -> Principal:
    return require_user(request, "admin")


def device(request: Request) -> Principal:
    """The device of the ``{device_id}`` in the path, by its upload token."""
    return require_device(request, _path_device_id(request))


def device_or_viewer(request: Request) -> Principal:
    """The device of the path (its token) or any user who may view."""
    p = principal(request)
    if p.kind == "device":
        return require_device(request, _path_device_id(request))
    return require_user(request, "viewer")


#: The dependencies :class:`~gridlens.server.guard.GuardedRoute` runs before the body.
PRE_BODY = frozenset({viewer, operator, admin, device, device_or_viewer})

Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
Admin = Annotated[Principal, Depends(admin)]
Device = Annotated[Principal, Depends(device)]
DeviceOrViewer = Annotated[Principal, Depends(device_or_viewer)]
