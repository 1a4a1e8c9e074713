"""Counter readings -> consumption per hour/day (linear between readings, never invented)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def consumption(
    times: F64,
    values: F64,
    bucket_s: float,
    *,
    since: float | None = None,
    until: float | None = None,
) -> tuple[F64, F64]:
    """Energy per bucket from a monotonic counter.

    The counter is taken as linear between consecutive accepted readings, so a delta that
    straddles a bucket edge is split in proportion to time. Buckets outside the span of the
    readings are NaN (unknown), not zero.

    Parameters
    ----------
    times, values : accepted readings (epoch seconds, counter), oldest first.
    bucket_s : bucket width in seconds (3600 hourly, 86400 daily); buckets start at
        multiples of ``bucket_s`` (UTC).
    since, until : the range to cover (default: the readings' span).

    Returns
    -------
    starts, energy : bucket start times and the energy consumed in each.
    """
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.size == 0 and (since is None or until is None):
        return np.empty(0), np.empty(0)
    lo = t[0] if since is None else since
    hi = t[-1] if until is None else until
    first = math.floor(lo / bucket_s) * bucket_s
    last = math.ceil(hi / bucket_s) * bucket_s
    edges = np.arange(first, last + bucket_s / 2, bucket_s)
    if edges.size < 2:
        edges = np.array([first, first + bucket_s])
    starts = edges[:-1]
    if t.size < 2:
        return starts, np.full(starts.size, np.nan)
    clipped = np.clip(edges, t[0], t[-1])
    c = np.interp(clipped, t, v)
    energy = np.diff(c)
    covered = np.minimum(edges[1:], t[-1]) > np.maximum(edges[:-1], t[0])
    energy[~covered] = np.nan
    return starts, energy
