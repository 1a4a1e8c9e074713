"""Simulated consumption: the load behind each simulated meter, minute by minute.

:class:`ConsumptionProfile` gives the power (kW, or m³/h for water) as a function of time and
the register (cumulative kWh or m³) at any instant, drawn reproducibly from a seed in blocks of
32 days. :func:`household_profile` gives 5-20 kWh a day (base load, morning and evening
peaks, appliance runs); :func:`factory_profile` a weekday two-shift plant of a few MWh a day;
:func:`water_profile` a household's water, mostly 0.1-0.3 m³ a day (showers, toilet flushes,
taps, washing machine and dishwasher fills). The counts and rates are plausible, not fitted
to measured data. :mod:`gridlens.simulate` photographs these registers.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from gridlens.errors import check_param

__all__ = [
    "KINDS",
    "ConsumptionProfile",
    "TimeLike",
    "factory_profile",
    "household_profile",
    "water_profile",
]

F64 = npt.NDArray[np.float64]

TimeLike = datetime | float

KINDS = ("household", "factory", "water")
_BLOCK_DAYS = 32
_MIN_PER_DAY = 1440
_BLOCK_MIN = _BLOCK_DAYS * _MIN_PER_DAY
_ORIGIN_DAY = 20454  # 2026-01-01, days since 1970-01-01: where the register is initial_kwh
_DAY_S = 86400.0

# Household appliances: (kW, shortest and longest run in minutes, share of the runs).
_APPLIANCES = (
    (2.0, 2, 5, 0.35),  # kettle
    (0.9, 60, 120, 0.12),  # washing machine (mean draw)
    (1.2, 60, 100, 0.12),  # dishwasher
    (2.0, 30, 70, 0.13),  # oven
    (1.6, 5, 15, 0.13),  # hair dryer
    (1.2, 10, 30, 0.15),  # vacuum cleaner
)
_HOUSEHOLD_DAY_KWH = (5.0, 20.0)
_FACTORY_MAX_KW = 700.0

# Household water: (m³/h while it runs, shortest and longest run in minutes). A minute at
# 0.36 m³/h is 6 litres.
_FLUSH = (0.36, 1, 1)  # toilet cistern refill, 6 l
_TAP = (0.24, 1, 2)  # washing hands, cooking, 4-8 l
_SHOWER = (0.55, 4, 10)  # ~9 l/min
_WASHER_FILLS = (0, 12, 40, 55)  # minutes after the start: 4 fills of 2 min at 0.4 m³/h, ~53 l
_DISHWASHER_FILLS = (0, 25, 70)  # 3 fills of 1 min at 0.24 m³/h, 12 l

_WATER_DAY_M3 = (0.06, 0.4)  # hard limits; most days are 0.1-0.3

_WATER_MAX_M3H = 2.0


def _epoch(t: TimeLike) -> float:
    """Seconds since 1970-01-01 UTC; naive datetimes are taken as UTC."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return t.timestamp()
    return float(t)


class ConsumptionProfile:
    """A deterministic load: kW at any time, and the meter register (cumulative kWh).

    For ``kind="water"`` the same methods give m³/h (:meth:`power_kw`) and m³
    (:meth:`energy_kwh`, :meth:`daily_kwh`, ``initial_kwh``): the machinery is shared, the
    names are the electricity ones.

    The power is generated per block of 32 days at one-minute resolution, from a random
    generator seeded with (seed, kind, block), so any instant can be evaluated on its own and
    the same seed always gives the same load. Within a minute the power is constant, so the
    register is piecewise linear and never decreases.

    Parameters
    ----------
    seed : int
        Selects the household or plant: its base load, peak times, appliance habits.
    kind : {"household", "factory", "water"}
        Household: base load, fridge cycling, morning and evening peaks (later and larger at
        weekends), winter-heavy season, random appliance runs (kettle, washing machine,
        dishwasher, oven, hair dryer, vacuum); every day is kept within 5-20 kWh.
        Factory: base load, a two-shift weekday plateau of 120-300 kW with ramps and a lunch
        dip, a Saturday half shift, machine runs; a few MWh a weekday.
        Water (a household's water meter, m³): 1-3 people, nothing flows at rest (no leak);
        runs of whole minutes at fixed rates: showers (4-10 min at ~0.55 m³/h, a person on
        60-95 % of days, mostly after getting up, some in the evening), a flush (6 l) and a
        tap (4-8 l) on getting up and going to bed, a few night flushes, more flushes and taps
        around the morning and evening peaks and spread over the day, a washing machine
        (4 fills, ~53 l) a few times a week, a dishwasher (3 fills, 12 l) after dinner on some
        days; more at home at weekends. The flows are then scaled to the household's mean day
        (0.14-0.22 m³, per 32-day block); most days are 0.1-0.3 m³ (they vary by about a
        quarter), every day is kept within 0.06-0.4 m³ and the rate is capped at 2 m³/h. The
        counts and rates are plausible, not fitted to measured data.
    initial_kwh : float, optional
        Register value at 2026-01-01 00:00 local time (default: drawn from the seed).
    utc_offset_h : float
        Local time = UTC + this offset; the daily shape follows local time.
    """

    def __init__(
        self,
        seed: int,
        kind: str = "household",
        *,
        initial_kwh: float | None = None,
        utc_offset_h: float = 0.0,
    ) -> None:
        check_param(kind in KINDS, "kind", "ConsumptionProfile", f"one of {KINDS}", kind)
        check_param(
            isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0,
            "seed",
            "ConsumptionProfile",
            "an int >= 0",
            seed,
        )
        check_param(
            isinstance(utc_offset_h, int | float) and -14 <= utc_offset_h <= 14,
            "utc_offset_h",
            "ConsumptionProfile",
            "a number of hours in [-14, 14]",
            utc_offset_h,
        )
        self.seed = int(seed)
        self.kind = kind
        self._kind_id = KINDS.index(kind) + 1
        rng = np.random.default_rng([self.seed, self._kind_id, 0x5EED])
        params = {"household": _household_params, "factory": _factory_params}
        self._p = params.get(kind, _water_params)(rng)
        if initial_kwh is None:
            lo, hi = {"household": (2e3, 6e4), "factory": (1e5, 3e6)}.get(kind, (50.0, 3e3))
            initial_kwh = float(rng.uniform(lo, hi))
        check_param(
            math.isfinite(initial_kwh) and initial_kwh >= 0,
            "initial_kwh",
            "ConsumptionProfile",
            "a finite number >= 0",
            initial_kwh,
        )
        self.initial_kwh = float(initial_kwh)
        self.utc_offset_s = float(utc_offset_h) * 3600.0
        self._lock = threading.Lock()
        self._arrays: OrderedDict[int, tuple[F64, F64]] = OrderedDict()
        self._totals: dict[int, float] = {}
        b0 = _ORIGIN_DAY // _BLOCK_DAYS
        # the register is initial_kwh at the origin day, inside block b0
        first_day_min = (_ORIGIN_DAY - b0 * _BLOCK_DAYS) * _MIN_PER_DAY
        self._starts: dict[int, float] = {b0: 0.0}
        self._starts[b0] = self.initial_kwh - float(self._block(b0)[1][first_day_min])

    def __repr__(self) -> str:
        return f"ConsumptionProfile(seed={self.seed}, kind={self.kind!r})"

    def power_kw(self, t: TimeLike) -> float:
        """Power in kW at ``t`` (a datetime, or seconds since 1970 UTC)."""
        b, i, _ = self._locate(t)
        with self._lock:
            return float(self._block(b)[0][i])

    def energy_kwh(self, t: TimeLike) -> float:
        """The register at ``t``: cumulative kWh, never decreasing in ``t``."""
        b, i, frac = self._locate(t)
        with self._lock:
            kw, cum = self._block(b)
            return self._start(b) + float(cum[i]) + float(kw[i]) * frac / 60.0

    def daily_kwh(self, day: TimeLike) -> float:
        """Energy used on the local day that contains ``day``."""
        t = _epoch(day) + self.utc_offset_s
        d0 = math.floor(t / _DAY_S) * _DAY_S - self.utc_offset_s
        return self.energy_kwh(d0 + _DAY_S) - self.energy_kwh(d0)

    def _locate(self, t: TimeLike) -> tuple[int, int, float]:
        minutes = (_epoch(t) + self.utc_offset_s) / 60.0
        gm = math.floor(minutes)
        b = gm // _BLOCK_MIN
        return b, gm - b * _BLOCK_MIN, minutes - gm

    def _block(self, b: int) -> tuple[F64, F64]:
        hit = self._arrays.get(b)
        if hit is not None:
            self._arrays.move_to_end(b)
            return hit
        rng = np.random.default_rng([self.seed, self._kind_id, b + (1 << 32)])
        days = b * _BLOCK_DAYS + np.arange(_BLOCK_DAYS)
        if self.kind == "household":
            kw = _household_block(self._p, days, rng)
        elif self.kind == "factory":
            kw = _factory_block(self._p, days, rng)
        else:
            kw = _water_block(self._p, days, rng)
        cum = np.concatenate(([0.0], np.cumsum(kw) / 60.0))
        self._arrays[b] = (kw, cum)
        self._totals[b] = float(cum[-1])
        while len(self._arrays) > 4:
            self._arrays.popitem(last=False)
        return kw, cum

    def _total(self, b: int) -> float:
        if b not in self._totals:
            self._block(b)
        return self._totals[b]

    def _start(self, b: int) -> float:
        if b in self._starts:
            return self._starts[b]
        known = sorted(self._starts)
        if b > known[-1]:
            k = known[-1]
            while k < b:
                self._starts[k + 1] = self._starts[k] + self._total(k)
                k += 1
        else:
            k = known[0]
            while k > b:
                self._starts[k - 1] = self._starts[k] - self._total(k - 1)
                k -= 1
        return self._starts[b]


def household_profile(seed: int, **kwargs: Any) -> ConsumptionProfile:
    """A household load of 5-20 kWh a day (see :class:`ConsumptionProfile`).

    Parameters
    ----------
    seed : int
        Selects the household; the same seed gives the same load.
    **kwargs
        ``initial_kwh`` and ``utc_offset_h`` of :class:`ConsumptionProfile`.

    Returns
    -------
    ConsumptionProfile
    """
    return ConsumptionProfile(seed, "household", **kwargs)


def factory_profile(seed: int, **kwargs: Any) -> ConsumptionProfile:
    """A small plant: two weekday shifts at 120-300 kW (see :class:`ConsumptionProfile`)."""
    return ConsumptionProfile(seed, "factory", **kwargs)


def water_profile(seed: int, **kwargs: Any) -> ConsumptionProfile:
    """A household's water: mostly 0.1-0.3 m³ a day, at most 2 m³/h (see
    :class:`ConsumptionProfile`).

    Its ``power_kw`` is the flow in m³/h and its ``energy_kwh`` the register in m³.
    """
    return ConsumptionProfile(seed, "water", **kwargs)


def _household_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "scale": float(np.clip(rng.lognormal(-0.05, 0.22), 0.6, 1.3)),
        "base": float(rng.uniform(0.12, 0.3)),
        "fridge": float(rng.uniform(0.04, 0.1)),
        "fridge_half": float(rng.integers(12, 30)),
        "fridge_phase": float(rng.integers(0, 60)),
        "m_hour": float(rng.uniform(6.2, 8.0)),
        "m_amp": float(rng.uniform(0.3, 1.0)),
        "m_width": float(rng.uniform(0.6, 1.2)),
        "e_hour": float(rng.uniform(18.0, 20.5)),
        "e_amp": float(rng.uniform(0.6, 1.6)),
        "e_width": float(rng.uniform(1.4, 2.2)),
        "season": float(rng.uniform(0.05, 0.3)),
        "events": float(rng.uniform(3.0, 7.0)),
    }


def _factory_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "base": float(rng.uniform(20.0, 60.0)),
        "shift": float(rng.uniform(120.0, 300.0)),
        "start": float(rng.uniform(5.5, 6.5)),
        "end": float(rng.uniform(20.0, 22.5)),
        "events": float(rng.uniform(4.0, 10.0)),
    }


def _water_params(rng: np.random.Generator) -> dict[str, float]:
    people = float(rng.choice([1, 1, 2, 2, 2, 3]))
    return {
        "people": people,
        "m_hour": float(rng.uniform(6.0, 8.0)),
        "e_hour": float(rng.uniform(18.5, 21.0)),
        "bed_hour": float(rng.uniform(22.0, 23.5)),
        "showers": float(rng.uniform(0.6, 0.95)),  # the share of days a person showers
        "evening_showers": float(rng.uniform(0.1, 0.5)),  # the share taken in the evening
        "flushes": float(rng.uniform(1.5, 3.0)),  # per person and day, besides the routine
        "taps": float(rng.uniform(1.0, 4.0)),  # per person and day, besides the routine
        "night": float(rng.uniform(0.1, 0.4)),  # flushes per person and night
        "washer": float(rng.uniform(0.15, 0.25) * people),  # runs a day
        "dishwasher": float(rng.uniform(0.0, 0.9)),  # runs a day
        "day_m3": float(rng.uniform(0.14, 0.22)),  # the household's mean day
    }


def _bump(hours: F64, centre: F64, width: F64 | float) -> F64:
    """exp(-(d/width)^2) with d the circular distance in hours (days x minutes)."""
    d = (hours[None, :] - centre[:, None] + 12.0) % 24.0 - 12.0
    out: F64 = np.exp(-((d / width) ** 2))
    return out


def _add_runs(
    kw: F64, start: npt.NDArray[np.int64], dur: npt.NDArray[np.int64], level: F64
) -> None:
    """Add constant-power runs [start, start + dur) to the flat minute array ``kw``."""
    n = kw.size
    start = np.clip(start, 0, n - 1)
    end = np.clip(start + dur, 0, n)
    diff = np.zeros(n + 1)
    np.add.at(diff, start, level)
    np.add.at(diff, end, -level)
    kw += np.cumsum(diff)[:-1]


def _household_block(
    p: Mapping[str, float], days: npt.NDArray[np.int64], rng: np.random.Generator
) -> F64:
    nd = days.size
    hours = np.arange(_MIN_PER_DAY) / 60.0
    weekend = ((days + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    season = 1.0 + p["season"] * np.cos(2.0 * np.pi * (days - 14) / 365.2425)
    base = p["base"] * season * rng.uniform(0.9, 1.1, nd)
    m_hour = p["m_hour"] + 1.2 * weekend + rng.normal(0.0, 0.3, nd)
    m_amp = p["m_amp"] * (1.0 + 0.3 * weekend) * rng.uniform(0.7, 1.3, nd)
    e_hour = p["e_hour"] + rng.normal(0.0, 0.4, nd)
    e_amp = p["e_amp"] * season * (1.0 + 0.15 * weekend) * rng.uniform(0.75, 1.25, nd)
    kw2 = (
        base[:, None]
        + m_amp[:, None] * _bump(hours, m_hour, p["m_width"])
        + e_amp[:, None] * _bump(hours, e_hour, p["e_width"])
    )
    kw: F64 = kw2.reshape(-1)
    minute = days[0] * _MIN_PER_DAY + np.arange(kw.size)
    kw += p["fridge"] * (((minute + p["fridge_phase"]) // p["fridge_half"]) % 2)
    # appliance runs: mostly around the peaks, some during the day
    n = int(rng.poisson(p["events"] * (1.0 + 0.3 * weekend.mean()) * nd))
    kinds = rng.choice(len(_APPLIANCES), n, p=[a[3] for a in _APPLIANCES])
    day = rng.integers(0, nd, n)
    which = rng.integers(0, 3, n)
    hour = np.where(
        which == 0,
        rng.normal(m_hour[day] + 0.4, 0.8),
        np.where(which == 1, rng.normal(e_hour[day], 1.5), rng.uniform(9.0, 22.0, n)),
    )
    lo = np.array([a[1] for a in _APPLIANCES])[kinds]
    hi = np.array([a[2] for a in _APPLIANCES])[kinds]
    dur = rng.integers(lo, hi + 1)
    level = np.array([a[0] for a in _APPLIANCES])[kinds] * rng.uniform(0.8, 1.2, n)
    start = day * _MIN_PER_DAY + np.clip(np.round(hour * 60.0), 0, _MIN_PER_DAY - 1).astype(int)
    _add_runs(kw, start, dur, level)
    kw *= p["scale"]
    # keep every day within the household range
    per_day = kw.reshape(nd, _MIN_PER_DAY)
    e = per_day.sum(axis=1) / 60.0
    lo_e, hi_e = _HOUSEHOLD_DAY_KWH
    per_day *= (np.clip(e, lo_e + 0.3, hi_e - 0.3) / e)[:, None]
    return kw


def _water_block(
    p: Mapping[str, float], days: npt.NDArray[np.int64], rng: np.random.Generator
) -> F64:
    nd = days.size
    weekend = ((days + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    m_hour = p["m_hour"] + 1.2 * weekend + rng.normal(0.0, 0.3, nd)
    e_hour = p["e_hour"] + rng.normal(0.0, 0.4, nd)
    starts: list[npt.NDArray[np.int64]] = []
    durs: list[npt.NDArray[np.int64]] = []
    levels: list[F64] = []

    def runs(per_day: npt.ArrayLike | None, hour_of: Any, rate: float, lo: int, hi: int) -> None:
        """Runs at random times; ``None``: one per person on a ``p["showers"]`` share of days
        (a habit, not a Poisson count)."""
        if per_day is None:
            count = rng.binomial(int(p["people"]), p["showers"], nd)
        else:
            count = rng.poisson(np.broadcast_to(per_day, (nd,)))
        day = np.repeat(np.arange(nd), count)
        hour = np.clip(hour_of(day), 0.0, 23.98)
        starts.append(day * _MIN_PER_DAY + np.round(hour * 60.0).astype(np.int64))
        durs.append(rng.integers(lo, hi + 1, day.size))
        levels.append(rate * rng.uniform(0.85, 1.15, day.size))

    def peaks(day: npt.NDArray[np.int64]) -> F64:
        """Around the morning and the evening peak, or any time from 8 to 23."""
        which = rng.integers(0, 3, day.size)
        out: F64 = np.where(
            which == 0,
            rng.normal(m_hour[day] + 0.5, 0.7),
            np.where(which == 1, rng.normal(e_hour[day], 1.2), rng.uniform(8.0, 23.0, day.size)),
        )
        return out

    def showers(day: npt.NDArray[np.int64]) -> F64:
        evening = rng.random(day.size) < p["evening_showers"]
        out: F64 = np.where(
            evening, rng.normal(e_hour[day] + 1.5, 0.7), rng.normal(m_hour[day] + 0.2, 0.4)
        )
        return out

    people, home = p["people"], 1.0 + 0.25 * weekend
    bed = p["bed_hour"] + 0.5 * weekend
    runs(None, showers, *_SHOWER)
    for routine in (  # on getting up and going to bed: a flush and a tap each, most days
        lambda d: rng.normal(m_hour[d] - 0.2, 0.3),
        lambda d: rng.normal(bed[d], 0.4),
    ):
        runs(0.9 * people, routine, *_FLUSH)
        runs(0.9 * people, routine, *_TAP)
    runs(p["night"] * people, lambda d: rng.uniform(0.5, 5.0, d.size), *_FLUSH)
    runs(p["flushes"] * people * home, peaks, *_FLUSH)
    runs(p["taps"] * people * home, peaks, *_TAP)
    for per_day, hour_of, fills, rate, fill_min in (
        (p["washer"] * (1.0 + 0.8 * weekend), lambda d: rng.uniform(8.0, 19.0, d.size),
         _WASHER_FILLS, 0.4, 2),
        (p["dishwasher"], lambda d: rng.normal(e_hour[d] + 1.0, 0.5), _DISHWASHER_FILLS, 0.24, 1),
    ):  # fmt: skip
        day = np.repeat(np.arange(nd), rng.poisson(per_day))
        t0 = day * _MIN_PER_DAY + np.round(np.clip(hour_of(day), 0, 23.98) * 60).astype(np.int64)
        for off in fills:
            starts.append(t0 + off)
            durs.append(np.full(day.size, fill_min, dtype=np.int64))
            levels.append(np.full(day.size, rate))
    m3h: F64 = np.zeros(nd * _MIN_PER_DAY)
    st, du, lv = np.concatenate(starts), np.concatenate(durs), np.concatenate(levels)
    inside = st < m3h.size  # a late fill past the block's last minute is not run
    _add_runs(m3h, st[inside], du[inside], lv[inside])
    per_day = m3h.reshape(nd, _MIN_PER_DAY)
    e = np.maximum(per_day.sum(axis=1) / 60.0, 1e-9)
    # the household's mean day (the event counts above only set the shape), then every day
    # within the hard limits (rarely needed: the days vary by about a quarter)
    e_day = e * (p["day_m3"] / float(e.mean()))
    lo_e, hi_e = _WATER_DAY_M3
    per_day *= (np.clip(e_day, lo_e, hi_e) / e)[:, None]
    np.clip(m3h, 0.0, _WATER_MAX_M3H, out=m3h)  # and no -1e-17 from the run sums
    return m3h


def _factory_block(
    p: Mapping[str, float], days: npt.NDArray[np.int64], rng: np.random.Generator
) -> F64:
    nd = days.size
    hours = np.arange(_MIN_PER_DAY) / 60.0
    wd = (days + 3) % 7
    start = p["start"] + rng.normal(0.0, 0.1, nd)
    end = np.where(wd == 5, start + 8.0, p["end"] + rng.normal(0.0, 0.2, nd))
    level = p["shift"] * rng.uniform(0.85, 1.1, nd) * np.where(wd == 5, 0.5, 1.0)
    level = np.where(wd == 6, 0.0, level)
    ramp = np.clip((hours[None, :] - start[:, None]) / 0.5, 0.0, 1.0) * np.clip(
        (end[:, None] - hours[None, :]) / 0.5, 0.0, 1.0
    )
    lunch = 1.0 - 0.25 * ((hours >= 12.0) & (hours < 12.5))
    kw2 = p["base"] * rng.uniform(0.9, 1.1, nd)[:, None] + level[:, None] * ramp * lunch[None, :]
    kw: F64 = kw2.reshape(-1)
    kw *= 1.0 + 0.03 * rng.standard_normal(kw.size)
    # machine runs during the shifts
    n = int(rng.poisson(p["events"] * nd))
    day = rng.integers(0, nd, n)
    on = level[day] > 0
    day = day[on]
    hour = rng.uniform(start[day], np.maximum(end[day] - 0.5, start[day] + 0.5))
    run_start = day * _MIN_PER_DAY + np.round(hour * 60.0).astype(int)
    _add_runs(kw, run_start, rng.integers(10, 121, day.size), rng.uniform(20.0, 80.0, day.size))
    np.clip(kw, 0.0, _FACTORY_MAX_KW, out=kw)
    return kw
