"""Setting up a meter from the browser (REST, admin): propose, preview and replay an ROI.

Endpoints (all under ``/api/v1``, tag ``setup``)
------------------------------------------------
``POST /roi/suggest``
    Body: one photo (``image/jpeg``). Answer: the digit boxes, decimals and marker boxes that
    :func:`gridlens.meter.suggest.suggest_roi` proposes, in that photo's pixels.
``POST /roi/preview``
    Multipart ``image`` (the photo the boxes refer to) and ``roi`` (JSON text). Answer: the
    reading of that photo (value, raw, each wheel's value and confidence, status, reason) and
    the boxes it used (refined against the photo unless the ROI says ``"refined": true``).
``POST /roi/snapshot``
    Fetch one JPEG from a camera's http(s) snapshot URL (timeout and size cap) for a first
    photo; answers the photo itself.
``POST /devices/{id}/roi/replay``
    Re-read the device's last few stored photos with a new ROI; old (stored) and new reading
    per photo, to check an edit before saving it.

A new device is then saved with ``POST /devices`` and an edited one with
``PATCH /devices/{id}`` (:mod:`gridlens.server.api`): the same validation and refinement
(:func:`gridlens.server.ingest.device_roi`) and store path as ``gridlens device add|set``.

Every endpoint needs an admin (bearer token or dashboard session). As on every route
(:mod:`gridlens.server.guard`), a write with the session cookie is refused unless its
``Origin`` (or ``Referer``) names this server, since a cross-site form can post multipart
and raw bodies without a CORS preflight.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gridlens.errors import ComputationError, DataFormatError, GridlensError, ParameterError
from gridlens.server.auth import Admin
from gridlens.server.bodies import read_body, read_form
from gridlens.server.contract import DeviceId, errors
from gridlens.server.guard import GuardedRoute, body_limit
from gridlens.server.ingest import PayloadTooLarge, ReaderCache, check_jpeg
from gridlens.server.settings import Settings
from gridlens.store.models import Device, Reading
from gridlens.store.repo import Store, roi_without_image

__all__ = [
    "REPLAY_PHOTOS",
    "ROI_MAX_CHARS",
    "SNAPSHOT_TIMEOUT_S",
    "client_config",
    "preview_roi",
    "replay_roi",
    "router",
    "suggest",
]

#: Longest a snapshot URL may take to give its photo. [s]
SNAPSHOT_TIMEOUT_S = 10.0
#: Largest ROI JSON text accepted by ``/roi/preview``. [characters]
ROI_MAX_CHARS = 64 * 1024
#: Default and largest number of stored photos ``/devices/{id}/roi/replay`` re-reads.
REPLAY_PHOTOS = (5, 20)

_FORM_SLACK = ROI_MAX_CHARS + 16 * 1024  # multipart headers and the ROI around the photo

router = APIRouter(prefix="/api/v1", tags=["setup"], route_class=GuardedRoute)

_ERRORS = errors(
    413,
    e413="the photo is over the server's upload limit",
    e422="not a JPEG photo, a truncated one, or an invalid ROI (the message names the problem)",
)


def _photo_bytes(settings: Settings) -> int:
    return settings.max_upload_bytes


def _form_bytes(settings: Settings) -> int:
    return settings.max_upload_bytes + _FORM_SLACK


# ------------------------------------------------------------------------------ models


class BoxOut(BaseModel):
    """A pixel box: left ``x``, top ``y``, width ``w``, height ``h``. [px]"""

    x: int
    y: int
    w: int
    h: int


class ScoredBoxOut(BoxOut):
    confidence: float = Field(description="how sure the proposal is of this box, 0..1")


class DialBoxOut(BaseModel):
    x: int
    y: int
    w: int
    h: int
    factor: float = Field(description="what one division of the dial is worth")
    direction: str = Field(description='"cw" or "ccw": the way the numbers increase')


class RoiSuggestion(BaseModel):
    """A proposed ROI, in the pixels of the photo sent."""

    digits: list[ScoredBoxOut] = Field(description="one box per wheel, left to right")
    decimals: int = Field(description="wheels after the decimal point (0 when unsure)")
    decimals_confidence: float
    markers: list[ScoredBoxOut] = Field(
        description="distinctive fixed patches outside the counter, for alignment"
    )
    confidence: float = Field(description="overall confidence in the digit boxes, 0..1")
    width: int = Field(description="photo width [px]")
    height: int = Field(description="photo height [px]")
    roi: dict[str, Any] = Field(
        description="the same as an ROI JSON (`gridlens read --roi`): pass it to "
        "`/roi/preview` or `POST /devices`"
    )
    dials: list[DialBoxOut] = Field(
        default_factory=list,
        description="pointer dials found (largest factor first); their factors and "
        "directions are a guess from their order: check them on the photo",
    )


class WheelOut(BaseModel):
    value: float = Field(description="the wheel's position, 0.0 <= value < 10.0 [digits]")
    confidence: float = Field(description="the digit model's confidence, 0..1")


class DialOut(BaseModel):
    factor: float = Field(description="what one division of the dial is worth")
    value: float = Field(description="the pointer's position, 0.0 <= value < 10.0 [divisions]")
    confidence: float = Field(description="the needle reader's confidence, 0..1")


class ReadingOut(BaseModel):
    value: float | None = Field(description="the counter value; null when rejected")
    raw: str | None = Field(description="the register as read, e.g. `01234.5`")
    digits: list[WheelOut]
    dials: list[DialOut] = Field(default_factory=list, description="largest factor first")
    status: Literal["ok", "rejected"]
    reason: str | None = Field(description="why a photo was rejected")
    alignment: dict[str, Any] = Field(default_factory=dict)


class RoiPreview(BaseModel):
    reading: ReadingOut
    roi: dict[str, Any] = Field(
        description="the ROI the reading used: refined digit boxes and `refined: true` when "
        "they were refined in this call"
    )
    refinement: dict[str, Any] | None = Field(
        description="what refinement moved (`moved_px` per box, `shift_px`, `scale`); null "
        "when the ROI was used as given"
    )
    seconds: float = Field(description="time to refine and read [s]")


class SnapshotIn(BaseModel):
    url: str = Field(examples=["http://192.168.1.40/capture"], description="http(s) URL")
    auth: str | None = Field(
        None, examples=["admin:secret"], description='"user:pass" for the camera (not stored)'
    )


class ReplayIn(BaseModel):
    roi: dict[str, Any] = Field(description="the new ROI JSON, in the reference photo's pixels")
    photos: int = Field(
        REPLAY_PHOTOS[0],
        ge=1,
        le=REPLAY_PHOTOS[1],
        description="how many of the newest stored photos to re-read",
    )


class StoredReading(BaseModel):
    value: float | None
    raw: str | None
    status: str
    reason: str | None


class ReplayRow(BaseModel):
    reading_id: int
    captured_at: float = Field(description="epoch seconds [s]")
    old: StoredReading = Field(description="the stored reading (with the meter's history)")
    new: ReadingOut = Field(description="the photo read now with the new ROI (no history)")


class RoiReplay(BaseModel):
    roi: dict[str, Any] = Field(description="the ROI used (refined unless marked refined)")
    rows: list[ReplayRow] = Field(description="newest first")
    missing: int = Field(description="stored photos no longer on disk (pruned), skipped")


# ------------------------------------------------------------------------------ logic


def _reading_doc(r: Any) -> dict[str, Any]:
    d = r.to_dict()
    return {k: d[k] for k in ("value", "raw", "digits", "dials", "status", "reason", "alignment")}


def suggest(jpeg: bytes, cache: ReaderCache, *, max_bytes: int) -> dict[str, Any]:
    """The :class:`RoiSuggestion` document of one photo.

    Raises
    ------
    PayloadTooLarge, DataFormatError
        Over ``max_bytes``, not a JPEG, truncated.
    InsufficientDataError
        No counter found; the message says what was missing.
    """
    from gridlens.errors import InsufficientDataError
    from gridlens.meter.image import decode_image
    from gridlens.meter.suggest import suggest_roi

    check_jpeg(jpeg, max_bytes)
    img = decode_image(jpeg, max_bytes=max_bytes)
    from gridlens.meter.suggest_dials import suggest_dials

    with cache.slots:
        try:
            s = suggest_roi(img, model=cache.model)
        except ComputationError as exc:
            # no wheels: perhaps a register of dials only
            dials = suggest_dials(img)
            if not dials:
                if isinstance(exc, InsufficientDataError):
                    raise
                raise InsufficientDataError(f"no counter found: {exc}") from None
            h, w = img.shape[:2]
            return {
                "digits": [], "decimals": 0, "decimals_confidence": 0.0, "markers": [],
                "confidence": 0.0, "width": w, "height": h, "dials": dials,
                "roi": {"digits": [], "decimals": 0, "dials": dials},
            }  # fmt: skip
        roi = s.to_roi_dict()
        dials = suggest_dials(img, roi["digits"], s.decimals)
    if dials:
        roi["dials"] = dials
    return {
        "digits": [d.to_dict() for d in s.digits],
        "decimals": s.decimals,
        "decimals_confidence": round(s.decimals_confidence, 4),
        "markers": [m.to_dict() for m in s.markers],
        "confidence": round(s.confidence, 4),
        "width": s.size[0],
        "height": s.size[1],
        "roi": roi,
        "dials": dials,
    }


def parse_roi(roi: object) -> Any:
    """A :class:`~gridlens.meter.MeterROI` from ROI JSON text or an object (its reference
    ``image`` ignored: the photo comes with the request)."""
    from gridlens.meter import MeterROI

    if isinstance(roi, str):
        if len(roi) > ROI_MAX_CHARS:
            raise ParameterError(f"the ROI is longer than {ROI_MAX_CHARS:,} characters")
        try:
            roi = json.loads(roi)
        except ValueError as exc:
            raise DataFormatError(f"the ROI is not valid JSON: {exc}") from None
    if not isinstance(roi, dict):
        raise DataFormatError(
            'the ROI must be a JSON object like {"digits": [...], "decimals": 1}, '
            f"got {type(roi).__name__}"
        )
    return MeterROI.from_dict(roi_without_image(roi))


def _reader(roi: Any, reference: Any, cache: ReaderCache) -> Any:
    from gridlens.meter import MeterReader

    # boxes are refined against the reference unless the ROI says they already are
    return MeterReader(roi, reference=reference, model=cache.model)


def _used_roi(reader: Any) -> dict[str, Any]:
    doc: dict[str, Any] = reader.roi.to_dict()
    return doc


def preview_roi(jpeg: bytes, roi: object, cache: ReaderCache, *, max_bytes: int) -> dict[str, Any]:
    """The :class:`RoiPreview` document: ``roi`` applied to the photo it was drawn on."""
    from gridlens.meter.image import decode_image

    t0 = time.perf_counter()
    parsed = parse_roi(roi)
    check_jpeg(jpeg, max_bytes)
    img = decode_image(jpeg, max_bytes=max_bytes)
    with cache.slots:
        reader = _reader(parsed, img, cache)
        reading = reader.read(img)
    return {
        "reading": _reading_doc(reading),
        "roi": _used_roi(reader),
        "refinement": None if reader.refinement is None else reader.refinement.to_dict(),
        "seconds": round(time.perf_counter() - t0, 4),
    }


def _stored(r: Reading) -> dict[str, Any]:
    return {"value": r.value, "raw": r.raw, "status": r.status, "reason": r.reason}


def replay_roi(
    store: Store,
    cache: ReaderCache,
    dev: Device,
    roi: dict[str, Any],
    *,
    images: Path,
    photos: int = REPLAY_PHOTOS[0],
) -> dict[str, Any]:
    """The :class:`RoiReplay` document: the device's newest ``photos`` stored photos read
    with ``roi`` (no history, so no plausibility against earlier readings), beside the
    stored readings."""
    from gridlens.meter.image import decode_image

    parsed = parse_roi(roi)
    ref = decode_image(dev.reference_jpeg) if dev.reference_jpeg else None
    rows = [r for r in store.readings(dev.id, newest_first=True, limit=4 * photos) if r.image_path]
    root = images.resolve()
    out: list[dict[str, Any]] = []
    missing = 0
    with cache.slots:
        reader = _reader(parsed, ref, cache)
        for r in rows:
            if len(out) >= photos:
                break
            path = (root / str(r.image_path)).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                missing += 1
                continue
            try:
                new = _reading_doc(reader.read(decode_image(path)))
            except GridlensError as exc:  # e.g. boxes outside a photo of another size
                new = {
                    "value": None,
                    "raw": None,
                    "digits": [],
                    "status": "rejected",
                    "reason": str(exc),
                    "alignment": {},
                }
            out.append(
                {"reading_id": r.id, "captured_at": r.captured_at, "old": _stored(r), "new": new}
            )
    return {"roi": _used_roi(reader), "rows": out, "missing": missing}


def client_config(
    server_url: str, device_id: int, token: str, name: str, interval_s: int
) -> dict[str, Any]:
    """The ``config.json`` of the ESP32-CAM client (``devices/esp32cam``) for a new device;
    the Wi-Fi settings are left for the person to fill in."""
    return {
        "wifi_ssid": "",
        "wifi_password": "",
        "server": server_url.rstrip("/"),
        "device_id": device_id,
        "token": token,
        "name": name,
        "interval_s": interval_s,
    }


def _check_url(url: str) -> None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ParameterError(
            f"the snapshot URL must be an http:// or https:// URL with a host, got {url[:200]!r}"
        )


# ------------------------------------------------------------------------------ HTTP


def _cache(request: Request) -> ReaderCache:
    cache: ReaderCache = request.app.state.readers
    return cache


def _limit(request: Request) -> int:
    limit: int = request.app.state.settings.max_upload_bytes
    return limit


async def _form(request: Request, limit: int) -> tuple[bytes, str]:
    """The ``image`` and ``roi`` parts of a multipart body of at most ``limit`` bytes."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise DataFormatError(
            "send multipart/form-data with an `image` part (the JPEG photo) and a `roi` part "
            f"(the ROI JSON), got {ctype or 'no Content-Type'}"
        )
    try:
        form = await read_form(
            request, limit, max_files=1, max_fields=4, max_part_size=ROI_MAX_CHARS
        )
    except PayloadTooLarge:
        raise
    except Exception as exc:  # a malformed multipart body
        raise DataFormatError(f"could not read the multipart body: {exc}") from None
    try:
        image, roi = form.get("image"), form.get("roi")
        if not isinstance(image, UploadFile):
            raise DataFormatError("the `image` part (a JPEG file) is missing")
        if not isinstance(roi, str) or not roi.strip():
            raise DataFormatError("the `roi` part (ROI JSON text) is missing")
        return await image.read(), roi
    finally:
        await form.close()


_JPEG_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_PREVIEW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "roi"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "the JPEG photo the boxes refer to",
                        },
                        "roi": {
                            "type": "string",
                            "description": "ROI JSON: digits, decimals, reference.markers",
                            "example": '{"digits": [{"x": 162, "y": 180, "w": 39, "h": 49}, '
                            '{"x": 210, "y": 180, "w": 39, "h": 49}, '
                            '{"x": 258, "y": 180, "w": 39, "h": 49}], "decimals": 0}',
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/roi/suggest",
    response_model=RoiSuggestion,
    responses={**errors(415, e415="a body that is not image/jpeg"), **_ERRORS},
    openapi_extra=_JPEG_BODY,
    description="Propose the digit boxes, decimals and alignment markers of a meter from one "
    "photo (admin), in that photo's pixels. A proposal to check: the confidences say where "
    "to look first. 422 when no counter is found, with the reason.",
)
@body_limit(_photo_bytes)
async def suggest_endpoint(request: Request, who: Admin) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("", "image/jpeg", "image/jpg", "application/octet-stream"):
        raise HTTPException(
            415, f"send the photo as the body with Content-Type: image/jpeg, not {ctype}"
        )
    limit = _limit(request)
    body = await read_body(request, limit)
    return await run_in_threadpool(suggest, body, _cache(request), max_bytes=limit)


@router.post(
    "/roi/preview",
    response_model=RoiPreview,
    responses=_ERRORS,
    openapi_extra=_PREVIEW_BODY,
    description="Read a photo with an ROI drawn on it (admin): the value, the register, each "
    "wheel's value and confidence, and the boxes used (refined against the photo unless the "
    'ROI has `"refined": true`). Nothing is stored. 422 names a bad ROI.',
)
@body_limit(_form_bytes)
async def preview_endpoint(request: Request, who: Admin) -> dict[str, Any]:
    limit = _limit(request)
    jpeg, roi = await _form(request, limit + _FORM_SLACK)
    return await run_in_threadpool(preview_roi, jpeg, roi, _cache(request), max_bytes=limit)


@router.post(
    "/roi/snapshot",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the camera's photo"},
        **errors(400, 413, 502, e422="not an http(s) URL"),
    },
    description="Fetch one photo from a camera's snapshot URL (admin), for a first photo "
    f"of a meter: at most {SNAPSHOT_TIMEOUT_S:g} s and the server's upload size limit. "
    "Nothing is stored.",
)
async def snapshot_endpoint(body: SnapshotIn, request: Request, who: Admin) -> Response:
    from gridlens.server.pull import FetchError, fetch_snapshot

    _check_url(body.url)
    try:
        jpeg, _ = await run_in_threadpool(
            fetch_snapshot,
            body.url.strip(),
            body.auth or None,
            timeout_s=SNAPSHOT_TIMEOUT_S,
            max_bytes=_limit(request),
        )
    except FetchError as exc:
        raise HTTPException(502, f"no photo from the camera: {exc}") from None
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post(
    "/devices/{device_id}/roi/replay",
    response_model=RoiReplay,
    responses=errors(
        400, 404, 413, e422="an invalid ROI or photo count (the message names the problem)"
    ),
    description="Re-read the device's newest stored photos with a new ROI (admin), to "
    "compare old and new values before saving it with `PATCH /devices/{id}`. Nothing is "
    "stored.",
)
async def replay_endpoint(
    device_id: DeviceId, body: ReplayIn, request: Request, who: Admin
) -> dict[str, Any]:
    store: Store = request.app.state.store
    dev = await run_in_threadpool(store.device, device_id)
    return await run_in_threadpool(
        lambda: replay_roi(
            store,
            _cache(request),
            dev,
            body.roi,
            images=request.app.state.settings.images,
            photos=body.photos,
        )
    )
