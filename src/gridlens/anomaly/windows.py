"""Sliding windows over a series and window scores mapped back to timestamps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridlens.anomaly.periods import Period
from gridlens.errors import InsufficientDataError, check_param

__all__ = ["DEFAULT_WINDOW", "Scale", "plan_scales", "sliding", "starts_for", "to_points"]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

DEFAULT_WINDOW = 32
"""Window [samples] when the series has no dominant period."""

MAX_WINDOW = 2048


@dataclass(frozen=True)
class Scale:
    """One window scale of the multi-scale detectors.

    Parameters
    ----------
    window : int
        Window length [blocks] (a dominant period, or DEFAULT_WINDOW).
    stride : int
        Step between window starts [blocks]: a quarter of the window at the first
        scale, the previous period at the next ones (a week's windows start every day).
    block : int
        Samples averaged into one block before windowing: 1 at the first scale; at the
        next ones a quarter of the previous period, so a week of 15-minute data becomes
        28 six-hour means and its windows see the days, not the quarter-hours.
    """

    window: int
    stride: int
    block: int = 1

    @property
    def span(self) -> int:
        """Window length [samples]."""
        return self.window * self.block

    def blocks(self, x: npt.ArrayLike) -> F64:
        """Block means of ``x`` (the last partial block averages what it has)."""
        a = np.asarray(x, dtype=np.float64)
        if self.block == 1:
            return a
        m = -(-a.size // self.block)
        pad = np.full(m * self.block - a.size, np.nan)
        return np.asarray(np.nanmean(np.concatenate([a, pad]).reshape(m, self.block), axis=1))

    def expand(self, pts: npt.ArrayLike, n: int) -> F64:
        """Block values back to ``n`` samples."""
        a = np.asarray(pts, dtype=np.float64)
        return a if self.block == 1 else np.repeat(a, self.block)[:n]


def plan_scales(periods: list[Period], n: int, *, max_scales: int = 2) -> list[Scale]:
    """Window scales sized by the dominant periods (seed S3's multi-scale windows).

    Parameters
    ----------
    periods : list of Period
        From :func:`gridlens.anomaly.periods.dominant_periods`, shortest first.
    n : int
        Points of the training series; a scale needs at least 8 windows of it.
    max_scales : int, default 2

    Returns
    -------
    list of Scale
        At least one scale: ``DEFAULT_WINDOW`` (stride 1/4 of it) when no period fits.
    """
    out: list[Scale] = []
    prev = 0
    for p in periods:
        if p.samples < 8:
            continue
        block = max(1, prev // 4) if prev else 1
        w = p.samples // block
        if w > MAX_WINDOW or w < 8:
            continue
        stride = max(1, prev // block if prev else w // 4)
        if (n // block - w) // stride + 1 < 8:
            break
        out.append(Scale(window=w, stride=stride, block=block))
        prev = p.samples
        if len(out) >= max_scales:
            break
    if not out:
        w = min(DEFAULT_WINDOW, max(8, n // 8))
        out.append(Scale(window=w, stride=max(1, w // 4)))
    return out


def starts_for(n: int, window: int, stride: int) -> I64:
    """Start indices of windows covering ``[0, n)``; the last window ends exactly at ``n``.

    Raises
    ------
    InsufficientDataError
        ``n < window``.
    """
    if n < window:
        raise InsufficientDataError(
            f"the series has {n} points, too few for one window of {window}"
        )
    s = np.arange(0, n - window + 1, stride, dtype=np.int64)
    if s[-1] != n - window:
        s = np.append(s, n - window)
    return s


def sliding(x: npt.ArrayLike, window: int, starts: I64) -> F32:
    """Windows ``x[s : s + window]`` for each start, as a (len(starts), window) float32 array."""
    a = np.asarray(x, dtype=np.float32)
    v = np.lib.stride_tricks.sliding_window_view(a, window)
    return np.ascontiguousarray(v[starts])


def to_points(
    window_scores: npt.ArrayLike,
    starts: I64,
    window: int,
    n: int,
    *,
    pointwise: npt.ArrayLike | None = None,
    how: str = "mean",
) -> F64:
    """Spread window scores onto the points they cover.

    Parameters
    ----------
    window_scores : array_like, shape (m,)
        One score per window (higher = more anomalous).
    starts : ndarray of int, shape (m,)
    window, n : int
        Window length and series length [samples].
    pointwise : array_like, shape (m, window), optional
        Weights per point inside each window (e.g. the reconstruction residual), so that
        a week that scores high points at its odd day, not at all seven. Each window's
        weights are scaled to mean 1.
    how : {"mean", "max"}
        How overlapping windows combine at a point.

    Returns
    -------
    ndarray, shape (n,)
        Point scores; points no window covers get the nearest covered point's score.
    """
    check_param(how in ("mean", "max"), "how", "to_points", "'mean' or 'max'", how)
    ws = np.asarray(window_scores, dtype=np.float64)
    m = ws.size
    if pointwise is None:
        contrib = np.repeat(ws[:, None], window, axis=1)
    else:
        pw = np.asarray(pointwise, dtype=np.float64).reshape(m, window)
        mean = pw.mean(axis=1, keepdims=True)
        pw = np.where(mean > 0, pw / np.where(mean > 0, mean, 1.0), 1.0)
        contrib = ws[:, None] * pw
    idx = (starts[:, None] + np.arange(window)[None, :]).ravel()
    if how == "max":
        out = np.full(n, -np.inf)
        np.maximum.at(out, idx, contrib.ravel())
        covered = np.isfinite(out)
    else:
        total = np.bincount(idx, weights=contrib.ravel(), minlength=n)
        count = np.bincount(idx, minlength=n)
        covered = count > 0
        out = np.divide(total, count, out=np.zeros(n), where=covered)
    if not covered.all():
        pos = np.flatnonzero(covered)
        nearest = pos[np.clip(np.searchsorted(pos, np.arange(n)), 0, pos.size - 1)]
        out = np.where(covered, out, out[nearest])
    return out
