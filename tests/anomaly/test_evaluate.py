"""Tests of gridlens.anomaly.evaluate: hand-computed cases, PA inflation, VUS-PR."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score

from gridlens.anomaly.evaluate import (
    THRESHOLD_RULES,
    Report,
    evaluate,
    events,
    point_adjust,
    threshold_from_validation,
    vus_pr,
)
from gridlens.errors import ParameterError

# two events, (2, 5) and (8, 10); flags at 3, 4 (inside the first) and 6 (a false alarm)
Y_HAND = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0])
S_HAND = np.zeros(12)
S_HAND[[3, 4, 6]] = 1.0


def _labels(n: int, n_events: int, lo: int, hi: int, seed: int) -> NDArray[np.bool_]:
    """Non-overlapping events of random length in [lo, hi) on a grid of slots."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=np.bool_)
    slot = n // n_events
    for k in range(n_events):
        start = k * slot + int(rng.integers(0, slot - hi))
        y[start : start + int(rng.integers(lo, hi))] = True
    return y


def _vus_naive(scores: NDArray[np.float64], y: NDArray[np.bool_], max_buffer: int) -> float:
    """VUS-PR straight from the definition of Paparrizos et al. 2022, one loop per step."""
    n = len(y)
    runs = events(y)
    p = float(y.sum())
    aps = []
    for b in range(max_buffer + 1):
        half = b // 2
        soft = y.astype(float)
        for s, e in runs:
            for d in range(1, half + 1):
                if s - d >= 0:
                    soft[s - d] += math.sqrt(1 - d / b)
                if e - 1 + d < n:
                    soft[e - 1 + d] += math.sqrt(1 - d / b)
        soft = np.minimum(soft, 1.0)
        segs: list[list[int]] = []
        for s, e in runs:
            lo, hi = max(s - half, 0), min(e - 1 + half, n - 1)
            if segs and lo <= segs[-1][1]:
                segs[-1][1] = hi
            else:
                segs.append([lo, hi])
        p_mid = (p + soft.sum()) / 2
        xs, hs = [0.0], [1.0]
        for t in np.unique(scores)[::-1]:
            pred = scores >= t
            tp = float(np.sum(soft[pred]))
            found = sum(bool(pred[lo : hi + 1].any()) for lo, hi in segs)
            xs.append(min(tp / p_mid, 1.0) * found / len(segs))
            hs.append(tp / pred.sum())
        aps.append(sum((xs[i + 1] - xs[i]) * (hs[i + 1] + hs[i]) / 2 for i in range(len(xs) - 1)))
    return float(np.mean(aps))


def test_events_runs() -> None:
    assert events(Y_HAND) == [(2, 5), (8, 10)]
    assert events([1, 1, 0, 1]) == [(0, 2), (3, 4)]
    assert events([0, 0]) == []


def test_hand_computed_point_and_event_metrics() -> None:
    r = evaluate(S_HAND, Y_HAND, threshold=0.5)
    # TP 2 (3, 4), FP 1 (6), FN 3 (2, 8, 9)
    assert r.precision == pytest.approx(2 / 3)
    assert r.recall == pytest.approx(2 / 5)
    assert r.f1 == pytest.approx(0.5)
    # PA fills event (2, 5): TP 3, FP 1, FN 2
    assert r.precision_pa == pytest.approx(3 / 4)
    assert r.recall_pa == pytest.approx(3 / 5)
    assert r.f1_point_adjusted == pytest.approx(2 / 3)
    assert (r.n_events, r.events_found, r.events_missed, r.false_alarms) == (2, 1, 1, 1)
    assert r.weeks is None and r.false_alarms_per_week is None
    assert r.n_points == 12 and r.threshold_rule == "given"


def test_point_adjust_fills_touched_events_only() -> None:
    pred = np.array([0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    expected = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    np.testing.assert_array_equal(point_adjust(pred, Y_HAND), expected)


def test_point_adjust_inflates_one_point_per_event() -> None:
    y = np.zeros(2000, dtype=bool)
    starts = np.arange(10) * 200 + 50
    for s in starts:
        y[s : s + 50] = True
    scores = np.zeros(2000)
    scores[starts] = 1.0  # one flagged point per event, nothing else
    r = evaluate(scores, y, threshold=0.5)
    assert r.f1_point_adjusted == pytest.approx(1.0)
    assert r.f1 == pytest.approx(2 * 10 / (10 + 500))  # 0.039
    assert r.events_found == 10 and r.false_alarms == 0


def test_random_detector_is_chance_level() -> None:
    y = _labels(20_000, 40, 10, 30, seed=1)
    scores = np.random.default_rng(2).random(len(y))
    r = evaluate(scores, y, threshold=threshold_from_validation(scores[:5000], q=0.99))
    base = float(y.mean())
    assert r.auc_roc == pytest.approx(0.5, abs=0.03)
    assert r.auc_pr == pytest.approx(base, abs=0.01)
    assert r.vus_pr < 0.1
    perfect = vus_pr(y.astype(float), y)
    assert perfect > 0.9 and perfect > 5 * r.vus_pr


def test_perfect_score_vus() -> None:
    y = _labels(5000, 10, 20, 60, seed=3)
    assert vus_pr(y.astype(float), y, max_buffer=0) == pytest.approx(1.0)
    # with buffers the unflagged buffer mass keeps range recall below 1 at the top threshold
    assert 0.9 < vus_pr(y.astype(float), y) < 1.0


def test_vus_credits_a_slightly_late_detection() -> None:
    y = _labels(10_000, 20, 30, 60, seed=4)
    rng = np.random.default_rng(5)
    late = np.roll(y, 8).astype(float) + 0.01 * rng.random(len(y))  # 8 samples late
    ap = average_precision_score(y, late)
    assert vus_pr(late, y, max_buffer=0) == pytest.approx(ap, abs=0.02)  # no buffer, no credit
    assert vus_pr(late, y) > ap + 0.03  # the buffer region credits the late flags
    assert vus_pr(late, y, max_buffer=30) > vus_pr(late, y, max_buffer=10)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vus_matches_definition_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.zeros(80, dtype=bool)
    y[[0, 1, 2, 20, 21, 26, 27, 28, 29, 50, 51, 52, 53, 54, 78, 79]] = True  # edges, near events
    scores = np.round(rng.random(80) + 0.8 * y, 1)  # rounded: many ties
    for b in (0, 1, 4, 7, 12):
        assert vus_pr(scores, y, max_buffer=b) == pytest.approx(_vus_naive(scores, y, b))


def test_vus_defaults_and_no_anomaly() -> None:
    y = np.zeros(100, dtype=bool)
    y[10:16] = y[40:44] = y[70:80] = True  # median length 6
    s = np.random.default_rng(6).random(100)
    assert vus_pr(s, y) == pytest.approx(vus_pr(s, y, max_buffer=6))
    assert math.isnan(vus_pr(s, np.zeros(100)))
    with pytest.raises(ParameterError, match="'max_buffer' parameter of vus_pr"):
        vus_pr(s, y, max_buffer=-1)


def test_threshold_rules_on_validation_part() -> None:
    val = np.arange(101) / 100.0
    assert threshold_from_validation(val, rule="val-quantile", q=0.9) == pytest.approx(0.9)
    assert threshold_from_validation(val, rule="val-max") == pytest.approx(1.0)
    assert threshold_from_validation(val, rule="contamination", contamination=0.1) == (
        pytest.approx(0.9)
    )
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.85])
    labels = np.array([0, 0, 1, 1, 0, 0])
    # F1 at 0.9: 2/3, at 0.85: 1/2, at 0.8: 4/5, at 0.3: 2/3
    t = threshold_from_validation(scores, rule="val-best-f1", val_labels=labels)
    assert t == pytest.approx(0.8)
    assert set(THRESHOLD_RULES) == {"val-quantile", "val-max", "val-best-f1", "contamination"}


def test_threshold_rule_errors() -> None:
    val = np.arange(10.0)
    with pytest.raises(ParameterError, match="'val_labels' parameter"):
        threshold_from_validation(val, rule="val-best-f1")
    with pytest.raises(ParameterError, match="at least one anomaly"):
        threshold_from_validation(val, rule="val-best-f1", val_labels=np.zeros(10))
    with pytest.raises(ParameterError, match="'contamination' parameter"):
        threshold_from_validation(val, rule="contamination")
    with pytest.raises(ParameterError, match="'rule' parameter"):
        threshold_from_validation(val, rule="test-best-f1")
    with pytest.raises(ParameterError, match="'q' parameter"):
        threshold_from_validation(val, q=1.5)


def test_per_week_and_exclude() -> None:
    n = 3 * 672  # three weeks of 15-min samples
    y = np.zeros(n, dtype=bool)
    y[50:60] = y[1000:1010] = True
    s = np.zeros(n)
    s[[55, 300, 301, 700, 1500, 1600, 1700, 1800]] = 1.0  # alarms: 300-301, 700, 1500...1800
    r = evaluate(s, y, threshold=0.5, step_s=900.0, threshold_rule="val-max")
    assert r.weeks == pytest.approx(3.0)
    assert (r.events_found, r.events_missed, r.false_alarms) == (1, 1, 6)
    assert r.false_alarms_per_week == pytest.approx(2.0)
    cut = evaluate(s, y, threshold=0.5, step_s=900.0, exclude=slice(0, 672))
    assert cut.n_points == 2 * 672 and cut.weeks == pytest.approx(2.0)
    assert (cut.n_events, cut.events_found, cut.false_alarms) == (1, 0, 5)
    mask = np.zeros(n, dtype=bool)
    mask[1005] = True  # an excluded point splits the event in two
    assert evaluate(s, y, threshold=0.5, exclude=mask).n_events == 3


def test_no_anomaly_gives_nan_auc_and_json() -> None:
    s = np.random.default_rng(7).random(50)
    r = evaluate(s, np.zeros(50), threshold=2.0)
    assert math.isnan(r.auc_roc) and math.isnan(r.auc_pr) and math.isnan(r.vus_pr)
    assert r.f1 == 0.0 and r.precision == 0.0 and r.false_alarms == 0
    d = r.to_dict()
    assert d["auc_roc"] is None and d["vus_max_buffer"] is None
    json.dumps(d, allow_nan=False)
    assert isinstance(r, Report) and "point-adjusted" in str(r)


def test_input_errors() -> None:
    with pytest.raises(ParameterError, match="'labels' parameter of evaluate must be as long"):
        evaluate(np.zeros(5), np.zeros(4), threshold=0.5)
    bad = np.zeros(5)
    bad[2] = np.nan
    with pytest.raises(ParameterError, match=r"finite numbers\. Got 1 non-finite values"):
        evaluate(bad, np.zeros(5), threshold=0.5)
    with pytest.raises(ParameterError, match="0/1 labels"):
        evaluate(np.zeros(3), [0, 2, 1], threshold=0.5)
    with pytest.raises(ParameterError, match="'labels' parameter of vus_pr"):
        vus_pr(np.zeros(3), np.zeros(2))
