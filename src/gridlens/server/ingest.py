"""Device uploads: photo -> gridlens.meter reading (with the meter's history) -> store.

Stateless apart from a per-process cache of meter readers (rebuilt when a device changes),
so any number of server processes can ingest for the same devices.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridlens.errors import DataFormatError, ParameterError
from gridlens.meter import History, Limits, MeterROI
from gridlens.meter.image import decode_image
from gridlens.store.models import Device
from gridlens.store.repo import (
    NewReading,
    Store,
    check_capture_id,
    device_command,
    in_setup,
    reading_dict,
    roi_without_image,
)
from gridlens.store.timeutil import iso, parse_time

log = logging.getLogger("gridlens.ingest")

MAX_FUTURE_S = 300.0  # a device clock may run a little ahead, not more


class PayloadTooLarge(ParameterError):
    """The upload is larger than the configured limit (HTTP 413)."""


@dataclass
class _Entry:
    updated_at: float
    reader: Any  # gridlens.meter.MeterReader (imported lazily: OpenCV features)
    lock: threading.Lock


class ReaderCache:
    """One :class:`~gridlens.meter.MeterReader` per device, least recently used evicted."""

    def __init__(self, size: int = 4096, *, concurrency: int = 2) -> None:
        self.size = size
        self._d: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._model: Any = None
        # reading is CPU work: a few at a time per process, the rest wait their turn
        # (many threads on 2 cores only add GIL and cache contention)
        self.slots = threading.BoundedSemaphore(concurrency)

    @property
    def model(self) -> Any:
        if self._model is None:
            from gridlens.meter.model import DigitReader

            self._model = DigitReader(threads=1)  # one core per read; processes scale out
        return self._model

    def get(self, dev: Device) -> _Entry:
        with self._lock:
            e = self._d.get(dev.id)
            if e is not None and e.updated_at == dev.updated_at:
                self._d.move_to_end(dev.id)
                return e
        from gridlens.meter import MeterReader

        roi = MeterROI.from_dict(roi_without_image(dev.roi))
        ref = decode_image(dev.reference_jpeg) if dev.reference_jpeg else None
        e = _Entry(
            dev.updated_at,
            # stored boxes are used as stored: they were refined when saved (device_roi)
            MeterReader(roi, reference=ref, model=self.model, refine=False),
            threading.Lock(),
        )
        with self._lock:
            self._d[dev.id] = e
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return e


def device_roi(roi: dict[str, Any], reference_jpeg: bytes | None) -> dict[str, Any]:
    """Validate a device's ROI (and that its boxes lie inside the reference photo); returns
    the ROI as stored, without the reference's file name (the photo goes in the database).

    Digit boxes not yet marked ``refined`` are refined against the reference photo here
    (:func:`gridlens.meter.refine.refine_boxes`), once, so that every reader uses the
    refined boxes and the dashboard shows them."""
    stored = roi_without_image(roi)
    parsed = MeterROI.from_dict(stored)
    if reference_jpeg is not None:
        img = decode_image(reference_jpeg)
        parsed.check_inside(img.shape[1], img.shape[0])
        if not parsed.refined:
            from gridlens.meter.refine import refine_boxes

            refined = refine_boxes(img, parsed).roi.to_dict()
            stored = {**stored, "digits": refined["digits"], "refined": True}
    return stored


def check_jpeg(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise PayloadTooLarge(
            f"photo is {len(body):,} bytes; the limit is {limit:,} bytes (lower the JPEG "
            "quality or the resolution)"
        )
    if len(body) < 4 or body[:3] != b"\xff\xd8\xff":
        raise DataFormatError(
            "body is not a JPEG photo (it must start with FF D8 FF; send Content-Type: image/jpeg)"
        )


def captured_time(header: str | None, now: float) -> float:
    if header is None or not header.strip():
        return now
    t = parse_time(header, "X-Captured-At")
    if t > now + MAX_FUTURE_S:
        raise ParameterError(
            f"X-Captured-At {header!r} is {t - now:.0f} s in the future; set the device clock (NTP)"
        )
    if t < 946684800:  # 2000-01-01: an unset RTC
        raise ParameterError(f"X-Captured-At {header!r} is before 2000; set the device clock (NTP)")
    return t


def save_image(root: Path, device_id: int, t: float, capture_id: str, body: bytes) -> str:
    """Write the photo atomically; returns its path relative to ``root``."""
    day = time.strftime("%Y-%m-%d", time.gmtime(t))
    rel = Path(str(device_id)) / day / f"{capture_id}.jpg"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return rel.as_posix()


def ingest(
    store: Store,
    cache: ReaderCache,
    device: Device,
    body: bytes,
    *,
    images: Path,
    max_bytes: int,
    capture_id: str | None = None,
    captured_at: str | None = None,
    keep: int = 16,
) -> tuple[dict[str, Any], bool]:
    """Read and store one upload; returns (response document, duplicate).

    Raises InputError subclasses (HTTP 4xx) before anything is stored. A photo captured
    before the newest accepted reading (``late`` in the answer) is judged against the
    readings on both sides of it.
    """
    now = time.time()
    check_jpeg(body, max_bytes)
    cid = check_capture_id(capture_id.strip()) if capture_id else uuid.uuid4().hex
    t = captured_time(captured_at, now)
    seen = store.upload_history(device.id, cid, t, keep)  # one query
    if seen.duplicate_id is not None:
        old = store.find_reading(device.id, cid)
        if old is not None:
            cmds = store.take_pending(device.id)
            return _response(old, cmds, device, True), True
    if in_setup(device):
        return _store_unread(store, device, body, cid, t, seen, images=images, now=now)
    accepted = seen.accepted
    # a late photo (kept by a device while offline) is judged against both its neighbours
    history = History(tuple(accepted), tuple(seen.pending), later=seen.later)
    limits = Limits(max_rate_per_h=device.max_rate, keep=keep)
    entry = cache.get(device)
    with cache.slots, entry.lock:  # OpenCV feature objects are not shared between threads
        img = decode_image(body, max_bytes=max_bytes)  # DataFormatError: truncated/corrupt
        reading = entry.reader.read(img, history=history, limits=limits, now=t)
    rate = None
    if reading.status == "ok" and accepted and reading.value is not None:
        t0, v0 = accepted[-1]
        if t > t0:
            rate = (reading.value - v0) / (t - t0) * 3600.0
    rel = save_image(images, device.id, t, cid, body)
    new = NewReading(
        device_id=device.id,
        capture_id=cid,
        captured_at=t,
        status=reading.status,
        value=reading.value,
        raw=reading.raw,
        digits=reading.digits + reading.dials,  # dials carry their factor
        reason=reading.reason,
        note=reading.note,
        resynced=reading.resynced,
        candidate=reading.candidate,
        alignment=_finite(reading.alignment),
        rate_per_h=None if rate is None else round(rate, 6),
        image_path=rel,
    )
    row, cmds, dup = store.add_reading(new, now=now, seen=seen)
    return _response(row, cmds, device, dup, late=seen.later is not None and not dup), dup


#: The reason stored with the photos of a meter that has no digit boxes yet.
SETUP_REASON = (
    "the meter is being set up: it has no digit boxes yet (draw them on this photo in the "
    "setup page)"
)


def _store_unread(
    store: Store,
    device: Device,
    body: bytes,
    cid: str,
    t: float,
    seen: Any,
    *,
    images: Path,
    now: float,
) -> tuple[dict[str, Any], bool]:
    """A photo of a meter in setup: kept (the setup page proposes boxes on it), not read."""
    decode_image(body)  # a photo that cannot be shown is refused here too (422)
    rel = save_image(images, device.id, t, cid, body)
    new = NewReading(
        device_id=device.id,
        capture_id=cid,
        captured_at=t,
        status="rejected",
        value=None,
        reason=SETUP_REASON,
        alignment={},
        image_path=rel,
    )
    row, cmds, dup = store.add_reading(new, now=now, seen=seen)
    return _response(row, cmds, device, dup), dup


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in d.items()
        if not isinstance(v, np.ndarray)
    }


def _response(
    row: Any, cmds: list[Any], device: Device, duplicate: bool, *, late: bool = False
) -> dict[str, Any]:
    """The upload's answer. ``late``: a photo captured after this one was already accepted,
    so this reading fills in the history and is not the meter's current value (it is not
    published over MQTT)."""
    return {
        "reading": reading_dict(row, device.unit),
        "commands": [device_command(c) for c in cmds],
        "duplicate": duplicate,
        "late": late,
        "server_time": iso(time.time()),
    }


def prune_images(root: Path, retention_days: float, now: float | None = None) -> int:
    """Delete day folders older than the retention; returns the number of files removed."""
    if retention_days <= 0 or not root.is_dir():
        return 0
    now = time.time() if now is None else now
    cutoff = time.strftime("%Y-%m-%d", time.gmtime(now - retention_days * 86400.0))
    removed = 0
    for dev_dir in root.iterdir():
        if not dev_dir.is_dir():
            continue
        for day in dev_dir.iterdir():
            if day.is_dir() and day.name < cutoff:
                for f in day.iterdir():
                    f.unlink(missing_ok=True)
                    removed += 1
                day.rmdir()
    return removed
