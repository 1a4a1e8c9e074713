"""The dashboard: server-rendered pages for people (no build step, a little vanilla JS).

Pages
-----
``/login`` and ``/logout``
    :mod:`gridlens.server.login` (included here): the session cookie from a user name and
    password; every other page redirects to ``/login?next=...`` without one.
``/``
    One row per meter: last accepted value, last photo and its status, online, today.
``/meters/{id}``
    Consumption charts (``static/gridlens.js`` draws them with the vendored uPlot from the
    REST API), the latest photo with its digit boxes (``/meters/{id}/latest.jpg``), rejected
    readings, commands and, for operators, a form to send one.
``/pq``
    Upload a waveform; the results of ``gridlens pf`` (three power-factor methods, THD,
    frequency) and its plot.
``/grid``, ``/anomaly``
    In :mod:`gridlens.server.grid_views` and :mod:`gridlens.server.anomaly_views`.

Every POST must come from this server's own pages (an ``Origin`` or ``Referer`` naming it),
on top of the SameSite cookie, and its body is capped before it is read
(:class:`gridlens.server.pages.DashboardRoute`). What the pages share (templates, the logged-in
user, error pages) is in :mod:`gridlens.server.pages`.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from gridlens.errors import GridlensError, InputError, ParameterError
from gridlens.meter.image import decode_image, encode_jpeg
from gridlens.server.bodies import read_form
from gridlens.server.guard import body_limit
from gridlens.server.ingest import PayloadTooLarge
from gridlens.server.login import router as login_router
from gridlens.server.pages import STATIC, TEMPLATES, DashboardRoute
from gridlens.server.pages import device_or_none as _device_or_none
from gridlens.server.pages import field as _field
from gridlens.server.pages import forbidden as _forbidden
from gridlens.server.pages import no_meter as _no_meter
from gridlens.server.pages import page as _page
from gridlens.server.pages import store_of as _store
from gridlens.server.pages import user_or_response as _user_or_response
from gridlens.server.pages import who as _who
from gridlens.store.models import Device, Reading
from gridlens.store.pulls import pull_source
from gridlens.store.queries import counter_thinned
from gridlens.store.repo import (
    COMMANDS,
    Principal,
    Store,
    command_dict,
    device_dict,
    in_setup,
    is_online,
    value_places,
)

__all__ = ["PQ_MAX_BYTES", "STATIC", "TEMPLATES", "router"]

log = logging.getLogger("gridlens.dashboard")

#: Largest waveform upload on ``/pq`` (HTTP 413 above).
PQ_MAX_BYTES = 20 * 1024 * 1024
#: Most samples per channel a /pq upload may hold: about what 20 MB of binary COMTRADE carries
#: (a small compressed .npz must not decompress into more).
PQ_MAX_SAMPLES = 3_000_000
_FORM_SLACK = 64 * 1024  # multipart headers and the small fields around the file
_PQ_SUFFIXES = (".csv", ".txt", ".npz", ".cfg", ".cff")
# the readers' messages name command-line options; the form has fields
_CLI_WORDS = (
    ("--v-channel/--i-channel", "the voltage/current column fields"),
    ("pass --fs HZ", "enter the sampling rate"),
    ("--fs", "the sampling rate"),
)
_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot is not thread-safe
_U8 = npt.NDArray[np.uint8]

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
router.include_router(login_router)


# ------------------------------------------------------------------------------ overview


@router.get("/")
def overview(request: Request) -> Response:
    """Every meter: last value, last photo and status, online, consumption today."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    rows = _store(request).overview()
    today: dict[str, tuple[float, int]] = {}
    for r in rows:
        if r["today"] is not None:
            e, dec = today.get(r["unit"], (0.0, 0))
            today[r["unit"]] = (e + float(r["today"]), max(dec, int(r["places"] or 0)))
    totals = {
        "meters": len(rows),
        "online": sum(1 for r in rows if r["online"]),
        "rejected": sum(1 for r in rows if r["last"] and r["last"]["status"] == "rejected"),
        "today": [(unit, e, dec) for unit, (e, dec) in sorted(today.items())],
    }
    return _page(request, "overview.html", who, nav="meters", rows=rows, totals=totals)


# ------------------------------------------------------------------------------ one meter


def _meter_context(store: Store, dev: Device, who: Principal) -> dict[str, Any]:
    newest = store.readings(dev.id, newest_first=True, limit=1)
    last_ok = store.readings(dev.id, status="ok", newest_first=True, limit=1)
    rejected = store.readings(dev.id, status="rejected", newest_first=True, limit=50)
    now = time.time()
    return {
        "dev": device_dict(dev, pull_source(store, dev.id)),
        "decimals": int(dev.roi.get("decimals") or 0),
        "places": value_places(dev.roi),
        "last": newest[0] if newest else None,
        "last_ok": last_ok[0] if last_ok else None,
        "online": is_online(dev, now),
        "rejected": rejected,
        "commands": [command_dict(c) for c in store.commands(dev.id, 50)],
        "can_command": who.can("operator"),
        "interval_range": COMMANDS["interval"][1],
        "nav": "meters",
    }


@router.get("/meters/{device_id}")
def meter_page(device_id: int, request: Request) -> Response:
    """Charts, latest photo, rejected readings and commands of one meter."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    store = _store(request)
    dev = _device_or_none(store, device_id)
    if dev is None:
        return _no_meter(request, who, device_id)
    return _page(request, "meter.html", who, **_meter_context(store, dev, who))


def _parse_command(form: FormData) -> tuple[str, str | None, int | None]:
    """``command=relay:on`` (buttons) or ``command=interval`` with ``value`` seconds."""
    action, _, state = _field(form, "command", 40).partition(":")
    if action not in COMMANDS:
        raise ParameterError(
            f"unknown command {action!r}; use relay on|off, flash on|off, capture now or interval"
        )
    if action != "interval":
        return action, state or None, None
    text = _field(form, "value", 20).strip()
    try:
        value = int(text)
    except ValueError:
        lo, hi = COMMANDS["interval"][1] or (10, 86400)
        raise ParameterError(
            f"the interval must be a whole number of seconds ({lo}..{hi}), got {text!r}"
        ) from None
    return action, None, value


@router.post("/meters/{device_id}/commands")
async def send_command(device_id: int, request: Request) -> Response:
    """Queue a command for the device (operator or admin), then back to the meter page."""
    who = _who(request)
    if who is None:
        return RedirectResponse(f"/login?next=/meters/{device_id}", status_code=303)
    if not who.can("operator"):
        return _forbidden(request, who, "Sending commands")
    store = _store(request)
    dev = await run_in_threadpool(_device_or_none, store, device_id)
    if dev is None:
        return _no_meter(request, who, device_id)
    form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
    ttl = float(request.app.state.settings.command_ttl_s)
    try:
        action, state, value = _parse_command(form)
        cmd = await run_in_threadpool(
            lambda: store.add_command(
                device_id, action, state=state, value=value, actor=who.name, ttl_s=ttl
            )
        )
    except InputError as exc:
        ctx = await run_in_threadpool(_meter_context, store, dev, who)
        return _page(
            request,
            "meter.html",
            who,
            422,
            command_error=str(exc),
            interval_value=_field(form, "value", 20),
            **ctx,
        )
    try:
        request.app.state.publish_command(dev, cmd)
    except Exception as exc:  # MQTT is best effort: the device also polls over HTTP
        log.warning("command publish failed", extra={"device": device_id, "error": str(exc)})
    return RedirectResponse(f"/meters/{device_id}?sent={cmd.id}#commands", status_code=303)


@router.get("/meters/{device_id}/counter.json")
def counter_json(device_id: int, request: Request, days: float = 31.0) -> Response:
    """Accepted counter values of the last ``days`` (about 2000 points at most, evenly
    thinned as they are read)."""
    who = _who(request)
    if who is None:
        return JSONResponse({"detail": "log in first"}, status_code=401)
    store = _store(request)
    dev = _device_or_none(store, device_id)
    if dev is None:
        return JSONResponse({"detail": f"no device with id {device_id}"}, status_code=404)
    days = min(max(days, 1 / 24), 3660.0) if math.isfinite(days) else 31.0
    t, v = counter_thinned(store, device_id, time.time() - days * 86400.0, 2000)
    return JSONResponse({"unit": dev.unit, "t": t.tolist(), "v": v.tolist()})


# ------------------------------------------------------------------------------ the photo


def _latest_photo_reading(store: Store, device_id: int) -> Reading | None:
    with store.session() as s:
        return s.scalar(
            select(Reading)
            .where(Reading.device_id == device_id, Reading.image_path.is_not(None))
            .order_by(Reading.captured_at.desc(), Reading.id.desc())
            .limit(1)
        )


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode()


def _placeholder(status_code: int, text: str, size: tuple[int, int] = (640, 480)) -> Response:
    """A grey JPEG that says what is missing (an <img> shows it instead of a broken icon)."""
    w, h = size
    img = np.full((h, w, 3), 228, np.uint8)
    cv2.rectangle(img, (8, 8), (w - 9, h - 9), (180, 180, 180), 2)
    scale = w / 900
    (tw, th), _ = cv2.getTextSize(_ascii(text), cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = (max(10, (w - tw) // 2), (h + th) // 2)
    cv2.putText(img, _ascii(text), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (90, 90, 90), 2)
    return Response(
        encode_jpeg(img, 85),
        status_code=status_code,
        media_type="image/jpeg",
        headers={"Cache-Control": "no-store"},
    )


def _label(img: _U8, text: str, org: tuple[int, int], scale: float, color: Any) -> None:
    """Text with a dark outline, readable on any background."""
    t = _ascii(text)
    thick = max(1, round(scale * 2))
    x, y = org
    for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1), (0, 2)):  # same glyph widths as the text
        cv2.putText(
            img, t, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA
        )
    cv2.putText(img, t, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _conf_color(conf: float | None) -> tuple[int, int, int]:
    if conf is None:
        return (200, 200, 200)
    if conf >= 0.9:
        return (60, 200, 60)
    if conf >= 0.6:
        return (0, 170, 255)
    return (60, 60, 240)


def draw_reading(img: _U8, roi: Any, reading: Reading, unit: str, note: str | None = None) -> _U8:
    """Draw the ROI digit boxes, each digit's value and confidence, and a status banner.

    Parameters
    ----------
    img : numpy.ndarray
        BGR photo in the frame the ROI boxes refer to (aligned, or raw when alignment
        failed or the meter has no reference).
    roi : gridlens.meter.MeterROI
        The meter's digit (and marker) boxes.
    reading : Reading
        The stored reading of this photo (``digits``: value and confidence per wheel).
    unit : str
        Counter unit, for the banner.
    note : str, optional
        A warning line (e.g. that alignment failed).

    Returns
    -------
    numpy.ndarray
        A new annotated image.
    """
    out: _U8 = np.ascontiguousarray(img.copy())
    h, w = out.shape[:2]
    scale = max(0.45, w / 1100)
    for m in roi.markers:
        cv2.rectangle(out, (m.x, m.y), (m.x2, m.y2), (255, 160, 40), 1)
    stored = reading.digits or []
    digits = [d for d in stored if "factor" not in d]  # dials are stored with their factor
    dial_reads = {float(d["factor"]): d for d in stored if "factor" in d}
    for dial in roi.dials:
        b, dr = dial.box, dial_reads.get(dial.factor)
        conf = None if dr is None else float(dr.get("confidence", 0.0))
        color = _conf_color(conf)
        hub = (b.x + b.w // 2, b.y + b.h // 2)
        cv2.ellipse(out, (hub, (b.w, b.h), 0.0), color, 2)
        if dr is None:
            continue
        turn = float(dr["value"]) * 36.0 * (1 if dial.direction == "cw" else -1)
        a = math.radians(dial.zero_deg + turn)
        tip = (int(hub[0] + 0.42 * b.w * math.sin(a)), int(hub[1] - 0.42 * b.h * math.cos(a)))
        cv2.line(out, hub, tip, color, 2)
        text = f"x{dial.factor:g} {float(dr['value']):.1f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.85, 1)
        _label(out, text, (hub[0] - tw // 2, min(h - 3, b.y2 + th + 6)), scale * 0.85, color)
    for k, b in enumerate(roi.digits):
        d = digits[k] if k < len(digits) else None
        conf = None if d is None else float(d.get("confidence", 0.0))
        color = _conf_color(conf)
        cv2.rectangle(out, (b.x, b.y), (b.x2, b.y2), color, 2)
        if d is None:
            continue
        (tw, th), _ = cv2.getTextSize(f"{d['value']:.1f}", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cx = b.x + b.w // 2
        _label(out, f"{d['value']:.1f}", (cx - tw // 2, max(th + 2, b.y - 5)), scale, color)
        ctext = f"{100 * (conf or 0.0):.0f}%"
        (cw, ch), _ = cv2.getTextSize(ctext, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.85, 1)
        _label(out, ctext, (cx - cw // 2, min(h - 3, b.y2 + ch + 6)), scale * 0.85, color)
    when = datetime.fromtimestamp(reading.captured_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if reading.status == "ok" and reading.value is not None:
        head, color = f"{when}  ok  {reading.value:.{roi.places}f} {unit}", (60, 220, 60)
    else:
        head, color = f"{when}  rejected: {reading.reason or '?'}", (80, 80, 255)
    lines = [head] + ([note] if note else [])
    bar = int(26 * scale / 0.4) * len(lines)
    band = out[:bar]
    band[:] = (band * 0.35).astype(np.uint8)
    max_chars = max(20, int(w / (16 * scale)))
    for i, line in enumerate(lines):
        text = line if len(line) <= max_chars else line[: max_chars - 3] + "..."
        c = color if i == 0 else (0, 200, 255)
        _label(out, text, (8, int((i + 0.75) * bar / len(lines))), scale, c)
    return out


@router.get("/meters/{device_id}/latest.jpg")
def latest_jpg(device_id: int, request: Request) -> Response:
    """The newest stored photo, aligned to the reference, with digit boxes and values."""
    if _who(request) is None:
        return Response("log in first", status_code=401, media_type="text/plain")
    store = _store(request)
    dev = _device_or_none(store, device_id)
    if dev is None:
        return _placeholder(404, "no such meter")
    r = _latest_photo_reading(store, device_id)
    if r is None or not r.image_path:
        return _placeholder(404, "no photo yet")
    root = request.app.state.settings.images.resolve()
    path = (root / r.image_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return _placeholder(404, "photo no longer stored (pruned)")
    if in_setup(dev):  # no boxes to draw yet: the photo as the camera took it
        return Response(
            path.read_bytes(),
            media_type="image/jpeg",
            headers={"Cache-Control": "no-store", "X-Gridlens-Reading": str(r.id)},
        )
    try:
        img = decode_image(path)
    except GridlensError:
        return _placeholder(404, "stored photo is unreadable")
    entry = request.app.state.readers.get(dev)
    note = None
    align = "none"
    with entry.lock:  # OpenCV feature objects are not shared between threads
        reader = entry.reader
        roi = reader.roi
        if reader.aligner is not None:
            try:
                img = reader.aligner.align(img).warped
                align = "ok"
            except GridlensError as exc:
                align = "failed"
                note = "alignment failed: boxes drawn on the raw photo"
                log.info("latest photo not aligned", extra={"device": device_id, "error": str(exc)})
    out = draw_reading(img, roi, r, dev.unit, note)
    return Response(
        encode_jpeg(out, 88),
        media_type="image/jpeg",
        headers={
            "Cache-Control": "no-store",
            "X-Gridlens-Alignment": align,
            "X-Gridlens-Reading": str(r.id),
        },
    )


# ------------------------------------------------------------------------------ power quality


@dataclasses.dataclass(frozen=True)
class _PQOptions:
    f0_hz: float = 60.0
    fs_hz: float | None = None
    window_cycles: int | None = None
    track: bool = True
    v_channel: str | None = None
    i_channel: str | None = None


def _pq_options(form: FormData) -> tuple[_PQOptions, dict[str, str]]:
    raw = {
        k: _field(form, k, 40).strip()
        for k in ("f0", "fs", "window_cycles", "v_channel", "i_channel")
    }
    raw["track"] = "on" if _field(form, "track", 5) else ""

    def positive(key: str, what: str) -> float | None:
        if not raw[key]:
            return None
        try:
            x = float(raw[key])
        except ValueError:
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            raise ParameterError(f"{what} must be a number > 0, got {raw[key]!r}")
        return x

    f0 = positive("f0", "nominal frequency") or 60.0
    if not 1.0 <= f0 <= 1000.0:
        raise ParameterError(f"nominal frequency must be 1-1000 Hz (50 or 60), got {f0:g}")
    wc = None
    if raw["window_cycles"]:
        try:
            wc = int(raw["window_cycles"])
        except ValueError:
            raise ParameterError(
                f"cycles per window must be a whole number, got {raw['window_cycles']!r}"
            ) from None
    opts = _PQOptions(
        f0_hz=f0,
        fs_hz=positive("fs", "sampling rate"),
        window_cycles=wc,
        track=bool(raw["track"]),
        v_channel=raw["v_channel"] or None,
        i_channel=raw["i_channel"] or None,
    )
    return opts, raw


def _display_name(name: str | None) -> str:
    base = Path((name or "").replace("\\", "/")).name
    return _ascii(base)[:120] or "upload"


def _analyse(files: list[tuple[str, bytes]], opts: _PQOptions) -> dict[str, Any]:
    """``gridlens pf`` on uploaded files: read, analyse, plot (PNG as a data: URI)."""
    from gridlens import pq
    from gridlens.pq.plot import plot_report

    primary = [(n, b) for n, b in files if Path(n).suffix.lower() in _PQ_SUFFIXES]
    if len(primary) != 1:
        raise ParameterError(
            "choose one waveform file: CSV (t,v,i or v,i), .npz (v, i, fs) or a COMTRADE .cfg"
            " together with its .dat"
            if not primary
            else "choose only one waveform file (a COMTRADE .cfg may come with its .dat)"
        )
    name, data = primary[0]
    suffix = Path(name).suffix.lower()
    dats = [b for n, b in files if Path(n).suffix.lower() == ".dat"]
    if suffix == ".cfg" and not dats:
        raise ParameterError(f"{name} is a COMTRADE .cfg: select its .dat file as well")
    with tempfile.TemporaryDirectory(prefix="gridlens-pq-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        if suffix == ".cfg":
            (Path(tmp) / "upload.dat").write_bytes(dats[0])
        try:
            wf = pq.read_waveform(
                path,
                fs_hz=opts.fs_hz,
                v_channel=opts.v_channel,
                i_channel=opts.i_channel,
                max_samples=PQ_MAX_SAMPLES,
            )
            wf = dataclasses.replace(wf, source=name)
            rep = pq.analyze(
                wf.v,
                wf.i,
                wf.fs_hz,
                f0_hz=opts.f0_hz,
                window_cycles=opts.window_cycles,
                track_frequency=opts.track,
            )
        except GridlensError as exc:
            msg = str(exc).replace(str(path), name).replace(tmp + "/", "")
            for flag, field in _CLI_WORDS:
                msg = msg.replace(flag, field)
            raise type(exc)(msg.splitlines()[0] if msg else type(exc).__name__) from None
        png_path = Path(tmp) / "plot.png"
        with _PLOT_LOCK:
            plot_report(wf, rep, png_path)
        png = png_path.read_bytes()
    a = rep.aggregate
    return {
        "name": name,
        "samples": len(wf.v),
        "fs_hz": wf.fs_hz,
        "duration_s": wf.duration_s,
        "f_hz": a.f_hz,
        "f0_hz": rep.f0_hz,
        "tracked": rep.tracked,
        "windows": rep.n_windows,
        "window_cycles": rep.window_cycles,
        "p1_w": a.p1_w,
        "q1_var": a.q1_var,
        "s1_va": a.s1_va,
        "v1_rms_v": a.v1_rms_v,
        "i1_rms_a": a.i1_rms_a,
        "v_rms_v": a.v_rms_v,
        "i_rms_a": a.i_rms_a,
        "p_w": a.p_w,
        "pf": {
            "dq": a.pf1,
            "power_triangle": a.pf_power_triangle,
            "time_delay": a.pf_time_delay,
        },
        "q_time_delay_var": a.q_time_delay_var,
        "displacement": rep.displacement,
        "pf1_min": float(rep.windows.pf1.min()),
        "pf1_max": float(rep.windows.pf1.max()),
        "thd_v": a.thd_v,
        "thd_i": a.thd_i,
        "plot": "data:image/png;base64," + base64.b64encode(png).decode(),
    }


def _pq_page(
    request: Request,
    who: Principal,
    status_code: int = 200,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    raw: dict[str, str] | None = None,
) -> Response:
    return _page(
        request,
        "pq.html",
        who,
        status_code,
        nav="pq",
        error=error,
        result=result,
        raw=raw or {"f0": "60", "track": "on"},
        max_mb=PQ_MAX_BYTES // (1024 * 1024),
    )


@router.get("/pq")
def pq_form(request: Request) -> Response:
    """The waveform upload form."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    return _pq_page(request, who)


@router.post("/pq")
@body_limit(None)  # read_form below, with a limit and a 413 in the page's words
async def pq_upload(request: Request) -> Response:
    """Analyse an uploaded waveform like ``gridlens pf`` and show the results and plot."""
    who = _user_or_response(request)
    if isinstance(who, Response):
        return who
    mb = PQ_MAX_BYTES // (1024 * 1024)
    try:
        form = await read_form(
            request, PQ_MAX_BYTES + _FORM_SLACK, max_files=3, max_fields=20, max_part_size=16 * 1024
        )
    except PayloadTooLarge:
        return _pq_page(
            request,
            who,
            413,
            error=f"the upload is larger than {mb} MB, the limit here; analyse a shorter "
            "record (a few seconds are enough) or use `gridlens pf` on the command line",
        )
    except Exception as exc:  # a malformed multipart body
        return _pq_page(request, who, 400, error=f"could not read the upload: {exc}")
    files: list[tuple[str, bytes]] = []
    try:
        opts, raw = _pq_options(form)
    except InputError as exc:
        return _pq_page(request, who, 422, error=str(exc))
    try:
        for f in form.getlist("file"):
            if isinstance(f, UploadFile) and f.filename:
                data = await f.read()
                if len(data) > PQ_MAX_BYTES:
                    return _pq_page(request, who, 413, error=f"the file is larger than {mb} MB")
                files.append((_display_name(f.filename), data))
    finally:
        await form.close()
    if not files:
        return _pq_page(request, who, 422, error="choose a waveform file to upload", raw=raw)
    try:
        result = await run_in_threadpool(_analyse, files, opts)
    except InputError as exc:
        return _pq_page(request, who, 422, error=str(exc), raw=raw)
    except GridlensError as exc:
        return _pq_page(request, who, 422, error=f"no answer for this record: {exc}", raw=raw)
    except (ValueError, OSError) as exc:
        log.warning("pq upload failed", extra={"error": repr(exc)})
        return _pq_page(request, who, 422, error=f"could not analyse the file: {exc}", raw=raw)
    return _pq_page(request, who, result=result, raw=raw)


# ------------------------------------------------------------------------------ placeholders
