"""The fleet anomaly page (``/anomaly``) and the anomaly-event REST API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gridlens.server.guard import GuardedRoute
from gridlens.server.pages import DashboardRoute
from gridlens.server.pages import page as _page
from gridlens.server.pages import user_or_response as _user_or_response

api = APIRouter(prefix="/api/v1", tags=["anomaly"], route_class=GuardedRoute)
"""REST endpoints (in the OpenAPI document)."""
pages = APIRouter(include_in_schema=False, route_class=DashboardRoute)
"""Dashboard pages."""


@pages.get("/anomaly")
def anomaly_page(request: Request) -> Response:
    """Room for anomaly detection; points to what exists today."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    return _page(request, "anomaly.html", who, nav="anomaly")
