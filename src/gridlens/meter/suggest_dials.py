"""Proposing the pointer dials of a meter photo: circles that hold a readable pointer.

:func:`suggest_dials` looks for dial rings with a Hough circle search at the scales a dial
has on a meter photo (a radius of 3-16 % of the photo's shorter side), keeps the circles
whose crop the needle reader (:mod:`gridlens.meter.dials`; the CNN's confidence includes its
P(dial)) reads with confidence *and steadily* (the same pointer direction in the crop moved
by 5 % and resized by 10 %), whose rim carries print, drops circles that overlap a better one
or a wheel window, and gives each a factor:

- next to wheels (a water or gas meter), the dials continue the wheels: the first is worth a
  tenth of the last wheel. They are numbered from the right (the x0.1 dial rightmost, as on
  most water meters); a person checks the order on the photo, where the labels are printed;
- without wheels (an electricity clock-dial register), the leftmost dial is the largest and
  the rightmost is worth 1; the rightmost turns clockwise and the others alternate.

The proposal is a starting point for the setup page, where every dial can be moved, resized,
removed, and its factor and direction changed. Measured (not held out: these are the photos
it was developed on): the reference photos of wmsc (its 4 dials, in the right order) and
laurynas (its 1 dial), 5 synthetic water meters (all 4 dials, none false), 5 wheel-only
meters (no dial proposed); registers: the dials are found but boxed at their inner ring.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.meter.dials import DialRead, needle_model, read_dials

__all__ = ["suggest_dials"]

U8 = npt.NDArray[np.uint8]

#: Most dials proposed.
MAX_PROPOSED = 6
#: Needle confidence x dial print score a circle needs to be proposed as a dial.
MIN_SCORE = 0.8


_SHAKE = ((0.0, 0.0, 1.0), (0.05, 0.0, 1.0), (-0.05, 0.0, 1.0), (0.0, 0.05, 1.0),
          (0.0, -0.05, 1.0), (0.0, 0.0, 0.9), (0.0, 0.0, 1.1))  # fmt: skip
"""Crops read per candidate: as found, moved by 5 % of its side, 10 % smaller and larger."""


def _shaken(img: U8, x: float, y: float, side: float) -> list[U8] | None:
    h, w = img.shape[:2]
    out = []
    for dx, dy, k in _SHAKE:
        sd = side * k
        x0, y0 = round(x + dx * side - sd / 2), round(y + dy * side - sd / 2)
        x1, y1 = x0 + round(sd), y0 + round(sd)
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            return None
        out.append(np.ascontiguousarray(img[y0:y1, x0:x1]))
    return out


def _steady(reads: list[DialRead]) -> float:
    """1 when the pointer reads the same in slightly moved and resized crops (a dial), 0
    when it jumps (print, texture, a circle that is not a dial)."""
    angles = [math.radians(r.angle_deg) for r in reads]
    c = float(np.mean(np.cos(angles)))
    s = float(np.mean(np.sin(angles)))
    spread = math.degrees(math.sqrt(max(0.0, -2.0 * math.log(max(math.hypot(c, s), 1e-9)))))
    conf = float(np.median([r.confidence for r in reads]))
    return min(1.0, max(0.0, (15.0 - spread) / 10.0)) * min(1.0, conf / 0.6)


def _dialness(crop: U8) -> float:
    """How much ``crop`` looks like a dial face: a plain disc with print (numbers, ticks)
    all the way round its rim. 0..1: the share of 12 rim sectors with print in them."""
    small = cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    rho = np.hypot(xx - 23.5, yy - 23.5) / 22.8  # ~1 at the ring
    rim = (rho > 0.55) & (rho < 0.98)
    face = np.median(lab[(rho < 0.98)], axis=0)
    ink = np.sqrt(((lab - face) ** 2).sum(axis=2)) > 30.0
    sector = ((np.arctan2(xx - 23.5, 23.5 - yy) + math.pi) / (2 * math.pi) * 12).astype(int) % 12
    covered = 0
    for k in range(12):
        cell = rim & (sector == k)
        frac = float(ink[cell].mean()) if cell.any() else 0.0
        covered += 0.04 <= frac <= 0.7  # some print, not a solid area
    plain = float((~ink[rho < 0.98]).mean())  # most of a dial is its face
    return covered / 12.0 * min(1.0, plain / 0.5)


def _overlaps(a: tuple[float, float, float], b: dict[str, int]) -> bool:
    x, y, r = a
    return not (
        x + r < b["x"] or x - r > b["x"] + b["w"] or y + r < b["y"] or y - r > b["y"] + b["h"]
    )


def suggest_dials(
    img: U8, digits: list[dict[str, int]] | None = None, decimals: int = 0
) -> list[dict[str, Any]]:
    """Dial boxes (``x, y, w, h, factor, direction``) proposed on a BGR photo.

    Parameters
    ----------
    img : numpy.ndarray
        The photo (BGR uint8), in the pixels the boxes are given in.
    digits : list of dict, optional
        The wheel boxes already found (dials never overlap them).
    decimals : int
        The wheels' decimals (the first dial is worth ``10**-(decimals + 1)``).

    Returns
    -------
    list of dict
        Largest factor first; empty when no circle holds a readable pointer.
    """
    digits = digits or []
    h, w = img.shape[:2]
    short = min(h, w)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    gray = cv2.GaussianBlur(gray, (5, 5), 1.5)
    circles = cv2.HoughCircles(
        gray,
        cv2.HOUGH_GRADIENT,
        dp=1.5,
        minDist=max(8, int(short * 0.05)),
        param1=110,
        param2=30,
        minRadius=max(6, int(short * 0.03)),
        maxRadius=int(short * 0.16),
    )
    if circles is None:
        return []
    cands: list[tuple[int, float, float, float]] = []  # rank, x, y, r
    crops: list[U8] = []
    for rank, (x, y, r) in enumerate(circles[0][:150]):
        x, y, r = float(x), float(y), float(r)
        if any(_overlaps((x, y, r), d) for d in digits):
            continue
        shaken = _shaken(img, x, y, 2.1 * r)
        if shaken is None:
            continue
        cands.append((rank, x, y, r))
        crops.extend(shaken)
    reads = read_dials(crops) if crops else []  # one batch through the needle reader
    geometric = needle_model() is None
    k = len(_SHAKE)
    scored: list[tuple[float, int, float, float, float]] = []  # score, rank, x, y, r
    for i, (rank, x, y, r) in enumerate(cands):
        mine = reads[i * k : (i + 1) * k]
        score = mine[0].confidence * _steady(mine)
        score *= _dialness(crops[i * k]) ** (0.5 if not geometric else 1.0)
        if score >= MIN_SCORE:  # ties go to the stronger circle (Hough lists it first)
            scored.append((round(score, 1), rank, x, y, r))
    found: list[tuple[float, float, float, float]] = []  # x, y, r, score
    for score, _, x, y, r in sorted(scored, key=lambda t: (-t[0], t[1])):
        if any(math.hypot(x - fx, y - fy) < 0.9 * (r + fr) for fx, fy, fr, _ in found):
            continue  # overlaps a better circle
        found.append((x, y, r, score))
        if len(found) >= MAX_PROPOSED:
            break
    if not found:
        return []
    # dials on one meter have about the same size: keep those near the median radius
    med = float(np.median([f[2] for f in found]))
    found = [f for f in found if 0.7 * med <= f[2] <= 1.4 * med]
    boxes: list[dict[str, Any]] = []
    for x, y, r, _ in found:
        side = round(2.1 * r)
        boxes.append({"x": round(x - side / 2), "y": round(y - side / 2),
                      "w": side, "h": side})  # fmt: skip
    if digits:  # water / gas meter: the dials continue the wheels, x0.1 rightmost
        boxes.sort(key=lambda b: -b["x"])
        for k, b in enumerate(boxes):
            b["factor"] = float(f"{10.0 ** -(decimals + 1 + k):.12g}")
            b["direction"] = "cw"
    else:  # clock-dial register: the leftmost is the largest, the rightmost 1, alternating
        boxes.sort(key=lambda b: b["x"])
        n = len(boxes)
        for k, b in enumerate(boxes):
            b["factor"] = float(10 ** (n - 1 - k))
            b["direction"] = "cw" if (n - 1 - k) % 2 == 0 else "ccw"
    return boxes
