"""Refine hand-drawn digit boxes against the reference photo.

A wheel's reading moves with where its box is drawn: a box 15 % of its height too low shows
the digit higher in the crop, which the digit model reads as a wheel rolled on by about 0.1.
People draw boxes around the wheel *window*, off-centre or too big by a fair margin, so the
boxes are refined once, when the ROI is saved, and the refined boxes are what the reader
uses (and what the setup page shows and lets a person edit).

The refinement uses two facts about a register:

1. **The wheels sit in one row.** They turn on one axle behind one window, so their box
   centres lie on a straight line in the reference photo and the boxes have one size. Boxes
   drawn one by one, each a little off, are put back on the robust (Theil-Sen) line through
   their centres, at the median size. With fewer than three boxes this step is skipped.
2. **The digits have one size.** The boxes are centred horizontally on the digits' ink and
   sized so that the ink fills 60 % of their height (:data:`_INK_TARGET`), whatever size
   they were drawn (within 0.75-1.33 times).
3. **The higher wheels stand on their digits.** Only the rightmost wheel turns
   continuously; a higher wheel rests on a whole digit except during a carry. So the boxes
   are right where the digit model reads the higher wheels as whole digits, with high
   confidence. One vertical shift common to all boxes is searched on a grid
   (dy +-30 % of the box height, coarse, then fine, and then +-6 % per standing wheel),
   scoring each candidate by

       J = mean over the higher wheels of  confidence x exp(-(d / 0.1)^2)

   where d is the wheel's distance to its nearest whole digit [digits]. A wheel caught in a
   carry in the reference scores low wherever the boxes are, so it cannot pull the others.
   A small prior keeps the boxes where they were drawn when the score is flat.

The rightmost wheel takes the common shift too: its own reading cannot tell a rolled wheel
from a misplaced box, which is why it is never used to place itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import ParameterError
from gridlens.meter.data import preprocess
from gridlens.meter.model import DigitReader, load_reader
from gridlens.meter.roi import Box, MeterROI

__all__ = ["Refinement", "refine_boxes"]

U8 = npt.NDArray[np.uint8]

_DY = np.linspace(-0.30, 0.30, 13)  # coarse vertical shifts [box heights]
_DY_FINE = np.linspace(-0.04, 0.04, 9)
#: Digit-ink height over box height that every refined box gets. In the digit model's
#: training crops (653 whole-digit crops of meter-digits) it is 0.53-0.81 (10th-90th
#: percentile, median 0.67); 0.6 leaves room for mid-roll digits, which a tight box cuts.
#: One target for every start is what makes the refined boxes, and so the reading, the same
#: however big the boxes were drawn.
_INK_TARGET = 0.6
_SIGMA = 0.1  # digits: how close to a whole digit a standing wheel reads
_PRIOR = 0.05  # score lost per box height of shift (keeps boxes put when J is flat)


@dataclass(frozen=True)
class Refinement:
    """The outcome of :func:`refine_boxes`.

    Attributes
    ----------
    roi : MeterROI
        The ROI with the refined digit boxes and ``refined=True``.
    shift_px : (float, float)
        The common shift (dx, dy) applied after the row fit. [reference pixels]
    scale : float
        The common scale applied to the box size.
    score_before, score_after : float
        J of the boxes as drawn and as refined (0..1; 1 = every higher wheel read as a whole
        digit with full confidence).
    moved_px : list of float
        How far each box's centre moved. [reference pixels]
    """

    roi: MeterROI
    shift_px: tuple[float, float]
    scale: float
    score_before: float
    score_after: float
    moved_px: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shift_px": [round(self.shift_px[0], 1), round(self.shift_px[1], 1)],
            "scale": round(self.scale, 3),
            "score_before": round(self.score_before, 4),
            "score_after": round(self.score_after, 4),
            "moved_px": [round(m, 1) for m in self.moved_px],
        }


def _gray(img: U8) -> U8:
    if img.ndim == 3:
        return np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), np.uint8)
    return img


def _line(xs: npt.ArrayLike, ys: npt.ArrayLike) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line through the points: the median of the
    pairwise slopes, then the median intercept. Robust to a box or two drawn far off."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    pairs = [
        (y[j] - y[i]) / (x[j] - x[i])
        for i in range(len(x))
        for j in range(i + 1, len(x))
        if x[j] - x[i] > 1e-6
    ]
    slope = float(np.median(pairs)) if pairs else 0.0
    return slope, float(np.median(y - slope * x))


def _row_fit(boxes: Sequence[Box]) -> list[tuple[float, float, float, float]]:
    """Boxes as (cx, cy, w, h), put on one line at the median size (3+ boxes)."""
    cx = np.array([b.x + b.w / 2.0 for b in boxes])
    cy = np.array([b.y + b.h / 2.0 for b in boxes])
    w = np.array([b.w for b in boxes], float)
    h = np.array([b.h for b in boxes], float)
    if len(boxes) < 3:
        return [
            (float(a), float(b), float(c), float(d))
            for a, b, c, d in zip(cx, cy, w, h, strict=True)
        ]
    slope, icpt = _line(cx, cy)
    wm, hm = float(np.median(w)), float(np.median(h))
    return [(float(x), icpt + slope * float(x), wm, hm) for x in cx]


def _box(cx: float, cy: float, w: float, h: float) -> Box:
    wi, hi = max(4, round(w)), max(4, round(h))
    return Box(round(cx - wi / 2.0), round(cy - hi / 2.0), wi, hi)


def _ink(gray: U8, boxes: Sequence[Box]) -> tuple[float, float | None]:
    """(shift [box widths] that centres the boxes on their digits' ink, ink height / box
    height), both medians over the boxes.

    Each box is widened by half its width on both sides and split by Otsu's threshold; the
    ink is the darker or lighter class, whichever is the minority in the box's middle. The
    ink's connected components that cover the middle third of the box height and are no
    wider than the box (not separators, frames or neighbours) give the digit's horizontal
    centre. Boxes where none is found do not vote.
    """
    hgt, wid = gray.shape
    votes: list[float] = []
    heights: list[float] = []
    for b in boxes:
        x0, x1 = max(0, b.x - b.w // 2), min(wid, b.x2 + b.w // 2)
        y0, y1 = max(0, b.y), min(hgt, b.y2)
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        patch = cv2.GaussianBlur(gray[y0:y1, x0:x1], (3, 3), 0)
        _, bw = cv2.threshold(patch, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        mid = bw[:, b.x - x0 : b.x2 - x0]
        ink = np.ascontiguousarray(bw if float(np.mean(mid > 0)) < 0.5 else 255 - bw, np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
        h = y1 - y0
        xs: list[tuple[float, float]] = []
        for i in range(1, n):
            cx, cy, cw, ch, area = stats[i]
            if ch < 0.3 * h or cw > b.w or cw < 2 or area < 0.02 * b.w * h:
                continue
            if cy > h * 2 / 3 or cy + ch < h / 3:  # must cross the middle third
                continue
            xs.append((x0 + cx + cw / 2.0, ch / h))
        if not xs:
            continue
        centre = b.x + b.w / 2.0
        near = min(xs, key=lambda t: abs(t[0] - centre))
        votes.append((near[0] - centre) / b.w)
        heights.append(near[1])
    if not votes:
        return 0.0, None
    return float(np.clip(np.median(votes), -0.3, 0.3)), float(np.median(heights))


class _Scorer:
    """Scores sets of boxes on one gray reference image with the digit model."""

    def __init__(self, gray: U8, model: DigitReader, n: int) -> None:
        self.gray = gray
        self.model = model
        # the wheels that stand on whole digits: all but the rightmost (all if only one)
        self.standing = list(range(n - 1)) if n > 1 else [0]

    def scores(self, candidates: list[list[Box]]) -> tuple[npt.NDArray[np.float64], ...]:
        """(J over the standing wheels, mean confidence over all wheels) per candidate."""
        h, w = self.gray.shape
        ok = [all(b.inside(w, h) for b in c) for c in candidates]
        crops = [
            preprocess(self.gray[b.y : b.y2, b.x : b.x2])
            for c, good in zip(candidates, ok, strict=True)
            if good
            for b in c
        ]
        j_out = np.full(len(candidates), -np.inf)
        c_out = np.full(len(candidates), -np.inf)
        if not crops:
            return j_out, c_out
        probs = self.model.probabilities(np.stack(crops))
        pos = self.model.continuous(probs).reshape(-1, len(candidates[0]))
        conf = self.model.decode(probs)[1].reshape(pos.shape)
        d = np.abs(pos - np.round(pos))[:, self.standing]
        j = (conf[:, self.standing] * np.exp(-((d / _SIGMA) ** 2))).mean(axis=1)
        j_out[np.flatnonzero(ok)] = j
        c_out[np.flatnonzero(ok)] = conf.mean(axis=1)
        return j_out, c_out


def _per_box(scorer: _Scorer, boxes: list[Box], cx: Sequence[float]) -> list[Box]:
    """Tune each standing wheel's box vertically (+-6 % of its height) to read a whole digit,
    then put the rightmost box on the line through the standing ones (it may be rolling)."""
    n = len(boxes)
    if n < 3:
        return boxes
    out = list(boxes)
    steps = np.linspace(-0.06, 0.06, 7)
    for k in scorer.standing:
        b = boxes[k]
        cands = [[*out[:k], replace(b, y=b.y + round(f * b.h)), *out[k + 1 :]] for f in steps]
        j, _ = scorer.scores(cands)
        # only this box changes between candidates, so J ranks its own reading
        j = j - _PRIOR * np.abs(steps)
        out[k] = cands[int(np.argmax(j))][k]
    slope, icpt = _line(cx[:-1], [b.y + b.h / 2.0 for b in out[:-1]])
    last = out[-1]
    out[-1] = replace(last, y=round(icpt + slope * cx[-1] - last.h / 2.0))
    return out


def refine_boxes(
    reference: U8,
    roi: MeterROI,
    *,
    model: DigitReader | None = None,
) -> Refinement:
    """Refine the digit boxes of ``roi`` on its reference photo (see the module docstring).

    Parameters
    ----------
    reference : numpy.ndarray
        The reference photo (BGR or gray) that the boxes refer to.
    roi : MeterROI
        The ROI as drawn.
    model : DigitReader, optional
        The digit model (default: the shipped one).

    Returns
    -------
    Refinement
        The refined ROI (``refined=True``) and what moved.

    Raises
    ------
    ParameterError
        A digit box lies outside the reference photo.
    """
    gray = _gray(np.asarray(reference))
    hgt, wid = gray.shape[:2]
    roi.check_inside(wid, hgt)
    model = model or load_reader()
    scorer = _Scorer(gray, model, roi.n_digits)
    row = _row_fit(roi.digits)

    gaps = np.diff([r[0] for r in row])
    max_w = float(gaps.min()) - 1.0 if gaps.size else np.inf  # boxes must not overlap

    def boxes(dx: float, dy: float, s: float) -> list[Box]:
        return [_box(cx + dx * w, cy + dy * h, min(w * s, max_w), h * s) for cx, cy, w, h in row]

    def prior(dx: float, dy: float, s: float) -> float:
        return _PRIOR * (abs(dy) + abs(dx) + abs(float(np.log(s))))

    def best(grid: list[tuple[float, float, float]], use_conf: bool) -> tuple[int, float]:
        j, c = scorer.scores([boxes(*g) for g in grid])
        score = (j + c if use_conf else j) - np.array([prior(*g) for g in grid])
        k = int(np.argmax(score))
        return k, float(score[k])

    before = float(scorer.scores([list(roi.digits)])[0][0])
    # 1. vertical: the standing wheels read whole digits
    grid = [(0.0, float(dy), 1.0) for dy in _DY]
    dy0 = grid[best(grid, False)[0]][1]
    # 2. horizontal and size: centre the digits' ink in the boxes (one shift for all), and
    #    size the boxes so the digit ink fills _INK_TARGET of their height
    dx0, ink_h = _ink(gray, boxes(0.0, dy0, 1.0))
    s0 = 1.0 if ink_h is None else float(np.clip(ink_h / _INK_TARGET, 0.75, 1.33))
    # 3. fine vertical: the standing wheels read whole digits
    grid = [(dx0, dy0 + float(f), s0) for f in _DY_FINE]
    k, top = best(grid, False)
    if not np.isfinite(top):
        raise ParameterError(
            "the digit boxes cannot be refined: every candidate reaches outside the reference "
            "photo; draw the boxes around the wheel windows"
        )
    dx, dy, s = grid[k]
    new = _per_box(scorer, boxes(dx, dy, s), [r[0] for r in row])
    after = float(scorer.scores([new])[0][0])
    moved = [
        float(np.hypot(a.x + a.w / 2 - b.x - b.w / 2, a.y + a.h / 2 - b.y - b.h / 2))
        for a, b in zip(new, roi.digits, strict=True)
    ]
    hm = float(np.median([b.h for b in roi.digits]))
    wm = float(np.median([b.w for b in roi.digits]))
    refined = replace(roi, digits=tuple(new), refined=True)
    return Refinement(refined, (dx * wm, dy * hm), s, before, after, moved)
