"""REST API v1: devices, readings, consumption, commands, uploads, exports."""

from __future__ import annotations

import base64
import binascii
import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gridlens.errors import DataFormatError
from gridlens.server import auth
from gridlens.server.bodies import read_body
from gridlens.server.ingest import PayloadTooLarge, device_roi, ingest
from gridlens.store.pulls import PULL_INTERVAL_S, PullChange, pull_source
from gridlens.store.repo import (
    CACHE_TTL_S,
    Principal,
    Store,
    command_dict,
    device_command,
    device_dict,
    reading_dict,
    readings_csv,
)
from gridlens.store.series import consumption
from gridlens.store.timeutil import iso, parse_time

router = APIRouter(prefix="/api/v1")

Viewer = Annotated[Principal, Depends(auth.viewer)]
Operator = Annotated[Principal, Depends(auth.operator)]
Admin = Annotated[Principal, Depends(auth.admin)]


class DeviceIn(BaseModel):
    name: str = Field(examples=["meter-kitchen"])
    roi: dict[str, Any] = Field(description="the ROI JSON of `gridlens read --roi`")
    reference_jpeg_b64: str | None = Field(
        None, description="base64 of the reference photo the ROI boxes refer to"
    )
    unit: str = "kWh"
    max_rate: float | None = Field(None, description="plausibility limit, unit per hour")
    interval_s: int = 60


class DeviceCreated(BaseModel):
    device_id: int
    token: str = Field(description="the device's upload token; shown only once")


class DeviceUpdate(BaseModel):
    """The settings to change; a field left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, examples=["meter-kitchen-2"])
    unit: str | None = Field(None, examples=["m3"])
    max_rate: float | None = Field(None, description="plausibility limit, unit per hour")
    roi: dict[str, Any] | None = Field(
        None,
        description="a new ROI JSON of `gridlens read --roi` (its boxes must lie inside the "
        "reference photo: the new one if given, else the stored one)",
    )
    reference_jpeg_b64: str | None = Field(
        None, description="base64 of a new reference photo the ROI boxes refer to"
    )
    pull_url: str | None = Field(
        None,
        examples=["http://192.168.1.40/capture"],
        description="fetch the camera's photos from this http(s) snapshot URL instead of "
        'waiting for uploads; "" stops pulling',
    )
    pull_interval_s: int | None = Field(
        None, description=f"seconds between fetches, {PULL_INTERVAL_S[0]}-{PULL_INTERVAL_S[1]}"
    )
    pull_auth: str | None = Field(
        None,
        examples=["admin:secret"],
        description='"user:pass" for HTTP basic or digest authentication at the camera '
        '(stored, never shown: the device shows only `"auth": true`); "" removes it',
    )


class TokensRevoked(BaseModel):
    revoked: int = Field(description="how many live tokens were revoked")


_TTL = f"{CACHE_TTL_S:g} s"  # how long other server processes may cache a device token
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no, unknown, expired or revoked credentials"},
    403: {"description": "the caller is not an admin"},
    404: {"description": "no device with this id"},
}


class CommandIn(BaseModel):
    action: Literal["relay", "flash", "capture", "interval"]
    state: str | None = Field(None, examples=["off"])
    value: int | None = Field(None, description="seconds, for action=interval")
    ttl_s: float = Field(600.0, description="the command expires if not acked by then")


class AckIn(BaseModel):
    ok: bool = True
    detail: str | None = None


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _time(q: str | None, what: str) -> float | None:
    return None if q is None else parse_time(q, what)


def _reference(b64: str | None) -> bytes | None:
    """The reference photo of a device request, decoded from base64 (None: not given)."""
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise DataFormatError("reference_jpeg_b64 is not valid base64") from None


@router.post("/devices", status_code=201, response_model=DeviceCreated, tags=["devices"])
def add_device(body: DeviceIn, request: Request, who: Admin) -> dict[str, Any]:
    """Register a camera (admin). The upload token is returned once and stored hashed."""
    ref = _reference(body.reference_jpeg_b64)
    dev, token = _store(request).add_device(
        body.name,
        device_roi(body.roi, ref),
        reference_jpeg=ref,
        unit=body.unit,
        max_rate=body.max_rate,
        interval_s=body.interval_s,
        actor=who.name,
    )
    return {"device_id": dev.id, "token": token}


@router.get("/devices", tags=["devices"])
def list_devices(request: Request, who: Viewer) -> list[dict[str, Any]]:
    """Every meter with its last reading, status and consumption today (UTC)."""
    return _store(request).overview()


@router.get("/devices/{device_id}", tags=["devices"])
def get_device(device_id: int, request: Request, who: Viewer) -> dict[str, Any]:
    store = _store(request)
    d = store.device(device_id)
    return {**device_dict(d, pull_source(store, d.id)), "roi": d.roi}


@router.patch(
    "/devices/{device_id}",
    tags=["devices"],
    responses={
        **_ADMIN_ERRORS,
        409: {"description": "another device has this name"},
        422: {"description": "a value out of range, an invalid ROI or an unknown field"},
    },
    description="Change a camera's name, unit, plausibility limit, ROI, reference photo or "
    "pull settings (admin), with the checks of registration; fields left out (or null) stay. "
    "With `pull_url` the server fetches the camera's photos itself (the first at once). "
    "Returns the device as `GET /devices/{id}` does. The server process that answers uses the "
    "change "
    f"from the next upload, other processes sharing the database within {_TTL}.",
)
def update_device(
    device_id: int, body: DeviceUpdate, request: Request, who: Admin
) -> dict[str, Any]:
    store = _store(request)
    pull = PullChange(body.pull_url, body.pull_interval_s, body.pull_auth)  # checked first
    ref = _reference(body.reference_jpeg_b64)
    roi = None
    if body.roi is not None or ref is not None:
        dev = store.device(device_id)
        roi = device_roi(
            dev.roi if body.roi is None else body.roi,
            dev.reference_jpeg if ref is None else ref,
        )
    d = store.update_device(
        device_id,
        actor=who.name,
        unit=body.unit,
        max_rate=body.max_rate,
        roi=roi,
        name=body.name,
        reference_jpeg=ref,
        pull=pull,
    )
    return {**device_dict(d, pull_source(store, d.id)), "roi": d.roi}


@router.post(
    "/devices/{device_id}/token",
    status_code=201,
    response_model=DeviceCreated,
    tags=["devices"],
    responses=_ADMIN_ERRORS,
    description="Issue a new upload token for a camera and revoke all its others (admin). "
    "The token is returned once and stored hashed. The old one gets 401 at once from the "
    f"server process that answers, from other processes sharing the database within {_TTL}.",
)
def rotate_device_token(device_id: int, request: Request, who: Admin) -> dict[str, Any]:
    token = _store(request).rotate_device_token(device_id, actor=who.name)
    return {"device_id": device_id, "token": token}


@router.delete(
    "/devices/{device_id}/token",
    response_model=TokensRevoked,
    tags=["devices"],
    responses=_ADMIN_ERRORS,
    description="Revoke every upload token of a camera (admin; decommissioning): its uploads "
    f"get 401 at once (from other server processes within {_TTL}); its readings stay. "
    "`POST /devices/{id}/token` issues a new token.",
)
def revoke_device_tokens(device_id: int, request: Request, who: Admin) -> dict[str, Any]:
    return {"revoked": _store(request).revoke_device_tokens(device_id, actor=who.name)}


@router.get("/devices/{device_id}/readings", tags=["readings"])
def get_readings(
    device_id: int,
    request: Request,
    who: Viewer,
    since: str | None = Query(None, description="ISO 8601 or epoch seconds (inclusive)"),
    until: str | None = Query(None, description="ISO 8601 or epoch seconds (exclusive)"),
    status: Literal["ok", "rejected"] | None = None,
    limit: int = Query(10_000, ge=1, le=100_000),
) -> list[dict[str, Any]]:
    """Readings oldest first: ``captured_at``, ``value`` (null when rejected), ``status``,
    ``raw``, ``reason``, ``digits``..."""
    store = _store(request)
    dev = store.device(device_id)
    rows = store.readings(
        device_id,
        since=_time(since, "since"),
        until=_time(until, "until"),
        status=status,
        limit=limit,
    )
    return [reading_dict(r, dev.unit) for r in rows]


@router.get("/devices/{device_id}/consumption", tags=["readings"])
def get_consumption(
    device_id: int,
    request: Request,
    who: Viewer,
    bucket: Literal["hour", "day"] = "hour",
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Energy per hour or day from counter deltas (linear between accepted readings;
    buckets the readings do not cover are null)."""
    store = _store(request)
    dev = store.device(device_id)
    bucket_s = 3600.0 if bucket == "hour" else 86400.0
    lo, hi = _time(since, "since"), _time(until, "until")
    if lo is None:
        lo = time.time() - (2 * 86400.0 if bucket == "hour" else 31 * 86400.0)
    t, v = store.counter(device_id)
    starts, energy = consumption(t, v, bucket_s, since=lo, until=hi if hi is not None else None)
    return {
        "device_id": device_id,
        "unit": dev.unit,
        "bucket_s": bucket_s,
        "points": [
            {"start": iso(float(s)), "t": float(s), "energy": None if math.isnan(e) else float(e)}
            for s, e in zip(starts, energy, strict=True)
        ],
    }


@router.get("/devices/{device_id}/anomalies", tags=["readings"])
def get_anomalies(
    device_id: int,
    request: Request,
    who: Viewer,
    days: Annotated[float, Query(gt=0, le=366)] = 31.0,
    model: Literal["profile", "hybrid", "iforest"] = "profile",
) -> dict[str, Any]:
    """Hourly consumption of the last ``days`` with an anomaly score per hour and the
    anomalous periods (the meter against its own history; gridlens.anomaly). ``profile``
    compares each hour with the same hour of the week; ``hybrid`` adds odd days and
    one-hour spikes."""
    from gridlens.anomaly.run import score_consumption

    store = _store(request)
    dev = store.device(device_id)
    lo = time.time() - days * 86400.0
    t, v = store.counter(device_id)
    starts, energy = consumption(t, v, 3600.0, since=lo)
    doc = score_consumption(starts, energy, model=model, name=dev.name)
    return {"device_id": device_id, "unit": dev.unit, **doc}


@router.post("/devices/{device_id}/images", status_code=201, tags=["ingest"])
async def upload_image(
    device_id: int,
    request: Request,
    response: Response,
    x_capture_id: Annotated[str | None, Header()] = None,
    x_captured_at: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """A device uploads one JPEG photo (``Authorization: Bearer <device token>``).

    201 with the reading and the device's pending commands (now delivered); 200 with
    ``"duplicate": true`` when that ``X-Capture-Id`` was stored before; 413 over the size
    limit; 422 not a JPEG or truncated.
    """
    auth.require_device(request, device_id)
    settings = request.app.state.settings
    limit = settings.max_upload_bytes
    body = await read_body(request, limit)
    store = _store(request)
    dev = store.device_cached(device_id)
    t0 = time.perf_counter()
    doc, dup = await run_in_threadpool(
        ingest,
        store,
        request.app.state.readers,
        dev,
        body,
        images=settings.images,
        max_bytes=limit,
        capture_id=x_capture_id,
        captured_at=x_captured_at,
    )
    m = request.app.state.metrics
    m.inc("gridlens_uploads_total", status="duplicate" if dup else doc["reading"]["status"])
    m.observe("read", time.perf_counter() - t0)
    if dup:
        response.status_code = 200
    else:
        request.app.state.publish_reading(dev, doc["reading"])
    return doc


@router.get("/devices/{device_id}/commands", tags=["commands"])
def get_commands(
    device_id: int, request: Request, limit: int = Query(50, ge=1, le=1000)
) -> dict[str, Any]:
    """A device polls its pending commands (they become ``delivered``); a user gets the
    device's recent commands with their states."""
    p = auth.principal(request)
    store = _store(request)
    if p.kind == "device":
        if p.device_id != device_id:
            raise HTTPException(403, "not allowed")
        cmds = store.take_pending(device_id)
        return {"commands": [device_command(c) for c in cmds]}
    if not p.can("viewer"):
        raise HTTPException(403, "not allowed")
    store.device(device_id)
    return {"commands": [command_dict(c) for c in store.commands(device_id, limit)]}


@router.post("/devices/{device_id}/commands", status_code=201, tags=["commands"])
def post_command(
    device_id: int, body: CommandIn, request: Request, who: Operator
) -> dict[str, Any]:
    """Ask a device to do something (operator or admin): ``relay on|off``, ``flash on|off``,
    ``capture now``, ``interval`` with ``value`` seconds. Delivered in the next upload
    response, on poll, or over MQTT; expires after ``ttl_s`` unless acked."""
    store = _store(request)
    c = store.add_command(
        device_id, body.action, state=body.state, value=body.value, actor=who.name, ttl_s=body.ttl_s
    )
    request.app.state.publish_command(store.device(device_id), c)
    return command_dict(c)


@router.post("/devices/{device_id}/commands/{command_id}/ack", tags=["commands"])
def ack_command(device_id: int, command_id: int, body: AckIn, request: Request) -> dict[str, Any]:
    """The device confirms it carried out (``ok``) or refused a command."""
    auth.require_device(request, device_id)
    c = _store(request).ack_command(device_id, command_id, ok=body.ok, detail=body.detail)
    return command_dict(c)


@router.get("/audit", tags=["admin"])
def audit(
    request: Request, who: Admin, limit: int = Query(200, ge=1, le=10_000)
) -> list[dict[str, Any]]:
    """Who did what when (admin)."""
    return _store(request).audit_log(limit)


@router.get("/devices/{device_id}/export.csv", tags=["export"])
def export_csv(
    device_id: int,
    request: Request,
    who: Viewer,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """Every reading as CSV: ``captured_at,value_<unit>,status,raw,reason``."""
    store = _store(request)
    text = readings_csv(store, device_id, _time(since, "since"), _time(until, "until"))
    name = store.device(device_id).name
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/devices/{device_id}/export.xml", tags=["export"])
def export_greenbutton(
    device_id: int,
    request: Request,
    who: Viewer,
    interval: int = Query(3600, description="interval length in seconds: 900, 1800, 3600, 86400"),
) -> Response:
    """Green Button (NAESB ESPI) interval data of the meter's accepted readings."""
    from gridlens.store.repo import greenbutton_export

    store = _store(request)
    data = greenbutton_export(store, device_id, interval)
    name = store.device(device_id).name
    return Response(
        data,
        media_type="application/atom+xml",
        headers={"Content-Disposition": f'attachment; filename="{name}-greenbutton.xml"'},
    )


@router.post("/devices/{device_id}/import/greenbutton", tags=["export"])
async def import_greenbutton(device_id: int, request: Request) -> dict[str, Any]:
    """Add a Green Button file's energy intervals to the meter's counter history (admin).
    Idempotent: importing the same file twice adds nothing."""
    from gridlens.store.repo import greenbutton_import

    who = auth.admin(request)
    body = await request.body()
    if len(body) > 50 * 1024 * 1024:
        raise PayloadTooLarge("Green Button files are limited to 50 MB")
    return await run_in_threadpool(
        greenbutton_import, _store(request), device_id, body, actor=who.name
    )
