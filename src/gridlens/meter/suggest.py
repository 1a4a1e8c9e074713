"""Propose an ROI (digit boxes, decimals, markers) from one photo of a meter.

Writing pixel boxes by hand is the hardest step of setting up a meter. :func:`suggest_roi`
proposes them, in the photo's own pixels, for a person to check:

1. **Glyph candidates.** The grey image is binarised by a local-mean threshold in both
   polarities (dark digits on light wheels, and light on dark) at two window sizes. Connected
   components of digit-like size, aspect and ink fill are kept.
2. **Rows.** Candidates of similar height on one line (a straight line, so small rotations
   are allowed) are grouped. Their x-centres are fitted to an equally spaced lattice, the
   wheel pitch, allowing for wheels whose glyph was not found (rolling, glare).
3. **Verification by the digit model.** Every lattice position, and up to two beyond each
   end, is cut out as a wheel window (about 1.6 glyph heights tall) and read by the ONNX
   digit model. Positions the model reads with confidence extend the row; the row's score is
   the summed confidence, weighted by how far apart the glyphs are for their height (wheel
   windows are spaced at least about a glyph height apart; printed serial numbers are
   tighter) and by the glyph size.
4. **Box fitting.** For the best row, the window height, width and vertical offset are
   chosen from a small grid to maximise the model's mean confidence.
5. **Decimals** are the rightmost wheels that are clearly red (red digits or red wheels)
   while the others are not; 0 when that is not clear. A printed decimal point is not
   looked for.
6. **Markers.** Up to 12 distinctive patches (corner strength, unique within one patch
   width, as the aligner's own automatic patches) are found outside the counter and
   outside solid red blobs (pointers and flags that move). Up to four well spread ones are
   kept, scored by how unique they are across a wider search area.

The result is a proposal. Its confidences say where a person should look first; the boxes
still need a glance, most of all on meters with a printed serial number close to the
counter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import NoCounterError, ParameterError
from gridlens.meter._align_match import grid_corners
from gridlens.meter.model import DigitReader, load_reader
from gridlens.meter.roi import Box, MeterROI, Reference

__all__ = ["NoCounterError", "ScoredBox", "Suggestion", "suggest_roi"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

#: Longest side of the working image [px]; larger photos are scaled down for the search.
WORK_SIZE = 1024
#: Fewest wheels a counter may have.
MIN_WHEELS = 3
#: Most wheels a counter may have.
MAX_WHEELS = 10
#: Window height per glyph height of the box grid searched in step 4.
BOX_HEIGHTS = (1.45, 1.6, 1.75)
#: Model confidence a position beyond the detected glyphs needs to join the row when a
#: digit-like shape is there, and when none is (a wheel caught mid-roll shows half glyphs).
EXTEND_CONFIDENCE = 0.6
SURE_CONFIDENCE = 0.9
#: ... and when the window there holds a whole or rolling digit of the row's size and
#: polarity (:func:`_rolling`; the model is less sure of a wheel caught mid-roll).
ROLLING_CONFIDENCE = 0.4
#: Model confidence below which the first or last wheel of a row is dropped.
END_CONFIDENCE = 0.85


@dataclass(frozen=True)
class ScoredBox:
    """A suggested box with a confidence in [0, 1]."""

    box: Box
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """``{"x", "y", "w", "h", "confidence"}``."""
        return {**self.box.to_dict(), "confidence": round(self.confidence, 4)}


@dataclass(frozen=True)
class Suggestion:
    """A proposed ROI, in the pixels of the photo it was found in.

    Attributes
    ----------
    counter : Box
        The counter window: the union of the digit boxes and the gaps between them.
    digits : tuple of ScoredBox
        One box per wheel, left to right; the confidence is the digit model's.
    decimals : int
        Suggested number of wheels after the decimal point (0 when unsure).
    decimals_confidence : float
        How clearly the decimal wheels differ in colour from the others (0..1).
    markers : tuple of ScoredBox
        Two to four distinctive patches outside the counter; confidence = uniqueness.
    confidence : float
        Overall confidence in the digit boxes (0..1).
    size : (int, int)
        (width, height) of the photo.
    details : dict
        Diagnostics: glyph height, pitch, row score, wheel readings, runner-up row.
    """

    counter: Box
    digits: tuple[ScoredBox, ...]
    decimals: int
    decimals_confidence: float
    markers: tuple[ScoredBox, ...]
    confidence: float
    size: tuple[int, int]
    details: dict[str, Any] = field(default_factory=dict)

    def to_roi(self) -> MeterROI:
        """The suggestion as a :class:`MeterROI` (markers in a reference without image)."""
        ref = Reference(None, tuple(m.box for m in self.markers)) if self.markers else None
        return MeterROI(tuple(d.box for d in self.digits), self.decimals, ref)

    def to_roi_dict(self) -> dict[str, Any]:
        """The ROI file content: ``{"digits", "decimals", "reference": {"markers"}}``.

        The reference has no ``image``: save the photo the boxes were found in and add its
        file name as ``reference.image``, or drop ``reference`` to use the boxes as they are.
        """
        out: dict[str, Any] = {
            "digits": [d.box.to_dict() for d in self.digits],
            "decimals": self.decimals,
        }
        if len(self.markers) >= 2:
            out["reference"] = {"markers": [m.box.to_dict() for m in self.markers]}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (boxes with confidences)."""
        return {
            "counter": self.counter.to_dict(),
            "digits": [d.to_dict() for d in self.digits],
            "decimals": self.decimals,
            "decimals_confidence": round(self.decimals_confidence, 4),
            "markers": [m.to_dict() for m in self.markers],
            "confidence": round(self.confidence, 4),
            "size": list(self.size),
        }


@dataclass(frozen=True)
class _Glyph:
    x: int
    y: int
    w: int
    h: int
    dark: bool

    @property
    def cx(self) -> float:
        return self.x + self.w / 2.0

    @property
    def cy(self) -> float:
        return self.y + self.h / 2.0


@dataclass
class _Row:
    dark: bool
    h: float  # glyph height [px]
    pitch: float  # wheel pitch [px]
    x0: float  # centre of lattice position 0 [px]
    k: list[int]  # lattice positions of the wheels
    slope: float  # dy/dx of the row line
    yc: float  # row centre y at x = x0
    intruders: int = 0  # same-size shapes between lattice positions
    gw: float = 0.0  # glyph width, upper quartile (a "1" is narrow) [px]
    n_fit: int = 0  # glyphs the lattice was fitted on
    conf: list[float] = field(default_factory=list)
    score: float = 0.0

    def center(self, k: int) -> tuple[float, float]:
        x = self.x0 + k * self.pitch
        return x, self.yc + self.slope * k * self.pitch


def suggest_roi(image: npt.NDArray[np.uint8], *, model: DigitReader | None = None) -> Suggestion:
    """Propose digit boxes, decimals and marker boxes for a photo of a meter.

    Parameters
    ----------
    image : numpy.ndarray
        The photo, BGR (H, W, 3) or grey (H, W) ``uint8``, at least 64x64 px. It should show
        the meter roughly upright (rows of wheels within about 10 degrees of horizontal).
    model : DigitReader, optional
        The digit model used to verify wheels (default: the shipped one).

    Returns
    -------
    Suggestion
        Boxes in the photo's pixels, with confidences.

    Raises
    ------
    ParameterError
        ``image`` is not a uint8 image array of at least 64x64 px.
    NoCounterError
        No row of at least three digit wheels was found (a blank or noisy photo, or a counter
        that is too small, blurred or turned); the message says what was missing.
    """
    bgr, gray = _as_images(image)
    h_img, w_img = gray.shape
    reader = model if model is not None else load_reader()
    spread = float(gray.std())
    if spread < 4.0:
        raise NoCounterError(
            f"the photo is almost uniform (grey-level spread {spread:.1f}); no counter to find"
        )
    scale = min(1.0, WORK_SIZE / max(h_img, w_img))
    work = gray
    if scale < 1.0:
        size = (round(w_img * scale), round(h_img * scale))
        work = np.asarray(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), np.uint8)
    glyphs = _find_glyphs(work)
    rows = _rows_from_glyphs(glyphs, work.shape[1])
    if not rows:
        raise NoCounterError(
            f"no row of {MIN_WHEELS} or more equally spaced, digit-like shapes of equal height "
            f"was found among {len(glyphs)} candidate shapes"
        )
    scored = _score_rows(work, rows, glyphs, reader)
    if not scored or scored[0].score <= 0.0:
        raise NoCounterError(
            f"{len(rows)} rows of digit-like shapes were found, but the digit model reads "
            f"none of them as {MIN_WHEELS} or more wheels"
        )
    best = scored[0]
    boxes, conf, values = _fit_boxes(work, best, reader)
    inv = 1.0 / scale
    full = [_scale_box(b, inv, w_img, h_img) for b in boxes]
    digits = tuple(ScoredBox(b, float(c)) for b, c in zip(full, conf, strict=True))
    counter = _union(full)
    decimals, dec_conf, redness = _guess_decimals(bgr, full)
    markers = _suggest_markers(gray, bgr, full)
    ratio = best.pitch / best.h
    overall = float(np.mean(conf)) * _spacing_weight(ratio)
    if len(full) < 4:
        overall *= 0.5
    if len(scored) > 1 and scored[1].score > 0.8 * best.score:
        overall *= 0.7  # a second row nearly as good: the choice is not clear
    details: dict[str, Any] = {
        "glyph_height_px": round(best.h * inv, 1),
        "pitch_px": round(best.pitch * inv, 1),
        "polarity": "dark digits on light" if best.dark else "light digits on dark",
        "row_score": round(best.score, 3),
        "wheel_values": [round(float(v), 1) for v in values],
        "redness": [round(float(r), 3) for r in redness],
        "candidates": len(glyphs),
        "rows": len(rows),
    }
    if len(scored) > 1:
        r2 = scored[1]
        x2, y2 = r2.center(r2.k[0])
        details["runner_up"] = {
            "score": round(r2.score, 3),
            "wheels": len(r2.k),
            "x_px": round(x2 * inv),
            "y_px": round(y2 * inv),
        }
    return Suggestion(
        counter=counter,
        digits=digits,
        decimals=decimals,
        decimals_confidence=dec_conf,
        markers=markers,
        confidence=min(1.0, max(0.0, overall)),
        size=(w_img, h_img),
        details=details,
    )


# ------------------------------------------------------------------------- glyphs and rows


def _as_images(image: object) -> tuple[U8, U8]:
    arr = np.asarray(image) if isinstance(image, np.ndarray) else None
    ok = (
        arr is not None
        and arr.dtype == np.uint8
        and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)))
        and min(arr.shape[:2]) >= 64
    )
    if not ok or arr is None:
        got = f"{arr.dtype} array of shape {arr.shape}" if arr is not None else type(image).__name__
        raise ParameterError(
            "The 'image' parameter of suggest_roi must be a uint8 image array of shape "
            f"(H, W) or (H, W, 3), at least 64x64 px. Got {got} instead."
        )
    if arr.ndim == 2:
        gray = arr
        bgr = np.asarray(cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR), np.uint8)
    elif arr.shape[2] == 1:
        gray = np.ascontiguousarray(arr[:, :, 0])
        bgr = np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), np.uint8)
    elif arr.shape[2] == 4:
        bgr = np.asarray(cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR), np.uint8)
        gray = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), np.uint8)
    else:
        bgr = arr
        gray = np.asarray(cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY), np.uint8)
    return bgr, gray


def _find_glyphs(gray: U8) -> list[_Glyph]:
    """Digit-like connected components of a local-mean threshold, both polarities."""
    h_img, w_img = gray.shape
    lo, hi = 0.025 * h_img, 0.25 * h_img
    out: list[_Glyph] = []
    seen: set[tuple[int, int, int, int, bool]] = set()
    for frac in (0.05, 0.1):
        block = max(11, int(frac * min(h_img, w_img)) | 1)
        for dark in (True, False):
            mode = cv2.THRESH_BINARY_INV if dark else cv2.THRESH_BINARY
            b = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, mode, block, 10)
            # opening cuts the thin links between a digit and its window frame
            opened = np.asarray(cv2.morphologyEx(b, cv2.MORPH_OPEN, _KERNEL), np.uint8)
            for x, y, w, h, area in _components(np.asarray(b, np.uint8)) + _components(opened):
                if not (lo <= h <= hi and 0.12 * h <= w <= 1.0 * h):
                    continue
                if not 0.12 <= area / (w * h) <= 0.8:
                    continue
                key = (x // 2, y // 2, w // 2, h // 2, dark)
                if key in seen:
                    continue
                seen.add(key)
                out.append(_Glyph(x, y, w, h, dark))
    return out


_KERNEL = np.ones((3, 3), np.uint8)


def _components(binary: npt.NDArray[np.uint8]) -> list[list[int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    out: list[list[int]] = stats[1:n].tolist()
    return out


def _rows_from_glyphs(glyphs: Sequence[_Glyph], width: int) -> list[_Row]:
    """Group glyphs into rows and fit each row's centres to an equally spaced lattice."""
    rows: list[_Row] = []
    seen: set[tuple[bool, tuple[int, ...]]] = set()
    for g in glyphs:
        members = [
            i
            for i, o in enumerate(glyphs)
            if o.dark == g.dark and abs(o.cy - g.cy) < 0.3 * g.h and 0.8 * g.h <= o.h <= 1.25 * g.h
        ]
        if len(members) < MIN_WHEELS:
            continue
        key = (g.dark, tuple(members))
        if key in seen:
            continue
        seen.add(key)
        row = _fit_lattice([glyphs[i] for i in members], g.dark)
        if row is not None:
            rows.append(row)
    # the same lattice found from several anchors: keep one
    uniq: dict[tuple[bool, int, int, int], _Row] = {}
    for r in rows:
        x_first = r.x0 + r.k[0] * r.pitch
        ukey = (r.dark, round(x_first / 4), round(r.yc / 4), round(r.pitch / 3))
        if ukey not in uniq or len(r.k) > len(uniq[ukey].k):
            uniq[ukey] = r
    return list(uniq.values())


def _fit_lattice(members: Sequence[_Glyph], dark: bool) -> _Row | None:
    """The equally spaced run that explains the most member centres (one gap allowed)."""
    ms = sorted(members, key=lambda g: g.cx)
    # merge duplicates (the same glyph found at two thresholds)
    xs: list[float] = []
    keep: list[_Glyph] = []
    for g in ms:
        if xs and abs(g.cx - xs[-1]) < 0.25 * g.h:
            continue
        xs.append(g.cx)
        keep.append(g)
    if len(keep) < MIN_WHEELS:
        return None
    hs = np.array([g.h for g in keep], np.float64)
    h_med = float(np.median(hs))
    cx = np.array(xs)
    best: tuple[int, float, float, float, list[int]] | None = None
    for i in range(len(cx) - 1):
        for j in range(i + 1, min(len(cx), i + 3)):
            p = cx[j] - cx[i]
            if not 0.7 * h_med <= p <= 3.0 * h_med:
                continue
            kk = np.round((cx - cx[i]) / p)
            resid = np.abs(cx - cx[i] - kk * p)
            ok = resid < 0.15 * p
            ks = sorted({int(k) for k in kk[ok]})
            run = _longest_run(ks)
            if len(run) < MIN_WHEELS or run[-1] - run[0] + 1 > MAX_WHEELS:
                continue
            sel = ok & np.isin(kk, run)
            # refine pitch and origin by least squares on the matched centres
            a = np.vstack([np.ones(int(sel.sum())), kk[sel]]).T
            sol, *_ = np.linalg.lstsq(a, cx[sel], rcond=None)
            x0, pitch = float(sol[0]), float(sol[1])
            err = float(np.mean(np.abs(cx[sel] - x0 - kk[sel] * pitch))) / pitch
            cand = (len(run), -err, x0, pitch, run)
            if best is None or cand[:2] > best[:2]:
                best = cand
    if best is None:
        return None
    _, _, x0, pitch, run = best
    # shapes of the same size between the wheels: a line of print, not a counter
    lo_x, hi_x = x0 + (run[0] - 0.5) * pitch, x0 + (run[-1] + 0.5) * pitch
    phase = np.abs((cx - x0) / pitch - np.round((cx - x0) / pitch))
    intruders = int(np.sum((phase > 0.3) & (cx > lo_x) & (cx < hi_x)))
    sel_g = [
        g
        for g in keep
        if round((g.cx - x0) / pitch) in run
        and abs((g.cx - x0) / pitch - round((g.cx - x0) / pitch)) < 0.15
    ]
    gx = np.array([g.cx for g in sel_g])
    gy = np.array([g.cy for g in sel_g])
    slope = 0.0
    if len(sel_g) >= 3 and np.ptp(gx) > 0:
        slope = float(np.clip(np.polyfit(gx, gy, 1)[0], -0.2, 0.2))
    yc = float(np.median(gy - slope * (gx - x0)))
    h_row = float(np.median([g.h for g in sel_g]))
    gw = float(np.percentile([g.w for g in sel_g], 75))
    k0 = run[0]
    return _Row(
        dark=dark,
        h=h_row,
        pitch=pitch,
        x0=x0 + k0 * pitch,
        k=[k - k0 for k in range(run[0], run[-1] + 1)],
        slope=slope,
        yc=yc + slope * k0 * pitch,
        intruders=intruders,
        gw=gw,
        n_fit=len(sel_g),
    )


def _longest_run(ks: Sequence[int]) -> list[int]:
    """Longest stretch of sorted integers with gaps of at most one missing value."""
    if not ks:
        return []
    best: list[int] = [ks[0]]
    cur: list[int] = [ks[0]]
    for k in ks[1:]:
        if k - cur[-1] <= 2:
            cur.append(k)
        else:
            cur = [k]
        if len(cur) > len(best) or (
            len(cur) == len(best) and cur[-1] - cur[0] < best[-1] - best[0]
        ):
            best = list(cur)
    return best


# ------------------------------------------------------------------------- model verification


def _spacing_weight(ratio: float) -> float:
    """0 for glyphs closer than 0.75 heights apart (print), 1 from 1.05 heights (wheels)."""
    return float(np.clip((ratio - 0.75) / 0.3, 0.0, 1.0))


def _row_box(row: _Row, k: int, hk: float, wk: float, dy: float) -> tuple[int, int, int, int]:
    cx, cy = row.center(k)
    bh = hk * row.h
    bw = min(wk * row.h, 0.88 * row.pitch)
    return (
        round(cx - bw / 2.0),
        round(cy + dy * row.h - bh / 2.0),
        max(4, round(bw)),
        max(4, round(bh)),
    )


def _crops(gray: U8, boxes: Sequence[tuple[int, int, int, int]]) -> tuple[list[U8], list[bool]]:
    h_img, w_img = gray.shape
    crops: list[U8] = []
    inside: list[bool] = []
    for x, y, w, h in boxes:
        ok = x >= 0 and y >= 0 and x + w <= w_img and y + h <= h_img
        inside.append(ok)
        if ok:
            crops.append(gray[y : y + h, x : x + w])
    return crops, inside


def _confidences(
    gray: U8, boxes: Sequence[tuple[int, int, int, int]], reader: DigitReader
) -> tuple[F64, F64]:
    """(confidence, value) per box; boxes outside the image get confidence 0."""
    crops, inside = _crops(gray, boxes)
    conf = np.zeros(len(boxes))
    vals = np.zeros(len(boxes))
    if crops:
        _, v, c = reader.read_crops_continuous(crops)
        idx = np.flatnonzero(inside)
        conf[idx] = c
        vals[idx] = v
    return conf, vals


def _ink_centred(gray: U8, box: tuple[int, int, int, int], dark: bool) -> bool:
    """Whether the ink in a box is centred vertically, as on a wheel (whole or mid-roll).

    A lowercase unit sign beside the counter ("m", "kWh") sits on the digits' baseline, so
    its ink lies low in the box.
    """
    x, y, w, h = box
    h_img, w_img = gray.shape
    if x < 0 or y < 0 or x + w > w_img or y + h > h_img:
        return False
    crop = gray[y + h // 8 : y + h - h // 8, x + w // 8 : x + w - w // 8]
    mode = cv2.THRESH_BINARY_INV if dark else cv2.THRESH_BINARY
    _, ink = cv2.threshold(crop, 0, 1, mode | cv2.THRESH_OTSU)
    rows = ink.sum(axis=1).astype(np.float64)
    if rows.sum() <= 0:
        return False
    centroid = float(np.dot(rows, np.arange(rows.size)) / rows.sum())
    return bool(abs(centroid - (rows.size - 1) / 2.0) < 0.12 * rows.size)


def _rolling(gray: U8, row: _Row, k: int) -> bool:
    """Whether the window at position ``k`` shows a wheel: a whole glyph, or one caught mid-roll.

    The crop is thresholded on its own, so a wheel in a window of another colour (red
    decimals) is found where the whole-photo threshold of :func:`_find_glyphs` missed it.
    A wheel caught mid-roll holds two partial glyphs of the row's polarity, one above the other and
    both centred on the position: the bottom of one digit leaving at the top and the top of
    the next entering at the bottom. Neither is a digit-like shape of full height, so
    :func:`_has_glyph` misses them, and a unit sign, a dial or the meter face beside the
    counter does not look like this.
    """
    cx, cy = row.center(k)
    h, w = 1.8 * row.h, min(row.pitch, 1.5 * row.h)
    x0, y0 = round(cx - w / 2.0), round(cy - h / 2.0)
    x1, y1 = x0 + max(4, round(w)), y0 + max(4, round(h))
    if x0 < 0 or y0 < 0 or x1 > gray.shape[1] or y1 > gray.shape[0]:
        return False
    crop = gray[y0:y1, x0:x1]
    mode = cv2.THRESH_BINARY_INV if row.dark else cv2.THRESH_BINARY
    _, ink = cv2.threshold(crop, 0, 1, mode | cv2.THRESH_OTSU)
    ccx, ccy = cx - x0, cy - y0
    tops: list[tuple[float, float, float]] = []  # (centre x, width, height)
    bottoms: list[tuple[float, float, float]] = []
    for x, y, cw, ch, area in _components(np.asarray(ink, np.uint8)):
        if not (0.2 * row.h <= cw <= 1.0 * row.h and 0.12 * row.h <= ch <= 1.3 * row.h):
            continue
        fill = area / (cw * ch)
        if abs(x + cw / 2.0 - ccx) > 0.25 * row.pitch or not 0.12 <= fill <= 0.95:
            continue  # (a cut glyph can be a solid bar: the foot of a "1" or a "2")
        if x == 0 or x + cw >= ink.shape[1]:
            continue  # cut by the crop's side: wider than a digit (a unit sign, a frame)
        mid = y + ch / 2.0
        whole = ch >= 0.75 * row.h and -0.4 * row.h < mid - ccy < 0.12 * row.h and fill <= 0.85
        if whole and cw <= 1.5 * row.gw:
            # a whole digit, centred or moved up by the roll; a unit sign sits low on the
            # baseline of the digits
            return True
        if cw > 1.5 * row.gw:
            continue
        if mid < ccy - 0.15 * row.h:
            tops.append((x + cw / 2.0, float(cw), float(ch)))
        elif mid > ccy + 0.15 * row.h:
            bottoms.append((x + cw / 2.0, float(cw), float(ch)))
    # the two halves are stacked: one above the other, not side by side (a unit "m" with a
    # superscript "3" beside it)
    return any(
        abs(tx - bx) < 0.3 * row.gw and 0.6 * row.h <= th + bh <= 1.3 * row.h
        for tx, _, th in tops
        for bx, _, bh in bottoms
    )


def _has_glyph(row: _Row, k: int, glyphs: Sequence[_Glyph]) -> bool:
    """Whether a digit-like shape of the row's polarity and size sits at position ``k``."""
    cx, cy = row.center(k)
    return any(
        g.dark == row.dark
        and abs(g.cx - cx) < 0.3 * row.pitch
        and abs(g.cy - cy) < 0.35 * row.h
        and 0.75 * row.h <= g.h <= 1.3 * row.h
        for g in glyphs
    )


def _score_rows(
    gray: U8, rows: list[_Row], glyphs: Sequence[_Glyph], reader: DigitReader
) -> list[_Row]:
    """Extend each row by confident positions beyond its ends; score; best first.

    A position beyond the detected wheels joins when its window, thresholded on its own,
    holds a whole digit or two stacked half digits of the row's size (:func:`_rolling`: a
    wheel caught mid-roll shows no digit-like shape) and the model reads it with some
    confidence; or when the model reads it with confidence and a digit-like shape of the
    row's size is there; or when the model is nearly certain and the ink is centred. The
    model reads almost anything (a unit sign, a frame edge) as some digit, so confidence
    alone is not enough.
    """
    boxes: list[tuple[int, int, int, int]] = []
    spans: list[tuple[int, int, int]] = []
    for r in rows:
        start = len(boxes)
        ext = max(2, MAX_WHEELS - (r.k[-1] + 1))
        for k in range(-ext, r.k[-1] + 1 + ext):
            boxes.append(_row_box(r, k, 1.6, 1.05, 0.0))
        spans.append((start, len(boxes), ext))
    conf, _ = _confidences(gray, boxes, reader)
    h_max = max(r.h for r in rows)
    for r, (a, b, ext) in zip(rows, spans, strict=True):
        c = conf[a:b]
        n = r.k[-1] + 1
        ks = list(range(n))
        cs = list(c[ext : ext + n])

        def joins(j: int, r: _Row = r, c: F64 = c, a: int = a, ext: int = ext) -> bool:
            if c[j] >= ROLLING_CONFIDENCE and _rolling(gray, r, j - ext):
                return True
            if c[j] < EXTEND_CONFIDENCE:
                return False
            if _has_glyph(r, j - ext, glyphs):
                return True
            return bool(c[j] >= SURE_CONFIDENCE and _ink_centred(gray, boxes[a + j], r.dark))

        for j in range(ext - 1, -1, -1):  # extend left
            if len(ks) >= MAX_WHEELS or not joins(j):
                break
            ks.insert(0, j - ext)
            cs.insert(0, float(c[j]))
        for j in range(ext + n, b - a):  # extend right
            if len(ks) >= MAX_WHEELS or not joins(j):
                break
            ks.append(j - ext)
            cs.append(float(c[j]))
        # an end position the model barely reads is a unit sign or a label, not a wheel
        while len(ks) > MIN_WHEELS and cs[-1] < END_CONFIDENCE and not _rolling(gray, r, ks[-1]):
            ks.pop()
            cs.pop()
        while len(ks) > MIN_WHEELS and cs[0] < END_CONFIDENCE and not _rolling(gray, r, ks[0]):
            ks.pop(0)
            cs.pop(0)
        shift = ks[0]
        r.x0 += shift * r.pitch
        r.yc += r.slope * shift * r.pitch
        r.k = [k - shift for k in ks]
        r.conf = cs
        if len(ks) < MIN_WHEELS:
            r.score = 0.0
            continue
        carr = np.array(cs)
        # confident wheels count; a row of unreadable shapes does not
        r.score = (
            float(np.sum(np.clip((carr - 0.2) / 0.6, 0.0, 1.0)))
            * _spacing_weight(r.pitch / r.h)
            * (r.h / h_max)
            * max(0.0, 1.0 - r.intruders / len(ks))
            # of two lattices over the same wheels, trust the one fitted on more glyphs:
            # a few glyphs of a rolling counter give a poor line
            * (0.9 + 0.1 * min(1.0, r.n_fit / len(ks)))
        )
    return sorted(rows, key=lambda r: -r.score)


def _fit_boxes(gray: U8, row: _Row, reader: DigitReader) -> tuple[list[Box], F64, F64]:
    """Window height, width and offset with the highest mean confidence of the model."""
    grid = [(hk, wk, dy) for hk in BOX_HEIGHTS for wk in (0.95, 1.15) for dy in (-0.08, 0.0, 0.08)]
    boxes = [_row_box(row, k, hk, wk, dy) for hk, wk, dy in grid for k in row.k]
    conf, vals = _confidences(gray, boxes, reader)
    n = len(row.k)
    c = conf.reshape(len(grid), n)
    v = vals.reshape(len(grid), n)
    # mean log-confidence: one unreadable wheel costs more than many slightly better ones
    g = int(np.argmax(np.mean(np.log(np.maximum(c, 1e-3)), axis=1)))
    out = [Box(*b) for b in boxes[g * n : (g + 1) * n]]
    return _no_overlap(out), c[g], v[g]


def _no_overlap(boxes: list[Box]) -> list[Box]:
    out = [boxes[0]]
    for b in boxes[1:]:
        prev = out[-1]
        if b.x < prev.x2:
            cut = (prev.x2 - b.x + 1) // 2
            out[-1] = Box(prev.x, prev.y, max(1, prev.w - cut), prev.h)
            b = Box(out[-1].x2, b.y, max(1, b.x2 - out[-1].x2), b.h)
        out.append(b)
    return out


def _scale_box(b: Box, k: float, w_img: int, h_img: int) -> Box:
    x0 = min(max(0, round(b.x * k)), w_img - 1)
    y0 = min(max(0, round(b.y * k)), h_img - 1)
    x1 = min(w_img, max(x0 + 1, round(b.x2 * k)))
    y1 = min(h_img, max(y0 + 1, round(b.y2 * k)))
    return Box(x0, y0, x1 - x0, y1 - y0)


def _union(boxes: Sequence[Box]) -> Box:
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x2 for b in boxes)
    y1 = max(b.y2 for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)


# ------------------------------------------------------------------------- decimals


def _red_mask(bgr: U8) -> npt.NDArray[np.bool_]:
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[:, :, 0], hsv[:, :, 1], hsv[:, :, 2]
    return np.asarray(((hue <= 10) | (hue >= 165)) & (sat >= 90) & (val >= 60), np.bool_)


def _guess_decimals(bgr: U8, boxes: Sequence[Box]) -> tuple[int, float, F64]:
    """Rightmost wheels that are clearly red while the others are not."""
    red = np.array(
        [float(_red_mask(bgr[b.y : b.y2, b.x : b.x2]).mean()) for b in boxes], np.float64
    )
    n = len(boxes)
    best_k, best_sep = 0, 0.0
    for k in range(1, n):
        left, right = red[: n - k], red[n - k :]
        lo_r, hi_l = float(right.min()), float(left.max())
        if lo_r < 0.04 or lo_r < 2.5 * hi_l + 0.02:
            continue
        sep = (lo_r - hi_l) / lo_r
        if sep > best_sep:
            best_k, best_sep = k, sep
    return best_k, float(best_sep), red


# ------------------------------------------------------------------------- markers


def _suggest_markers(gray: U8, bgr: U8, digits: Sequence[Box]) -> tuple[ScoredBox, ...]:
    """Up to four distinctive, well spread patches outside the counter and red blobs."""
    h_img, w_img = gray.shape
    mask = np.full((h_img, w_img), 255, np.uint8)
    cnt = _union(digits)
    pad = max(4, cnt.h // 2)
    mask[max(0, cnt.y - pad) : cnt.y2 + pad, max(0, cnt.x - pad) : cnt.x2 + pad] = 0
    k = max(3, round(0.015 * min(h_img, w_img)))
    red = _red_mask(bgr).astype(np.uint8)
    blobs = cv2.morphologyEx(red, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    blobs = cv2.dilate(blobs, np.ones((4 * k + 1, 4 * k + 1), np.uint8))
    mask[blobs > 0] = 0
    cands = _corner_patches(gray, mask)
    if not cands:
        return ()
    strength = np.array([_uniqueness(gray, b) for b in cands])
    order = [int(i) for i in np.argsort(-strength) if strength[i] > 0.15]
    chosen: list[int] = []
    diag = math.hypot(w_img, h_img)
    while order and len(chosen) < 4:
        if not chosen:
            chosen.append(order.pop(0))
            continue

        def spread(i: int) -> float:
            ci = np.array(cands[i].center)
            d = min(float(np.linalg.norm(ci - np.array(cands[j].center))) for j in chosen)
            return min(d / (0.35 * diag), 1.0) * float(strength[i])

        nxt = max(order, key=spread)
        if spread(nxt) <= 0.05:
            break
        order.remove(nxt)
        chosen.append(nxt)
    if len(chosen) < 2:
        return ()
    return tuple(ScoredBox(cands[i], float(strength[i])) for i in chosen)


def _uniqueness(gray: U8, b: Box) -> float:
    """1 - the best normalised correlation of the patch at any other place nearby.

    The search area is three patch sizes on each side, wider than the one-patch check of
    aligner's automatic patches, so repeated print (digits on a dial) scores low.
    """
    h_img, w_img = gray.shape
    x0, y0 = max(0, b.x - 3 * b.w), max(0, b.y - 3 * b.h)
    x1, y1 = min(w_img, b.x2 + 3 * b.w), min(h_img, b.y2 + 3 * b.h)
    tmpl = gray[b.y : b.y2, b.x : b.x2]
    if float(tmpl.std()) < 8.0:
        return 0.0
    res = cv2.matchTemplate(gray[y0:y1, x0:x1], tmpl, cv2.TM_CCOEFF_NORMED)
    cx, cy = b.x - x0, b.y - y0
    r = max(2, b.w // 6)
    res[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1] = -1.0
    return float(np.clip(1.0 - res.max(), 0.0, 1.0))


def _corner_patches(gray: U8, mask: U8) -> list[Box]:
    """The strongest corner patch of each cell of a 4x3 grid, where ``mask`` allows
    (:func:`gridlens.meter._align_match.grid_corners`, with larger patches than the
    aligner's)."""
    h, w = gray.shape
    p = int(np.clip(round(0.06 * max(w, h)), 20, 96))
    return [c[0] for c in grid_corners(gray, mask, patch=p, border=p, per_cell=1) if c]
