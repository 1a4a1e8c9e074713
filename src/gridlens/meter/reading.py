"""Reading a whole meter photo: align → crop → digit model → carries → plausibility.

:class:`MeterReader` holds what is fixed for one camera (ROI, reference, ONNX session);
:meth:`MeterReader.read` turns one photo into a :class:`MeterReading`.  Bad input (not an
image, truncated, huge, ROI outside the image) raises :class:`~gridlens.errors.InputError`;
a valid photo that cannot be trusted (alignment lost, unreadable wheel, implausible value)
returns ``status="rejected"`` with a reason and ``value=None`` — never a stored guess.
:class:`MeterSession` keeps the history between photos of one meter.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gridlens.errors import ComputationError
from gridlens.meter.align import Aligner, crop_digits
from gridlens.meter.carry import resolve_wheels
from gridlens.meter.dials import read_dials
from gridlens.meter.image import decode_image
from gridlens.meter.model import DigitReader, load_reader
from gridlens.meter.plausibility import Decision, History, Limits, judge
from gridlens.meter.refine import Refinement, refine_boxes
from gridlens.meter.roi import MeterROI, load_roi

__all__ = ["MeterReader", "MeterReading", "MeterSession"]


@dataclass
class MeterReading:
    """The outcome of reading one photo (``to_dict`` is the JSON of ``gridlens read``)."""

    status: str  # "ok" | "rejected"
    value: float | None
    raw: str | None
    digits: list[dict[str, float]]
    reason: str | None = None
    dials: list[dict[str, float]] = field(default_factory=list)
    note: str | None = None
    resynced: bool = False
    candidate: float | None = None
    alignment: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "raw": self.raw,
            "digits": self.digits,
            "dials": self.dials,
            "status": self.status,
            "reason": self.reason,
            "note": self.note,
            "resynced": self.resynced,
            "candidate": self.candidate,
            "alignment": self.alignment,
            "seconds": round(self.seconds, 4),
        }

    @property
    def decision(self) -> Decision:
        return Decision(
            self.status, self.value, self.reason, self.note, self.resynced, self.candidate
        )


class MeterReader:
    """Reads photos of one meter layout.

    Parameters
    ----------
    roi : digit boxes (reference-image pixels), decimals and the optional reference.
    reference : the reference image (BGR); default: ``roi.reference.image_path`` if given.
        Without one, the ROI is taken in the photo's own pixels (fixed camera, no alignment).
    model : ONNX digit model (default: the shipped one) or a :class:`DigitReader`.
    refine : refine the digit boxes against the reference first
        (:func:`gridlens.meter.refine.refine_boxes`, ~0.1-0.3 s, once). Default: when there is
        a reference and the ROI is not marked ``refined``. :attr:`roi` is then the refined
        ROI and :attr:`refinement` says what moved; :attr:`drawn_roi` is the ROI as given.
    """

    def __init__(
        self,
        roi: MeterROI,
        *,
        reference: npt.NDArray[np.uint8] | None = None,
        model: DigitReader | Path | str | None = None,
        refine: bool | None = None,
    ) -> None:
        self.drawn_roi = roi
        if reference is None and roi.reference is not None and roi.reference.image_path:
            reference = decode_image(roi.reference.image_path)
        self.reference = reference
        if isinstance(model, DigitReader):
            self.model = model
        else:
            self.model = load_reader(None if model is None else os.fspath(model))
        self.refinement: Refinement | None = None
        if reference is not None:
            h, w = reference.shape[:2]
            roi.check_inside(w, h)
            if roi.digits and (refine if refine is not None else not roi.refined):
                self.refinement = refine_boxes(reference, roi, model=self.model)
                roi = self.refinement.roi
            self.aligner: Aligner | None = Aligner(reference, roi)
        else:
            self.aligner = None
        self.roi = roi

    @classmethod
    def from_roi_file(
        cls,
        path: Path | str,
        *,
        model: DigitReader | Path | str | None = None,
        refine: bool | None = None,
    ) -> MeterReader:
        return cls(load_roi(path), model=model, refine=refine)

    def read(
        self,
        image: bytes | str | os.PathLike[str] | npt.NDArray[np.uint8],
        *,
        history: History | None = None,
        limits: Limits | None = None,
        now: float = 0.0,
    ) -> MeterReading:
        """Read one photo; ``now`` is on the same clock as the history's times."""
        t0 = time.perf_counter()
        img = image if isinstance(image, np.ndarray) else decode_image(image)
        limits = limits or Limits()
        align_info: dict[str, Any] = {"method": "none"}
        dials = self.roi.dials_sorted
        if self.aligner is not None:
            try:
                al = self.aligner.align(img)
            except ComputationError as exc:
                return MeterReading(
                    "rejected",
                    None,
                    None,
                    [],
                    reason=str(exc),
                    seconds=time.perf_counter() - t0,
                )
            crops = al.crop_digits(self.roi)  # warps only the counter, not the frame
            dial_crops = al.crop_boxes([d.box for d in dials]) if dials else []
            align_info = {
                "method": al.method,
                "shift_px": round(float(al.shift_px), 2),
                "rotation_deg": round(float(al.rotation_deg), 3),
                "score": round(float(al.score), 4),
            }
        else:
            h, w = img.shape[:2]
            self.roi.check_inside(w, h)
            crops = crop_digits(img, self.roi)
            dial_crops = [img[d.box.y : d.box.y2, d.box.x : d.box.x2] for d in dials]
        if crops:
            cont, positions, conf = self.model.read_crops_continuous(crops)
        else:  # a register of dials only
            cont = positions = conf = np.zeros(0)
        dial_reads = (
            read_dials(
                dial_crops,
                [d.direction for d in dials],  # type: ignore[misc]
                [d.zero_deg for d in dials],
            )
            if dials
            else []
        )
        all_pos = np.concatenate([np.asarray(cont, float), [r.value for r in dial_reads]])
        all_conf = np.concatenate([np.asarray(conf, float), [r.confidence for r in dial_reads]])
        places = self.roi.places
        frame = resolve_wheels(all_pos, all_conf, places, dials=len(dials))
        decision = judge(
            frame,
            [float(c) for c in all_conf],
            now=now,
            history=history,
            limits=limits,
            decimals=places,
            names=[f"wheel {k + 1}" for k in range(len(crops))]
            + [f"dial x{d.factor:g}" for d in dials],
        )
        return MeterReading(
            decision.status,
            decision.value,
            frame.raw(places),
            [
                {"value": round(float(p), 1), "confidence": round(float(c), 4)}
                for p, c in zip(positions, conf, strict=True)
            ],
            reason=decision.reason,
            dials=[
                {"factor": d.factor, **r.to_dict()} for d, r in zip(dials, dial_reads, strict=True)
            ],
            note=decision.note,
            resynced=decision.resynced,
            candidate=decision.candidate,
            alignment=align_info,
            seconds=time.perf_counter() - t0,
        )

    def read_file(
        self,
        path: str | os.PathLike[str],
        *,
        history: History | None = None,
        limits: Limits | None = None,
    ) -> MeterReading:
        """:meth:`read` for a file, with ``now = 0`` (the convention of :meth:`History.single`)."""
        return self.read(path, history=history, limits=limits, now=0.0)


class MeterSession:
    """One meter over time: reads photos and keeps the plausibility history."""

    def __init__(self, reader: MeterReader, limits: Limits | None = None) -> None:
        self.reader = reader
        self.limits = limits or Limits()
        self.history = History()

    def feed(
        self,
        image: bytes | str | os.PathLike[str] | npt.NDArray[np.uint8],
        now: float = math.nan,
    ) -> MeterReading:
        reading = self.reader.read(image, history=self.history, limits=self.limits, now=now)
        self.history = self.history.record(now, reading.decision, keep=self.limits.keep)
        return reading
