"""Dominant periods of a consumption series: FFT of the first-order difference (seed S3).

The seed differences the series (removing trend and level) and reads the dominant periods
off the spectrum of the difference; the windows of the detectors are then sized by those
periods. Differencing is a high-pass filter (its gain is ``2 sin(pi f)``), so a weekly
cycle in 15-minute data is 50 times weaker than the daily one in that spectrum and would
drown among the daily harmonics. We therefore search level by level: the strongest
period ``P1`` at the native resolution, then the strongest period of the series summed over
blocks of ``P1`` (daily totals -> the week), and so on. Every level is still the FFT of a
first-order difference, and nested periods come out as exact multiples (96, 672).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridlens.errors import InsufficientDataError, check_param

__all__ = ["MIN_PERIOD", "Period", "dominant_periods"]

F64 = npt.NDArray[np.float64]

MIN_PERIOD = 8
"""Shortest period [samples] reported: a window shorter than this holds no shape."""

_MIN_PEAK_TO_MEDIAN = 50.0  # white noise's highest bin is ~30x the median on 5,000 points
_MIN_SHARE = 1e-5  # of the spectrum's power (excluding DC)
_NEIGHBOURS = 32  # bins each side for the local median
_MIN_CYCLES = 4  # a period must repeat at least this often in the series


@dataclass(frozen=True)
class Period:
    """One dominant period.

    Parameters
    ----------
    samples : int
        Length of the period [samples].
    seconds : float
        Length of the period [s] (``samples * step_s``).
    share : float
        Fraction of the differenced series' spectral power in the peak, at the level where
        it was found [0-1].
    peak_to_median : float
        Peak power over the median power of the spectrum at that level.
    """

    samples: int
    seconds: float
    share: float
    peak_to_median: float

    @property
    def hours(self) -> float:
        """Length [h]."""
        return self.seconds / 3600.0

    def describe(self) -> str:
        """``"96 samples = 24 h"`` or ``"672 samples = 7 d"``."""
        h = self.hours
        if h >= 48 and abs(h / 24 - round(h / 24)) < 0.01:
            return f"{self.samples} samples = {h / 24:g} d"
        return f"{self.samples} samples = {h:.4g} h"


def _strongest(y: F64, min_period: float) -> tuple[float, float, float] | None:
    """(period [samples of y], share, peak/median) of the FFT of diff(y), or None."""
    d = np.diff(y)
    n = d.size
    if n < 2 * _MIN_CYCLES:
        return None
    d = d - d.mean()
    p = np.abs(np.fft.rfft(d * np.hanning(n))) ** 2
    f = np.fft.rfftfreq(n)
    with np.errstate(divide="ignore"):
        period = np.where(f > 0, 1.0 / f, np.inf)
    ok = (f > 0) & (period >= min_period) & (period <= (n + 1) / _MIN_CYCLES)
    if not ok.any():
        return None
    total = float(p[1:].sum())
    if total <= 0:
        return None
    # Differencing tilts the spectrum (gain 2 sin(pi f)), so a peak is judged against the
    # median of its own neighbourhood, not of the whole spectrum.
    half = _NEIGHBOURS
    pad = np.pad(p, half, mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    local = np.median(win, axis=1)
    ratio = np.where(ok & (local > 0), p / np.maximum(local, 1e-300), 0.0)
    i = int(np.argmax(ratio))
    if ratio[i] <= 0:
        return None
    # A harmonic can stand out more than its fundamental (a day's shape has sharp edges):
    # move to the longest period m * P (m <= 6) whose own peak is also significant.
    for m in range(6, 1, -1):
        j = round(i / m)
        if j >= 1 and abs(i / m - j) <= 0.5 and ok[j]:
            lo, hi = max(1, j - 1), min(p.size - 1, j + 1)
            jj = lo + int(np.argmax(ratio[lo : hi + 1]))
            if ratio[jj] >= _MIN_PEAK_TO_MEDIAN and abs(f[jj] * m - f[i]) <= 1.5 * f[1]:
                i = jj
                break
    # parabolic interpolation of the peak on the frequency axis
    fi = f[i]
    if 0 < i < p.size - 1:
        a, b, c = np.log(p[i - 1] + 1e-300), np.log(p[i] + 1e-300), np.log(p[i + 1] + 1e-300)
        den = a - 2 * b + c
        if den < 0:
            fi = f[i] + 0.5 * (a - c) / den * (f[1] - f[0])
    return 1.0 / fi, float(p[i] / total), float(ratio[i])


def dominant_periods(
    values: npt.ArrayLike, *, step_s: float = 1.0, max_periods: int = 2
) -> list[Period]:
    """Dominant periods of a series from the FFT of its first-order difference.

    Parameters
    ----------
    values : array_like
        The regular series (no NaN), oldest first.
    step_s : float, default 1
        Sampling step [s], only used to report periods in seconds/hours.
    max_periods : int, default 2
        Levels to search (2: e.g. the day, then the week).

    Returns
    -------
    list of Period
        Shortest first; empty when the spectrum has no clear peak (noise-like series).
        A level's peak counts when it stands 50 times above the median of the 64 bins
        around it (white noise reaches ~20), holds at least 1e-5 of the power and
        repeats at least four times.

    Raises
    ------
    InsufficientDataError
        Fewer than ``2 * MIN_PERIOD`` points.
    ParameterError
        ``max_periods`` outside [1, 4] or values not finite.

    References
    ----------
    .. [1] Seed S3: "first-order differencing, FFT of the differenced series to find the
       dominant periods, windows sized by those periods" (Hanbat Univ., 2025).
    """
    check_param(
        isinstance(max_periods, int) and 1 <= max_periods <= 4,
        "max_periods",
        "dominant_periods",
        "an int in [1, 4]",
        max_periods,
    )
    y = np.asarray(values, dtype=np.float64).ravel()
    check_param(bool(np.all(np.isfinite(y))), "values", "dominant_periods", "finite", "NaN or inf")
    if y.size < 2 * MIN_PERIOD:
        raise InsufficientDataError(
            f"{y.size} points are too few to look for periods (need {2 * MIN_PERIOD})"
        )
    out: list[Period] = []
    scale = 1
    min_period: float = MIN_PERIOD
    for _ in range(max_periods):
        found = _strongest(y, min_period)
        if found is None:
            break
        period, share, ratio = found
        if share < _MIN_SHARE or ratio < _MIN_PEAK_TO_MEDIAN:
            break
        k = round(period)
        if k < 2:
            break
        total = k * scale
        out.append(Period(samples=total, seconds=total * step_s, share=share, peak_to_median=ratio))
        m = y.size // k
        if m < 2 * _MIN_CYCLES:
            break
        y = y[: m * k].reshape(m, k).sum(axis=1)
        scale = total
        min_period = 2.0  # at block level, a period of 2 blocks already means something
    return out
