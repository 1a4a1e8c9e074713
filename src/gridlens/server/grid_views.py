"""The Grid page and the feeder REST API (``/grid``, ``/api/v1/feeders``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gridlens.server.guard import GuardedRoute
from gridlens.server.pages import DashboardRoute
from gridlens.server.pages import page as _page
from gridlens.server.pages import user_or_response as _user_or_response

api = APIRouter(prefix="/api/v1", tags=["grid"], route_class=GuardedRoute)
"""REST endpoints (in the OpenAPI document)."""
pages = APIRouter(include_in_schema=False, route_class=DashboardRoute)
"""Dashboard pages."""


@pages.get("/grid")
def grid_page(request: Request) -> Response:
    """Room for the feeder views; points to the grid commands of today."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    return _page(request, "grid.html", who, nav="grid")
