"""Reading mechanical meters from camera photos.

Data flow: ``image`` (decode, refuse bad files) → ``align`` (to the reference, markers or
features) → ``roi`` crops → ``model`` (ONNX digit CNN: wheel positions to a tenth and
confidences) → ``carry`` (digits from positions, carries from the lower wheel) →
``plausibility`` (history: no decrease, max rate, carry from history, re-sync).
``reading`` composes them; ``synth`` renders meters with a known reading for tests and the
demo; ``data`` and ``train`` (PyTorch, the ``train`` extra) build the model.
"""

from __future__ import annotations

from typing import Any

from gridlens.meter.carry import Candidate, FrameValue, resolve_wheels
from gridlens.meter.model import DigitReader, default_model_path, load_reader
from gridlens.meter.plausibility import Decision, History, Limits, judge
from gridlens.meter.roi import Box, MeterROI, load_roi

__all__ = [
    "Box",
    "Candidate",
    "Decision",
    "DigitReader",
    "FrameValue",
    "History",
    "Limits",
    "MeterROI",
    "MeterReader",
    "MeterReading",
    "MeterSession",
    "default_model_path",
    "judge",
    "load_reader",
    "load_roi",
    "resolve_wheels",
]


def __getattr__(name: str) -> Any:
    # the reading pipeline pulls in alignment (OpenCV features); load it on first use
    if name in ("MeterReader", "MeterReading", "MeterSession"):
        from gridlens.meter import reading

        return getattr(reading, name)
    raise AttributeError(f"module 'gridlens.meter' has no attribute {name!r}")
