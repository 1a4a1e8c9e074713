"""Every detector that ``gridlens detect --model`` offers is a scikit-learn estimator.

``clone``, ``get_params(deep)``, ``set_params`` and ``GridSearchCV`` work on each, an
unfitted one raises a ``NotFittedError``, and the checks of
``sklearn.utils.estimator_checks`` that do not need 2-D ``(n_samples, n_features)`` input
pass.  Tiny series and one-epoch nets keep it fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.utils import estimator_checks
from sklearn.utils.validation import check_is_fitted

from gridlens.anomaly.detectors import MODELS, Detector, NotFittedError, make_detector
from gridlens.anomaly.evaluate import average_precision_scorer
from gridlens.errors import GridlensError, ParameterError

NEURAL = ("cnn-gru-ae", "lstm-ae", "usad")

#: Small settings per model (windows of 24 fit a 480-point series) and a grid to search.
SMALL: dict[str, tuple[dict[str, Any], dict[str, list[Any]]]] = {
    "ensemble": ({"members": ("knn@24", "hybrid@12")}, {"scaling": ["tail", "rank"]}),
    "cnn-gru-ae": ({"window": 24, "epochs": 1, "hidden": 8}, {"hidden": [4, 8]}),
    "lstm-ae": ({"window": 24, "epochs": 1, "hidden": 8}, {"hidden": [4, 8]}),
    "usad": ({"window": 24, "epochs": 1, "hidden": 8}, {"hidden": [4, 8]}),
    "hybrid": ({"window": 24}, {"n_neighbors": [1, 5], "spike_width": [1, 3]}),
    "iforest": ({"window": 24}, {"window": [12, 24]}),
    "ecod": ({"window": 24}, {"window": [12, 24]}),
    "knn": ({"window": 24}, {"window": [12, 24], "deseason": [False, True]}),
    "profile": ({}, {"period": [12, 24]}),
}


def test_every_model_has_small_settings() -> None:
    assert set(SMALL) == set(MODELS)


def spiky_series(n: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A daily sine (24 points a day) with noise and a spike every 40 points, labelled."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    x = 10 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
    y = np.zeros(n, dtype=np.int8)
    y[30::40] = 1
    x[y == 1] += 8
    return x, y


@pytest.mark.parametrize("model", MODELS)
def test_clone_copies_the_parameters_and_not_the_fit(model: str) -> None:
    kw, _ = SMALL[model]
    det = make_detector(model, contamination=0.05, **kw)
    copy = clone(det)
    assert type(copy) is type(det) and copy is not det
    assert copy.get_params() == det.get_params()
    assert copy.get_params(deep=True) == copy.get_params(deep=False)
    assert det.get_params()["contamination"] == 0.05
    if model not in NEURAL:  # a fitted detector clones to an unfitted one
        det.fit(spiky_series()[0])
        with pytest.raises(NotFittedError):
            clone(det).score_samples(np.ones(100))
    assert "contamination=0.05" in repr(copy)


@pytest.mark.parametrize("model", MODELS)
def test_set_params_returns_self_and_refuses_unknown_names(model: str) -> None:
    det = make_detector(model)
    assert det.set_params(contamination=0.2, verbose=True) is det
    assert det.contamination == 0.2 and det.verbose is True
    before = det.get_params()
    with pytest.raises(ParameterError, match=r"no parameter 'bogus'.*contamination") as err:
        det.set_params(contamination=0.3, bogus=1)
    assert isinstance(err.value, ValueError)  # what scikit-learn raises there
    assert det.get_params() == before  # nothing changed


@pytest.mark.parametrize("model", MODELS)
def test_an_unfitted_detector_raises_not_fitted_error(model: str) -> None:
    det = make_detector(model)
    for method in (det.score_samples, det.predict, det.decision_function):
        with pytest.raises(NotFittedError, match="not fitted") as err:
            method(np.ones(100))
        assert isinstance(err.value, sklearn.exceptions.NotFittedError)
        assert isinstance(err.value, ValueError) and isinstance(err.value, AttributeError)
        assert isinstance(err.value, GridlensError)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(det)


def test_check_is_fitted_accepts_a_fitted_detector() -> None:
    det = make_detector("profile", period=24).fit(spiky_series()[0])
    check_is_fitted(det)
    assert not hasattr(make_detector("profile"), "threshold_")


#: The checks of sklearn.utils.estimator_checks that need no 2-D input or fit.
CHECKS: list[Callable[[str, Any], None]] = [
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_mixin_order,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("model", MODELS)
def test_sklearn_estimator_checks(model: str, check: Callable[[str, Any], None]) -> None:
    det = make_detector(model)
    check(type(det).__name__, det)


@pytest.mark.parametrize("model", MODELS)
def test_grid_search_tunes_every_model_by_average_precision(model: str) -> None:
    x, y = spiky_series()
    kw, grid = SMALL[model]
    det: Detector = make_detector(model, **kw)
    # Test parts start at whole days: a detector scores a series as if its first point had
    # the phase of the training series' first point (the seasonal profile, the windows).
    cv: Any = TimeSeriesSplit(n_splits=2, test_size=144)
    if model in NEURAL:  # one split keeps the nets' training to a few seconds
        cv = [(np.arange(240), np.arange(240, 480))]
    search = GridSearchCV(
        det, grid, scoring=average_precision_scorer, cv=cv, refit=model not in NEURAL
    ).fit(x, y)
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == n_candidates and np.isfinite(scores).all()
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {k: search.best_params_[k] for k in grid} in [
        dict(zip(grid, combo, strict=True))
        for combo in np.array(np.meshgrid(*grid.values()), dtype=object).T.reshape(-1, len(grid))
    ]
    if model not in NEURAL:  # refit=True: the best settings fitted on the whole series
        best = search.best_estimator_
        assert best is not det and isinstance(best, type(det))
        assert best.score_samples(x).shape == x.shape
    with pytest.raises(NotFittedError):
        det.score_samples(x)  # the search fitted clones, never the detector passed in
    assert search.best_score_ == scores.max()
    if model not in NEURAL:  # above chance: 1 point in 40 is a spike
        assert search.best_score_ > 0.05


def test_average_precision_scorer_is_nan_without_anomalies_and_checks_labels() -> None:
    x, y = spiky_series()
    det = make_detector("profile", period=24).fit(x)
    assert 0.5 < average_precision_scorer(det, x, y) <= 1.0
    assert np.isnan(average_precision_scorer(det, x, np.zeros_like(y)))
    with pytest.raises(ParameterError, match="'y' parameter"):
        average_precision_scorer(det, x, y[:10])
