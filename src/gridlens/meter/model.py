"""Reading single digit wheels with the shipped ONNX model (no PyTorch needed).

The model returns, per crop, a probability over 100 classes — one per tenth of a wheel
turn.  :meth:`DigitReader.decode` turns them into a position and a confidence:

* the position is the circular mean of the probabilities within ±0.3 of the most likely
  class, rounded to a tenth (so a crop between 3.7 and 3.8 does not snap to the wrong side);
* the confidence is the probability mass within ±0.2 of that position — the model's own
  estimate of ``P(|error| <= 0.2)``, which is what the carry logic and plausibility need.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError, NotFoundError
from gridlens.meter.data import INPUT_HW, circular_error, preprocess

__all__ = ["N_CLASSES", "DigitReader", "default_model_path", "digit_metrics", "load_reader"]

N_CLASSES = 100
_MODEL_NAME = "digits.onnx"


def default_model_path() -> Path:
    """The model shipped inside the package."""
    return Path(str(resources.files("gridlens.meter") / "models" / _MODEL_NAME))


class DigitReader:
    """An ONNX Runtime session around a digit model.

    Parameters
    ----------
    path : model file; default: the shipped ``gridlens/meter/models/digits.onnx``.
    threads : intra-op threads of the ONNX Runtime session.
    """

    def __init__(self, path: Path | str | None = None, *, threads: int = 2) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else default_model_path()
        if not self.path.is_file():
            raise NotFoundError(
                f"digit model {self.path} not found; build it with `gridlens meter train`"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise DataFormatError(f"{self.path} is not a usable ONNX model: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        card = self.path.with_suffix(".json")
        self.card: dict[str, Any] = json.loads(card.read_text()) if card.is_file() else {}

    def probabilities(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Class probabilities ``(n, 100)`` for preprocessed crops ``(n, 48, 32)``."""
        h, w = INPUT_HW
        if images.ndim != 3 or images.shape[1:] != (h, w):
            raise DataFormatError(f"expected preprocessed crops of shape (n, {h}, {w})")
        if images.shape[0] == 0:
            return np.zeros((0, N_CLASSES), np.float32)
        x = images.astype(np.float32)[:, None]
        out: list[npt.NDArray[np.float32]] = []
        for i in range(0, x.shape[0], 512):
            (probs,) = self._session.run(None, {self._input: x[i : i + 512]})
            out.append(np.asarray(probs, np.float32))
        return np.concatenate(out)

    def predict(
        self, images: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(positions in [0, 10) to a tenth, confidences) for preprocessed crops."""
        return self.decode(self.probabilities(images))

    def read_crops(
        self, crops: Sequence[npt.NDArray[np.uint8]]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Like :meth:`predict` for raw crops (BGR or gray, any size)."""
        _, values, conf = self.read_crops_continuous(crops)
        return values, conf

    def read_crops_continuous(
        self, crops: Sequence[npt.NDArray[np.uint8]]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(continuous positions, positions to a tenth, confidences) for raw crops.

        The continuous position (circular mean around the peak, not rounded) is finer than a
        tenth; the carry logic and the last wheel's digit use it.
        """
        h, w = INPUT_HW
        batch = np.empty((len(crops), h, w), np.uint8)
        for i, c in enumerate(crops):
            batch[i] = preprocess(c)
        probs = self.probabilities(batch)
        values, conf = self.decode(probs)
        return self.continuous(probs), values, conf

    @staticmethod
    def continuous(probs: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        """Unrounded positions in [0, 10): circular mean within ±0.3 of the peak."""
        p = np.asarray(probs, np.float64)
        n = p.shape[0]
        if n == 0:
            return np.zeros(0)
        top = p.argmax(axis=1)
        offs = np.arange(-3, 4)
        w = p[np.arange(n)[:, None], (top[:, None] + offs[None, :]) % N_CLASSES]
        frac = (w * offs[None, :]).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
        return np.asarray(np.mod((top + frac) / 10.0, 10.0), np.float64)

    @staticmethod
    def decode(
        probs: npt.NDArray[np.floating[Any]],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Class probabilities → (position rounded to a tenth, P(|error| <= 0.2))."""
        p = np.asarray(probs, np.float64)
        n = p.shape[0]
        if n == 0:
            return np.zeros(0), np.zeros(0)
        cls = np.round(DigitReader.continuous(p) * 10.0).astype(np.int64) % N_CLASSES
        near = (cls[:, None] + np.arange(-2, 3)[None, :]) % N_CLASSES
        conf = p[np.arange(n)[:, None], near].sum(axis=1)
        return cls / 10.0, np.clip(conf, 0.0, 1.0)


@lru_cache(maxsize=4)
def load_reader(path: str | None = None) -> DigitReader:
    """A cached :class:`DigitReader` (one ONNX session per model file and process)."""
    return DigitReader(path)


def digit_metrics(
    pred: npt.ArrayLike, labels: npt.ArrayLike, conf: npt.ArrayLike | None = None
) -> dict[str, float]:
    """Accuracy of wheel positions: share within ±0.2 / ±0.5 (circular), MAE, rounding."""
    err = circular_error(pred, labels)
    if err.size == 0:
        return {"n": 0.0}
    out = {
        "n": float(err.size),
        "within_0.2": float(np.mean(err <= 0.2 + 1e-6)),
        "within_0.5": float(np.mean(err <= 0.5 + 1e-6)),
        "exact_tenth": float(np.mean(err <= 1e-6)),
        "mae": float(err.mean()),
        "max_error": float(err.max()),
    }
    if conf is not None:
        c = np.asarray(conf, float)
        out["mean_confidence"] = float(c.mean())
        sure = c >= 0.5
        out["share_confident"] = float(sure.mean())
        if sure.any():
            out["within_0.2_when_confident"] = float(np.mean(err[sure] <= 0.2 + 1e-6))
    return out
