"""Anomaly detectors for consumption series, all with the scikit-learn contract.

Every detector takes a regular 1-D series (a :class:`~gridlens.anomaly.data.Series` or an
array of values, oldest first) and follows the scikit-learn estimator contract:
``__init__`` only stores parameters, ``fit(x) -> self``, learned attributes end in ``_``,
``score_samples(x)`` returns one score per point with **higher = more anomalous** (as in
PyOD), ``predict(x)`` returns 0/1 per point (score >= ``threshold_``).

Models (:data:`MODELS`):

``ensemble`` (:data:`DEFAULT_MODEL`)
    The default: the mean of four detectors, each scaled by its own training tail:
    ``knn`` and ``hybrid`` with the periods' windows and with windows of 32 samples (the
    detected period and a short local scale). Model and settings were chosen by
    leave-one-series-out evaluation on the developer data (docs/benchmarks.md).
``cnn-gru-ae``
    The seed's pipeline [1]_: min-max normalisation, windows sized by the dominant periods
    of the differenced series (FFT), a GELU CNN-GRU autoencoder per scale, the per-window
    reconstruction error measured with DTW (dtaidistance), an Isolation Forest over the
    window errors, window scores mapped back to timestamps.
``hybrid``
    gridlens's own: the kNN distance of multi-scale windows of the deseasoned series, and
    a one-point spike score, each scaled by its own training tail; the larger counts.
``lstm-ae``, ``usad``
    The seed's comparison: an LSTM autoencoder (mean squared reconstruction error per
    window) and USAD [2]_ (its own two-decoder score).
``iforest``
    Baseline: Isolation Forest on the raw normalised windows.
``profile``
    Baseline: a seasonal profile (median and MAD per phase of the longest dominant
    period, e.g. per weekday and quarter-hour) and the robust z-score against it.
``ecod``, ``knn``
    Baselines from PyOD [3]_ on the raw windows (the ``test`` extra installs PyOD).

Every window model takes ``deseason=True`` (``hybrid``: the default): the windows are cut
from the series minus its seasonal profile, the median of each phase of the longest
dominant period (a week of 15-minute data: weekday and quarter-hour), so a working day with
a Sunday's load stands out instead of looking like one more Sunday.

The neural models train with PyTorch (the ``train`` extra) and then score through ONNX
Runtime, so a fitted detector is pickled and used without PyTorch.

References
----------
.. [1] Seed S3 (Hanbat Univ., 2025): GELU CNN-GRU autoencoder, DTW reconstruction error,
   Isolation Forest over window errors, FFT-sized multi-scale windows.
.. [2] J. Audibert et al., "USAD: UnSupervised Anomaly Detection on Multivariate Time
   Series", KDD 2020.
.. [3] Y. Zhao et al., "PyOD: A Python Toolbox for Scalable Outlier Detection", JMLR 2019;
   Z. Li et al., "ECOD: Unsupervised Outlier Detection Using Empirical Cumulative
   Distribution Functions", IEEE TKDE 2022.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError as _SkNotFittedError

from gridlens.anomaly.data import Series
from gridlens.anomaly.periods import Period, dominant_periods
from gridlens.anomaly.windows import Scale, plan_scales, sliding, starts_for, to_points
from gridlens.errors import (
    DataFormatError,
    GridlensError,
    InsufficientDataError,
    NotFoundError,
    ParameterError,
    check_param,
)

__all__ = [
    "AUGMENTS",
    "DEFAULT_MODEL",
    "ENSEMBLE_MEMBERS",
    "MODELS",
    "CnnGruAE",
    "Detector",
    "Ensemble",
    "Hybrid",
    "IForestWindows",
    "KnnWindows",
    "LstmAE",
    "NotFittedError",
    "ProfileDetector",
    "PyODWindows",
    "SpikeDetector",
    "Usad",
    "make_detector",
]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]

MODELS = (
    "ensemble",
    "cnn-gru-ae",
    "hybrid",
    "lstm-ae",
    "usad",
    "iforest",
    "profile",
    "ecod",
    "knn",
)
"""Names accepted by :func:`make_detector` and ``gridlens detect --model``."""

DEFAULT_MODEL = "ensemble"
"""The model of ``gridlens detect`` without ``--model``: chosen, with every setting, by
leave-one-series-out evaluation on the developer data (``benchmarks/anomaly_loso.py``)."""


def _values(x: Series | npt.ArrayLike, owner: str) -> F64:
    v = x.values if isinstance(x, Series) else x
    a = np.asarray(v, dtype=np.float64)
    if a.ndim != 1:
        raise ParameterError(f"{owner} needs a 1-D series; got an array of shape {a.shape}")
    if a.size == 0:
        raise InsufficientDataError(f"{owner} got an empty series")
    if not np.all(np.isfinite(a)):
        raise DataFormatError(
            f"{owner} got {int((~np.isfinite(a)).sum())} NaN/inf values; load the series "
            "with gridlens.anomaly.data, which imputes them"
        )
    return a


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class NotFittedError(GridlensError, _SkNotFittedError):  # type: ignore[misc]
    """A detector was used before :meth:`Detector.fit`.

    scikit-learn's :class:`sklearn.exceptions.NotFittedError`, so it is a ``ValueError``
    and an ``AttributeError`` as well as a :class:`~gridlens.errors.GridlensError`.
    """


class Detector(ABC, BaseEstimator):  # type: ignore[misc]
    """Common base: normalisation, threshold, predict. Subclasses score points.

    A scikit-learn estimator [6]_: ``get_params(deep)``, ``set_params(**params) -> self``
    and ``sklearn.base.clone`` work on every detector, so ``GridSearchCV`` can tune one
    (score it with :func:`gridlens.anomaly.evaluate.average_precision_scorer`: labels are
    only used to score, never to fit).  The input is one series, a 1-D array ``(n,)``,
    not a 2-D ``(n_samples, n_features)`` table; the scores keep PyOD's direction
    (higher = more anomalous) and ``predict`` returns 0/1, so detectors are not tagged as
    scikit-learn outlier detectors (those return -1/+1 and score the other way round).

    .. [6] L. Buitinck et al., "API design for machine learning software: experiences
       from the scikit-learn project", ECML PKDD Workshop, 2013.
    """

    name: str = ""

    def __init__(self, *, contamination: float = 0.01, verbose: bool = False) -> None:
        self.contamination = contamination
        self.verbose = verbose

    # ---------------------------------------------------------------- contract
    def fit(self, x: Series | npt.ArrayLike, y: object = None) -> Self:
        """Learn normal behaviour from ``x`` (labels are never used).

        Sets ``threshold_`` to the ``1 - contamination`` quantile of the training scores;
        callers with a validation part replace it (:func:`gridlens.anomaly.run`).
        """
        check_param(
            isinstance(self.contamination, float | int) and 0 < self.contamination < 0.5,
            "contamination",
            type(self).__name__,
            "a float in (0, 0.5)",
            self.contamination,
        )
        a = _values(x, f"{type(self).__name__}.fit")
        lo, hi = float(a.min()), float(a.max())
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            raise InsufficientDataError(
                f"the series is constant ({lo:g}): there is no behaviour to learn"
            )
        self.lo_, self.hi_ = lo, hi
        self.n_train_ = a.size
        t0 = time.perf_counter()
        self._fit(self._norm(a))
        self.fit_seconds_ = time.perf_counter() - t0
        train = self.score_samples(a)
        self.threshold_ = float(np.quantile(train, 1.0 - self.contamination))
        return self

    def score_samples(self, x: Series | npt.ArrayLike) -> F64:
        """One anomaly score per point; higher = more anomalous.

        Raises
        ------
        NotFittedError
            If :meth:`fit` has not been called.
        """
        self._check_fitted()
        a = _values(x, f"{type(self).__name__}.score_samples")
        return self._score(self._norm(a))

    def predict(self, x: Series | npt.ArrayLike) -> I8:
        """1 where the score reaches ``threshold_``, else 0."""
        return (self.score_samples(x) >= self.threshold_).astype(np.int8)

    def decision_function(self, x: Series | npt.ArrayLike) -> F64:
        """``score_samples(x) - threshold_`` (positive = anomalous)."""
        return self.score_samples(x) - self.threshold_

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (scikit-learn style); returns ``self``.

        Values are checked by :meth:`fit`, as scikit-learn does.

        Raises
        ------
        ParameterError
            If a name is not a parameter of this detector (nothing is changed then).
        """
        valid = self.get_params(deep=False)
        unknown = sorted(k for k in params if k.split("__", 1)[0] not in valid)
        if unknown:
            raise ParameterError(
                f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(sorted(valid))}"
            )
        super().set_params(**params)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "lo_")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.target_tags.required = False
        tags.non_deterministic = False
        return tags

    # ---------------------------------------------------------------- helpers
    def _norm(self, a: F64) -> F64:
        return (a - self.lo_) / (self.hi_ - self.lo_)

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call fit first"
            )

    @abstractmethod
    def _fit(self, xn: F64) -> None: ...

    @abstractmethod
    def _score(self, xn: F64) -> F64: ...


# --------------------------------------------------------------------------- seasons


def _profile_period(periods: list[Period], n: int) -> tuple[int, int]:
    """(profile period, smoothing length) [samples]: the longest dominant period that
    repeats at least 3 times in ``n`` points, and an eighth of the shortest (1, 1 if none)."""
    usable = [q for q in periods if n // q.samples >= 3]
    if not usable:
        return 1, 1
    return usable[-1].samples, max(1, usable[0].samples // 8)


def _cycles(xn: F64, p: int) -> F64:
    """The whole cycles of period ``p`` in ``xn`` as rows."""
    c = xn.size // p
    return xn[: c * p].reshape(c, p)


def _phase_median(xn: F64, p: int) -> F64:
    """Median of each phase of period ``p`` over the whole cycles of ``xn``."""
    return np.asarray(np.median(_cycles(xn, p), axis=0), dtype=np.float64)


# --------------------------------------------------------------------------- windows


class _WindowDetector(Detector):
    """Multi-scale window detectors: scales from the periods, per-scale window scores."""

    def __init__(
        self,
        *,
        window: int | None = None,
        max_scales: int = 2,
        deseason: bool = False,
        contamination: float = 0.01,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(contamination=contamination, verbose=verbose)
        self.window = window
        self.max_scales = max_scales
        self.deseason = deseason
        self.random_state = random_state

    def _fit(self, xn: F64) -> None:
        n = xn.size
        if self.window is not None:
            check_param(
                isinstance(self.window, int) and 8 <= self.window <= 4096,
                "window",
                type(self).__name__,
                "an int in [8, 4096]",
                self.window,
            )
            self.periods_: list[Period] = (
                dominant_periods(xn, max_periods=self.max_scales) if self.deseason else []
            )
            self.scales_ = [Scale(self.window, max(1, self.window // 4))]
        else:
            self.periods_ = dominant_periods(xn, max_periods=self.max_scales)
            self.scales_ = plan_scales(self.periods_, n, max_scales=self.max_scales)
        self.profile_: F64 | None = None
        if self.deseason:
            p, _ = _profile_period(self.periods_, n)
            if p > 1:
                self.profile_ = _phase_median(xn, p)
                xn = self._residual(xn)
            elif self.verbose:
                _log(f"{self.name}: no period repeats 3 times in the training part; not deseasoned")
        w0 = self.scales_[0].window
        if n < w0 + 8 * self.scales_[0].stride:
            raise InsufficientDataError(
                f"the training part has {n} points, too few for 8 windows of {w0} "
                f"(need {w0 + 8 * self.scales_[0].stride})"
            )
        self._state: list[Any] = []
        self._norms: list[tuple[float, float]] = []
        for k, sc in enumerate(self.scales_):
            if self.verbose:
                _log(
                    f"{self.name}: scale {k + 1}/{len(self.scales_)}: window {sc.window}"
                    + (f" blocks of {sc.block} samples" if sc.block > 1 else " samples")
                )
            y = sc.blocks(xn)
            starts = starts_for(y.size, sc.window, sc.stride)
            win = sliding(y, sc.window, starts)
            self._state.append(self._fit_scale(k, win))
            # normalise each scale by its own training score distribution
            pts = self._points(k, sc, y, n)
            med = float(np.median(pts))
            iqr = float(np.subtract(*np.quantile(pts, [0.75, 0.25])))
            self._norms.append((med, iqr if iqr > 1e-12 else max(float(pts.std()), 1e-12)))

    def _points(self, k: int, sc: Scale, y: F64, n: int) -> F64:
        starts = starts_for(y.size, sc.window, sc.stride)
        ws, pw = self._score_scale(k, sliding(y, sc.window, starts))
        return sc.expand(to_points(ws, starts, sc.window, y.size, pointwise=pw), n)

    def _residual(self, xn: F64) -> F64:
        """``xn`` minus the seasonal profile (phase 0 = the training series' first point)."""
        if self.profile_ is None:
            return xn
        return xn - self.profile_[np.arange(xn.size) % self.profile_.size]

    def _score(self, xn: F64) -> F64:
        n = xn.size
        xn = self._residual(xn)
        out = np.full(n, -np.inf)
        for k, sc in enumerate(self.scales_):
            if n < sc.span:
                if k == 0:
                    raise InsufficientDataError(
                        f"the series has {n} points, too few for one window of {sc.span}"
                    )
                continue
            med, iqr = self._norms[k]
            out = np.maximum(out, (self._points(k, sc, sc.blocks(xn), n) - med) / iqr)
        return out

    @abstractmethod
    def _fit_scale(self, k: int, win: F32) -> Any: ...

    @abstractmethod
    def _score_scale(self, k: int, win: F32) -> tuple[F64, F64 | None]:
        """(window scores (m,), pointwise weights (m, w) or None)."""


class IForestWindows(_WindowDetector):
    """Baseline: Isolation Forest on the raw normalised windows [4]_.

    .. [4] F. T. Liu, K. M. Ting, Z.-H. Zhou, "Isolation Forest", ICDM 2008.
    """

    name = "iforest"

    def _fit_scale(self, k: int, win: F32) -> Any:
        return IsolationForest(n_estimators=100, random_state=self.random_state).fit(win)

    def _score_scale(self, k: int, win: F32) -> tuple[F64, F64 | None]:
        return -self._state[k].score_samples(win).astype(np.float64), None


class PyODWindows(_WindowDetector):
    """Baseline: a PyOD detector (``"ecod"`` or ``"knn"``) on the raw normalised windows."""

    def __init__(
        self,
        estimator: str = "ecod",
        *,
        window: int | None = None,
        max_scales: int = 2,
        deseason: bool = False,
        contamination: float = 0.01,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            window=window,
            max_scales=max_scales,
            deseason=deseason,
            contamination=contamination,
            random_state=random_state,
            verbose=verbose,
        )
        self.estimator = estimator

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.estimator

    def _fit_scale(self, k: int, win: F32) -> Any:
        check_param(
            self.estimator in ("ecod", "knn"),
            "estimator",
            "PyODWindows",
            "'ecod' or 'knn'",
            self.estimator,
        )
        try:
            if self.estimator == "ecod":
                from pyod.models.ecod import ECOD

                return ECOD().fit(win)
            from pyod.models.knn import KNN

            return KNN(n_neighbors=5).fit(win)
        except ImportError as exc:  # pragma: no cover - pyod is in the test extra
            raise NotFoundError(
                "the PyOD baselines need PyOD: pip install 'gridlens[test]'"
            ) from exc

    def _score_scale(self, k: int, win: F32) -> tuple[F64, F64 | None]:
        return np.asarray(self._state[k].decision_function(win), dtype=np.float64), None


class KnnWindows(_WindowDetector):
    """kNN distance of each window to the training windows (the ``knn`` ensemble member).

    The score of :class:`PyODWindows` ``("knn")`` (PyOD's ``KNN(n_neighbors=5)``, the
    distance to the 5th nearest training window) computed with scikit-learn alone, so the
    default model needs neither PyOD nor its import time.
    """

    name = "knn"

    def __init__(
        self,
        *,
        n_neighbors: int = 5,
        window: int | None = None,
        max_scales: int = 2,
        deseason: bool = False,
        contamination: float = 0.01,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            window=window,
            max_scales=max_scales,
            deseason=deseason,
            contamination=contamination,
            random_state=random_state,
            verbose=verbose,
        )
        self.n_neighbors = n_neighbors

    def _fit_scale(self, k: int, win: F32) -> Any:
        from sklearn.neighbors import NearestNeighbors

        check_param(
            isinstance(self.n_neighbors, int) and self.n_neighbors >= 1,
            "n_neighbors",
            "KnnWindows",
            "an int >= 1",
            self.n_neighbors,
        )
        return NearestNeighbors(n_neighbors=min(self.n_neighbors, len(win))).fit(win)

    def _score_scale(self, k: int, win: F32) -> tuple[F64, F64 | None]:
        dist, _ = self._state[k].kneighbors(win)
        return dist[:, -1].astype(np.float64), None


class Hybrid(_WindowDetector):
    """gridlens's own detector: window distances and point spikes, each on its own scale.

    Two parts, each scaled so that its training median maps to 0 and its training
    ``q``-quantile (default 0.999) to 1, and the point score is the larger of the two:

    - **windows**: the distance of each multi-scale window to its ``n_neighbors``-th
      nearest training window (kNN [5]_), on the series minus its seasonal profile
      (``deseason=True``), so a working day that looks like a Sunday stands out;
    - **spikes**: ``|x - median of the 2k+1 points around it|``, which finds one-point
      spikes that a day-long window averages away.

    Scaling each part by its own far tail (not its spread) keeps the noisy spike part from
    drowning the window part on series without spikes, and vice versa.

    .. [5] S. Ramaswamy, R. Rastogi, K. Shim, "Efficient algorithms for mining outliers
       from large data sets", SIGMOD 2000.
    """

    name = "hybrid"

    def __init__(
        self,
        *,
        n_neighbors: int = 20,
        spike_width: int = 2,
        q: float = 0.999,
        deseason: bool = True,
        window: int | None = None,
        max_scales: int = 2,
        contamination: float = 0.01,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            window=window,
            max_scales=max_scales,
            deseason=deseason,
            contamination=contamination,
            random_state=random_state,
            verbose=verbose,
        )
        self.n_neighbors = n_neighbors
        self.spike_width = spike_width
        self.q = q

    def _fit(self, xn: F64) -> None:
        check_param(
            isinstance(self.n_neighbors, int) and self.n_neighbors >= 1,
            "n_neighbors",
            "Hybrid",
            "an int >= 1",
            self.n_neighbors,
        )
        check_param(
            isinstance(self.spike_width, int) and self.spike_width >= 1,
            "spike_width",
            "Hybrid",
            "an int >= 1",
            self.spike_width,
        )
        check_param(0.5 < self.q < 1.0, "q", "Hybrid", "in (0.5, 1)", self.q)
        super()._fit(xn)
        self._tails = [_tail(super()._score(xn), self.q), _tail(self._spikes(xn), self.q)]

    def _spikes(self, xn: F64) -> F64:
        from scipy.ndimage import median_filter

        local = median_filter(xn, size=2 * self.spike_width + 1, mode="nearest")
        return np.abs(xn - np.asarray(local, dtype=np.float64))

    def _score(self, xn: F64) -> F64:
        (wm, ws), (sm, ss) = self._tails
        return np.maximum((super()._score(xn) - wm) / ws, (self._spikes(xn) - sm) / ss)

    def _fit_scale(self, k: int, win: F32) -> Any:
        from sklearn.neighbors import NearestNeighbors

        return NearestNeighbors(n_neighbors=min(self.n_neighbors, len(win))).fit(win)

    def _score_scale(self, k: int, win: F32) -> tuple[F64, F64 | None]:
        # No pointwise weights: NAB labels wide windows around an event, and spreading the
        # window's score over it beats pinning it on the odd samples (measured: mean NAB
        # AUC-PR 0.49 spread, 0.23 pinned); one-point spikes are the spike part's job.
        dist, _ = self._state[k].kneighbors(win)
        return dist[:, -1].astype(np.float64), None


def _tail(scores: F64, q: float) -> tuple[float, float]:
    """(median, q-quantile - median) of training scores, the scale of one part."""
    med = float(np.median(scores))
    span = float(np.quantile(scores, q)) - med
    return med, span if span > 1e-12 else max(float(scores.std()), 1e-12)


@dataclass
class _NetState:
    net: Any  # TrainedNet while training, then OnnxAE
    forest: IsolationForest | None
    err_median: float


AUGMENTS = ("mi-fgsm", "random", "copy")
"""Augmentations of the neural detectors' training windows (``augment=``): the seed's and
two controls, made by :func:`gridlens.anomaly.augment.augment_windows` (defined here, where
no PyTorch is needed to import it)."""


class _ReconDetector(_WindowDetector):
    """Autoencoder detectors: train a net per scale, score windows by reconstruction.

    Parameters (besides the window ones)
    ------------------------------------
    epochs : int
        Most epochs per scale at >= 1,000 training windows.  A scale with fewer windows
        trains for ``epochs * (1000 // n_windows)`` epochs, at most ``10 * epochs``, so
        every scale gets about the same number of Adam steps (a weekly scale of one year
        has some 50 windows: 10x).  Early stopping (patience: a tenth of that, >= 3; USAD
        trains every epoch) ends most runs sooner; ``fit_epochs_`` records the epochs each
        scale ran.
    hidden, latent, batch_size, lr : see :class:`gridlens.anomaly.nets.TrainConfig`
        ``latent=None``: one unit per 12 window steps, at least 2.
    augment_eps : float
        ``> 0``: augment the training windows and retrain from scratch on the originals
        plus one augmented copy of each (seed S3); ``0``: no augmentation.  Only the
        windows the net trains on are augmented, never its early-stopping share.
    augment : {"mi-fgsm", "random", "copy"}
        ``"mi-fgsm"``: the seed's hard normal windows, perturbed within ``augment_eps``
        towards a larger reconstruction error of the first net
        (:func:`gridlens.anomaly.augment.mi_fgsm`).  Two controls that separate the
        attack's direction from the extra training: ``"random"`` moves every value by
        ``+-augment_eps`` with a random sign (same budget, no direction), ``"copy"`` adds
        the windows unchanged.
    dtw_band : float
        Sakoe-Chiba band of the DTW error, as a share of the window (CNN-GRU AE).
    threads : int
        PyTorch threads for training and the attack.
    """

    kind = ""
    error = "mse"  # "dtw" | "mse" | "usad"
    use_forest = False

    def __init__(
        self,
        *,
        epochs: int = 10,
        hidden: int = 32,
        latent: int | None = None,
        batch_size: int = 32,
        lr: float = 5e-3,
        augment_eps: float = 0.0,
        augment: str = "mi-fgsm",
        dtw_band: float = 0.1,
        threads: int = 1,
        window: int | None = None,
        max_scales: int = 2,
        deseason: bool = False,
        contamination: float = 0.01,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            window=window,
            max_scales=max_scales,
            deseason=deseason,
            contamination=contamination,
            random_state=random_state,
            verbose=verbose,
        )
        self.epochs = epochs
        self.hidden = hidden
        self.latent = latent
        self.batch_size = batch_size
        self.lr = lr
        self.augment_eps = augment_eps
        self.augment = augment
        self.dtw_band = dtw_band
        self.threads = threads

    def _fit(self, xn: F64) -> None:
        check_param(
            self.augment in AUGMENTS,
            "augment",
            type(self).__name__,
            f"one of {AUGMENTS}",
            self.augment,
        )
        check_param(
            0.0 <= self.augment_eps <= 1.0,
            "augment_eps",
            type(self).__name__,
            "a float in [0, 1]",
            self.augment_eps,
        )
        self.fit_epochs_: list[int] = []
        super()._fit(xn)

    def _fit_scale(self, k: int, win: F32) -> Any:
        try:
            from gridlens.anomaly import nets
        except ImportError as exc:  # pragma: no cover - torch is in the train extra
            raise NotFoundError(
                f"training {self.kind} needs PyTorch: pip install 'gridlens[train]'"
            ) from exc
        from gridlens.anomaly.onnxrt import OnnxAE

        # A tight bottleneck is what makes an odd window stand out: by default the latent
        # has one unit per 12 window steps (a week of 28 six-hour blocks: 2 units, enough
        # for the weekly phase but not for a holiday in it). Few windows train for more
        # epochs, so every scale sees about the same number of window passes.
        latent = self.latent if self.latent is not None else max(2, win.shape[1] // 12)
        epochs = min(10 * self.epochs, self.epochs * max(1, 1000 // len(win)))
        cfg = nets.TrainConfig(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            hidden=self.hidden,
            latent=latent,
            patience=self._patience(epochs),
            seed=self.random_state,
            threads=self.threads,
            progress=self.verbose,
        )
        extra = None
        if self.augment_eps > 0:
            from gridlens.anomaly.augment import augment_windows

            extra = augment_windows(self.kind, win, cfg, eps=self.augment_eps, method=self.augment)
        trained = nets.train(self.kind, win, cfg, extra_windows=extra)
        self.fit_epochs_.append(len(trained.history))
        onnx = OnnxAE(trained.to_onnx(), threads=1)
        state = _NetState(net=onnx, forest=None, err_median=0.0)
        err, _ = self._window_errors(state, win)
        state.err_median = float(np.median(err))
        if self.use_forest:
            state.forest = IsolationForest(n_estimators=100, random_state=self.random_state).fit(
                err[:, None]
            )
        return state

    def _patience(self, epochs: int) -> int:
        return max(3, epochs // 10)

    def _window_errors(self, st: _NetState, win: F32) -> tuple[F64, F64]:
        if self.error == "usad":
            score = np.asarray(st.net.usad_score(win), dtype=np.float64)
            rec = st.net.reconstruct(win)
            return score, np.abs(win - rec).astype(np.float64)
        rec = st.net.reconstruct(win)
        resid = np.abs(win - rec).astype(np.float64)
        if self.error == "dtw":
            from dtaidistance import dtw

            band = max(2, round(self.dtw_band * win.shape[1]))
            a = win.astype(np.float64)
            b = rec.astype(np.float64)
            err = np.array([dtw.distance_fast(a[i], b[i], window=band) for i in range(len(a))])
            return err, resid
        return (resid**2).mean(axis=1), resid

    def _score_scale(self, k: int, win: F32) -> tuple[F64, F64 | None]:
        st: _NetState = self._state[k]
        err, resid = self._window_errors(st, win)
        if st.forest is None:
            return err, resid
        # The forest isolates unusually low errors too; only errors above the training
        # median can be anomalous, the rest get the forest's most normal score.
        s = -st.forest.score_samples(err[:, None])
        floor = float(-st.forest.score_samples(np.array([[st.err_median]]))[0])
        return np.where(err > st.err_median, np.maximum(s, floor), floor), resid

    def window_flags(self, x: Series | npt.ArrayLike) -> list[tuple[int, int, int]]:
        """The Isolation Forest's own flags: (scale, start, length) per anomalous window,
        start and length in samples of ``x``."""
        self._check_fitted()
        xn = self._norm(_values(x, "window_flags"))
        out: list[tuple[int, int, int]] = []
        for k, sc in enumerate(self.scales_):
            st: _NetState = self._state[k]
            if st.forest is None or xn.size < sc.span:
                continue
            y = sc.blocks(xn)
            starts = starts_for(y.size, sc.window, sc.stride)
            err, _ = self._window_errors(st, sliding(y, sc.window, starts))
            flag = (st.forest.predict(err[:, None]) == -1) & (err > st.err_median)
            out += [(k, int(s) * sc.block, sc.span) for s in starts[flag]]
        return out


class CnnGruAE(_ReconDetector):
    """The seed's pipeline: GELU CNN-GRU autoencoder + DTW error + Isolation Forest [1]_."""

    name = "cnn-gru-ae"
    kind = "cnn-gru-ae"
    error = "dtw"
    use_forest = True


class LstmAE(_ReconDetector):
    """LSTM autoencoder, mean squared reconstruction error per window (seed's comparison)."""

    name = "lstm-ae"
    kind = "lstm-ae"
    error = "mse"


class Usad(_ReconDetector):
    """USAD [2]_: one encoder, two decoders, two-phase adversarial training.

    Trains every epoch, as the authors do, and keeps the epoch with the lowest held-out
    reconstruction error of ``AE1``: the adversarial game often drives ``AE1`` to the
    window mean for a few epochs before it learns the pattern, and early stopping there
    kept that mean model (measured on the 1997 power demand, test part: AUC-PR 0.03
    stopping early vs 0.06-0.19 trained through, 2 seeds).
    """

    name = "usad"
    kind = "usad"
    error = "usad"

    def _patience(self, epochs: int) -> int:
        return epochs


# --------------------------------------------------------------------------- profile


class ProfileDetector(Detector):
    """Seasonal profile + robust z-score baseline.

    For each phase of the longest dominant period (one week of 15-minute data: weekday and
    quarter-hour), the median and the MAD of the training cycles; a point's score is
    ``|x - median| / (1.4826 MAD)`` (with a floor of 5 % of the series' MAD so flat phases
    do not divide by zero), smoothed over an eighth of the shortest period.
    """

    name = "profile"

    def __init__(
        self, *, period: int | None = None, contamination: float = 0.01, verbose: bool = False
    ) -> None:
        super().__init__(contamination=contamination, verbose=verbose)
        self.period = period

    def _fit(self, xn: F64) -> None:
        n = xn.size
        if self.period is not None:
            check_param(
                isinstance(self.period, int) and 2 <= self.period <= n // 2,
                "period",
                "ProfileDetector",
                f"an int in [2, {n // 2}]",
                self.period,
            )
            self.periods_: list[Period] = []
            p, smooth = self.period, 1
        else:
            self.periods_ = dominant_periods(xn, max_periods=2)
            p, smooth = _profile_period(self.periods_, n)
        self.period_, self.smooth_ = p, smooth
        m = _cycles(xn, p)
        self.median_ = _phase_median(xn, p)
        mad = np.median(np.abs(m - self.median_), axis=0)
        # a floor from the whole series: its MAD, or for a series that is mostly one value
        # (a water meter's zero hours, whose MAD is 0) its standard deviation
        floor = 0.05 * max(float(np.median(np.abs(xn - np.median(xn)))), float(np.std(xn))) + 1e-9
        self.scale_ = 1.4826 * np.maximum(mad, floor)

    def _score(self, xn: F64) -> F64:
        ph = np.arange(xn.size) % self.period_
        z: F64 = np.abs(xn - self.median_[ph]) / self.scale_[ph]
        if self.smooth_ > 1:
            k = np.ones(self.smooth_) / self.smooth_
            z = np.asarray(np.convolve(z, k, mode="same"), dtype=np.float64)
        return z


# --------------------------------------------------------------------------- spikes


class SpikeDetector(Detector):
    """One-point spikes: ``|x - median of the 2k+1 points around it|`` (``k = spike_width``).

    The spike part of :class:`Hybrid` on its own; a member of :class:`Ensemble`.
    """

    name = "spike"

    def __init__(
        self, *, spike_width: int = 2, contamination: float = 0.01, verbose: bool = False
    ) -> None:
        super().__init__(contamination=contamination, verbose=verbose)
        self.spike_width = spike_width

    def _fit(self, xn: F64) -> None:
        check_param(
            isinstance(self.spike_width, int) and self.spike_width >= 1,
            "spike_width",
            "SpikeDetector",
            "an int >= 1",
            self.spike_width,
        )
        self.spike_width_ = self.spike_width

    def _score(self, xn: F64) -> F64:
        from scipy.ndimage import median_filter

        local = median_filter(xn, size=2 * self.spike_width_ + 1, mode="nearest")
        return np.abs(xn - np.asarray(local, dtype=np.float64))


# --------------------------------------------------------------------------- ensemble

ENSEMBLE_MEMBERS = ("profile", "knn", "iforest", "hybrid", "spike")
"""Detectors :class:`Ensemble` can combine, each at its own default settings. A window
model may add ``+deseason`` and ``@W`` (a fixed window of ``W`` samples instead of the
periods' windows), e.g. ``"knn+deseason"``, ``"hybrid@32"``."""

SCALINGS = ("tail", "rank")
COMBINES = ("mean", "max")


def _member(spec: str, random_state: int) -> Detector:
    head, at, win = spec.partition("@")
    name, plus, variant = head.partition("+")
    windowed = name not in ("profile", "spike")
    ok = (
        name in ENSEMBLE_MEMBERS
        and (not plus or (variant == "deseason" and windowed))
        and (not at or (windowed and win.isdigit() and 8 <= int(win) <= 4096))
    )
    if not ok:
        raise ParameterError(
            f"unknown ensemble member {spec!r}; choose from {', '.join(ENSEMBLE_MEMBERS)} "
            "(a window model may add '+deseason' and '@W', a window of W in [8, 4096])"
        )
    if name == "spike":
        return SpikeDetector()
    if name == "profile":
        return ProfileDetector()
    params: dict[str, Any] = {"random_state": random_state}
    if variant:
        params["deseason"] = True
    if at:
        params["window"] = int(win)
    if name == "knn":  # PyOD's KNN(n_neighbors=5) score, without PyOD
        return KnnWindows(**params)
    return make_detector(name, **params)


class _Scaler:
    """Maps a member's scores onto a common scale, learned from its training scores."""

    def __init__(self, train: F64, how: str, q: float) -> None:
        self.how = how
        self.med, self.span = _tail(train, q)
        self.sorted = np.sort(train)
        self.top = float(self.sorted[-1])

    def __call__(self, s: F64) -> F64:
        if self.how == "tail":
            return (s - self.med) / self.span
        # the training scores' empirical CDF, continued linearly above their maximum
        ecdf = np.searchsorted(self.sorted, s, side="right") / self.sorted.size
        return ecdf + np.maximum(s - self.top, 0.0) / self.span


class Ensemble(Detector):
    """Several detectors, each score mapped to a common scale, combined point by point.

    Each member (:data:`ENSEMBLE_MEMBERS`, at its own default settings) fits on the
    training series; its training scores set its scale: ``scaling="tail"`` maps their
    median to 0 and their ``q``-quantile to 1, ``"rank"`` maps a score to its empirical
    CDF among them (continued linearly above their maximum, with the tail's slope). The
    point score is the ``combine`` (mean or max) of the scaled member scores. A member that
    cannot fit the training part (a window longer than the series allows) is left out
    (``skipped_``); it is an error only when none fits.

    The defaults were chosen by leave-one-series-out evaluation on the developer data
    (``benchmarks/anomaly_loso.py``, docs/benchmarks.md): among 255 configs (every model's
    small grid and 236 ensembles), the one with the best mean AUC-PR over 57 labelled
    series. ``q`` (0.99) was fixed beforehand, not searched. ``periods_`` are those of the
    first member that found any.
    """

    name = "ensemble"

    def __init__(
        self,
        *,
        members: tuple[str, ...] = ("knn", "hybrid", "knn@32", "hybrid@32"),
        scaling: str = "tail",
        combine: str = "mean",
        q: float = 0.99,
        contamination: float = 0.01,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(contamination=contamination, verbose=verbose)
        self.members = members
        self.scaling = scaling
        self.combine = combine
        self.q = q
        self.random_state = random_state

    def _fit(self, xn: F64) -> None:
        check_param(
            isinstance(self.members, tuple | list)
            and len(self.members) >= 1
            and all(isinstance(m, str) for m in self.members),
            "members",
            "Ensemble",
            f"a non-empty tuple of names from {ENSEMBLE_MEMBERS}",
            self.members,
        )
        check_param(
            self.scaling in SCALINGS, "scaling", "Ensemble", f"one of {SCALINGS}", self.scaling
        )
        check_param(
            self.combine in COMBINES, "combine", "Ensemble", f"one of {COMBINES}", self.combine
        )
        check_param(0.5 < self.q < 1.0, "q", "Ensemble", "in (0.5, 1)", self.q)
        dets = [_member(m, self.random_state) for m in self.members]  # names checked first
        self.members_: list[Detector] = []
        self.scalers_: list[_Scaler] = []
        self.skipped_: list[str] = []
        last: InsufficientDataError | None = None
        for spec, det in zip(self.members, dets, strict=True):
            try:
                det.fit(xn)
            except InsufficientDataError as exc:
                if self.verbose:
                    _log(f"ensemble: {spec} left out: {exc}")
                self.skipped_.append(spec)
                last = exc
                continue
            self.members_.append(det)
            self.scalers_.append(_Scaler(det.score_samples(xn), self.scaling, self.q))
        if not self.members_:
            assert last is not None
            raise last
        self.periods_: list[Period] = next(
            (m.periods_ for m in self.members_ if getattr(m, "periods_", None)), []
        )

    def _score(self, xn: F64) -> F64:
        parts = np.vstack(
            [
                sc(det.score_samples(xn))
                for det, sc in zip(self.members_, self.scalers_, strict=True)
            ]
        )
        return np.asarray(parts.mean(axis=0) if self.combine == "mean" else parts.max(axis=0))


# --------------------------------------------------------------------------- factory

_FACTORIES: dict[str, Callable[..., Detector]] = {
    "ensemble": Ensemble,
    "cnn-gru-ae": CnnGruAE,
    "lstm-ae": LstmAE,
    "usad": Usad,
    "iforest": IForestWindows,
    "profile": ProfileDetector,
    "hybrid": Hybrid,
    "ecod": lambda **kw: PyODWindows("ecod", **kw),
    "knn": lambda **kw: PyODWindows("knn", **kw),
}


def make_detector(model: str, **params: Any) -> Detector:
    """A detector by name (see :data:`MODELS`).

    Raises
    ------
    ParameterError
        Unknown model name or parameter.
    """
    if model not in _FACTORIES:
        raise ParameterError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    try:
        return _FACTORIES[model](**params)
    except TypeError as exc:
        raise ParameterError(f"bad parameters for model {model!r}: {exc}") from exc
