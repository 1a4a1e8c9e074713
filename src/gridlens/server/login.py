"""Logging in and out of the dashboard.

``GET /login``
    The form.
``POST /login``
    Checks the password; sets the session cookie (``gridlens_session``: HttpOnly,
    SameSite=Lax, Secure over https) and goes to ``next`` (local paths only). Wrong
    passwords are audited and slowed down (:mod:`gridlens.store.logins`): past the free
    attempts, a 429 page with ``Retry-After`` until the back-off has passed. At most
    :data:`PASSWORD_CHECKS` passwords are checked at a time per process (scrypt takes
    16 MB and tens of milliseconds each); the others wait their turn.
``POST /logout``
    Revokes the session.

Like every dashboard write, both POSTs must come from this server's own pages
(:class:`gridlens.server.pages.DashboardRoute`).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gridlens.server.auth import SESSION_COOKIE
from gridlens.server.pages import DashboardRoute, field, page, store_of
from gridlens.store import logins
from gridlens.store.models import User
from gridlens.store.repo import Store

__all__ = ["PASSWORD_CHECKS", "router", "safe_next"]

#: Passwords checked at the same time by one server process.
PASSWORD_CHECKS = 2

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


def safe_next(target: str | None) -> str:
    """A local path to go to after logging in; anything else becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "password_checks", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(PASSWORD_CHECKS)
        state.password_checks = limiter
    return limiter


def _attempt(store: Store, name: str, password: str, address: str | None) -> User | float | None:
    """The user when the password is right; the seconds to wait when throttled; else None
    (and the failure audited)."""
    wait = logins.retry_after(store, name, address)
    if wait > 0:
        return wait
    user = store.check_password(name, password)
    if user is None:
        logins.record_failure(store, name, address)
    return user


def _form_page(request: Request, status: int, **context: Any) -> Response:
    headers = context.pop("headers", None)
    return page(request, "login.html", None, status, headers=headers, **context)


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The login form."""
    return _form_page(request, 200, next=safe_next(next), username="", error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the password; set the session cookie and go to ``next`` (local paths only)."""
    form = await request.form(max_files=0, max_fields=10, max_part_size=16 * 1024)
    name = field(form, "username", 64).strip()
    password = field(form, "password", 1024)
    target = safe_next(field(form, "next", 2000))
    store = store_of(request)
    address = request.client.host if request.client else None
    got: User | float | None = None
    if name:
        got = await anyio.to_thread.run_sync(
            _attempt, store, name, password, address, limiter=_limiter(request)
        )
    if isinstance(got, float):
        wait = max(1, math.ceil(got))
        return _form_page(
            request,
            429,
            next=target,
            username=name,
            error=f"too many wrong passwords; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    if got is None:
        return _form_page(
            request, 401, next=target, username=name, error="wrong user name or password"
        )
    ttl = float(request.app.state.settings.session_ttl_s)
    token = await run_in_threadpool(store.new_session, got, ttl)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl),
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return resp


@router.post("/logout")
def logout(request: Request) -> Response:
    """Revoke the session and go back to the login form."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        store_of(request).revoke(token)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return resp
