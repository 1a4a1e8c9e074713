"""Scoring windows with an exported reconstruction model through ONNX Runtime (no PyTorch).

:mod:`gridlens.anomaly.nets` trains the three reconstruction models of the consumption
anomaly detector (seed S3) and exports them with :meth:`TrainedNet.to_onnx`; this module runs
them.  It never imports PyTorch, so scoring needs only the ``onnxruntime`` wheel.

The exported graphs take one input ``windows`` of shape ``(n, T)`` (float32, min-max
normalised to [0, 1] by the caller) and return ``reconstruction`` of the same shape.  The
CNN-GRU and LSTM autoencoders accept any ``T`` (both axes are dynamic); USAD [1]_ is a stack
of dense layers, so its ``T`` is fixed, and its graph has a second output ``ae2_ae1``
(``AE2(AE1(W))``) from which :meth:`OnnxAE.usad_score` computes the published anomaly score.

References
----------
.. [1] J. Audibert, P. Michiardi, F. Guyard, S. Marti and M. A. Zuluaga, "USAD: UnSupervised
   Anomaly Detection on Multivariate Time Series", Proc. 26th ACM SIGKDD (KDD '20),
   pp. 3395-3404, 2020. doi:10.1145/3394486.3403392
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError, NotFoundError, ParameterError, check_param

__all__ = [
    "MAX_WINDOW",
    "META_KIND",
    "META_WINDOW",
    "MIN_WINDOW",
    "OnnxAE",
    "check_batch_size",
    "check_windows",
    "usad_score_np",
]

MIN_WINDOW = 8
"""Shortest window the models accept [samples]."""
MAX_WINDOW = 4096
"""Longest window the models accept [samples]."""

META_KIND = "gridlens.kind"
"""ONNX metadata key holding the model kind (``"cnn-gru-ae"``, ``"lstm-ae"``, ``"usad"``)."""
META_WINDOW = "gridlens.window"
"""ONNX metadata key holding the window length the model was trained on [samples]."""


def check_windows(
    windows: npt.ArrayLike,
    owner: str,
    *,
    name: str = "windows",
    window: int | None = None,
    min_rows: int = 0,
) -> npt.NDArray[np.float32]:
    """Validate a batch of windows and return it as a C-contiguous float32 array.

    Shared (torch-free) validation of :mod:`gridlens.anomaly.nets`,
    :mod:`gridlens.anomaly.augment` and :class:`OnnxAE`.

    Parameters
    ----------
    windows : array_like, shape (n, T)
        Min-max normalised windows. [-]
    owner : str
        Function or class named in error messages.
    name : str
        Parameter name used in error messages.
    window : int, optional
        Required window length ``T`` [samples]; ``None`` accepts any ``T`` in
        [``MIN_WINDOW``, ``MAX_WINDOW``].
    min_rows : int
        Fewest windows accepted.

    Returns
    -------
    numpy.ndarray of float32, shape (n, T)

    Raises
    ------
    DataFormatError
        Not a 2-D numeric array, or NaN / infinite values.
    ParameterError
        ``T`` outside the accepted range or different from ``window``; fewer than ``min_rows``
        windows.
    """
    try:
        x = np.ascontiguousarray(windows, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"The '{name}' parameter of {owner} must be a 2-D float array (n, T). "
            f"Got an array that cannot be read as numbers instead ({exc})."
        ) from exc
    if x.ndim != 2:
        raise DataFormatError(
            f"The '{name}' parameter of {owner} must be a 2-D float array (n, T). "
            f"Got shape {x.shape} instead."
        )
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise DataFormatError(
            f"The '{name}' parameter of {owner} must hold finite values (impute gaps first). "
            f"Got {bad} NaN or infinite values in {x.shape[0]} windows instead."
        )
    t = x.shape[1]
    if window is None:
        check_param(
            MIN_WINDOW <= t <= MAX_WINDOW,
            "window",
            owner,
            f"an int in [{MIN_WINDOW}, {MAX_WINDOW}] (the length of each of '{name}')",
            t,
        )
    else:
        check_param(
            t == window,
            "window",
            owner,
            f"{window} (the length this model was trained on; '{name}' has that many columns)",
            t,
        )
    check_param(
        x.shape[0] >= min_rows,
        f"{name}.shape[0]",
        owner,
        f"an int >= {min_rows} (the number of windows)",
        x.shape[0],
    )
    return x


def check_batch_size(batch_size: object, owner: str) -> None:
    """Raise :class:`ParameterError` unless ``batch_size`` is an int >= 1."""
    check_param(
        isinstance(batch_size, int) and batch_size >= 1,
        "batch_size",
        owner,
        "an int >= 1",
        batch_size,
    )


class OnnxAE:
    """An ONNX Runtime session around an exported reconstruction model.

    Parameters
    ----------
    model : bytes or str or pathlib.Path
        The serialised model (as returned by ``TrainedNet.to_onnx``) or a path to an
        ``.onnx`` file.
    threads : int
        Intra-op threads of the ONNX Runtime session.

    Attributes
    ----------
    kind : str
        ``"cnn-gru-ae"``, ``"lstm-ae"`` or ``"usad"`` (read from the model's metadata;
        ``"unknown"`` for a graph exported elsewhere).

    Raises
    ------
    NotFoundError
        ``model`` is a path that does not exist.
    DataFormatError
        The bytes or file are not a usable ONNX model.
    """

    def __init__(self, model: bytes | str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        check_param(
            isinstance(threads, int) and 1 <= threads <= 64,
            "threads",
            "OnnxAE",
            "an int in [1, 64]",
            threads,
        )
        source: bytes
        if isinstance(model, bytes | bytearray):
            source, label = bytes(model), "the given bytes"
        else:
            path = Path(model)
            if not path.is_file():
                raise NotFoundError(f"reconstruction model {path} not found")
            source, label = path.read_bytes(), str(path)
        self._model, self._threads = source, threads
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise DataFormatError(f"{label} is not a usable ONNX model: {exc}") from exc
        inputs = self._session.get_inputs()
        shape = inputs[0].shape
        if len(inputs) != 1 or len(shape) != 2:
            raise DataFormatError(f"{label} is not a window reconstruction model (n, T) -> (n, T)")
        self._input: str = inputs[0].name
        self._outputs: list[str] = [o.name for o in self._session.get_outputs()]
        meta: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self._window: int | None = shape[1] if isinstance(shape[1], int) else None
        default_kind = "usad" if len(self._outputs) == 2 else "unknown"
        self.kind: str = meta.get(META_KIND, default_kind)

    def __getstate__(self) -> dict[str, Any]:
        # An ONNX Runtime session cannot be pickled; its model bytes can (a fitted
        # detector is saved and loaded where PyTorch is not installed).
        return {"model": self._model, "threads": self._threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], threads=state["threads"])  # type: ignore[misc]

    @property
    def window(self) -> int | None:
        """Window length ``T`` the graph requires [samples]; ``None`` if ``T`` is dynamic."""
        return self._window

    def _run(self, windows: npt.ArrayLike, batch_size: int, owner: str) -> list[npt.NDArray[Any]]:
        check_batch_size(batch_size, owner)
        x = check_windows(windows, owner, window=self._window)
        if x.shape[0] == 0:
            return [np.zeros((0, x.shape[1]), np.float32) for _ in self._outputs]
        parts: list[list[npt.NDArray[Any]]] = [[] for _ in self._outputs]
        for i in range(0, x.shape[0], batch_size):
            outs = self._session.run(None, {self._input: x[i : i + batch_size]})
            for k, o in enumerate(outs):
                parts[k].append(np.asarray(o, np.float32))
        return [np.concatenate(p) for p in parts]

    def reconstruct(
        self, windows: npt.ArrayLike, *, batch_size: int = 1024
    ) -> npt.NDArray[np.float32]:
        """Reconstruct windows (for USAD: ``AE1(W)``).

        Parameters
        ----------
        windows : array_like, shape (n, T)
            Min-max normalised windows. [-]
        batch_size : int
            Windows per ONNX Runtime call.

        Returns
        -------
        numpy.ndarray of float32, shape (n, T)
            Reconstructions in the same normalised units. [-]
        """
        return self._run(windows, batch_size, "OnnxAE.reconstruct")[0]

    def usad_score(
        self,
        windows: npt.ArrayLike,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        batch_size: int = 1024,
    ) -> npt.NDArray[np.float64]:
        """USAD anomaly score per window, higher = more anomalous [1]_.

        ``alpha * mean((W - AE1(W))**2) + beta * mean((W - AE2(AE1(W)))**2)``, the mean taken
        over the ``T`` samples of each window (as the authors' code does).

        Parameters
        ----------
        windows : array_like, shape (n, T)
            Min-max normalised windows. [-]
        alpha, beta : float
            Weights of the two reconstruction errors (``alpha`` favours few false positives,
            ``beta`` more detections). [-]
        batch_size : int
            Windows per ONNX Runtime call.

        Returns
        -------
        numpy.ndarray of float64, shape (n,)
            Anomaly score. [-]

        Raises
        ------
        ParameterError
            The model is not a USAD model.
        """
        if len(self._outputs) != 2:
            raise ParameterError(
                f"usad_score needs a USAD model (two outputs); this one is {self.kind!r}"
            )
        x = check_windows(windows, "OnnxAE.usad_score", window=self._window)
        w1, w3 = self._run(x, batch_size, "OnnxAE.usad_score")
        return usad_score_np(x, w1, w3, alpha=alpha, beta=beta)


def usad_score_np(
    x: npt.NDArray[np.float32],
    ae1: npt.NDArray[np.float32],
    ae2_ae1: npt.NDArray[np.float32],
    *,
    alpha: float,
    beta: float,
) -> npt.NDArray[np.float64]:
    """USAD score from windows and the two reconstructions (see :meth:`OnnxAE.usad_score`)."""
    owner = "usad_score"
    check_param(alpha >= 0, "alpha", owner, "a float >= 0", alpha)
    check_param(beta >= 0, "beta", owner, "a float >= 0", beta)
    x64 = x.astype(np.float64)
    e1 = np.mean((x64 - ae1) ** 2, axis=1)
    e3 = np.mean((x64 - ae2_ae1) ** 2, axis=1)
    return np.asarray(alpha * e1 + beta * e3, np.float64)
