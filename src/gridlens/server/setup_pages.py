"""Dashboard pages to set up a meter in the browser (admin).

``/meters/new``
    Name, unit and plausibility limit; a first photo (upload, or a snapshot URL the server
    fetches); gridlens proposes the digit boxes, decimals and markers
    (``POST /api/v1/roi/suggest``); the admin corrects them on the photo
    (``static/setup.js``: drag, resize, add or remove a box) with a live reading
    (``POST /api/v1/roi/preview``); *Save* registers the device (``POST /api/v1/devices``)
    and shows its upload token once with the ESP32-CAM client's ``config.json``.
``/meters/{id}/setup``
    The same editor on a registered meter's reference photo and stored boxes; its last
    photos are re-read with the edited boxes (``POST /api/v1/devices/{id}/roi/replay``)
    before *Save* (``PATCH /api/v1/devices/{id}``, audited).
``/meters/{id}/reference.jpg``
    The stored reference photo, as stored.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gridlens.server.meter_setup import client_config
from gridlens.server.pages import DashboardRoute
from gridlens.server.pages import device_or_none as _device_or_none
from gridlens.server.pages import error_page as _error
from gridlens.server.pages import no_meter as _no_meter
from gridlens.server.pages import page as _page
from gridlens.server.pages import store_of as _store
from gridlens.server.pages import user_or_response as _user_or_response
from gridlens.server.pages import who as _who
from gridlens.store.repo import Principal, roi_without_image

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


def _setup_page(request: Request, who: Principal, **context: Any) -> Response:
    settings = request.app.state.settings
    skeleton = client_config(str(request.base_url), 0, "", "", 60)
    return _page(
        request,
        "setup.html",
        who,
        nav="meters",
        max_bytes=settings.max_upload_bytes,
        config_json=json.dumps(skeleton),
        **context,
    )


@router.get("/meters/new")
def new_meter(request: Request) -> Response:
    """Register a camera: first photo, proposed boxes, corrections, live reading, save."""
    who = _user_or_response(request, "admin")
    if isinstance(who, Response):
        return who
    return _setup_page(request, who, dev=None, roi_json="null")


@router.get("/meters/{device_id}/setup")
def edit_meter(device_id: int, request: Request) -> Response:
    """Edit a registered meter's boxes on its reference photo."""
    who = _user_or_response(request, "admin")
    if isinstance(who, Response):
        return who
    dev = _device_or_none(_store(request), device_id)
    if dev is None:
        return _no_meter(request, who, device_id)
    return _setup_page(
        request,
        who,
        dev=dev,
        roi_json=json.dumps(roi_without_image(dev.roi)),
        has_reference=dev.reference_jpeg is not None,
    )


@router.get("/meters/{device_id}/reference.jpg")
def reference_jpg(device_id: int, request: Request) -> Response:
    """The meter's stored reference photo (the pixels its boxes refer to)."""
    who = _who(request)
    if who is None:
        return Response("log in first", status_code=401, media_type="text/plain")
    dev = _device_or_none(_store(request), device_id)
    if dev is None:
        return _no_meter(request, who, device_id)
    if not dev.reference_jpeg:
        return _error(request, who, 404, "No reference photo", "This meter has none stored.")
    return Response(
        dev.reference_jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )
