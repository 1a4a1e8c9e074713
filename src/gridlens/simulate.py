"""Simulated ESP32-CAM meter cameras that upload photos to a gridlens server.

The simulator is a *client* of the server's device API, the same one the firmware in
``devices/esp32cam`` speaks, so it exercises the server the way a fleet of cameras would:

1. :class:`~gridlens.loadprofiles.ConsumptionProfile` (in :mod:`gridlens.loadprofiles`, re-exported
   here) is the load behind each meter: kW (m³/h for water) as a function of time, and the
   register at any instant: households, factories, household water.
2. :class:`SimMeter` is one meter layout seen by one camera: the reference image and ROI it
   registers with, and photos of the register at any reading (:mod:`gridlens.meter.synth`;
   a water meter, 5 wheels and 4 pointer dials x0.1 ... x0.0001 m³, from
   :mod:`gridlens.meter.synth_dial_meters`).
3. :class:`Simulator` registers ``n_devices`` cameras through ``POST /api/v1/devices`` (or
   reuses them from a state file), then takes a photo per device every ``interval_s`` of
   simulated time and uploads it like the firmware does: a capture id and ``X-Captured-At``
   per photo, retries of 5xx answers and network errors with the *same* capture id, a
   bounded queue of unsent photos, commands from every upload answer (and optionally from
   polling) executed and acknowledged.

**Clock.** ``sim_time = start + (wall - wall0) * speedup``. ``speedup=0`` is "as fast as
possible": each device's photos follow at ``interval_s`` of simulated time, sent back to
back, up to ``start + duration_s`` (or up to the real time at :meth:`Simulator.run` when
``duration_s`` is None). With ``follow=True`` a fast run catches up with the real clock and
then continues in real time, which is how ``gridlens simulate --backfill 24h --forever``
works. When the server is slower than the schedule, photos are late, never skipped: each
keeps the simulated time it was due at.

**Capture ids** are ``sim-<captured-at in ms since 1970>``: unique per device and the same
on every run, so re-running a backfill over the same hours gives duplicates (counted), not
double data.

**Relay.** A relay ``off`` command disconnects the load: the register stops until ``on``.

**Injected anomalies** (:class:`InjectedAnomaly`, ``anomalies=`` of :class:`Simulator`)
change what a device's register shows in a span of time: ``night-load`` adds a machine's
power (a machine left running at night), ``stuck`` freezes the register (the energy used
meanwhile is never counted), ``holiday`` keeps only a fraction of the load (a working day
that looks like a holiday). :func:`plan_demo_anomalies` places one of each in a fleet's
last week, as ``gridlens demo`` does.

The module uses only the HTTP API (httpx), never the server or store packages.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError, InputError, ParameterError, check_param
from gridlens.loadprofiles import (
    _DAY_S,
    _WATER_MAX_M3H,
    KINDS,
    ConsumptionProfile,
    _epoch,
    factory_profile,
    household_profile,
    water_profile,
)
from gridlens.meter.image import encode_jpeg
from gridlens.meter.roi import MeterROI
from gridlens.meter.synth import matches_register, render_meter, render_reference
from gridlens.meter.synth_dial_meters import (
    WATER_FACTORS,
    render_water_meter,
    render_water_reference,
)

__all__ = [
    "ANOMALY_KINDS",
    "ConsumptionProfile",
    "DeviceState",
    "InjectedAnomaly",
    "SimMeter",
    "Simulator",
    "SimulatorError",
    "factory_profile",
    "history_points",
    "household_profile",
    "make_meter",
    "parse_duration",
    "parse_start",
    "plan_demo_anomalies",
    "water_profile",
]

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)

API = "/api/v1"
#: Largest accepted ``interval`` command and ``interval_s`` (the protocol's range).
INTERVAL_RANGE = (10.0, 86400.0)

# Meter layouts in the synth renderer are cached (16 entries, ~15 ms to build), so devices
# share a few face designs; each still registers its own reference.
_HOUSEHOLD_LAYOUTS = 10
_FACTORY_LAYOUTS = 4
_WATER_LAYOUTS = 4
#: How far an accepted water reading may be from the rendered register to count as matching
#: it [m³]: the issue's target for whole water-meter photos.
WATER_TOLERANCE_M3 = 0.002


class SimulatorError(InputError):
    """The server refused the simulator: bad token, name taken, unreachable, bad answer."""


# ----------------------------------------------------------------------------- time


def _iso(t: float) -> str:
    """ISO 8601 UTC with a Z, whole seconds unless the time has a fraction."""
    dt = datetime.fromtimestamp(t, UTC)
    spec = "seconds" if dt.microsecond == 0 else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def parse_duration(text: str | float, what: str = "duration") -> float:
    """Parse a duration: seconds as a number, or ``90m``, ``1h``, ``1h30m``, ``2.5h``, ``7d``.

    Parameters
    ----------
    text : str or float
        The duration. Units: s, m (minutes), h, d, w; a bare number is seconds.
    what : str
        How to name it in the error message (e.g. ``"--duration"``).

    Returns
    -------
    float
        Seconds, > 0.

    Raises
    ------
    ParameterError
        Empty, negative, zero, not finite, or an unknown unit.

    Examples
    --------
    >>> parse_duration("1h30m"), parse_duration("90"), parse_duration("2d")
    (5400.0, 90.0, 172800.0)
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        total = float(text)
    else:
        s = str(text).strip().lower()
        pos, total, parts = 0, 0.0, 0
        for m in _DURATION_RE.finditer(s):
            if s[pos : m.start()].strip() or m.group(2) not in _UNITS:
                parts = -1
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos, parts = m.end(), parts + 1
        bare = [m.group(2) for m in _DURATION_RE.finditer(s)].count("")
        if parts <= 0 or s[pos:].strip() or (bare and parts > 1):
            raise ParameterError(
                f"{what} must be a duration like 3600, 90m, 1h, 1h30m or 2d; got {text!r}"
            )
    if not (math.isfinite(total) and total > 0):
        raise ParameterError(f"{what} must be a positive duration; got {text!r}")
    return total


def parse_start(text: str, now: datetime | None = None) -> datetime:
    """Parse a start time: ISO 8601 (UTC if no offset), ``now``, or ``-24h`` (before now).

    Parameters
    ----------
    text : str
        ``2026-11-21T10:00:00Z``, ``2026-11-21 10:00``, ``2026-11-21``, ``now``, ``-24h``,
        ``-90m``, ``+1h``.
    now : datetime, optional
        The reference for relative times (default: the current UTC time).

    Returns
    -------
    datetime
        Timezone-aware UTC.

    Raises
    ------
    ParameterError
        Unparsable.
    """
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    s = str(text).strip()
    if s.lower() == "now":
        return now
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        return now + timedelta(seconds=sign * parse_duration(s[1:], "--start"))
    try:
        dt = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ParameterError(
            f"--start must be an ISO 8601 time (2026-11-21T10:00:00Z), 'now' or relative to now "
            f"(-24h, -90m); got {text!r}"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# -------------------------------------------------------------------------- profiles


# ----------------------------------------------------------------------------- meters


@dataclass
class SimMeter:
    """One meter and the camera pointed at it.

    Attributes
    ----------
    kind : str
        ``"household"`` (6 wheels, 1 decimal, max rate 15 kWh/h), ``"factory"`` (7 wheels,
        no decimals, max rate 800 kWh/h) or ``"water"`` (5 wheels and 4 pointer dials x0.1,
        x0.01, x0.001, x0.0001 m³, max rate 2 m³/h; unit ``m3``).
    layout_seed : int
        Face design passed to :func:`gridlens.meter.synth.render_meter` (water:
        :func:`gridlens.meter.synth_dial_meters.render_water_meter`).
    profile : ConsumptionProfile
        The load behind the meter.
    reference : numpy.ndarray
        The reference image (BGR) registered with the server.
    roi : MeterROI
        Digit and marker boxes of the reference.
    """

    kind: str
    layout_seed: int
    profile: ConsumptionProfile
    reference: U8
    roi: MeterROI

    @property
    def n_digits(self) -> int:
        """Number of wheels."""
        return self.roi.n_digits

    @property
    def decimals(self) -> int:
        """Wheels after the decimal point."""
        return self.roi.decimals

    @property
    def max_rate(self) -> float:
        """Largest plausible consumption in unit per hour (sent at registration)."""
        return {"household": 15.0, "factory": 800.0}.get(self.kind, _WATER_MAX_M3H)

    @property
    def unit(self) -> str:
        """The register's unit: ``kWh``, or ``m3`` for a water meter."""
        return "m3" if self.kind == "water" else "kWh"

    @property
    def factors(self) -> tuple[float, ...]:
        """The pointer dials' factors, largest first (empty without dials)."""
        return tuple(d.factor for d in self.roi.dials_sorted)

    def register_at(self, energy_kwh: float) -> float:
        """The value the counter shows for a cumulative energy (it wraps at 10^integer
        wheels; the dials only add fractions)."""
        wrap = 10.0 ** (self.n_digits - self.decimals)
        return float(energy_kwh % wrap)

    def shown_at(self, energy_kwh: float) -> float:
        """What the register reads for a cumulative energy, as an imported reading: with
        dials, down to the finest dial's division (0.0001 m³), like the reader reports it, so
        that a photo taken while no water flows is not below the imported value; without
        dials the unrounded :meth:`register_at` (the demo's electricity history, on which its
        anomaly scores were tuned)."""
        value = self.register_at(energy_kwh)
        if not self.roi.dials:
            return value
        scale = 10.0**self.roi.places
        return round(math.floor(value * scale + 1e-6) / scale, self.roi.places)

    def matches(self, value: float | None, truth: float) -> bool:
        """Whether an accepted reading is the register a photo showed: every wheel exactly
        (:func:`gridlens.meter.synth.matches_register`), or with dials within
        :data:`WATER_TOLERANCE_M3` (across the wrap too)."""
        if not self.roi.dials:
            return matches_register(value, truth, self.decimals)
        if value is None:
            return False
        wrap = 10.0 ** (self.n_digits - self.decimals)
        d = abs(float(value) - truth) % wrap
        return min(d, wrap - d) <= WATER_TOLERANCE_M3

    def registration(self, name: str, interval_s: float | None = None) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/devices`` for this meter.

        ``interval_s`` (the expected photo interval) is added when given.
        """
        body: dict[str, Any] = {
            "name": name,
            "roi": self.roi.to_dict(),
            "reference_jpeg_b64": base64.b64encode(encode_jpeg(self.reference, 95)).decode(),
            "unit": self.unit,
            "max_rate": self.max_rate,
        }
        if interval_s is not None:
            body["interval_s"] = max(1, round(interval_s))
        return body

    def photo(
        self,
        reading: float,
        *,
        seed: int | np.random.Generator | None,
        flash: bool = True,
        jpeg_quality: int = 85,
    ) -> bytes:
        """A JPEG camera photo of the meter showing ``reading`` (wrapped to the counter).

        ``flash`` adds the flash LED's glare; each seed gives a different camera pose, glare,
        blur and noise.
        """
        if self.roi.dials:
            image = render_water_meter(
                self.register_at(reading),
                n_digits=self.n_digits,
                decimals=self.decimals,
                factors=self.factors,
                layout_seed=self.layout_seed,
                seed=seed,
                glare=0.5 if flash else 0.0,
                jpeg_quality=None,
            ).image
        else:
            image = render_meter(
                self.register_at(reading),
                n_digits=self.n_digits,
                decimals=self.decimals,
                layout_seed=self.layout_seed,
                seed=seed,
                glare=0.5 if flash else 0.0,
                jpeg_quality=None,
            ).image
        return encode_jpeg(image, jpeg_quality)


def make_meter(kind: str = "household", layout_seed: int = 0, profile_seed: int = 0) -> SimMeter:
    """Build the :class:`SimMeter` of a simulated device.

    Parameters
    ----------
    kind : {"household", "factory", "water"}
        Load and counter type.
    layout_seed : int
        Face design (a household uses 6 wheels with 1 decimal, a factory 7 wheels, a water
        meter 5 wheels and 4 dials x0.1 ... x0.0001 m³).
    profile_seed : int
        Seed of the :class:`ConsumptionProfile`.

    Returns
    -------
    SimMeter
    """
    check_param(kind in KINDS, "kind", "make_meter", f"one of {KINDS}", kind)
    profile = ConsumptionProfile(profile_seed, kind)
    if kind == "water":
        ref, roi_d = render_water_reference(
            5, 0, factors=WATER_FACTORS, layout_seed=layout_seed, seed=layout_seed
        )
        return SimMeter(kind, layout_seed, profile, ref, MeterROI.from_dict(roi_d))
    n_digits, decimals = (6, 1) if kind == "household" else (7, 0)
    ref, roi = render_reference(n_digits, decimals, layout_seed=layout_seed, seed=layout_seed)
    return SimMeter(kind, layout_seed, profile, ref, roi)


# ---------------------------------------------------------------------------- anomalies

ANOMALY_KINDS = ("night-load", "stuck", "holiday")


@dataclass(frozen=True)
class InjectedAnomaly:
    """An anomaly put into one device's register.

    Attributes
    ----------
    device : str
        The device's name (``meter-001``).
    kind : {"night-load", "stuck", "holiday"}
        ``night-load``: ``kw`` more power from ``start`` to ``end``; ``stuck``: the register
        shows its value at ``start`` until ``end`` and then counts on from there (the energy
        used meanwhile is lost); ``holiday``: only ``keep`` of the load is used.
    start, end : float
        Seconds since 1970 UTC, ``start < end``.
    kw : float
        ``night-load`` only: the extra power.
    keep : float
        ``holiday`` only: the fraction of the usual load that is left.
    """

    device: str
    kind: str
    start: float
    end: float
    kw: float = 0.0
    keep: float = 0.15

    def __post_init__(self) -> None:
        check_param(self.kind in ANOMALY_KINDS, "kind", "InjectedAnomaly",
                    f"one of {ANOMALY_KINDS}", self.kind)  # fmt: skip
        check_param(
            math.isfinite(self.start) and math.isfinite(self.end) and self.start < self.end,
            "end", "InjectedAnomaly", "a time after start", self.end,
        )  # fmt: skip
        check_param(math.isfinite(self.kw) and self.kw >= 0, "kw", "InjectedAnomaly",
                    "a number of kW >= 0", self.kw)  # fmt: skip
        check_param(0.0 <= self.keep <= 1.0, "keep", "InjectedAnomaly", "in [0, 1]", self.keep)

    def delta_kwh(self, energy: Any, t: float) -> float:
        """What the anomaly adds to the register at ``t``; ``energy(t)`` is the register
        without it."""
        if t <= self.start:
            return 0.0
        u = min(t, self.end)
        if self.kind == "night-load":
            return self.kw * (u - self.start) / 3600.0
        used = float(energy(u)) - float(energy(self.start))
        return -used if self.kind == "stuck" else -(1.0 - self.keep) * used

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``demo.json``): device, kind, start and end as ISO 8601."""
        return {
            "device": self.device,
            "kind": self.kind,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "start_s": self.start,
            "end_s": self.end,
            "kw": self.kw,
            "keep": self.keep,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InjectedAnomaly:
        return cls(
            str(d["device"]),
            str(d["kind"]),
            float(d["start_s"]),
            float(d["end_s"]),
            float(d.get("kw", 0.0)),
            float(d.get("keep", 0.15)),
        )


def plan_demo_anomalies(devices: list[tuple[str, str]], now: float) -> list[InjectedAnomaly]:
    """One anomaly of each kind in the last week of a fleet, at fixed hours (UTC).

    Parameters
    ----------
    devices : list of (name, kind)
        The fleet's devices in order, ``kind`` ``household``, ``factory`` or ``water``
        (water meters get none: the anomalies are electricity loads).
    now : float
        Seconds since 1970 UTC.

    Returns
    -------
    list of InjectedAnomaly
        ``stuck``: the first household's register from 06:00 to 22:00 yesterday;
        ``night-load``: a machine left running at night two nights ago, 22:00 to 06:00 (the
        first factory: 250 kW, a production line; else the last household: 2 kW);
        ``holiday``: the first factory's (else the last household's) most recent weekday at
        least five days ago, 00:00 to 24:00. Empty without electricity meters.
    """
    devices = [(n, k) for n, k in devices if k != "water"]
    if not devices:
        return []
    day0 = math.floor(now / _DAY_S) * _DAY_S
    homes = [n for n, k in devices if k == "household"]
    plants = [n for n, k in devices if k == "factory"]
    out: list[InjectedAnomaly] = []
    if homes:
        out.append(InjectedAnomaly(homes[0], "stuck", day0 - _DAY_S + 6 * 3600.0,
                                   day0 - _DAY_S + 22 * 3600.0))  # fmt: skip
    target = plants[0] if plants else (homes[-1] if len(homes) > 1 else devices[-1][0])
    kw = 250.0 if plants else 2.0
    night = day0 - 2 * _DAY_S - 2 * 3600.0
    out.append(InjectedAnomaly(target, "night-load", night, night + 8 * 3600.0, kw=kw))
    day = day0 - 5 * _DAY_S
    while ((day // _DAY_S) + 3) % 7 >= 5:  # 1970-01-01 was a Thursday: skip weekends
        day -= _DAY_S
    out.append(InjectedAnomaly(target, "holiday", day, day + _DAY_S))
    return out


def history_points(
    device: DeviceState, start: float, end: float, step_s: float = 600.0
) -> list[tuple[float, float]]:
    """The register a device shows every ``step_s`` from ``start`` up to ``end`` (its
    anomalies included; :meth:`SimMeter.shown_at`): (time, value) pairs to import as
    readings instead of photos."""
    check_param(step_s >= 1, "step_s", "history_points", ">= 1 s", step_s)
    t = math.ceil(start / step_s) * step_s
    out = []
    while t < end:
        out.append((t, device.meter.shown_at(device.energy_at(t))))
        t += step_s
    return out


# ---------------------------------------------------------------------------- devices


@dataclass
class _Photo:
    capture_id: str
    captured_at: float
    truth: float
    jpeg: bytes


@dataclass
class DeviceState:
    """One simulated camera during a run (see :attr:`Simulator.devices`).

    Attributes
    ----------
    name, device_id, token : registration on the server.
    meter : the meter it photographs.
    interval_s : current photo interval in simulated seconds (``interval`` commands change it).
    relay, flash : ``"on"`` or ``"off"``; the relay off stops the register.
    photos : photos taken; ``pending`` holds the ones not yet delivered.
    last_reading : the server's last ``reading`` object for this device.
    disabled : why the device stopped (the server refused its token), or None.
    """

    name: str
    index: int
    device_id: int
    token: str
    meter: SimMeter
    interval_s: float
    next_due: float = 0.0
    relay: str = "on"
    flash: str = "on"
    offset_kwh: float = 0.0
    off_since: float | None = None
    photos: int = 0
    pending: deque[_Photo] = field(default_factory=deque)
    executed: dict[int, tuple[bool, str]] = field(default_factory=dict)
    unacked: dict[int, tuple[bool, str]] = field(default_factory=dict)
    last_reading: dict[str, Any] | None = None
    last_poll: float = 0.0
    capture_now: bool = False
    disabled: str | None = None
    busy: bool = False
    anomalies: list[InjectedAnomaly] = field(default_factory=list)

    def energy_at(self, t: float) -> float:
        """Register energy at simulated time ``t``, with relay-off periods taken out and the
        injected anomalies put in."""
        if self.off_since is not None:
            t = min(t, self.off_since)
        raw = self.meter.profile.energy_kwh
        return raw(t) - self.offset_kwh + sum(a.delta_kwh(raw, t) for a in self.anomalies)

    def set_relay(self, state: str, t: float) -> None:
        """Switch the relay at simulated time ``t``; off disconnects the load."""
        if state == self.relay:
            return
        if state == "off":
            self.off_since = t
        elif self.off_since is not None:
            p = self.meter.profile
            self.offset_kwh += p.energy_kwh(max(t, self.off_since)) - p.energy_kwh(self.off_since)
            self.off_since = None
        self.relay = state

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device_id": self.device_id,
            "kind": self.meter.kind,
            "interval_s": self.interval_s,
            "relay": self.relay,
            "flash": self.flash,
            "photos": self.photos,
            "pending": len(self.pending),
            "disabled": self.disabled,
        }


# -------------------------------------------------------------------------- simulator


class Simulator:
    """A fleet of simulated meter cameras uploading to a gridlens server.

    Parameters
    ----------
    server : str
        Base URL, e.g. ``http://localhost:8000``.
    admin_token : str
        API token allowed to list and register devices.
    n_devices : int
        Number of cameras, named ``<name_prefix>-001`` ...
    interval_s : float
        Simulated seconds between a device's photos (10..86400).
    speedup : float
        Simulated seconds per wall second; 0 = as fast as possible.
    start : datetime, optional
        Simulated time of the first photos (default: now, whole seconds). Devices are
        staggered across the first interval.
    duration_s : float, optional
        Stop at ``start + duration_s`` of simulated time. None: forever, except for
        ``speedup=0`` without ``follow``, which stops at the real time :meth:`run` began.
    state_file : path, optional
        JSON ``{name: {device_id, token, ...}}``; devices in it are reused, new ones added,
        and the relay, flash and interval are saved at the end for the next run.
    name_prefix : str
        Device names are ``<prefix>-NNN``.
    seed : int
        Selects layouts and loads; device *i* gets its own.
    concurrency : int
        Worker threads (each renders and uploads one device's photo at a time).
    jpeg_quality : int
        Of the uploaded photos.
    progress : bool
        A tqdm line on stderr.
    n_factories : int
        How many of the devices (the last ones, before the water meters) meter a factory
        instead of a household.
    n_water : int
        How many of the devices (the very last ones) are a household's water meter (5 wheels
        and 4 pointer dials, unit ``m3``; see :func:`make_meter`).
    follow : bool
        With ``speedup=0``: once caught up with the real clock, continue in real time.
    poll_s : float, optional
        Also poll ``GET .../commands`` when a device has not talked to the server for this
        many wall seconds (commands arrive with every upload anyway).
    retries : int
        Immediate retries of a failed upload (5xx, network), with backoff 0.25 s, 0.5 s,
        1 s ... (at most 4 s); then the photo waits in the device's queue for its next turn.
    queue_limit : int
        Unsent photos a device keeps; beyond it the oldest is dropped (counted as failed).
    timeout_s : float
        HTTP timeout.
    client : httpx.Client, optional
        Use this client (e.g. Starlette's ``TestClient(app)`` with
        ``server="http://testserver"``) instead of opening one.
    anomalies : sequence of InjectedAnomaly
        Put into the devices they name (kept in the state file, so a later run goes on
        with the same registers).
    """

    def __init__(
        self,
        server: str,
        admin_token: str,
        n_devices: int,
        interval_s: float = 60.0,
        speedup: float = 1.0,
        start: datetime | None = None,
        duration_s: float | None = None,
        state_file: str | os.PathLike[str] | None = None,
        name_prefix: str = "sim",
        seed: int = 0,
        concurrency: int = 4,
        jpeg_quality: int = 85,
        progress: bool = True,
        *,
        n_factories: int = 0,
        n_water: int = 0,
        follow: bool = False,
        poll_s: float | None = None,
        retries: int = 3,
        queue_limit: int = 100,
        timeout_s: float = 30.0,
        client: httpx.Client | None = None,
        anomalies: Sequence[InjectedAnomaly] = (),
    ) -> None:
        def _num(v: object) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        def _int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        lo, hi = INTERVAL_RANGE
        checks: list[tuple[str, object, bool, str]] = [
            ("server", server, isinstance(server, str)
             and server.startswith(("http://", "https://")), "an http:// or https:// URL"),
            ("admin_token", "(hidden)", isinstance(admin_token, str)
             and bool(admin_token.strip()), "a non-empty API token"),
            ("n_devices", n_devices, _int(n_devices) and 1 <= n_devices <= 999,
             "an int in [1, 999]"),
            ("interval_s", interval_s, _num(interval_s) and lo <= interval_s <= hi,
             f"a number of seconds in [{lo:g}, {hi:g}]"),
            ("speedup", speedup, _num(speedup) and speedup >= 0,
             "a number >= 0 (0 = as fast as possible)"),
            ("duration_s", duration_s, duration_s is None
             or (_num(duration_s) and duration_s > 0), "None or a positive number of seconds"),
            ("start", start, start is None or isinstance(start, datetime), "None or a datetime"),
            ("name_prefix", name_prefix, isinstance(name_prefix, str)
             and re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name_prefix) is not None,
             "1-40 letters, digits, '_', '.' or '-'"),
            ("seed", seed, _int(seed) and seed >= 0, "an int >= 0"),
            ("concurrency", concurrency, _int(concurrency) and 1 <= concurrency <= 64,
             "an int in [1, 64]"),
            ("jpeg_quality", jpeg_quality, _int(jpeg_quality) and 1 <= jpeg_quality <= 100,
             "an int in [1, 100]"),
            ("n_factories", n_factories, _int(n_factories) and _int(n_devices)
             and 0 <= n_factories <= n_devices, "an int in [0, n_devices]"),
            ("n_water", n_water, _int(n_water) and _int(n_devices) and _int(n_factories)
             and 0 <= n_water <= n_devices - n_factories, "an int in [0, n_devices - n_factories]"),
            ("poll_s", poll_s, poll_s is None or (_num(poll_s) and poll_s > 0),
             "None or a positive number of seconds"),
            ("retries", retries, _int(retries) and 0 <= retries <= 10, "an int in [0, 10]"),
            ("queue_limit", queue_limit, _int(queue_limit) and queue_limit >= 1, "an int >= 1"),
            ("timeout_s", timeout_s, _num(timeout_s) and timeout_s > 0,
             "a positive number of seconds"),
        ]  # fmt: skip
        for name, value, ok, expected in checks:
            check_param(ok, name, "Simulator", expected, value)
        now = time.time()
        t0 = float(math.floor(now if start is None else _epoch(start)))
        if speedup == 0 and not follow and duration_s is None and (start is None or t0 >= now):
            raise ParameterError(
                "speedup=0 (as fast as possible) without duration_s runs up to now, but start "
                "is not in the past; give duration_s, an earlier start, or follow=True"
            )
        self.server = server.rstrip("/")
        self.admin_token = admin_token.strip()
        self.n_devices = n_devices
        self.interval_s = float(interval_s)
        self.speedup = float(speedup)
        self.start = t0
        self.duration_s = None if duration_s is None else float(duration_s)
        self.state_file = None if state_file is None else Path(state_file)
        self.name_prefix = name_prefix
        self.seed = seed
        self.concurrency = concurrency
        self.jpeg_quality = jpeg_quality
        self.progress = progress
        self.n_factories = n_factories
        self.n_water = n_water
        self.follow = follow
        self.poll_s = poll_s
        self.retries = retries
        self.queue_limit = queue_limit
        self.timeout_s = float(timeout_s)
        self._client = client
        self._own_client = client is None
        self.anomalies = list(anomalies)
        if not all(isinstance(a, InjectedAnomaly) for a in self.anomalies):
            raise ParameterError("Simulator: anomalies must be InjectedAnomaly objects")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._devices: list[DeviceState] = []
        self._counts = dict.fromkeys(
            (
                "uploads",
                "ok",
                "rejected",
                "duplicates",
                "failed",
                "retries",
                "mismatched",
                "commands_acked",
            ),
            0,
        )
        self._render_s = 0.0
        self._upload_s = 0.0
        self._uploads_timed = 0
        self._last_capture: float | None = None
        self._wall0 = time.monotonic()
        self._end: float | None = None
        #: Recent events (relay and flash changes, refused uploads), newest last.
        self.events: deque[str] = deque(maxlen=1000)

    # ------------------------------------------------------------------ public API

    @property
    def devices(self) -> list[DeviceState]:
        """The devices of the run (after :meth:`register` or :meth:`run`)."""
        return list(self._devices)

    def device_name(self, index: int) -> str:
        """Name of device ``index`` (0-based): ``<prefix>-001`` for 0."""
        return f"{self.name_prefix}-{index + 1:03d}"

    def stop(self) -> None:
        """Ask :meth:`run` to finish: in-flight uploads complete, nothing new starts."""
        self._stop.set()

    def sim_now(self) -> float:
        """The simulated clock, seconds since 1970 UTC (inf: as fast as possible)."""
        if self.speedup > 0:
            return self.start + (time.monotonic() - self._wall0) * self.speedup
        return time.time() if self.follow else math.inf

    def register(self) -> list[DeviceState]:
        """Register the devices on the server, or reuse them from the state file.

        Raises
        ------
        SimulatorError
            The server is unreachable, refuses the admin token, or already has a device of
            that name that the state file does not know.
        """
        if self._devices:
            return self.devices
        state = self._load_state()
        r = self._call("GET", f"{API}/devices", self.admin_token, what="list devices")
        listing = _json(r, "GET /api/v1/devices")
        if isinstance(listing, dict) and isinstance(listing.get("devices"), list):
            listing = listing["devices"]
        if not isinstance(listing, list):
            raise SimulatorError(
                f"GET {self.server}{API}/devices answered {str(listing)[:80]!r}, not a list"
            )
        on_server = {
            str(d.get("name")): d.get("id", d.get("device_id"))
            for d in listing
            if isinstance(d, dict)
        }
        devices: list[DeviceState] = []
        for i in range(self.n_devices):
            name = self.device_name(i)
            entry = state.get(name)
            if isinstance(entry, dict) and entry.get("server", self.server) != self.server:
                entry = None
            if isinstance(entry, dict) and name in on_server:
                if on_server[name] != entry.get("device_id"):
                    raise SimulatorError(
                        f"device {name} is id {on_server[name]} on {self.server}, but the state "
                        f"file {self.state_file} says id {entry.get('device_id')}; use another "
                        "--prefix or state file"
                    )
                devices.append(self._device_from_state(i, name, entry))
                continue
            if name in on_server:
                raise SimulatorError(self._taken_message(name))
            kind, layout_seed, profile_seed = self._design(i)
            meter = make_meter(kind, layout_seed, profile_seed)
            r = self._call(
                "POST",
                f"{API}/devices",
                self.admin_token,
                what=f"register {name}",
                json=meter.registration(name, self.interval_s),
                accept=(409,),
            )
            if r.status_code == 409:
                raise SimulatorError(self._taken_message(name))
            body = _json(r, "POST /api/v1/devices")
            if not (isinstance(body, dict) and "device_id" in body and "token" in body):
                raise SimulatorError(
                    f"registering {name}: the server answered {str(body)[:120]!r} without "
                    "device_id and token"
                )
            dev = DeviceState(
                name, i, int(body["device_id"]), str(body["token"]), meter, self.interval_s
            )
            dev.anomalies = [a for a in self.anomalies if a.device == name]
            devices.append(dev)
            state[name] = self._state_entry(dev)
            self._save_state(state)
        given = {a.device for a in self.anomalies}
        for d in devices:
            if d.name in given:
                d.anomalies = [a for a in self.anomalies if a.device == d.name]
        if given:
            for d in devices:
                state[d.name] = self._state_entry(d)
            self._save_state(state)
        self._devices = devices
        return self.devices

    def run(self) -> dict[str, Any]:
        """Register (or reuse) the devices and upload photos until the end or :meth:`stop`.

        Ctrl-C stops the run like :meth:`stop`; the summary then has ``interrupted: true``.

        Returns
        -------
        dict
            ``uploads`` (photos taken) = ``ok + rejected + duplicates + failed + pending``;
            ``retries`` (repeated attempts); ``mismatched`` (accepted values that are not
            the rendered register); ``commands_acked``; ``seconds`` (wall); per-photo mean
            ``render_ms`` and ``upload_ms``; ``sim_start``/``sim_end``; ``device_states``.
        """
        t_wall = time.perf_counter()
        try:
            devices = self.register()
            self._wall0 = time.monotonic()
            real_now = time.time()
            if self.duration_s is not None:
                self._end = self.start + self.duration_s
            elif self.speedup == 0 and not self.follow:
                self._end = real_now
            else:
                self._end = None
            n = len(devices)
            for d in devices:
                d.next_due = self.start + math.floor(self.interval_s * d.index / n)
            interrupted = self._loop(devices)
        finally:
            if self._own_client and self._client is not None:
                self._client.close()
                self._client = None
        if self._devices:
            self._save_runtime_state()
        alive = [d for d in devices if d.disabled is None]
        if not alive:
            reasons = "; ".join(f"{d.name}: {d.disabled}" for d in devices[:3])
            raise SimulatorError(f"the server refused every device ({reasons})")
        return self._summary(time.perf_counter() - t_wall, interrupted)

    # -------------------------------------------------------------- scheduling

    def _loop(self, devices: list[DeviceState]) -> bool:
        interrupted = False
        bar = self._progress_bar(devices)
        running: dict[Future[None], DeviceState] = {}
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="gridlens-sim")
        error: BaseException | None = None
        try:
            while not self._stop.is_set():
                now = self.sim_now()
                idle = sorted(
                    (d for d in devices if not d.busy and d.disabled is None),
                    key=lambda d: d.next_due,
                )
                for d in idle:
                    if len(running) >= self.concurrency:
                        break
                    if self._end is not None and d.next_due >= self._end:
                        continue
                    if d.next_due <= now:
                        d.busy = True
                        running[pool.submit(self._photo_step, d, d.next_due)] = d
                    elif self.poll_s is not None and (
                        time.monotonic() - d.last_poll >= self.poll_s
                    ):
                        d.busy = True
                        running[pool.submit(self._poll_step, d)] = d
                waiting = [
                    d
                    for d in devices
                    if d.disabled is None and (self._end is None or d.next_due < self._end)
                ]
                if not running and not waiting:
                    break
                ready = [d for d in waiting if not d.busy]
                if len(running) >= self.concurrency or not ready:
                    timeout = 0.5  # a completion wakes us up
                else:
                    timeout = self._wall_until(min(d.next_due for d in ready), now)
                if not running:
                    self._stop.wait(timeout)
                    continue
                done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
                for f in done:
                    d = running.pop(f)
                    d.busy = False
                    exc = f.exception()
                    if exc is not None and error is None:
                        error = exc
                if error is not None:
                    break
                if bar is not None:
                    self._update_bar(bar)
        except KeyboardInterrupt:
            interrupted = True
            self._stop.set()
        finally:
            for f, d in running.items():
                with contextlib.suppress(Exception):
                    f.result()
                d.busy = False
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                self._update_bar(bar)
                bar.close()
        if error is not None:
            raise error
        if not interrupted:
            self._final_flush(devices)
        return interrupted

    def _wall_until(self, due: float, now: float) -> float:
        """Wall seconds to wait for simulated time ``due``, between 0.005 and 0.5."""
        if not math.isfinite(now) or due <= now:
            return 0.005
        wall = (due - now) / self.speedup if self.speedup > 0 else due - now
        return min(max(wall, 0.005), 0.5)

    def _final_flush(self, devices: list[DeviceState]) -> None:
        for d in devices:
            if d.disabled is None and (d.pending or d.unacked):
                self._flush(d, retries=self.retries)

    # ---------------------------------------------------------------- one step

    def _photo_step(self, d: DeviceState, due: float) -> None:
        self._flush_acks(d)
        flushed = self._flush(d, retries=0)
        t0 = time.perf_counter()
        energy = d.energy_at(due)
        truth = d.meter.register_at(energy)
        jpeg = d.meter.photo(
            energy,
            seed=np.random.default_rng([self.seed, d.index, round(due * 1000)]),
            flash=d.flash == "on",
            jpeg_quality=self.jpeg_quality,
        )
        dt = time.perf_counter() - t0
        photo = _Photo(f"sim-{round(due * 1000)}", due, truth, jpeg)
        with self._lock:
            self._render_s += dt
            self._counts["uploads"] += 1
            self._last_capture = due if self._last_capture is None else max(self._last_capture, due)
        d.photos += 1
        if flushed:
            outcome, commands = self._upload(d, photo, self.retries)
            if outcome == "pending":
                self._enqueue(d, photo)
            self._handle_commands(d, commands, due)
        else:  # the server is still down: queue without trying
            self._enqueue(d, photo)
        if d.disabled is None:
            nxt = due + d.interval_s
            if d.capture_now:
                d.capture_now = False
                soon = due + 1.0 if not math.isfinite(self.sim_now()) else self.sim_now()
                nxt = min(nxt, max(soon, due + 1.0))
            d.next_due = nxt
        d.last_poll = time.monotonic()

    def _poll_step(self, d: DeviceState) -> None:
        d.last_poll = time.monotonic()
        try:
            r = self._http("GET", f"{API}/devices/{d.device_id}/commands", d.token)
        except httpx.TransportError:
            return
        if r.status_code in (401, 403):
            self._disable(d, f"HTTP {r.status_code} polling commands")
            return
        if r.status_code != 200:
            return
        try:
            body = r.json()
        except ValueError:
            return
        cmds = body.get("commands", []) if isinstance(body, dict) else []
        if self._handle_commands(d, cmds if isinstance(cmds, list) else [], d.next_due):
            d.capture_now = False
            now = self.sim_now()
            d.next_due = min(d.next_due, now if math.isfinite(now) else d.next_due)

    def _enqueue(self, d: DeviceState, photo: _Photo) -> None:
        d.pending.append(photo)
        while len(d.pending) > self.queue_limit:
            lost = d.pending.popleft()
            self._count("failed")
            self._event(f"{d.name}: queue full, dropped photo {lost.capture_id}")

    def _flush(self, d: DeviceState, retries: int) -> bool:
        """Send queued photos, oldest first; False if one is still undeliverable."""
        self._flush_acks(d)
        while d.pending and d.disabled is None:
            photo = d.pending[0]
            outcome, commands = self._upload(d, photo, retries)
            if outcome == "pending":
                return False
            d.pending.popleft()
            self._handle_commands(d, commands, photo.captured_at)
        return True

    def _upload(
        self, d: DeviceState, photo: _Photo, retries: int
    ) -> tuple[str, list[dict[str, Any]]]:
        """POST one photo; the outcome is ok, rejected, duplicate, failed or pending."""
        headers = {
            "Content-Type": "image/jpeg",
            "X-Capture-Id": photo.capture_id,
            "X-Captured-At": _iso(photo.captured_at),
        }
        path = f"{API}/devices/{d.device_id}/images"
        for attempt in range(retries + 1):
            if attempt:
                self._count("retries")
                if self._stop.wait(min(0.25 * 2 ** (attempt - 1), 4.0)):
                    break
            t0 = time.perf_counter()
            try:
                r = self._http("POST", path, d.token, content=photo.jpeg, headers=headers)
            except httpx.TransportError:
                continue
            finally:
                with self._lock:
                    self._upload_s += time.perf_counter() - t0
                    self._uploads_timed += 1
            if r.status_code >= 500:
                continue
            if r.status_code in (401, 403, 404):
                self._disable(d, f"HTTP {r.status_code} on upload: {_detail(r)}")
                self._count("failed")
                return "failed", []
            if r.status_code not in (200, 201):  # 413, 422, ...: never accepted, drop it
                self._event(f"{d.name}: photo {photo.capture_id} refused: {_detail(r)}")
                self._count("failed")
                return "failed", []
            return self._outcome(d, photo, r)
        return "pending", []

    def _outcome(
        self, d: DeviceState, photo: _Photo, r: httpx.Response
    ) -> tuple[str, list[dict[str, Any]]]:
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._event(f"{d.name}: unreadable answer to {photo.capture_id}: {r.text[:80]!r}")
            self._count("failed")
            return "failed", []
        raw_cmds = body.get("commands") or []
        commands = (
            [c for c in raw_cmds if isinstance(c, dict)] if isinstance(raw_cmds, list) else []
        )
        reading = body.get("reading") if isinstance(body.get("reading"), dict) else None
        if reading is not None:
            d.last_reading = reading
        if body.get("duplicate") is True:
            self._count("duplicates")
            return "duplicate", commands
        if reading is not None and reading.get("status") == "ok":
            self._count("ok")
            value = reading.get("value")
            if not (isinstance(value, int | float) and d.meter.matches(float(value), photo.truth)):
                self._count("mismatched")
            return "ok", commands
        self._count("rejected")
        return "rejected", commands

    # ---------------------------------------------------------------- commands

    def _handle_commands(self, d: DeviceState, commands: list[Any], t: float) -> bool:
        """Execute new commands and ack them; True if one asked for a photo now."""
        for cmd in commands:
            if not isinstance(cmd, dict) or not isinstance(cmd.get("id"), int):
                continue
            cid = int(cmd["id"])
            if cid in d.executed:  # delivered again: our ack was lost, repeat it
                result = d.executed[cid]
            else:
                result = self._execute(d, cmd, t)
                d.executed[cid] = result
            d.unacked[cid] = result
        self._flush_acks(d)
        return d.capture_now

    def _execute(self, d: DeviceState, cmd: Mapping[str, Any], t: float) -> tuple[bool, str]:
        action, state, value = cmd.get("action"), cmd.get("state"), cmd.get("value")
        if action in ("relay", "flash"):
            if state not in ("on", "off"):
                return False, f"{action} state must be on or off, got {state!r}"
            before = d.relay if action == "relay" else d.flash
            if action == "relay":
                d.set_relay(str(state), t)
            else:
                d.flash = str(state)
            if before != state:
                self._event(f"{d.name}: {action} {before} -> {state} at {_iso(t)}")
            return True, f"{action} {state}"
        if action == "capture":
            d.capture_now = True
            return True, "capture now"
        if action == "interval":
            lo, hi = INTERVAL_RANGE
            if not (
                isinstance(value, int | float) and not isinstance(value, bool) and lo <= value <= hi
            ):
                return False, f"interval must be {lo:g}..{hi:g} s, got {value!r}"
            d.interval_s = float(value)
            self._event(f"{d.name}: interval {value:g} s")
            return True, f"interval {value:g} s"
        return False, f"unknown action {action!r}"

    def _flush_acks(self, d: DeviceState) -> None:
        for cid, (ok, detail) in list(d.unacked.items()):
            try:
                r = self._http(
                    "POST",
                    f"{API}/devices/{d.device_id}/commands/{cid}/ack",
                    d.token,
                    json={"ok": ok, "detail": detail},
                )
            except httpx.TransportError:
                return  # try again with the next photo
            if r.status_code >= 500:
                return
            del d.unacked[cid]
            if r.status_code in (200, 201, 204):
                self._count("commands_acked")
            else:
                self._event(f"{d.name}: ack of command {cid} refused: {_detail(r)}")

    # -------------------------------------------------------------------- HTTP

    def _http(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        client = self._get_client()
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return client.request(method, self.server + path, headers=headers, **kwargs)

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s)),
                    limits=httpx.Limits(max_connections=self.concurrency + 2),
                )
            return self._client

    def _call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        what: str,
        accept: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """A setup request: every failure is a :class:`SimulatorError`."""
        try:
            r = self._http(method, path, token, **kwargs)
        except httpx.TransportError as exc:
            raise SimulatorError(
                f"cannot reach {self.server} to {what}: {type(exc).__name__}: {exc}"
            ) from None
        if r.status_code in accept or 200 <= r.status_code < 300:
            return r
        if r.status_code in (401, 403):
            raise SimulatorError(
                f"the server refused the admin token (HTTP {r.status_code} to {what}): "
                f"{_detail(r)}; pass an admin API token with --token or GRIDLENS_TOKEN"
            )
        raise SimulatorError(
            f"{method} {self.server}{path} ({what}) answered HTTP {r.status_code}: {_detail(r)}"
        )

    # ------------------------------------------------------------------- state

    def _design(self, i: int) -> tuple[str, int, int]:
        if i >= self.n_devices - self.n_water:
            kind = "water"
        elif i >= self.n_devices - self.n_water - self.n_factories:
            kind = "factory"
        else:
            kind = "household"
        n_lay = {"household": _HOUSEHOLD_LAYOUTS, "factory": _FACTORY_LAYOUTS}.get(
            kind, _WATER_LAYOUTS
        )
        # from the name, so fleets with other prefixes get other meters; the seed varies all
        h = zlib.crc32(self.device_name(i).encode()) + self.seed * 1_000_003
        return kind, (self.seed + i) % n_lay, h % (1 << 31)

    def _taken_message(self, name: str) -> str:
        where = f"the state file {self.state_file}" if self.state_file else "no --state file"
        return (
            f"a device named {name} already exists on {self.server}, and {where} has no token "
            "for it; pass the --state file that registered it, or another --prefix"
        )

    def _device_from_state(self, i: int, name: str, entry: Mapping[str, Any]) -> DeviceState:
        kind, layout_seed, profile_seed = self._design(i)
        try:
            kind = str(entry.get("kind", kind))
            meter = make_meter(
                kind,
                int(entry.get("layout_seed", layout_seed)),
                int(entry.get("profile_seed", profile_seed)),
            )
            dev = DeviceState(
                name,
                i,
                int(entry["device_id"]),
                str(entry["token"]),
                meter,
                float(entry.get("interval_s", self.interval_s)),
            )
            dev.relay = "off" if entry.get("relay") == "off" else "on"
            dev.flash = "off" if entry.get("flash") == "off" else "on"
            dev.offset_kwh = float(entry.get("offset_kwh", 0.0))
            off = entry.get("off_since")
            dev.off_since = None if off is None else float(off)
            dev.anomalies = [InjectedAnomaly.from_dict(a) for a in entry.get("anomalies") or []]
        except (KeyError, TypeError, ValueError, ParameterError) as exc:
            raise DataFormatError(
                f"{self.state_file}: the entry of {name} is not valid ({exc}); fix or delete it"
            ) from None
        return dev

    def _state_entry(self, d: DeviceState) -> dict[str, Any]:
        return {
            "device_id": d.device_id,
            "token": d.token,
            "server": self.server,
            "kind": d.meter.kind,
            "layout_seed": d.meter.layout_seed,
            "profile_seed": d.meter.profile.seed,
            "interval_s": d.interval_s,
            "relay": d.relay,
            "flash": d.flash,
            "offset_kwh": d.offset_kwh,
            "off_since": d.off_since,
            "anomalies": [a.to_dict() for a in d.anomalies],
        }

    def _load_state(self) -> dict[str, Any]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read the state file {self.state_file}: {exc}") from None
        if not isinstance(data, dict):
            raise DataFormatError(
                f"the state file {self.state_file} must hold a JSON object "
                '{"name": {"device_id": .., "token": ..}}'
            )
        return data

    def _save_state(self, state: Mapping[str, Any]) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds tokens
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.state_file)

    def _save_runtime_state(self) -> None:
        if self.state_file is None:
            return
        state = self._load_state()
        for d in self._devices:
            state[d.name] = self._state_entry(d)
        self._save_state(state)

    # ---------------------------------------------------------------- counters

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _event(self, msg: str) -> None:
        self.events.append(msg)
        log.info(msg)

    def _disable(self, d: DeviceState, why: str) -> None:
        if d.disabled is None:
            d.disabled = why
            self._event(f"{d.name}: stopped, the server refused its token ({why})")

    def _summary(self, seconds: float, interrupted: bool) -> dict[str, Any]:
        c = dict(self._counts)
        pending = sum(len(d.pending) for d in self._devices)
        timed = max(self._uploads_timed, 1)
        photos = max(c["uploads"], 1)
        return {
            "server": self.server,
            "devices": len(self._devices),
            "uploads": c["uploads"],
            "ok": c["ok"],
            "rejected": c["rejected"],
            "duplicates": c["duplicates"],
            "failed": c["failed"],
            "pending": pending,
            "retries": c["retries"],
            "mismatched": c["mismatched"],
            "commands_acked": c["commands_acked"],
            "seconds": round(seconds, 3),
            "photos_per_s": round(c["uploads"] / seconds, 2) if seconds > 0 else None,
            "render_ms": round(1000 * self._render_s / photos, 2),
            "upload_ms": round(1000 * self._upload_s / timed, 2),
            "sim_start": _iso(self.start),
            "sim_end": None if self._last_capture is None else _iso(self._last_capture),
            "interrupted": interrupted,
            "stopped": self._stop.is_set(),
            "device_states": [d.to_dict() for d in self._devices],
        }

    # ---------------------------------------------------------------- progress

    def _progress_bar(self, devices: list[DeviceState]) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        total = None
        if self._end is not None:
            total = sum(max(0, math.ceil((self._end - d.next_due) / d.interval_s)) for d in devices)
        return tqdm(
            total=total,
            desc="simulate",
            unit="photo",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            smoothing=0.1,
        )

    def _update_bar(self, bar: Any) -> None:
        with self._lock:
            c = dict(self._counts)
            last = self._last_capture
        bar.set_postfix_str(
            f"ok {c['ok']} rej {c['rejected']} dup {c['duplicates']} fail {c['failed']} "
            f"cmd {c['commands_acked']}" + (f" at {_iso(last)}" if last is not None else ""),
            refresh=False,
        )
        bar.update(c["uploads"] - bar.n)  # redraws at most every mininterval


def _json(r: httpx.Response, what: str) -> Any:
    try:
        return r.json()
    except ValueError:
        raise SimulatorError(f"{what} answered {r.text[:80]!r}, not JSON") from None


def _detail(r: httpx.Response) -> str:
    """The server's error message: FastAPI's ``detail`` or the start of the body."""
    try:
        body = r.json()
    except ValueError:
        return r.text[:120] or f"HTTP {r.status_code}"
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:200]
    return str(body)[:120]
