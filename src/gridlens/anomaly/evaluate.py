"""Honest evaluation of point-wise anomaly scores.

Scores follow one direction: **higher = more anomalous**; a point is flagged when
``score >= threshold``. The threshold is chosen on a validation part by a stated rule
(:data:`THRESHOLD_RULES`, :func:`threshold_from_validation`) and never on test labels.
:func:`evaluate` then reports, on the test part,

* point-wise precision, recall and F1 at that threshold;
* point-adjusted (PA) precision, recall and F1, **separately and labelled as such**: PA counts a
  whole event as detected once one of its points is flagged, which inflates scores [2]_;
* threshold-free AUC-ROC, AUC-PR (average precision) and VUS-PR [1]_;
* event counts: anomalies found and missed, false alarms, and false alarms per week.

References
----------
.. [1] J. Paparrizos, P. Boniol, T. Palpanas, R. S. Tsay, A. Elmore and M. J. Franklin,
   "Volume Under the Surface: A New Accuracy Evaluation Measure for Time-Series Anomaly
   Detection", PVLDB 15(11), 2774-2787, 2022. Reference code: github.com/TheDatumOrg/VUS.
.. [2] S. Kim, K. Choi, H.-S. Choi, B. Lee and S. Yoon, "Towards a Rigorous Evaluation of
   Time-Series Anomaly Detection", AAAI 2022.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NoReturn

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

from gridlens.errors import check_param

__all__ = [
    "THRESHOLD_RULES",
    "Report",
    "average_precision_scorer",
    "evaluate",
    "events",
    "point_adjust",
    "threshold_from_validation",
    "vus_pr",
]

THRESHOLD_RULES = ("val-quantile", "val-max", "val-best-f1", "contamination")
SECONDS_PER_WEEK = 604_800.0

Float = NDArray[np.float64]
Bool = NDArray[np.bool_]
Int = NDArray[np.intp]


class _Said(str):
    """A description that the house message template shows without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _fail(name: str, owner: str, expected: str, got: object) -> NoReturn:
    check_param(False, name, owner, expected, got)
    raise AssertionError("unreachable")  # pragma: no cover


def _scores(x: ArrayLike, name: str, owner: str) -> Float:
    a = np.asarray(x, dtype=np.float64)
    check_param(
        a.ndim == 1 and a.size > 0, name, owner, "a non-empty 1-D array", _Said(f"shape {a.shape}")
    )
    bad = ~np.isfinite(a)
    if bad.any():
        got = f"{int(bad.sum())} non-finite values (first at index {int(np.flatnonzero(bad)[0])})"
        _fail(name, owner, "a 1-D array of finite numbers", _Said(got))
    return a


def _labels(x: ArrayLike, n: int, name: str, owner: str) -> Bool:
    a = np.asarray(x)
    check_param(a.ndim == 1, name, owner, "a 1-D array", _Said(f"shape {a.shape}"))
    check_param(len(a) == n, name, owner, f"as long as the scores ({n})", _Said(f"length {len(a)}"))
    ok = a.dtype == np.bool_ or (np.issubdtype(a.dtype, np.number) and np.isin(a, (0, 1)).all())
    check_param(
        bool(ok), name, owner, "an array of 0/1 labels", _Said(f"values {np.unique(a)[:5]}")
    )
    return a.astype(np.bool_)


def _runs(mask: Bool) -> tuple[Int, Int]:
    """Starts and exclusive ends of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _ranked(scores: Float) -> tuple[Int, Int, Int]:
    """Sort order (descending), last sorted position of each distinct value, rank of each point."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    group_end = np.flatnonzero(np.concatenate((s[1:] != s[:-1], [True])))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return order, group_end, rank


def threshold_from_validation(
    val_scores: ArrayLike,
    *,
    rule: str = "val-quantile",
    q: float = 0.99,
    val_labels: ArrayLike | None = None,
    contamination: float | None = None,
) -> float:
    """Choose a score threshold on the validation part only.

    Parameters
    ----------
    val_scores : array_like
        Scores of the validation part; higher = more anomalous.
    rule : {"val-quantile", "val-max", "val-best-f1", "contamination"}
        ``val-quantile``: the ``q``-quantile of the validation scores (unsupervised).
        ``val-max``: their maximum, the highest score seen on a validation part believed
        anomaly-free. ``val-best-f1``: the threshold maximising F1 on
        ``val_labels``; among ties the highest (fewest alarms). ``contamination``: the
        ``1 - contamination`` quantile, as scikit-learn's detectors do.
    q : float, default 0.99
        Quantile for ``val-quantile``, in (0, 1].
    val_labels : array_like, optional
        0/1 validation labels; required by ``val-best-f1`` and ignored by the other rules.
    contamination : float, optional
        Expected share of anomalies in (0, 0.5]; required by ``contamination``.

    Returns
    -------
    float
        Threshold in score units; points with ``score >= threshold`` are flagged.

    Raises
    ------
    ParameterError
        Unknown rule, a missing or out-of-range option, NaN or infinite scores, non-0/1 labels.
    """
    owner = "threshold_from_validation"
    check_param(rule in THRESHOLD_RULES, "rule", owner, f"one of {THRESHOLD_RULES}", rule)
    s = _scores(val_scores, "val_scores", owner)
    if rule == "val-quantile":
        check_param(0 < q <= 1, "q", owner, "a float in (0, 1]", q)
        return float(np.quantile(s, q))
    if rule == "val-max":
        return float(s.max())
    if rule == "contamination":
        ok = contamination is not None and 0 < contamination <= 0.5
        check_param(ok, "contamination", owner, "a float in (0, 0.5] for this rule", contamination)
        return float(np.quantile(s, 1.0 - float(contamination or 0.0)))
    if val_labels is None:
        _fail("val_labels", owner, "given for rule 'val-best-f1'", None)
    y = _labels(val_labels, len(s), "val_labels", owner)
    n_pos = int(y.sum())
    check_param(n_pos > 0, "val_labels", owner, "holding at least one anomaly", _Said("none"))
    order, group_end, _ = _ranked(s)
    tp = np.cumsum(y[order])[group_end]
    f1 = 2.0 * tp / (group_end + 1 + n_pos)
    return float(s[order][group_end[int(np.argmax(f1))]])


def events(labels: ArrayLike) -> list[tuple[int, int]]:
    """Contiguous runs of 1 in ``labels`` as ``(start, end_exclusive)`` index pairs."""
    a = np.asarray(labels)
    y = _labels(a, len(a), "labels", "events")
    return [(int(s), int(e)) for s, e in zip(*_runs(y), strict=True)]


def point_adjust(pred: ArrayLike, labels: ArrayLike) -> NDArray[np.bool_]:
    """Apply the point-adjust (PA) protocol to binary predictions.

    If any point of a true event is flagged, every point of that event counts as flagged;
    flags outside events are kept. PA lets a detector that flags one point per event reach
    F1 = 1, and even random flags score well [2]_: report it only beside the plain F1.

    Parameters
    ----------
    pred : array_like
        0/1 (or boolean) predictions.
    labels : array_like
        0/1 ground truth, same length.

    Returns
    -------
    numpy.ndarray of bool
        The adjusted predictions.
    """
    p0 = np.asarray(pred)
    p = _labels(p0, len(p0), "pred", "point_adjust")
    y = _labels(labels, len(p), "labels", "point_adjust")
    starts, ends = _runs(y)
    flags_before = np.concatenate(([0], np.cumsum(p)))
    hit = flags_before[ends] > flags_before[starts]
    edge = np.zeros(len(p) + 1, dtype=np.intp)
    edge[starts[hit]] += 1  # runs are disjoint and never touch: no index repeats
    edge[ends[hit]] -= 1
    return p | (np.cumsum(edge[:-1]) > 0)


def _soft_labels(y: Bool, starts: Int, ends: Int, buffer: int) -> Float:
    """Labels with a sqrt-shaped ramp of ``buffer // 2`` points on each side of every event [1]_."""
    soft = y.astype(np.float64)
    half = buffer // 2
    if half == 0:
        return soft
    d = np.arange(1, half + 1)
    idx = np.concatenate(((starts[:, None] - d).ravel(), ((ends - 1)[:, None] + d).ravel()))
    val = np.tile(np.sqrt(1.0 - d / buffer), 2 * len(starts))
    ok = (idx >= 0) & (idx < len(y))
    soft += np.bincount(idx[ok], weights=val[ok], minlength=len(y))
    return np.minimum(soft, 1.0)


def _range_auc_pr(
    ranked: tuple[Int, Int, Int], y: Bool, starts: Int, ends: Int, buffer: int
) -> float:
    """Range-AUC-PR of [1]_ for one buffer length, over every distinct score threshold."""
    order, group_end, rank = ranked
    n = len(y)
    soft = _soft_labels(y, starts, ends, buffer)
    half = buffer // 2
    # events whose widened ranges overlap merge into one range for the existence reward
    lo = np.maximum(starts - half, 0)
    hi = np.minimum(ends - 1 + half, n - 1)
    first = np.flatnonzero(np.concatenate(([True], lo[1:] > hi[:-1])))
    last = np.concatenate((first[1:] - 1, [len(starts) - 1]))
    bounds = np.column_stack((lo[first], hi[last] + 1)).ravel()
    seg_rank = np.minimum.reduceat(np.concatenate((rank, [n])), bounds)[::2]
    found = np.searchsorted(np.sort(seg_rank), group_end, side="right")
    tp = np.cumsum(soft[order])[group_end]
    p_mid = 0.5 * (float(y.sum()) + float(soft.sum()))
    tpr = np.minimum(tp / p_mid, 1.0) * found / len(first)
    precision = tp / (group_end + 1)
    x = np.concatenate(([0.0], tpr))
    h = np.concatenate(([1.0], precision))
    return float(np.sum(np.diff(x) * 0.5 * (h[1:] + h[:-1])))


def vus_pr(scores: ArrayLike, labels: ArrayLike, *, max_buffer: int | None = None) -> float:
    """Volume under the range-PR surface (VUS-PR) of Paparrizos et al. [1]_.

    For each buffer length ``l = 0 .. max_buffer`` the labels get a soft ramp of ``l // 2``
    points on each side of every event, ``sqrt(1 - d / l)`` at distance ``d`` (clipped to 1),
    as in the authors' code. Range recall is ``min(TP / ((P + P_soft) / 2), 1)`` times the
    share of (merged, widened) events holding a flagged point; range precision is
    ``TP / flagged`` with TP the soft-label mass flagged. The range-AUC-PR is the trapezoid
    area under that curve from (0, 1), and VUS-PR is its mean over ``l``.

    Unlike the reference code, which samples 250 thresholds, every distinct score is a
    threshold: the exact curve that the sample approximates. Cost is O(max_buffer · n).

    Parameters
    ----------
    scores : array_like
        Anomaly scores; higher = more anomalous.
    labels : array_like
        0/1 ground truth, same length.
    max_buffer : int, optional
        Largest buffer length ``l`` [samples]. Default: the median event length, the
        authors' "external knowledge" advice for setting it (README of [1]_'s code).

    Returns
    -------
    float
        VUS-PR in [0, 1]; NaN when ``labels`` holds no anomaly. A binary score equal to the
        labels reaches exactly 1 only at ``max_buffer = 0``: for ``l >= 2`` the unflagged buffer
        mass keeps its range recall below 1 at the top threshold.
    """
    owner = "vus_pr"
    s = _scores(scores, "scores", owner)
    y = _labels(labels, len(s), "labels", owner)
    starts, ends = _runs(y)
    if len(starts) == 0:
        return math.nan
    if max_buffer is None:
        max_buffer = int(np.median(ends - starts))
    ok = isinstance(max_buffer, int | np.integer) and not isinstance(max_buffer, bool)
    check_param(ok and max_buffer >= 0, "max_buffer", owner, "an int >= 0", max_buffer)
    ranked = _ranked(s)
    aps = [_range_auc_pr(ranked, y, starts, ends, b) for b in range(int(max_buffer) + 1)]
    return float(np.mean(aps))


@dataclass(frozen=True)
class Report:
    """Scores of one detector on one test part; see :func:`evaluate` for each field.

    ``*_pa`` and ``f1_point_adjusted`` use the point-adjust protocol and are inflated [2]_;
    ``precision``, ``recall`` and ``f1`` are the plain point-wise values. ``weeks`` and
    ``false_alarms_per_week`` are None when the sample period is unknown.
    """

    threshold: float
    threshold_rule: str
    precision: float
    recall: float
    f1: float
    f1_point_adjusted: float
    precision_pa: float
    recall_pa: float
    auc_roc: float
    auc_pr: float
    vus_pr: float
    n_events: int
    events_found: int
    events_missed: int
    false_alarms: int
    false_alarms_per_week: float | None
    weeks: float | None
    n_points: int
    vus_max_buffer: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: NaN becomes None, ratios 4 decimals, the threshold 6 digits."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                if not math.isfinite(value):
                    value = None
                elif key == "threshold":
                    value = float(f"{value:.6g}")
                else:
                    value = round(value, 4)
            out[key] = value
        return out

    def __str__(self) -> str:
        per_week = (
            ""
            if self.false_alarms_per_week is None
            else f" ({self.false_alarms_per_week:.2f}/week)"
        )
        return (
            f"F1 {self.f1:.3f} (P {self.precision:.3f}, R {self.recall:.3f}); "
            f"point-adjusted F1 {self.f1_point_adjusted:.3f}; AUC-ROC {self.auc_roc:.3f}, "
            f"AUC-PR {self.auc_pr:.3f}, VUS-PR {self.vus_pr:.3f}; events {self.events_found}/"
            f"{self.n_events} found, {self.false_alarms} false alarms{per_week}; "
            f"threshold {self.threshold:.6g} ({self.threshold_rule})"
        )


def _prf(pred: Bool, y: Bool) -> tuple[float, float, float]:
    """Precision, recall, F1; a ratio with a zero denominator is 0 (scikit-learn's convention)."""
    tp = float(np.sum(pred & y))
    n_pred, n_pos = float(pred.sum()), float(y.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * tp / (n_pred + n_pos) if n_pred + n_pos else 0.0
    return precision, recall, f1


def evaluate(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    threshold: float,
    threshold_rule: str = "given",
    step_s: float | None = None,
    exclude: slice | ArrayLike | None = None,
    vus_max_buffer: int | None = None,
) -> Report:
    """Evaluate anomaly scores against labels at a threshold fixed beforehand.

    Parameters
    ----------
    scores : array_like
        Anomaly scores of the test part; higher = more anomalous.
    labels : array_like
        0/1 ground truth, same length.
    threshold : float
        Points with ``score >= threshold`` are flagged; choose it with
        :func:`threshold_from_validation`, never on these labels.
    threshold_rule : str, default "given"
        How the threshold was chosen, copied into the report.
    step_s : float, optional
        Sample period [s]; gives ``weeks`` and ``false_alarms_per_week``.
    exclude : slice or array_like, optional
        Points left out (a slice, a boolean mask, or indices), e.g. the validation part or a
        warm-up. An excluded point splits any event or alarm run across it; VUS-PR and the
        AUCs use the remaining points in order.
    vus_max_buffer : int, optional
        ``max_buffer`` of :func:`vus_pr` [samples]; default the median event length.

    Returns
    -------
    Report
        Point-wise P/R/F1; point-adjusted P/R/F1 (inflated, [2]_); AUC-ROC and AUC-PR
        (scikit-learn's ``roc_auc_score`` and ``average_precision_score``); VUS-PR [1]_;
        ``n_events`` true events, of which ``events_found`` hold at least one flagged point
        (no early/late tolerance); ``false_alarms``: runs of flagged points touching no event.
        Without any anomaly the AUCs and VUS-PR are NaN (AUC-ROC also without any normal
        point), and recall and F1 are 0, as are precision and F1 when nothing is flagged.

    Raises
    ------
    ParameterError
        Length mismatch, NaN or infinite scores, non-0/1 labels, a non-finite threshold, a bad
        ``step_s``, ``exclude`` or ``vus_max_buffer``.
    """
    owner = "evaluate"
    s = _scores(scores, "scores", owner)
    y = _labels(labels, len(s), "labels", owner)
    check_param(math.isfinite(threshold), "threshold", owner, "a finite float", threshold)
    ok_step = step_s is None or (math.isfinite(step_s) and step_s > 0)
    check_param(ok_step, "step_s", owner, "a positive float (seconds) or None", step_s)
    ok_buf = vus_max_buffer is None or (
        isinstance(vus_max_buffer, int | np.integer)
        and not isinstance(vus_max_buffer, bool)
        and vus_max_buffer >= 0
    )
    check_param(ok_buf, "vus_max_buffer", owner, "an int >= 0 or None", vus_max_buffer)
    keep = np.ones(len(s), dtype=np.bool_)
    if exclude is not None:
        try:
            keep[exclude if isinstance(exclude, slice) else np.asarray(exclude)] = False
        except IndexError as exc:
            _fail("exclude", owner, "a slice, mask or indices of the scores", _Said(exc))
    check_param(bool(keep.any()), "exclude", owner, "leaving at least one point", exclude)

    flagged = (s >= threshold) & keep
    y_kept = y & keep
    precision, recall, f1 = _prf(flagged[keep], y[keep])
    pa = point_adjust(flagged, y_kept)
    precision_pa, recall_pa, f1_pa = _prf(pa[keep], y[keep])

    ev_s, ev_e = _runs(y_kept)
    flags_before = np.concatenate(([0], np.cumsum(flagged)))
    found = int(np.sum(flags_before[ev_e] > flags_before[ev_s]))
    al_s, al_e = _runs(flagged)
    pos_before = np.concatenate(([0], np.cumsum(y_kept)))
    false_alarms = int(np.sum(pos_before[al_e] == pos_before[al_s]))

    sk, yk = s[keep], y[keep]
    n_pos = int(yk.sum())
    auc_roc = float(roc_auc_score(yk, sk)) if 0 < n_pos < len(yk) else math.nan
    auc_pr = float(average_precision_score(yk, sk)) if n_pos else math.nan
    if n_pos and vus_max_buffer is None:
        k_s, k_e = _runs(yk)
        vus_max_buffer = int(np.median(k_e - k_s))
    vus = vus_pr(sk, yk, max_buffer=vus_max_buffer) if n_pos else math.nan

    n_points = int(keep.sum())
    weeks = None if step_s is None else n_points * step_s / SECONDS_PER_WEEK
    return Report(
        threshold=float(threshold),
        threshold_rule=str(threshold_rule),
        precision=precision,
        recall=recall,
        f1=f1,
        f1_point_adjusted=f1_pa,
        precision_pa=precision_pa,
        recall_pa=recall_pa,
        auc_roc=auc_roc,
        auc_pr=auc_pr,
        vus_pr=vus,
        n_events=len(ev_s),
        events_found=found,
        events_missed=len(ev_s) - found,
        false_alarms=false_alarms,
        false_alarms_per_week=None if weeks is None else false_alarms / weeks,
        weeks=weeks,
        n_points=n_points,
        vus_max_buffer=vus_max_buffer if n_pos else None,
    )


def average_precision_scorer(estimator: Any, x: ArrayLike, y: ArrayLike) -> float:
    """AUC-PR (average precision) of a fitted detector's scores on ``x`` against labels ``y``.

    A scikit-learn scorer (``scoring=`` of ``GridSearchCV``) for unsupervised detectors:
    the labels only score the ``score_samples`` of the held-out part, the detector never
    fits on them.  A part without an anomaly has no precision-recall curve: NaN, which
    ``GridSearchCV`` ranks last (with a warning), so split so every test part holds one.

    Parameters
    ----------
    estimator : Detector
        A fitted detector (higher score = more anomalous).
    x : array_like, shape (n,)
        The series part to score.
    y : array_like of {0, 1}, shape (n,)
        Anomaly label per point.

    Returns
    -------
    float
        Average precision in [0, 1], or NaN when ``y`` has no anomaly.
    """
    scores = _scores(estimator.score_samples(x), "scores", "average_precision_scorer")
    labels = _labels(y, scores.size, "y", "average_precision_scorer")
    if not labels.any():
        return math.nan
    return float(average_precision_score(labels, scores))
