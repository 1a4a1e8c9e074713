"""Scoring many meters at once.

* :func:`score_meter`: one meter's hourly consumption against its own history, summarised
  for the fleet's anomaly page (score over the last day and week, the last week's hourly
  scores, anomalous runs with their kind). The server runs it for every meter.
* :func:`score_many` / :func:`score_files`: many series as a Dask job (in-process threads, a
  LocalCluster, or a remote scheduler). Each series gets its own detector; results come
  back as summaries."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gridlens.anomaly.data import Series, load_file
from gridlens.errors import InputError

F64 = npt.NDArray[np.float64]

#: Kinds of anomalous runs :func:`classify` tells apart.
KINDS = ("high", "night-load", "low", "stuck")
_HOUR = 3600.0
_WEEK_H = 168
#: :func:`score_meter` takes the week as the period when its leave-one-cycle-out error is
#: below this fraction of the day's (simulated households: 0.92-1.17, factories: 0.16-0.28).
WEEK_GAIN = 0.75

__all__ = ["KINDS", "classify", "score_files", "score_many", "score_meter"]


def _one(
    series: Series | str,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from gridlens.anomaly.run import detect

    if isinstance(series, str):
        series = load_file(series, **(read_options or {}))
    assert isinstance(series, Series)
    res = detect(series, model, **options, **params)
    return res.to_dict()


def score_many(
    series: Sequence[Series | str],
    model: str = "profile",
    *,
    params: dict[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    read_options: dict[str, Any] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Run :func:`gridlens.anomaly.run.detect` on every series as Dask tasks.

    Parameters
    ----------
    series : sequence of Series or file paths
        File paths are loaded on the worker (nothing large crosses the network).
    model : str
        Detector name; ``params`` go to its constructor, ``options`` to ``detect``.
    workers : int, optional
        Start a ``distributed.LocalCluster`` of this many single-threaded processes.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:8786``).
    progress : bool
        One line per finished series on stderr.
    read_options : dict, optional
        ``duplicates`` and ``tz`` for the files (:func:`gridlens.anomaly.data.load_file`).

    Returns
    -------
    list of dict
        :meth:`RunResult.to_dict` per series, in input order. A series that fails with a
        user error gives ``{"series": ..., "error": message}`` and the others go on.
    """
    params = dict(params or {})
    client: Any = None
    cluster: Any = None
    try:
        from distributed import Client, LocalCluster, as_completed

        if scheduler:
            try:
                client = Client(scheduler, timeout="5s")
            except OSError as exc:
                raise InputError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        else:
            cluster = LocalCluster(
                n_workers=max(1, int(workers or 2)),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            )
            client = Client(cluster)
        futs = [
            client.submit(
                _safe, s, model, params, options, read_options, pure=False, key=f"detect-{k}"
            )
            for k, s in enumerate(series)
        ]
        order = {f.key: k for k, f in enumerate(futs)}
        out: list[dict[str, Any]] = [{} for _ in futs]
        for done, fut in enumerate(as_completed(futs), 1):
            r = fut.result()
            out[order[fut.key]] = r
            if progress:
                what = r.get("error") or f"{len(r.get('events', []))} events"
                print(f"[{done}/{len(futs)}] {r.get('series')}: {what}", file=sys.stderr)
        return out
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _safe(
    series: Series | str,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        return _one(series, model, params, options, read_options)
    except InputError as exc:
        name = Path(series).stem if isinstance(series, str) else series.name
        return {"series": name, "error": str(exc)}


def score_files(
    files: Sequence[str], model: str, *, params: dict[str, Any], **kw: Any
) -> list[dict[str, Any]]:
    """:func:`score_many` on file paths (CSV or Green Button)."""
    return score_many(list(files), model, params=params, **kw)


# --------------------------------------------------------------------------- the fleet page


def _hour_of_week(epoch_s: F64) -> npt.NDArray[np.int64]:
    # 1970-01-01 was a Thursday: shift so that 0 is Monday 00:00 UTC
    return ((np.floor(epoch_s / _HOUR).astype(np.int64) + 72) % _WEEK_H).astype(np.int64)


def expected_profile(epoch_s: F64, energy: F64) -> F64:
    """The median energy of the same hour of the week (NaN-aware) at every hour: what the
    meter usually uses then. Hours of the week never seen get the overall median."""
    how = _hour_of_week(epoch_s)
    med = np.full(_WEEK_H, np.nan)
    for h in range(_WEEK_H):
        v = energy[(how == h) & np.isfinite(energy)]
        if v.size:
            med[h] = float(np.median(v))
    fill = float(np.nanmedian(energy)) if np.isfinite(energy).any() else 0.0
    med[~np.isfinite(med)] = fill
    out: F64 = med[how]
    return out


def classify(epoch_s: F64, energy: F64, expected: F64, *, night: tuple[int, int] = (22, 6)) -> str:
    """The kind of an anomalous run of hours.

    ``stuck``: no consumption at all for two hours or more, and for at least 40 % of the
    run, where some was expected (a counter that stopped); ``low``: less than usual (a
    working day that looks like a holiday, an outage); ``night-load``: more than usual,
    mostly at night (``night`` hours UTC, start to end); ``high``: more than usual.
    """
    e, x = np.asarray(energy, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    ok = np.isfinite(e)
    if not ok.any():
        return "low"
    e, x, t = e[ok], x[ok], np.asarray(epoch_s, dtype=np.float64)[ok]
    scale = max(float(np.nanmax(np.abs(x))) if x.size else 0.0, 1e-9)
    zero = np.abs(e) <= 1e-6 * scale
    streak = best = 0
    for z in zero:
        streak = streak + 1 if z else 0
        best = max(best, streak)
    if best >= max(2, 0.4 * e.size) and float(np.sum(x[zero])) > 0:
        return "stuck"
    if float(np.sum(e - x)) < 0:
        return "low"
    hours = (np.floor(t / _HOUR).astype(np.int64)) % 24
    lo, hi = night
    at_night = (hours >= lo) | (hours < hi) if lo > hi else (hours >= lo) & (hours < hi)
    return "night-load" if float(np.mean(at_night)) > 0.5 else "high"


def _centered_mean(x: F64, k: int) -> F64:
    """Mean of each point's centred window of ``k`` points (shorter at the ends)."""
    ker = np.ones(k)
    num = np.convolve(x, ker, mode="same")
    den = np.convolve(np.ones_like(x), ker, mode="same")
    out: F64 = num / den
    return out


def cycle_error(x: F64, period: int) -> float:
    """How well the phase median of period ``period`` predicts ``x`` on cycles it did not see:
    the mean absolute error of each whole cycle against the median of the other cycles
    (leave one cycle out; the mean, so that a factory's weekends count against the day).
    Inf with fewer than three cycles."""
    c = x.size // period
    if c < 3:
        return math.inf
    m = x[x.size - c * period :].reshape(c, period)
    errs = [np.abs(m[i] - np.median(np.delete(m, i, axis=0), axis=0)) for i in range(c)]
    return float(np.mean(np.concatenate(errs)))


def score_meter(
    epoch_s: npt.ArrayLike,
    energy: npt.ArrayLike,
    *,
    now: float,
    model: str = "profile",
    min_score: float = 0.0,
    contamination: float = 0.01,
    window_h: int = 9,
    min_days: float = 7.0,
    merge_gap_h: int = 3,
) -> dict[str, Any]:
    """One meter's hourly consumption scored against its own history, for the fleet page.

    A meter's single hours are noisy (a kettle, an oven): what is unusual is a deviation
    that lasts. So the detector (``profile`` by default: the seasonal median and MAD per
    phase, no PyTorch, milliseconds) scores the centred ``window_h``-hour (9) mean of
    ``log(energy + eps)`` (``eps``: 5 % of the median hour, so that zero consumption is a
    finite, large drop). The period is a day or a week (the week needs three weeks of
    history) when it predicts the meter's own history clearly better on cycles it did not
    see (:func:`cycle_error`, leave one cycle out, below :data:`WEEK_GAIN` of the day's
    error): a factory's weekends differ from its weekdays, a household's hardly. A point's
    score is then a robust z-score of that hour's window; runs of hours scoring at least
    ``min_score`` are events (the detector's own contamination threshold only when
    ``min_score`` is 0: a quantile would hide a meter's second anomaly behind its first).

    Parameters
    ----------
    epoch_s, energy : array_like
        Hour starts [s] and energy per hour, oldest first (NaN: unknown).
    now : float
        The end of the last day and week [epoch s].
    model : str
        A detector of :func:`gridlens.anomaly.detectors.make_detector` that takes
        ``period`` (``profile``).
    min_score : float
        Hours scoring at least this are anomalous (0: the detector's top ``contamination``
        of training hours instead). The server uses 8.
    window_h : int
        Hours averaged around each hour.
    min_days : float
        Less known history than this gives no scores, a note instead.
    merge_gap_h : int
        Flagged runs at most this many hours apart are one event.

    Returns
    -------
    dict
        ``{"model", "period_h", "day_score", "week_score", "spark" (hourly scores of the
        last 168 h, None where unknown), "spark_start", "note", "events": [{"start", "end",
        "score", "kind"}]}`` (events highest score first); scores None (and a note) when
        there is too little data.
    """
    from gridlens.anomaly.detectors import make_detector
    from gridlens.errors import check_param

    check_param(1 <= window_h <= 48, "window_h", "score_meter", "in [1, 48]", window_h)
    t = np.asarray(epoch_s, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    spark_start = float(np.floor(now / _HOUR) * _HOUR - (_WEEK_H - 1) * _HOUR)
    out: dict[str, Any] = {
        "model": model,
        "period_h": None,
        "day_score": None,
        "week_score": None,
        "spark": [],
        "spark_start": spark_start,
        "note": None,
        "events": [],
    }
    known = np.isfinite(e)
    need = int(min_days * 24)
    if int(known.sum()) < need:
        out["note"] = (
            f"anomaly scoring needs {min_days:g} days of hourly consumption; "
            f"{int(known.sum())} hours so far"
        )
        return out
    first, last = int(np.argmax(known)), int(known.size - np.argmax(known[::-1]))
    t, e, known = t[first:last], e[first:last], known[first:last]
    expected = expected_profile(t, e)
    filled = np.where(known, np.maximum(e, 0.0), expected)
    pos = filled[filled > 0]
    eps = max(0.05 * float(np.median(pos)) if pos.size else 0.0, 1e-9)
    x = _centered_mean(np.log(filled + eps), window_h)
    # the week only when it predicts clearly better (a factory: a fifth of the day's error;
    # a household: about the same, and a week's profile of five samples a phase is noisier)
    period = _WEEK_H if cycle_error(x, _WEEK_H) < WEEK_GAIN * cycle_error(x, 24) else 24
    # the whole cycles that end with the newest hour: the detector's phases count from its
    # first point, and its profile takes whole cycles only (older hours get no score)
    off = x.size % period
    det = make_detector(model, period=period, contamination=contamination).fit(x[off:])
    scores = np.full(x.size, np.nan)
    scores[off:] = np.asarray(det.score_samples(x[off:]), dtype=np.float64)
    threshold = float(det.threshold_)
    out["period_h"] = period
    sk = np.where(known, scores, np.nan)  # imputed hours are not the meter's
    day = (t >= now - 24 * _HOUR) & (t < now)
    week = (t >= now - _WEEK_H * _HOUR) & (t < now)
    if np.isfinite(sk[day]).any():
        out["day_score"] = round(float(np.nanmax(sk[day])), 3)
    if np.isfinite(sk[week]).any():
        out["week_score"] = round(float(np.nanmax(sk[week])), 3)
    idx = np.round((t - spark_start) / _HOUR).astype(np.int64)
    spark: list[float | None] = [None] * _WEEK_H
    for i, v in zip(idx, sk, strict=True):
        if 0 <= i < _WEEK_H and np.isfinite(v):
            spark[int(i)] = round(float(v), 2)
    out["spark"] = spark
    flags = known & np.isfinite(scores) & (scores >= (min_score if min_score > 0 else threshold))
    runs: list[tuple[int, int]] = []
    i, n = 0, flags.size
    while i < n:
        if not flags[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and flags[j + 1]:
            j += 1
        if runs and i - runs[-1][1] <= merge_gap_h:
            runs[-1] = (runs[-1][0], j + 1)
        else:
            runs.append((i, j + 1))
        i = j + 1
    events = []
    for a, b in runs:
        events.append(
            {
                "start": float(t[a]),
                "end": float(t[b - 1] + _HOUR),
                "score": round(float(np.nanmax(sk[a:b])), 3),
                "kind": classify(t[a:b], e[a:b], expected[a:b]),
            }
        )
    out["events"] = sorted(events, key=lambda ev: -ev["score"])
    return out
