"""REST API v1: devices, readings, consumption, commands, uploads, exports.

Every route runs through :class:`~gridlens.server.guard.GuardedRoute` (credentials, the
origin of cookie writes and the body limit are checked before the body is read) and
documents its error answers (:func:`gridlens.server.contract.errors`). Ids are integers in
``[1, 2^63 - 1]`` and times ISO 8601 date-times, so anything else is a 422 naming the
parameter, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.config import JsonDict
from starlette.concurrency import run_in_threadpool

from gridlens.errors import DataFormatError, ParameterError
from gridlens.server.auth import Admin, Device, DeviceOrViewer, Operator, Viewer
from gridlens.server.bodies import read_body
from gridlens.server.contract import CommandId, DateTime, DeviceId, errors
from gridlens.server.guard import GuardedRoute, body_limit
from gridlens.server.ingest import device_roi, ingest
from gridlens.server.settings import Settings
from gridlens.store.pulls import PULL_INTERVAL_S, PullChange, pull_source
from gridlens.store.queries import (
    MAX_BUCKETS,
    consumption_window,
    counter_span,
    counter_window,
    readings_csv_chunks,
    readings_json_chunks,
)
from gridlens.store.repo import (
    CACHE_TTL_S,
    Store,
    command_dict,
    device_command,
    device_dict,
)
from gridlens.store.series import consumption
from gridlens.store.timeutil import iso

__all__ = ["GREENBUTTON_MAX_BYTES", "MAX_EXPORT_INTERVALS", "router"]

router = APIRouter(prefix="/api/v1", route_class=GuardedRoute)

#: Largest Green Button file ``POST /devices/{id}/import/greenbutton`` takes. [bytes]
GREENBUTTON_MAX_BYTES = 50 * 1024 * 1024
#: Most intervals one Green Button export answers (about 1 KB of memory each).
MAX_EXPORT_INTERVALS = 50_000
_ROI_JSON_BYTES = 256 * 1024  # an ROI document and the JSON around a reference photo

Since = Annotated[
    DateTime | None,
    Query(description="ISO 8601 date-time (inclusive); without an offset it is UTC"),
]
Until = Annotated[
    DateTime | None,
    Query(description="ISO 8601 date-time (exclusive); without an offset it is UTC"),
]


def _photo_json(settings: Settings) -> int:
    """A JSON body that may carry a reference photo in base64 (4/3 of its bytes)."""
    return settings.max_upload_bytes * 4 // 3 + _ROI_JSON_BYTES


def _upload_bytes(settings: Settings) -> int:
    return settings.max_upload_bytes


# The store checks these (with messages in its words); the schema documents them.
_NAME_RULE: JsonDict = {"pattern": r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"}
_UNIT_RULE: JsonDict = {"minLength": 1, "maxLength": 16}
# text the database keeps as text: no control characters (PostgreSQL stores no NUL at all)
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_NO_NUL = r"^[^\x00]*$"
_RATE_RULE: JsonDict = {"exclusiveMinimum": 0}
_INTERVAL_RULE: JsonDict = {"minimum": 10, "maximum": 86400}
_PULL_INTERVAL_RULE: JsonDict = {"minimum": PULL_INTERVAL_S[0], "maximum": PULL_INTERVAL_S[1]}


class DeviceIn(BaseModel):
    name: str = Field(
        examples=["meter-kitchen"],
        description="unique; letters, digits, space, '.', '_', '-' (1-64 characters)",
        json_schema_extra=_NAME_RULE,
    )
    roi: dict[str, Any] | None = Field(
        None,
        description="the ROI JSON of `gridlens read --roi`; null registers the meter for setup "
        "from its camera's first photo (its uploads are stored unread until boxes are saved "
        "with PATCH)",
    )
    reference_jpeg_b64: str | None = Field(
        None, description="base64 of the reference photo the ROI boxes refer to"
    )
    unit: str = Field("kWh", pattern=_PRINTABLE, json_schema_extra=_UNIT_RULE)
    max_rate: float | None = Field(
        None, description="plausibility limit, unit per hour", json_schema_extra=_RATE_RULE
    )
    interval_s: int = Field(
        60,
        description="expected seconds between photos",
        json_schema_extra=_INTERVAL_RULE,
    )
    pull_url: str | None = Field(
        None,
        examples=["http://192.168.1.40/capture"],
        description="fetch the camera's photos from this http(s) snapshot URL (the first at "
        "once) instead of waiting for uploads",
    )
    pull_interval_s: int | None = Field(
        None,
        description=f"seconds between fetches, {PULL_INTERVAL_S[0]}-{PULL_INTERVAL_S[1]} "
        "(default 60)",
        json_schema_extra=_PULL_INTERVAL_RULE,
    )
    pull_auth: str | None = Field(
        None,
        examples=["admin:secret"],
        description='"user:pass" for HTTP basic or digest authentication at the camera '
        '(stored, never shown: the device shows only `"auth": true`)',
    )


class DeviceCreated(BaseModel):
    device_id: int
    token: str = Field(description="the device's upload token; shown only once")


class DeviceUpdate(BaseModel):
    """The settings to change; a field left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, examples=["meter-kitchen-2"], json_schema_extra=_NAME_RULE)
    unit: str | None = Field(
        None, examples=["m3"], pattern=_PRINTABLE, json_schema_extra=_UNIT_RULE
    )
    max_rate: float | None = Field(
        None, description="plausibility limit, unit per hour", json_schema_extra=_RATE_RULE
    )
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
        None,
        description=f"seconds between fetches, {PULL_INTERVAL_S[0]}-{PULL_INTERVAL_S[1]}",
        # checked with pull_url (every problem in one message), documented here
        json_schema_extra=_PULL_INTERVAL_RULE,
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
_ADMIN_ERRORS = errors(404)
_TTL_FIELD = Field(
    600.0, ge=1, le=7 * 86400, description="the command expires if not acked by then [s]"
)


class SwitchCommand(BaseModel):
    """Switch the relay or the flash LED."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["relay", "flash"]
    state: Literal["on", "off"]
    ttl_s: float = _TTL_FIELD


class CaptureCommand(BaseModel):
    """Take and upload a photo now."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["capture"]
    state: Literal["now"] = "now"
    ttl_s: float = _TTL_FIELD


class IntervalCommand(BaseModel):
    """Change the photo interval."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["interval"]
    value: int = Field(ge=10, le=86400, description="seconds between photos")
    ttl_s: float = _TTL_FIELD


CommandIn = Annotated[
    SwitchCommand | CaptureCommand | IntervalCommand, Field(discriminator="action")
]


class AckIn(BaseModel):
    ok: StrictBool = Field(description="whether the device carried the command out (required)")
    detail: str | None = Field(None, max_length=2000, pattern=_NO_NUL)


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _epoch(d: datetime | None) -> float | None:
    """Epoch seconds of a date-time parameter (without an offset: UTC)."""
    if d is None:
        return None
    return (d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp()


def _reference(b64: str | None) -> bytes | None:
    """The reference photo of a device request, decoded from base64 (None: not given)."""
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise DataFormatError("reference_jpeg_b64 is not valid base64") from None


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceCreated,
    tags=["devices"],
    responses=errors(
        400,
        409,
        413,
        e422="a value out of range, an invalid ROI or reference "
        "photo (the message names the problem)",
    ),
)
@body_limit(_photo_json)
def add_device(body: DeviceIn, request: Request, who: Admin) -> dict[str, Any]:
    """Register a camera (admin). The upload token is returned once and stored hashed."""
    pull = None
    if body.pull_url is not None or body.pull_interval_s is not None or body.pull_auth is not None:
        pull = PullChange(body.pull_url, body.pull_interval_s, body.pull_auth)  # checked first
    ref = _reference(body.reference_jpeg_b64)
    if body.roi is None and ref is not None:
        raise ParameterError("a reference photo needs its ROI: send both, or neither for setup")
    dev, token = _store(request).add_device(
        body.name,
        {} if body.roi is None else device_roi(body.roi, ref),
        reference_jpeg=ref,
        unit=body.unit,
        max_rate=body.max_rate,
        interval_s=body.interval_s,
        pull=pull,
        actor=who.name,
    )
    return {"device_id": dev.id, "token": token}


@router.get("/devices", tags=["devices"], responses=errors())
def list_devices(request: Request, who: Viewer) -> list[dict[str, Any]]:
    """Every meter with its last reading, status and consumption today (UTC)."""
    return _store(request).overview()


@router.get("/devices/{device_id}", tags=["devices"], responses=errors(404))
def get_device(device_id: DeviceId, request: Request, who: Viewer) -> dict[str, Any]:
    """One meter's settings, state, pull settings and ROI."""
    store = _store(request)
    d = store.device(device_id)
    return {**device_dict(d, pull_source(store, d.id)), "roi": d.roi}


@router.patch(
    "/devices/{device_id}",
    tags=["devices"],
    responses=errors(
        400, 404, 409, 413, e422="a value out of range, an invalid ROI or an unknown field"
    ),
    description="Change a camera's name, unit, plausibility limit, ROI, reference photo or "
    "pull settings (admin), with the checks of registration; fields left out (or null) stay. "
    "With `pull_url` the server fetches the camera's photos itself (the first at once). "
    "Returns the device as `GET /devices/{id}` does. The server process that answers uses the "
    "change "
    f"from the next upload, other processes sharing the database within {_TTL}.",
)
@body_limit(_photo_json)
def update_device(
    device_id: DeviceId, body: DeviceUpdate, request: Request, who: Admin
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
def rotate_device_token(device_id: DeviceId, request: Request, who: Admin) -> dict[str, Any]:
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
def revoke_device_tokens(device_id: DeviceId, request: Request, who: Admin) -> dict[str, Any]:
    return {"revoked": _store(request).revoke_device_tokens(device_id, actor=who.name)}


_JSON_ARRAY = {"content": {"application/json": {"schema": {"type": "array", "items": {}}}}}


@router.get(
    "/devices/{device_id}/readings",
    tags=["readings"],
    response_class=StreamingResponse,
    responses={200: {"description": "the readings, oldest first", **_JSON_ARRAY}, **errors(404)},
)
def get_readings(
    device_id: DeviceId,
    request: Request,
    who: Viewer,
    since: Since = None,
    until: Until = None,
    status: Literal["ok", "rejected"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> StreamingResponse:
    """Readings oldest first: ``captured_at``, ``value`` (null when rejected), ``status``,
    ``raw``, ``reason``, ``digits``... (sent as they are read, a page at a time)."""
    store = _store(request)
    dev = store.device(device_id)
    chunks = readings_json_chunks(
        store,
        device_id,
        dev.unit,
        since=_epoch(since),
        until=_epoch(until),
        status=status,
        limit=limit,
    )
    return StreamingResponse(chunks, media_type="application/json")


@router.get(
    "/devices/{device_id}/consumption",
    tags=["readings"],
    responses=errors(
        404,
        e422=f"a bad parameter, or more than {MAX_BUCKETS:,} buckets (ask for bucket=day or "
        "a shorter range)",
    ),
    description="Energy per hour or day from counter deltas (linear between accepted "
    "readings; buckets the readings do not cover are null; none when until is not after "
    "since). At most "
    f"{MAX_BUCKETS:,} buckets per request; only the readings of the range are read.",
)
def get_consumption(
    device_id: DeviceId,
    request: Request,
    who: Viewer,
    bucket: Literal["hour", "day"] = "hour",
    since: Annotated[
        DateTime | None,
        Query(
            description="ISO 8601 date-time; default: 2 days (hour) or 31 days (day) before "
            "until, or before now"
        ),
    ] = None,
    until: Annotated[
        DateTime | None,
        Query(description="ISO 8601 date-time; default: up to the last accepted reading"),
    ] = None,
) -> dict[str, Any]:
    store = _store(request)
    dev = store.device(device_id)
    bucket_s = 3600.0 if bucket == "hour" else 86400.0
    now = time.time()
    lo, hi = _epoch(since), _epoch(until)
    if lo is None:
        lo = (now if hi is None else hi) - (2 * 86400.0 if bucket == "hour" else 31 * 86400.0)
    starts, energy = consumption_window(store, device_id, bucket_s, since=lo, until=hi, now=now)
    return {
        "device_id": device_id,
        "unit": dev.unit,
        "bucket_s": bucket_s,
        "points": [
            {"start": iso(float(s)), "t": float(s), "energy": None if math.isnan(e) else float(e)}
            for s, e in zip(starts, energy, strict=True)
        ],
    }


@router.get("/devices/{device_id}/anomalies", tags=["readings"], responses=errors(404))
def get_anomalies(
    device_id: DeviceId,
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
    t, v = counter_window(store, device_id, math.floor(lo / 3600.0) * 3600.0)
    starts, energy = consumption(t, v, 3600.0, since=lo)
    doc = score_consumption(starts, energy, model=model, name=dev.name)
    return {"device_id": device_id, "unit": dev.unit, **doc}


_JPEG_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    },
    "security": [{"bearer": []}],
}


@router.post(
    "/devices/{device_id}/images",
    status_code=201,
    tags=["ingest"],
    openapi_extra=_JPEG_BODY,
    responses={
        200: {"description": "a capture id stored before: the first answer, `duplicate: true`"},
        **errors(
            404,
            413,
            e403="not this device's upload token",
            e422="not a JPEG photo or a truncated one, or a bad X-Capture-Id or X-Captured-At",
        ),
    },
)
@body_limit(_upload_bytes)
async def upload_image(
    device_id: DeviceId,
    request: Request,
    response: Response,
    who: Device,
    x_capture_id: Annotated[
        str | None, Header(max_length=80, description="the device's id of this photo")
    ] = None,
    x_captured_at: Annotated[
        str | None, Header(max_length=40, description="ISO 8601 or epoch seconds")
    ] = None,
) -> dict[str, Any]:
    """A device uploads one JPEG photo (``Authorization: Bearer <device token>``).

    201 with the reading and the device's pending commands (now delivered); 200 with
    ``"duplicate": true`` when that ``X-Capture-Id`` was stored before; 413 over the size
    limit; 422 not a JPEG or truncated.
    """
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
    elif not doc["late"]:  # a late photo fills in the history; it is not the current value
        request.app.state.publish_reading(dev, doc["reading"])
    return doc


@router.get("/devices/{device_id}/commands", tags=["commands"], responses=errors(404))
def get_commands(
    device_id: DeviceId,
    request: Request,
    who: DeviceOrViewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """A device polls its pending commands (they become ``delivered``); a user gets the
    device's recent commands with their states."""
    store = _store(request)
    if who.kind == "device":
        cmds = store.take_pending(device_id)
        return {"commands": [device_command(c) for c in cmds]}
    store.device(device_id)
    return {"commands": [command_dict(c) for c in store.commands(device_id, limit)]}


@router.post(
    "/devices/{device_id}/commands",
    status_code=201,
    tags=["commands"],
    responses=errors(400, 404, 413),
)
def post_command(
    device_id: DeviceId, body: CommandIn, request: Request, who: Operator
) -> dict[str, Any]:
    """Ask a device to do something (operator or admin): ``relay on|off``, ``flash on|off``,
    ``capture now``, ``interval`` with ``value`` seconds. Delivered in the next upload
    response, on poll, or over MQTT; expires after ``ttl_s`` unless acked."""
    store = _store(request)
    c = store.add_command(
        device_id,
        body.action,
        state=getattr(body, "state", None),
        value=getattr(body, "value", None),
        actor=who.name,
        ttl_s=body.ttl_s,
    )
    request.app.state.publish_command(store.device(device_id), c)
    return command_dict(c)


@router.post(
    "/devices/{device_id}/commands/{command_id}/ack",
    tags=["commands"],
    openapi_extra={"security": [{"bearer": []}]},
    responses=errors(
        400,
        404,
        409,
        413,
        e403="not this device's upload token",
        e404="no such command of this device",
        e409="the command is no longer waiting for an answer",
    ),
)
def ack_command(
    device_id: DeviceId, command_id: CommandId, body: AckIn, request: Request, who: Device
) -> dict[str, Any]:
    """The device confirms it carried out (``ok``) or refused a command."""
    c = _store(request).ack_command(device_id, command_id, ok=body.ok, detail=body.detail)
    return command_dict(c)


@router.get("/audit", tags=["admin"], responses=errors())
def audit(
    request: Request, who: Admin, limit: Annotated[int, Query(ge=1, le=10_000)] = 200
) -> list[dict[str, Any]]:
    """Who did what when (admin): newest first, failed logins included."""
    return _store(request).audit_log(limit)


@router.get(
    "/devices/{device_id}/export.csv",
    tags=["export"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"},
        **errors(404),
    },
)
def export_csv(
    device_id: DeviceId,
    request: Request,
    who: Viewer,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """Every reading as CSV: ``captured_at,value_<unit>,status,raw,reason`` (sent as it is
    read, a page at a time)."""
    store = _store(request)
    dev = store.device(device_id)
    chunks = readings_csv_chunks(
        store, device_id, dev.unit, since=_epoch(since), until=_epoch(until)
    )
    return StreamingResponse(
        chunks,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{dev.name}.csv"'},
    )


@router.get(
    "/devices/{device_id}/export.xml",
    tags=["export"],
    response_class=Response,
    responses={
        200: {
            "content": {"application/atom+xml": {"schema": {"type": "string"}}},
            "description": "Green Button (ESPI) XML",
        },
        **errors(
            404,
            e422="a bad interval, a meter that does not count kWh, or a history of more than "
            f"{MAX_EXPORT_INTERVALS:,} intervals",
        ),
    },
)
def export_greenbutton(
    device_id: DeviceId,
    request: Request,
    who: Viewer,
    interval: Annotated[
        int,
        Query(
            description="interval length: 900, 1800, 3600 or 86400 [s]",
            json_schema_extra={"enum": [900, 1800, 3600, 86400]},  # checked by the export
        ),
    ] = 3600,
) -> Response:
    """Green Button (NAESB ESPI) interval data of the meter's accepted readings."""
    from gridlens.store.repo import greenbutton_export

    store = _store(request)
    span = counter_span(store, device_id)
    if span is not None and (span[1] - span[0]) / max(interval, 1) > MAX_EXPORT_INTERVALS:
        n = int((span[1] - span[0]) / interval)
        raise ParameterError(
            f"the meter's history makes {n:,} intervals of {interval} s; the limit is "
            f"{MAX_EXPORT_INTERVALS:,} per export: ask for a longer interval (3600 or 86400), "
            "or use `gridlens export` on the server"
        )
    data = greenbutton_export(store, device_id, interval)
    name = store.device(device_id).name
    return Response(
        data,
        media_type="application/atom+xml",
        headers={"Content-Disposition": f'attachment; filename="{name}-greenbutton.xml"'},
    )


@router.post(
    "/devices/{device_id}/import/greenbutton",
    tags=["export"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/atom+xml": {"schema": {"type": "string"}}},
        }
    },
    responses=errors(404, 413, e422="not a Green Button file (the message names the problem)"),
    description="Add a Green Button file's energy intervals to the meter's counter history "
    f"(admin; at most {GREENBUTTON_MAX_BYTES // 2**20} MB). Idempotent: importing the same "
    "file twice adds nothing.",
)
@body_limit(GREENBUTTON_MAX_BYTES)
async def import_greenbutton(device_id: DeviceId, request: Request, who: Admin) -> dict[str, Any]:
    from gridlens.store.repo import greenbutton_import

    body = await read_body(request, GREENBUTTON_MAX_BYTES, "Green Button file")
    return await run_in_threadpool(
        greenbutton_import, _store(request), device_id, body, actor=who.name
    )
