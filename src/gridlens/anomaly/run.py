"""One detection run with an honest protocol: fit, threshold on validation, test metrics.

The series is split in time (seed S3: 6:2:2): the detector learns from the first part
without labels, the threshold comes from the validation part's scores by a stated rule
(never from test labels), and metrics are computed on the test part only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gridlens.anomaly.data import Series
from gridlens.anomaly.detectors import DEFAULT_MODEL, Detector, make_detector
from gridlens.anomaly.evaluate import Report, evaluate, events, threshold_from_validation
from gridlens.errors import InsufficientDataError, check_param

__all__ = ["Event", "RunResult", "detect", "score_consumption"]

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]


@dataclass(frozen=True)
class Event:
    """A run of flagged points.

    Parameters
    ----------
    start, end : numpy.datetime64
        First flagged timestamp and the timestamp after the last one (exclusive).
    score : float
        Highest point score inside the run.
    """

    start: np.datetime64
    end: np.datetime64
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": str(self.start), "end": str(self.end), "score": round(self.score, 4)}


@dataclass
class RunResult:
    """Everything one run produced (see :func:`detect`)."""

    series: Series
    model: str
    detector: Detector
    scores: F64
    flags: I8
    threshold: float
    threshold_rule: str
    train_end: int
    val_end: int
    fit_seconds: float
    score_seconds: float
    report: Report | None = None
    events: list[Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-point arrays)."""
        s = self.series
        periods = [
            {"samples": p.samples, "hours": round(p.hours, 4), "text": p.describe()}
            for p in (
                replace(q, seconds=q.samples * float(s.step_s))
                for q in getattr(self.detector, "periods_", [])
            )
        ]
        return {
            "series": s.name,
            "model": self.model,
            "points": int(s.values.size),
            "step_s": s.step_s,
            "imputed": s.n_imputed,
            "periods": periods,
            "split": {"train_end": self.train_end, "val_end": self.val_end},
            "threshold": round(self.threshold, 6),
            "threshold_rule": self.threshold_rule,
            "flagged_points": int(self.flags.sum()),
            "events": [e.to_dict() for e in self.events],
            "fit_seconds": round(self.fit_seconds, 3),
            "score_seconds": round(self.score_seconds, 4),
            "points_per_second": round(s.values.size / max(self.score_seconds, 1e-9)),
            "metrics_on_test_part": None if self.report is None else self.report.to_dict(),
        }


def detect(
    series: Series,
    model: str | Detector = DEFAULT_MODEL,
    *,
    train_fraction: float = 0.6,
    val_fraction: float = 0.2,
    threshold_rule: str = "val-quantile",
    q: float = 0.99,
    metrics_from: Literal["test", "after-train"] = "test",
    **params: Any,
) -> RunResult:
    """Fit on the first part, threshold on the validation part, score every timestamp.

    Parameters
    ----------
    series : Series
        A regular series (:mod:`gridlens.anomaly.data`).
    model : str or Detector
        A name from :data:`gridlens.anomaly.detectors.MODELS` or an unfitted detector.
    train_fraction, val_fraction : float
        The first ``train_fraction`` trains the detector (labels unused); the next
        ``val_fraction`` sets the threshold; the rest is the test part. Seed S3: 0.6, 0.2.
    threshold_rule : str
        ``"val-quantile"`` (the ``q`` quantile of the validation scores, no labels
        needed), ``"val-max"``, ``"val-best-f1"`` (needs labels in the validation part),
        or ``"contamination"`` (the detector's own training quantile).
    q : float
        Quantile for ``"val-quantile"``.
    metrics_from : {"test", "after-train"}
        Where the metrics are computed: the test part, or everything after the training
        part (honest too when the threshold rule uses no labels, as ``val-quantile``).
    **params
        Passed to the detector's constructor.

    Returns
    -------
    RunResult
        Scores and 0/1 flags for every timestamp; metrics on the test part when the series
        has labels.
    """
    check_param(
        0.1 <= train_fraction <= 0.9, "train_fraction", "detect", "in [0.1, 0.9]", train_fraction
    )
    check_param(
        0.0 <= val_fraction <= 0.5 and train_fraction + val_fraction <= 0.95,
        "val_fraction",
        "detect",
        "in [0, 0.5] with train_fraction + val_fraction <= 0.95",
        val_fraction,
    )
    n = series.values.size
    train_end = round(n * train_fraction)
    val_end = round(n * (train_fraction + val_fraction))
    if train_end < 16:
        raise InsufficientDataError(f"the series has {n} points, too few to train on")
    det = make_detector(model, **params) if isinstance(model, str) else model
    name = model if isinstance(model, str) else det.name
    t0 = time.perf_counter()
    det.fit(series.values[:train_end])
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = det.score_samples(series.values)
    score_s = time.perf_counter() - t0
    if threshold_rule == "contamination" or val_end == train_end:
        thr, rule = det.threshold_, f"contamination {det.contamination:g} of the training scores"
    else:
        val_labels = None if series.labels is None else series.labels[train_end:val_end]
        thr = threshold_from_validation(
            scores[train_end:val_end], rule=threshold_rule, q=q, val_labels=val_labels
        )
        rule = threshold_rule + (f" q={q:g}" if threshold_rule == "val-quantile" else "")
    det.threshold_ = thr
    flags = (scores >= thr).astype(np.int8)
    report = None
    first = val_end if metrics_from == "test" else train_end
    if series.labels is not None and first < n:
        report = evaluate(
            scores[first:],
            series.labels[first:],
            threshold=thr,
            threshold_rule=rule,
            step_s=series.step_s,
        )
    step = np.timedelta64(int(series.step_s), "s")
    evs = [
        Event(series.times[a], series.times[b - 1] + step, float(scores[a:b].max()))
        for a, b in events(flags)
    ]
    return RunResult(
        series=series,
        model=str(name),
        detector=det,
        scores=scores,
        flags=flags,
        threshold=thr,
        threshold_rule=rule,
        train_end=train_end,
        val_end=val_end,
        fit_seconds=fit_s,
        score_seconds=score_s,
        report=report,
        events=evs,
    )


def score_consumption(
    epoch_s: npt.ArrayLike,
    energy: npt.ArrayLike,
    *,
    model: str = "profile",
    name: str = "meter",
    min_days: float = 3.0,
    contamination: float = 0.01,
) -> dict[str, Any]:
    """Anomalies in a meter's interval consumption, for the server's meter page.

    Unknown buckets (NaN) are imputed first (and counted). The detector fits on the whole
    span without labels and flags its top ``contamination`` of points; this is a live
    view of the meter against its own history, not an evaluation.

    Parameters
    ----------
    epoch_s, energy : array_like
        Bucket start times [s] and energy per bucket (e.g. hourly kWh), oldest first.
    model : str
        A detector name; ``"profile"`` needs neither PyTorch nor training time.

    Returns
    -------
    dict
        ``{"model", "imputed", "threshold", "points": [{"t", "energy", "score",
        "anomaly"}], "events": [{"start", "end", "score"}]}``, or ``{"model", "note",
        "points": [], "events": []}`` when there is too little data.
    """
    from gridlens.anomaly.data import from_arrays

    t = np.asarray(epoch_s, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    known = np.isfinite(e)
    step = float(np.median(np.diff(t))) if t.size > 1 else 3600.0
    need = int(min_days * 86400 / step)
    if int(known.sum()) < max(need, 16):
        return {
            "model": model,
            "note": f"anomaly detection needs {min_days:g} days of consumption "
            f"({need} buckets); {int(known.sum())} so far",
            "points": [],
            "events": [],
        }
    first, last = int(np.argmax(known)), int(known.size - np.argmax(known[::-1]))
    s = from_arrays(t[first:last], e[first:last], name=name, step_s=round(step))
    try:
        det = make_detector(model, contamination=contamination).fit(s.values)
    except InsufficientDataError as exc:
        return {"model": model, "note": str(exc), "points": [], "events": []}
    scores = det.score_samples(s.values)
    flags = (scores >= det.threshold_).astype(np.int8)
    evs = [
        {
            "start": float(s.epoch_s[a]),
            "end": float(s.epoch_s[b - 1] + s.step_s),
            "score": round(float(scores[a:b].max()), 3),
        }
        for a, b in events(flags)
    ]
    return {
        "model": model,
        "imputed": s.n_imputed,
        "threshold": round(det.threshold_, 4),
        "points": [
            {"t": float(tt), "energy": float(v), "score": round(float(sc), 4), "anomaly": bool(f)}
            for tt, v, sc, f in zip(s.epoch_s, s.values, scores, flags, strict=True)
        ],
        "events": sorted(evs, key=lambda ev: -ev["score"]),
    }
