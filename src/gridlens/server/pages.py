"""What every dashboard page shares: templates and their filters, the logged-in user, the
page frame with its security headers, error pages, and the dashboard's route class.

:mod:`gridlens.server.login`, :mod:`gridlens.server.dashboard` and
:mod:`gridlens.server.setup_pages` build their pages from these.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from gridlens import __version__
from gridlens.errors import NotFoundError
from gridlens.server.auth import SESSION_COOKIE
from gridlens.server.contract import MAX_DEVICE_ID
from gridlens.server.guard import PageRoute
from gridlens.store.models import Device
from gridlens.store.repo import Principal, Store

__all__ = [
    "STATIC",
    "TEMPLATES",
    "DashboardRoute",
    "device_or_none",
    "error_page",
    "field",
    "forbidden",
    "login_redirect",
    "no_meter",
    "page",
    "store_of",
    "templates",
    "user_or_response",
    "who",
]

HERE = Path(__file__).resolve().parent
#: CSS, JS and the vendored chart library, mounted at ``/static`` by the app.
STATIC = HERE / "static"
#: Jinja2 templates (one base layout).
TEMPLATES = HERE / "templates"
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

templates = Jinja2Templates(directory=TEMPLATES)


# ------------------------------------------------------------------------------ formatting


def _epoch(t: float | str | None) -> float | None:
    if t is None:
        return None
    if isinstance(t, int | float):
        return float(t)
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def utc(t: float | str | None, seconds: bool = True) -> str:
    """``2026-11-21 10:00:00 UTC`` from epoch seconds or ISO 8601; ``-`` for None."""
    e = _epoch(t)
    if e is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(e, UTC).strftime(fmt) + " UTC"


def ago(t: float | str | None) -> str:
    """``3 min ago`` (coarse, for people)."""
    e = _epoch(t)
    if e is None:
        return ""
    d = time.time() - e
    if d < 0:
        return "in the future"
    if d < 90:
        return f"{d:.0f} s ago"
    if d < 90 * 60:
        return f"{d / 60:.0f} min ago"
    if d < 36 * 3600:
        return f"{d / 3600:.0f} h ago"
    return f"{d / 86400:.0f} days ago"


def num(x: float | None, decimals: int | None = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{3 if decimals is None else decimals}f}"


templates.env.filters["utc"] = utc
templates.env.filters["ago"] = ago
templates.env.filters["num"] = num
templates.env.globals["version"] = __version__


# ------------------------------------------------------------------------------ who and what


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def who(request: Request) -> Principal | None:
    """The user behind the session cookie, or None (no, unknown, expired, revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    p = store_of(request).resolve(token)
    if p is None or p.kind != "user" or not p.session:
        return None
    return p


def device_or_none(store: Store, device_id: int) -> Device | None:
    """The device, or None when there is none with this id (any integer)."""
    if not 1 <= device_id <= MAX_DEVICE_ID:
        return None
    try:
        return store.device(device_id)
    except NotFoundError:
        return None


def field(form: FormData, key: str, limit: int = 200) -> str:
    v = form.get(key)
    return v[:limit] if isinstance(v, str) else ""


# ------------------------------------------------------------------------------ pages


def login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": here}), status_code=303)


def page(
    request: Request,
    name: str,
    user: Principal | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """The template ``name`` in the page frame, with the security headers of every page."""
    ctx = {"user": user, "nav": "", "now_utc": utc(time.time(), seconds=False), **context}
    resp = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Content-Security-Policy"] = _CSP
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def error_page(
    request: Request, user: Principal | None, status_code: int, title: str, message: str
) -> Response:
    return page(
        request, "error.html", user, status_code, title=title, message=message, code=status_code
    )


def forbidden(request: Request, user: Principal | None, what: str) -> Response:
    role = user.role if user is not None else None
    return error_page(
        request,
        user,
        403,
        "Not allowed",
        f"{what} needs a higher role than yours ({role}); ask an admin.",
    )


def no_meter(request: Request, user: Principal, device_id: int) -> Response:
    return error_page(
        request, user, 404, "No such meter", f"There is no meter with id {device_id}."
    )


def user_or_response(request: Request, role: str = "viewer") -> Principal | Response:
    """The logged-in user with at least ``role``; else the login redirect or a 403 page."""
    user = who(request)
    if user is None:
        return login_redirect(request)
    if not user.can(role):
        return forbidden(request, user, "This page")
    return user


_TITLES = {403: "Cross-origin request refused", 413: "Too large"}


class DashboardRoute(PageRoute):
    """The dashboard's routes: writes only from this server's pages, bodies capped before
    they are read (:mod:`gridlens.server.guard`); a refusal is an error page."""

    def refusal(self, request: Request, exc: HTTPException) -> Response | None:
        if exc.status_code == 403:
            message = (
                "This form was not posted from this server's own pages. "
                "Use the dashboard's own pages."
            )
        else:
            message = str(exc.detail)
        title = _TITLES.get(exc.status_code, "Refused")
        return error_page(request, None, exc.status_code, title, message)
