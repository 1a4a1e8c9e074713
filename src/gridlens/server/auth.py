"""Who is calling: bearer tokens (users, devices) and dashboard session cookies.

Failures never say which part was wrong: an unknown, expired or revoked token and a missing
one all get the same 401; a valid principal without the right gets 403.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from gridlens.store.repo import Principal, Store

SESSION_COOKIE = "gridlens_session"
_UNAUTHORIZED = HTTPException(
    401, "invalid or missing credentials", headers={"WWW-Authenticate": "Bearer"}
)
_FORBIDDEN = HTTPException(403, "not allowed")


def bearer(request: Request) -> str | None:
    h = request.headers.get("authorization")
    if h:
        scheme, _, token = h.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return ""  # present but malformed: still a 401, never a fallback to the cookie
    return None


def principal(request: Request, *, allow_cookie: bool = True) -> Principal:
    store: Store = request.app.state.store
    token = bearer(request)
    if token is None and allow_cookie:
        token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _UNAUTHORIZED
    p = store.resolve(token)
    if p is None:
        raise _UNAUTHORIZED
    return p


def require_user(request: Request, role: str = "viewer") -> Principal:
    p = principal(request)
    if p.kind != "user" or not p.can(role):
        raise _FORBIDDEN
    return p


def require_device(request: Request, device_id: int) -> Principal:
    p = principal(request, allow_cookie=False)
    if p.kind != "device" or p.device_id != device_id:
        raise _FORBIDDEN
    return p


def viewer(request: Request) -> Principal:
    return require_user(request, "viewer")


def operator(request: Request) -> Principal:
    return require_user(request, "operator")


def admin(request: Request) -> Principal:
    return require_user(request, "admin")
