"""Where the digit wheels are: the region-of-interest (ROI) file of a meter.

An ROI file is JSON::

    {
      "digits": [{"x": 171, "y": 150, "w": 40, "h": 58}, ...],
      "decimals": 1,
      "reference": {
        "image": "reference.jpg",
        "markers": [{"x": 90, "y": 86, "w": 40, "h": 40}, ...]
      }
    }

- ``digits``: one box per wheel, in the reference image's pixels, listed from left to right.
  The boxes must not overlap. Each box is the wheel's window; a wheel at an integer position
  shows its digit centred in the box.
- ``decimals``: how many of the rightmost wheels are after the decimal point. It is
  required, because a wrong value scales every reading by a power of ten.
- ``reference`` (optional): a photo of the same meter from the same camera. ``image`` is
  relative to the ROI file's folder. Each new photo is aligned to it before the digit boxes
  are cut out. ``markers`` (optional, two or more, four recommended): boxes around
  distinctive printed features that do not change, such as corner marks, screws or label
  corners. They are used for alignment by template matching. Without markers, alignment
  uses feature matching over the whole reference image. Without a reference, the boxes are
  used as they are, in each photo's own pixels.
- ``rotate`` (optional, degrees, default 0): how far the camera's photos are turned
  counter-clockwise against the reference (a camera mounted at an angle, or upside down).
  Alignment works at any angle without it; a known angle only makes it faster.
- ``dials`` (optional): pointer dials, one object per dial::

      {"x": 514, "y": 306, "w": 122, "h": 122, "factor": 0.1,
       "direction": "cw", "zero_deg": 0}

  The box is around the dial ring, in reference pixels. ``factor`` is what one division
  (one number) of the dial is worth in the register's unit: 0.1 for the "x0.1" dial of a
  water meter, 1000 for the thousands dial of an electricity register. ``direction``
  (``"cw"``, the default, or ``"ccw"``) is the way the numbers increase; ``zero_deg``
  (default 0 = 12 o'clock) is where the 0 is, in degrees clockwise. The factors are powers
  of ten, one tenth apart, and continue the wheels: with ``decimals: 0`` the first dial is
  x0.1. A register of dials only (an electricity clock-dial register) has ``"digits": []``
  and ``"decimals": 0``. The value is the wheels and dials read as one counter
  (:mod:`gridlens.meter.carry`).
- ``refined`` (optional, default false): whether the digit boxes were already refined
  against the reference photo (:mod:`gridlens.meter.refine`). Boxes that are not are
  refined when a reader is built; ``true`` uses them exactly as written (after a person
  edited the refined boxes).

Unknown keys are rejected, so that a typo such as ``"decimal"`` is not silently ignored.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridlens.errors import DataFormatError, NotFoundError, ParameterError

__all__ = ["Box", "Dial", "MeterROI", "Reference", "load_roi"]

_TOP_KEYS = ("digits", "decimals", "reference", "rotate", "refined", "dials")
_DIAL_KEYS = ("x", "y", "w", "h", "factor", "direction", "zero_deg")
_REF_KEYS = ("image", "markers")
_BOX_KEYS = ("x", "y", "w", "h")


@dataclass(frozen=True)
class Box:
    """An axis-aligned pixel box: left ``x``, top ``y``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x2(self) -> int:
        """Exclusive right edge, ``x + w``."""
        return self.x + self.w

    @property
    def y2(self) -> int:
        """Exclusive bottom edge, ``y + h``."""
        return self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        """Centre (x, y) in continuous pixel coordinates (pixel centres at integers)."""
        return (self.x + (self.w - 1) / 2.0, self.y + (self.h - 1) / 2.0)

    def corners(self) -> list[tuple[float, float]]:
        """The four outer corners, clockwise from top left, in pixel-centre coordinates."""
        x0, y0 = self.x - 0.5, self.y - 0.5
        x1, y1 = x0 + self.w, y0 + self.h
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]

    def inside(self, width: int, height: int) -> bool:
        """Whether the box lies completely inside a ``width`` x ``height`` image."""
        return self.x >= 0 and self.y >= 0 and self.x2 <= width and self.y2 <= height

    def to_dict(self) -> dict[str, int]:
        """``{"x": .., "y": .., "w": .., "h": ..}``."""
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    @classmethod
    def from_dict(cls, d: object, what: str = "box") -> Box:
        """Parse and validate ``{"x": .., "y": .., "w": .., "h": ..}``.

        Parameters
        ----------
        d : Mapping
            The box.
        what : str
            How to name the box in error messages, e.g. ``"digit box 3"``.

        Raises
        ------
        ParameterError
            Missing or extra keys, non-integer values, negative x/y, non-positive w/h.
        """
        if not isinstance(d, Mapping):
            raise ParameterError(
                f'{what} must be an object like {{"x": 10, "y": 20, "w": 30, "h": 40}}, got {d!r}'
            )
        missing = [k for k in _BOX_KEYS if k not in d]
        extra = sorted(str(k) for k in d if k not in _BOX_KEYS)
        if missing or extra:
            raise ParameterError(
                f"{what} must have exactly the keys x, y, w, h (pixels); "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}")
            )
        x, y, w, h = (_as_int(d[k], f"{what} {k}") for k in _BOX_KEYS)
        box = cls(x, y, w, h)
        _check_box(box, what)
        return box


@dataclass(frozen=True)
class Dial:
    """A pointer dial: the box around its ring and what one division is worth.

    Attributes
    ----------
    box : Box
        Around the dial ring, in reference-image pixels.
    factor : float
        Register units per division (a power of ten: 0.1, 0.01, ..., 1000).
    direction : {"cw", "ccw"}
        The way the numbers increase.
    zero_deg : float
        Where the 0 is, in degrees clockwise from 12 o'clock.
    """

    box: Box
    factor: float
    direction: str = "cw"
    zero_deg: float = 0.0

    @property
    def exponent(self) -> int:
        """``log10(factor)``: -1 for the x0.1 dial."""
        return round(math.log10(self.factor))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.box.to_dict(), "factor": self.factor}
        if self.direction != "cw":
            out["direction"] = self.direction
        if self.zero_deg:
            out["zero_deg"] = self.zero_deg
        return out

    @classmethod
    def from_dict(cls, d: object, what: str = "dial") -> Dial:
        if not isinstance(d, Mapping):
            raise ParameterError(
                f'{what} must be an object like {{"x": 10, "y": 20, "w": 60, "h": 60, '
                f'"factor": 0.1}}, got {d!r}'
            )
        _reject_unknown_keys(d, _DIAL_KEYS, what)
        box = Box.from_dict({k: d[k] for k in _BOX_KEYS if k in d}, what)
        if "factor" not in d:
            raise ParameterError(
                f'{what} has no "factor": what one division is worth, e.g. 0.1 for a x0.1 dial'
            )
        factor = d["factor"]
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise ParameterError(f"{what} factor must be a number such as 0.1, got {factor!r}")
        direction = d.get("direction", "cw")
        zero = d.get("zero_deg", 0.0)
        if isinstance(zero, bool) or not isinstance(zero, int | float):
            raise ParameterError(f"{what} zero_deg must be an angle in degrees, got {zero!r}")
        dial = cls(box, float(factor), direction, float(zero))
        _check_dial(dial, what)
        return dial


@dataclass(frozen=True)
class Reference:
    """The reference photo that digit and marker boxes refer to.

    Attributes
    ----------
    image_path : Path or None
        The reference photo, or None when the caller supplies the image itself.
    markers : tuple of Box
        Boxes around distinctive, unchanging features used for alignment. Empty means that
        feature matching is used.
    """

    image_path: Path | None
    markers: tuple[Box, ...] = ()


@dataclass(frozen=True)
class MeterROI:
    """Digit boxes of a meter, with the number of decimal wheels and an optional reference.

    Attributes
    ----------
    digits : tuple of Box
        One box per wheel, left to right, in reference-image pixels.
    decimals : int
        Number of rightmost wheels after the decimal point, 0 <= decimals <= len(digits).
    reference : Reference or None
        Reference photo and markers. None means the boxes are in each photo's own pixels.
    """

    digits: tuple[Box, ...]
    decimals: int
    reference: Reference | None = None
    rotate: float = 0.0
    refined: bool = False
    dials: tuple[Dial, ...] = ()

    def __post_init__(self) -> None:
        _validate_digits(self.digits, allow_empty=bool(self.dials))
        if (
            isinstance(self.rotate, bool)
            or not isinstance(self.rotate, int | float)
            or not math.isfinite(self.rotate)
            or not -360.0 <= self.rotate <= 360.0
        ):
            raise ParameterError(
                f"rotate must be an angle in degrees between -360 and 360, got {self.rotate!r}"
            )
        if not isinstance(self.refined, bool):
            raise ParameterError(f"refined must be true or false, got {self.refined!r}")
        if isinstance(self.decimals, bool) or not isinstance(self.decimals, int):
            raise ParameterError(
                f"decimals must be a whole number of wheels, got {self.decimals!r}"
            )
        if not 0 <= self.decimals <= len(self.digits):
            raise ParameterError(
                f"decimals is {self.decimals}, but there are {len(self.digits)} digit boxes; "
                f"use 0..{len(self.digits)}, the number of wheels after the decimal point"
            )
        for i, m in enumerate(self.markers, start=1):
            _check_box(m, f"marker box {i} of {len(self.markers)}")
        _validate_dials(self.dials, self.decimals, bool(self.digits))
        if self.reference is not None and len(self.reference.markers) == 1:
            raise ParameterError(
                "the reference has only 1 marker box; give 2 or more (4 recommended, near "
                "the corners of the meter face), or none to use feature matching"
            )

    @property
    def n_digits(self) -> int:
        """Number of wheels."""
        return len(self.digits)

    @property
    def dials_sorted(self) -> tuple[Dial, ...]:
        """The dials from the largest factor to the smallest (the order they are read in)."""
        return tuple(sorted(self.dials, key=lambda d: -d.factor))

    @property
    def places(self) -> int:
        """Decimal places of a reading: the wheels' decimals plus one per dial."""
        if not self.dials:
            return self.decimals
        return -min(d.exponent for d in self.dials)

    @property
    def markers(self) -> tuple[Box, ...]:
        """Marker boxes of the reference (empty without a reference)."""
        return () if self.reference is None else self.reference.markers

    def check_inside(self, width: int, height: int) -> None:
        """Raise ParameterError unless every digit and marker box lies inside the image.

        Parameters
        ----------
        width, height : int
            Size of the image the boxes refer to.

        Raises
        ------
        ParameterError
            Naming the first box outside, e.g. "digit box 3 of 6 (x=600..660, y=..)".
        """
        groups = (
            ("digit box", self.digits),
            ("dial box", tuple(d.box for d in self.dials)),
            ("marker box", self.markers),
        )
        for kind, boxes in groups:
            for i, b in enumerate(boxes, start=1):
                if not b.inside(width, height):
                    raise ParameterError(
                        f"{kind} {i} of {len(boxes)} (x={b.x}..{b.x2}, y={b.y}..{b.y2}) lies "
                        f"outside the {width}x{height} image; the ROI file must use the "
                        "pixels of the reference image (or of the photo when there is none)"
                    )

    def to_dict(self, base_dir: Path | None = None) -> dict[str, Any]:
        """The JSON-ready form of the ROI file.

        Parameters
        ----------
        base_dir : Path, optional
            Write the reference image path relative to this folder when it is inside it.
        """
        out: dict[str, Any] = {
            "digits": [b.to_dict() for b in self.digits],
            "decimals": self.decimals,
        }
        if self.reference is not None:
            ref: dict[str, Any] = {}
            p = self.reference.image_path
            if p is not None:
                if base_dir is not None:
                    base = Path(base_dir).resolve()
                    if p.resolve().is_relative_to(base):
                        p = p.resolve().relative_to(base)
                ref["image"] = p.as_posix()
            if self.reference.markers:
                ref["markers"] = [b.to_dict() for b in self.reference.markers]
            out["reference"] = ref
        if self.dials:
            out["dials"] = [d.to_dict() for d in self.dials]
        if self.rotate:
            out["rotate"] = self.rotate
        if self.refined:
            out["refined"] = True
        return out

    @classmethod
    def from_dict(cls, d: object, base_dir: Path | None = None) -> MeterROI:
        """Parse and validate the content of an ROI file.

        Parameters
        ----------
        d : Mapping
            The parsed JSON object.
        base_dir : Path, optional
            Folder that a relative reference image path is relative to (the ROI file's
            folder). None leaves the path as written.

        Raises
        ------
        DataFormatError
            ``d`` is not a JSON object.
        ParameterError
            Any invalid entry; the message names it.
        """
        if not isinstance(d, Mapping):
            raise DataFormatError(
                'an ROI must be a JSON object like {"digits": [...], "decimals": 1}, '
                f"got {type(d).__name__}"
            )
        _reject_unknown_keys(d, _TOP_KEYS, "ROI")
        if "digits" not in d:
            raise ParameterError(
                'the ROI has no "digits" list; add one box per wheel, left to right, e.g. '
                '"digits": [{"x": 100, "y": 50, "w": 30, "h": 45}, ...]'
            )
        raw_digits = d["digits"]
        if not isinstance(raw_digits, Sequence) or isinstance(raw_digits, str | bytes):
            raise ParameterError(f'"digits" must be a list of boxes, got {raw_digits!r}')
        n = len(raw_digits)
        digits = tuple(
            Box.from_dict(b, f"digit box {i} of {n}") for i, b in enumerate(raw_digits, start=1)
        )
        if "decimals" not in d:
            raise ParameterError(
                'the ROI has no "decimals" entry; add "decimals": N, the number of wheels '
                "after the decimal point (0 if none)"
            )
        decimals = _as_int(d["decimals"], "decimals")
        reference = None
        if d.get("reference") is not None:
            reference = _parse_reference(d["reference"], base_dir)
        rotate = d.get("rotate", 0.0)
        if isinstance(rotate, int) and not isinstance(rotate, bool):
            rotate = float(rotate)
        raw_dials = d.get("dials", [])
        if not isinstance(raw_dials, Sequence) or isinstance(raw_dials, str | bytes):
            raise ParameterError(f'"dials" must be a list of dials, got {raw_dials!r}')
        if len(raw_dials) > MAX_DIALS:
            raise ParameterError(f"at most {MAX_DIALS} dials, got {len(raw_dials)}")
        nd = len(raw_dials)
        dials = tuple(
            Dial.from_dict(x, f"dial {i} of {nd}") for i, x in enumerate(raw_dials, start=1)
        )
        return cls(digits, decimals, reference, rotate, d.get("refined", False), dials)


def load_roi(path: str | os.PathLike[str]) -> MeterROI:
    """Read and validate an ROI JSON file.

    A relative reference image path is resolved against the file's folder.

    Raises
    ------
    NotFoundError
        No file at ``path``.
    DataFormatError
        Not valid JSON, or not a JSON object.
    ParameterError
        Any invalid entry (the message names the file and the entry).
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such ROI file")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{p}: not a UTF-8 text file ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise DataFormatError(f"{p}: JSON nested too deeply to be an ROI file") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DataFormatError(f"{p}: not a valid ROI file: {exc}") from None
    try:
        return MeterROI.from_dict(d, base_dir=p.parent)
    except DataFormatError as exc:
        raise DataFormatError(f"{p}: {exc}") from None
    except ParameterError as exc:
        raise ParameterError(f"{p}: {exc}") from None


def _as_int(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ParameterError(f"{what} must be a whole number, got {v!r}")
    if isinstance(v, float):
        if not v.is_integer():
            raise ParameterError(f"{what} must be a whole number of pixels, got {v!r}")
        return int(v)
    return v


def _check_box(b: Box, what: str) -> None:
    for k in _BOX_KEYS:
        v = getattr(b, k)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ParameterError(f"{what} {k} must be a whole number, got {v!r}")
    if b.x < 0 or b.y < 0:
        raise ParameterError(f"{what} has a negative position (x={b.x}, y={b.y}); use x, y >= 0")
    if b.w <= 0 or b.h <= 0:
        raise ParameterError(f"{what} has an empty size (w={b.w}, h={b.h}); use w, h >= 1")


def _check_dial(d: Dial, what: str) -> None:
    _check_box(d.box, what)
    f = d.factor
    if not (math.isfinite(f) and f > 0) or abs(math.log10(f) - round(math.log10(f))) > 1e-9:
        raise ParameterError(
            f"{what} factor must be a power of ten (0.1, 0.01, 1, 10, ...), got {f!r}"
        )
    if not -9 <= round(math.log10(f)) <= 9:
        raise ParameterError(f"{what} factor must be between 1e-9 and 1e9, got {f!r}")
    if d.direction not in ("cw", "ccw"):
        raise ParameterError(f'{what} direction must be "cw" or "ccw", got {d.direction!r}')
    if not (math.isfinite(d.zero_deg) and -360.0 <= d.zero_deg <= 360.0):
        raise ParameterError(f"{what} zero_deg must be in -360..360 degrees, got {d.zero_deg!r}")


#: Most dials an ROI may have.
MAX_DIALS = 8


def _validate_dials(dials: tuple[Dial, ...], decimals: int, has_digits: bool) -> None:
    if not dials:
        return
    if len(dials) > MAX_DIALS:
        raise ParameterError(f"at most {MAX_DIALS} dials, got {len(dials)}")
    for i, d in enumerate(dials, start=1):
        _check_dial(d, f"dial {i} of {len(dials)}")
    exps = sorted((d.exponent for d in dials), reverse=True)
    if len(set(exps)) != len(exps):
        raise ParameterError("two dials have the same factor; each dial has its own power of ten")
    for a, b in itertools.pairwise(exps):
        if a - b != 1:
            raise ParameterError(
                f"the dial factors skip from {10.0**a:g} to {10.0**b:g}; they must be one "
                "tenth apart (e.g. 0.1, 0.01, 0.001)"
            )
    if has_digits and exps[0] != -decimals - 1:
        raise ParameterError(
            f"the largest dial factor is {10.0 ** exps[0]:g}, but the last wheel counts "
            f"{10.0**-decimals:g}: the first dial must be x{10.0 ** (-decimals - 1):g} "
            "(or fix decimals)"
        )
    if not has_digits and decimals != 0:
        raise ParameterError("a register of dials only has decimals 0 (the factors say the rest)")
    if exps[-1] > 0:
        raise ParameterError(
            f"the smallest dial factor is {10.0 ** exps[-1]:g}; it must be 1 or smaller"
        )


def _validate_digits(digits: tuple[Box, ...], allow_empty: bool = False) -> None:
    if not digits:
        if allow_empty:
            return
        raise ParameterError("the ROI has no digit boxes; add one box per wheel, left to right")
    n = len(digits)
    for i, b in enumerate(digits, start=1):
        _check_box(b, f"digit box {i} of {n}")
    for i in range(1, n):
        a, b = digits[i - 1], digits[i]
        if b.x < a.x:
            raise ParameterError(
                f"digit box {i + 1} of {n} (x={b.x}) is left of digit box {i} (x={a.x}); "
                "list the digit boxes from left to right"
            )
        if b.x < a.x2:
            raise ParameterError(
                f"digit boxes {i} and {i + 1} of {n} overlap (x={a.x}..{a.x2} and "
                f"x={b.x}..{b.x2}); each box must cover one wheel only"
            )


def _reject_unknown_keys(d: Mapping[Any, Any], allowed: tuple[str, ...], what: str) -> None:
    extra = sorted(str(k) for k in d if k not in allowed)
    if extra:
        raise ParameterError(
            f"unknown {what} key(s) {', '.join(extra)}; allowed: {', '.join(allowed)}"
        )


def _parse_reference(r: object, base_dir: Path | None) -> Reference:
    if not isinstance(r, Mapping):
        raise ParameterError(
            '"reference" must be an object like {"image": "reference.jpg", "markers": [...]}, '
            f"got {r!r}"
        )
    _reject_unknown_keys(r, _REF_KEYS, "reference")
    image_path: Path | None = None
    img = r.get("image")
    if img is not None:
        if not isinstance(img, str) or not img.strip():
            raise ParameterError(
                f'reference "image" must be a file name such as "reference.jpg", got {img!r}'
            )
        image_path = Path(img)
        if base_dir is not None and not image_path.is_absolute():
            image_path = Path(base_dir) / image_path
    raw = r.get("markers")
    markers: tuple[Box, ...] = ()
    if raw is not None:
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            raise ParameterError(f'reference "markers" must be a list of boxes, got {raw!r}')
        m = len(raw)
        markers = tuple(
            Box.from_dict(b, f"marker box {i} of {m}") for i, b in enumerate(raw, start=1)
        )
    return Reference(image_path, markers)
