"""Synthetic pointer dials: single dial crops and the styles and drawing of a dial.

No licensed photos of pointer dials exist in numbers, so the needle reader is trained, tested
and benchmarked on these renders, with a known position for every pointer. Whole meters with
dials (water meters, clock-dial registers) are in :mod:`gridlens.meter.synth_dial_meters`,
which draws its dials with this module.

**Angles.** A dial's position ``value`` is in divisions, 0 <= value < 10. Angles are in
degrees, measured clockwise from 12 o'clock in the upright dial (image y grows down).
``zero_deg`` is where the 0 mark sits (0 = 12 o'clock). A ``"cw"`` dial points at
``zero_deg + 36 * value``, a ``"ccw"`` dial at ``zero_deg - 36 * value``; its numerals are
printed the same way round, so a ccw dial is numbered anticlockwise.

**Crops** (:func:`render_dial_crop`, :func:`dial_dataset`). One dial in a square crop with a
random :class:`DialStyle` (face, numerals, ticks, ring, needle colour and shape, hub) and
random camera effects: the dial off-centre in the crop, tilt (the ring becomes an ellipse),
a small rotation, neighbouring dials and labels at the edges, shadow, glare, blur, lighting,
noise and JPEG. The dial is drawn at twice the crop size with sub-pixel precision and warped
down in one step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import check_param
from gridlens.meter.synth import (
    _FONTS,
    _NOISE_PAD,
    _glyph_metrics,
    _jpeg_roundtrip,
    _noise_bank,
    _text,
    _thickness,
)

__all__ = [
    "DIAL_PRESETS",
    "MAX_DATASET_BYTES",
    "NEEDLE_SHAPES",
    "DialStyle",
    "dial_dataset",
    "render_dial_crop",
]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Seed = int | np.random.Generator | None
BGR = tuple[int, int, int]
Direction = Literal["cw", "ccw"]
_Px = Callable[[float, float], tuple[int, int]]
_Sc = Callable[[float], int]

#: Needle shapes: ``"arrow"`` (shaft and arrowhead), ``"wedge"`` (a big hub disk drawn out
#: into a triangle, as on the ZR MAP16 water meter) and ``"line"`` (a thin tapered line with
#: a counterweight tail, as on clock-dial registers).
NEEDLE_SHAPES = ("arrow", "wedge", "line")
#: Names of :meth:`DialStyle.preset`.
DIAL_PRESETS = ("wmsc", "laurynas", "register")
#: Dial factors of a water meter with four dials [m³ per division].

#: Largest image array :func:`dial_dataset` returns at once [bytes].
MAX_DATASET_BYTES = 1 << 30
_SHIFT = 4  # sub-pixel bits of OpenCV drawing
_BLOCK = 256  # crops per random stream in dial_dataset
_ONE = float(1 << _SHIFT)
_RED_INK = (40, 40, 185)
_WEIGHTS = (0.09, 0.11, 0.13, 0.15)  # a few, so that glyph metrics stay cached


def _reddish(c: BGR) -> bool:
    return c[2] > 120 and c[2] - max(c[0], c[1]) > 60


@dataclass(frozen=True)
class DialStyle:
    """How one dial is printed. Lengths are fractions of the dial radius ``r``.

    Attributes
    ----------
    face : (int, int, int)
        BGR colour of the dial face.
    plate : (int, int, int)
        BGR colour of the plate around the dial (seen in the crop's corners).
    ink : (int, int, int)
        BGR colour of the numerals, ticks and ring.
    needle : (int, int, int)
        BGR colour of the needle.
    hub : (int, int, int)
        BGR colour of the hub disk.
    shape : str
        One of :data:`NEEDLE_SHAPES`.
    layout : str
        ``"inner"``: ring and ticks at the rim, numerals inside them (water meters);
        ``"outer"``: a smaller tick circle with the numerals outside it (registers).
    numerals : bool
        Whether the numerals 0-9 are printed.
    ring : bool
        Whether the tick circle is drawn as a ring.
    ticks : int
        Number of tick marks around (0, 10, 20, 50 or 100); every division is a long tick.
    font : int
        OpenCV Hershey font of the numerals.
    weight : float
        Numeral stroke width relative to their height (0 = the light weight).
    numeral_height, numeral_radius : float
        Numeral ink height and the radius of their centres. [r]
    ring_radius : float
        Radius of the ring / tick circle. [r]
    needle_length : float
        Needle tip distance from the centre. [r]
    needle_width : float
        Half width: of the wedge base, the arrow shaft or the line at the hub. [r]
    hub_radius : float
        Hub disk radius. [r]
    tail : float
        Length of the needle behind the centre (counterweight side). [r]
    shadow : bool
        Whether the needle casts a small shadow on the face.
    """

    face: BGR
    plate: BGR
    ink: BGR
    needle: BGR
    hub: BGR
    shape: str
    layout: str
    numerals: bool
    ring: bool
    ticks: int
    font: int
    weight: float
    numeral_height: float
    numeral_radius: float
    ring_radius: float
    needle_length: float
    needle_width: float
    hub_radius: float
    tail: float
    shadow: bool

    @classmethod
    def random(cls, seed: Seed = None) -> DialStyle:
        """Draw a random style: white, cream or black-ish face; black, red or white ink
        (numerals sometimes absent); a needle that contrasts with the face (red or black on a
        light face, white or red on a dark one); any of the three shapes.
        """
        rng = np.random.default_rng(seed)

        def jit(c: Sequence[float], d: float = 8.0) -> BGR:
            v = np.clip(np.asarray(c, dtype=np.float64) + rng.normal(0, d, 3), 0, 255)
            return (int(v[0]), int(v[1]), int(v[2]))

        kind = str(rng.choice(["white", "cream", "dark"], p=[0.55, 0.25, 0.2]))
        if kind == "white":
            face = jit([rng.uniform(222, 250)] * 3, 4)
        elif kind == "cream":
            face = jit([rng.uniform(165, 200), rng.uniform(212, 232), rng.uniform(225, 245)], 4)
        else:
            face = jit([rng.uniform(18, 50)] * 3, 4)
        light = kind != "dark"
        red_r = rng.uniform(165, 235) if light else rng.uniform(195, 245)  # bright on dark
        red = jit([rng.uniform(25, 75), rng.uniform(25, 70), red_r], 6)
        if light:
            ink = jit(_RED_INK, 10) if rng.random() < 0.22 else jit([rng.uniform(15, 60)] * 3, 4)
            needle = red if rng.random() < 0.62 else jit([rng.uniform(15, 50)] * 3, 4)
        else:
            ink = jit([rng.uniform(205, 245)] * 3, 4)
            needle = jit([rng.uniform(215, 250)] * 3, 4) if rng.random() < 0.55 else red
        # numerals of the needle's colour (red on red, as on laurynas) are thinner and smaller
        same = (_reddish(ink) and _reddish(needle)) or (min(ink) > 180 and min(needle) > 180)
        plate = face if rng.random() < 0.6 else jit([rng.uniform(40, 235)] * 3, 10)
        shape = str(rng.choice(NEEDLE_SHAPES, p=[0.3, 0.4, 0.3]))
        layout = "inner" if rng.random() < 0.7 else "outer"
        if layout == "inner":
            ring_radius = float(rng.uniform(0.96, 1.0))
            nh = float(rng.uniform(0.19, 0.24 if same else 0.33))
            nr = float(rng.uniform(0.58, 0.68)) - 0.6 * (nh - 0.19)
            length = float(rng.uniform(0.72, 0.95))
        else:
            ring_radius = float(rng.uniform(0.58, 0.68))
            nh = float(rng.uniform(0.17, 0.23))
            nr = float(rng.uniform(0.84, 0.88))
            length = ring_radius * float(rng.uniform(0.92, 1.12))
        if shape == "wedge":  # the hub stays clear of the numerals
            free = nr - nh / 2 - 0.05 if layout == "inner" else 0.8 * ring_radius
            hub_r = min(float(rng.uniform(0.2, 0.42)) * min(1.0, length / 0.8), free)
            width = hub_r * float(rng.uniform(0.45, 0.85))
            tail = 0.0
        elif shape == "arrow":
            hub_r = float(rng.uniform(0.06, 0.15))
            width = float(rng.uniform(0.025, 0.05))
            tail = length * float(rng.uniform(0.0, 0.3))
        else:  # the counterweight side is clearly the shorter one
            hub_r = float(rng.uniform(0.06, 0.14))
            width = float(rng.uniform(0.028, 0.055))
            tail = length * float(rng.uniform(0.2, 0.4))
        if shape == "wedge" or rng.random() < 0.6:
            hub = needle
        else:
            hub = jit([rng.uniform(40, 140)] * 3, 4)
        return cls(
            face=face,
            plate=plate,
            ink=ink,
            needle=needle,
            hub=hub,
            shape=shape,
            layout=layout,
            numerals=bool(rng.random() < 0.88),
            ring=bool(rng.random() < (0.85 if layout == "inner" else 0.7)),
            ticks=int(rng.choice([0, 10, 20, 50, 100], p=[0.12, 0.45, 0.18, 0.17, 0.08])),
            font=int(_FONTS[int(rng.integers(len(_FONTS)))]),
            weight=_WEIGHTS[0] if same else float(rng.choice(_WEIGHTS)),
            numeral_height=nh,
            numeral_radius=nr,
            ring_radius=ring_radius,
            needle_length=length,
            needle_width=width,
            hub_radius=hub_r,
            tail=tail,
            shadow=bool(rng.random() < 0.4),
        )

    @classmethod
    def preset(cls, name: str) -> DialStyle:
        """The print of a known meter: ``"wmsc"`` (ZR MAP16: red wedge with a big hub, black
        numerals, ten long ticks), ``"laurynas"`` (red numerals, ring and thin pointer with a
        big hub, as on the Invena meter) or ``"register"`` (black line pointer with a
        counterweight, numerals outside a tick circle).
        """
        check_param(name in DIAL_PRESETS, "name", "DialStyle.preset", str(DIAL_PRESETS), name)
        white: BGR = (242, 242, 240)
        common: dict[str, Any] = {
            "face": white,
            "plate": white,
            "font": int(cv2.FONT_HERSHEY_SIMPLEX),
            "shadow": False,
            "ring": True,
            "numerals": True,
        }
        if name == "wmsc":
            return cls(
                **common,
                ink=(35, 35, 35),
                needle=(70, 55, 220),
                hub=(70, 55, 220),
                shape="wedge",
                layout="inner",
                ticks=10,
                weight=0.13,
                numeral_height=0.3,
                numeral_radius=0.6,
                ring_radius=1.0,
                needle_length=0.92,
                needle_width=0.22,
                hub_radius=0.36,
                tail=0.0,
            )
        if name == "laurynas":
            return cls(
                **common,
                ink=(60, 50, 190),
                needle=(50, 45, 200),
                hub=(50, 45, 200),
                shape="line",
                layout="inner",
                ticks=20,
                weight=0.09,
                numeral_height=0.22,
                numeral_radius=0.7,
                ring_radius=1.0,
                needle_length=0.98,
                needle_width=0.045,
                hub_radius=0.3,
                tail=0.0,
            )
        return cls(
            **common,
            ink=(25, 25, 25),
            needle=(25, 25, 25),
            hub=(25, 25, 25),
            shape="line",
            layout="outer",
            ticks=10,
            weight=0.11,
            numeral_height=0.23,
            numeral_radius=0.86,
            ring_radius=0.62,
            needle_length=0.64,
            needle_width=0.035,
            hub_radius=0.1,
            tail=0.2,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (colours as [b, g, r] lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# Public functions


def render_dial_crop(
    value: float,
    *,
    size: int = 64,
    style: DialStyle | None = None,
    seed: Seed = None,
    direction: str = "cw",
    zero_deg: float = 0.0,
    offset_frac: float = 0.15,
    perspective: float = 0.5,
    rotation_deg: float = 2.0,
    glare: float = 0.5,
    blur: float = 0.9,
    noise: float = 0.03,
) -> tuple[U8, dict[str, Any]]:
    """Render one pointer dial in a square crop, with a random style and camera effects.

    Parameters
    ----------
    value : float
        Pointer position in divisions, 0 <= value < 10 (0 at ``zero_deg``, increasing in
        ``direction``).
    size : int
        Crop width and height, 16-512. [px]
    style : DialStyle, optional
        The dial's print; random (from ``seed``) when None.
    seed : int, Generator or None
        Randomness of style and effects; the same seed gives the same crop.
    direction : str
        ``"cw"`` or ``"ccw"``: the sense in which the value (and the numbering) increases.
    zero_deg : float
        Where 0 sits, clockwise from 12 o'clock. [degrees]
    offset_frac : float
        Largest offset of the dial centre from the crop centre, 0-0.3. [fraction of size]
    perspective : float
        0-1: the dial plane is tilted by up to ``perspective`` x 35 degrees, so the ring is
        seen as an ellipse.
    rotation_deg : float
        Largest in-plane rotation of the whole dial, 0-10 (it shifts the apparent position
        by up to rotation_deg / 36 divisions). [degrees]
    glare : float
        0-1: strength of an occasional glare blob.
    blur : float
        Largest Gaussian blur sigma, 0-5. [px]
    noise : float
        Largest noise standard deviation, 0-0.5. [fraction of full scale]

    Returns
    -------
    (numpy.ndarray, dict)
        The BGR ``uint8`` crop (size x size x 3) and its truth: ``value``, ``direction``,
        ``zero_deg``, ``center`` (x, y) of the pivot in crop pixels (pixel centres at
        integers), ``radius`` r of the dial's rim in crop pixels (the square root of the
        ellipse's semi-axes' product; the ring of an ``"inner"`` dial, the numerals' outer
        edge of an ``"outer"`` one, whose ring is at ``style["ring_radius"]`` x r), ``tip``
        (x, y) of the needle tip, ``rotation_deg`` (the in-plane rotation applied, clockwise;
        the value is in the dial's own frame) and ``style`` (:meth:`DialStyle.to_dict`).
    """
    owner = "render_dial_crop"
    _check_value(value, owner)
    check_param(
        isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 512,
        "size",
        owner,
        "an int in [16, 512]",
        size,
    )
    check_param(
        style is None or isinstance(style, DialStyle), "style", owner, "a DialStyle or None", style
    )
    _check_direction(direction, owner)
    _check_angle(zero_deg, "zero_deg", owner)
    for name, val, hi in (
        ("offset_frac", offset_frac, 0.3),
        ("perspective", perspective, 1.0),
        ("rotation_deg", rotation_deg, 10.0),
        ("glare", glare, 1.0),
        ("blur", blur, 5.0),
        ("noise", noise, 0.5),
    ):
        check_param(
            isinstance(val, int | float) and not isinstance(val, bool) and 0.0 <= val <= hi,
            name,
            owner,
            f"a number in [0, {hi}]",
            val,
        )
    rng = np.random.default_rng(seed)
    st = style if style is not None else DialStyle.random(rng)
    return _crop(
        rng,
        float(value),
        size,
        st,
        direction,
        float(zero_deg),
        offset_frac,
        perspective,
        rotation_deg,
        glare,
        blur,
        noise,
    )


def dial_dataset(
    n: int,
    *,
    size: int = 64,
    seed: Seed = 0,
    ccw_frac: float = 0.2,
    workers: int = 1,
) -> tuple[U8, F32]:
    """A batch of random dial crops with their positions, for training and evaluation.

    Each crop has its own random style, direction (``"ccw"`` with probability ``ccw_frac``),
    and effects as in :func:`render_dial_crop` with its defaults; ``zero_deg`` is 0. The
    labels are the needle's angle clockwise from 12 o'clock in divisions (angle / 36 deg),
    uniform in [0, 10): the position of a clockwise dial. An anticlockwise dial (numbered
    anticlockwise, for variety) with label v shows the position (10 - v) mod 10, so one
    label means one needle angle whatever the numbering; a reader applies ``direction``
    and ``zero_deg`` afterwards. The crops are made in blocks of 256, each with its own random
    stream drawn from ``seed``, so the batch does not depend on ``workers``.

    Parameters
    ----------
    n : int
        Number of crops, 1-1,000,000, and at most :data:`MAX_DATASET_BYTES` of images
        (87,381 crops of 64x64).
    size : int
        Crop size, 16-512. [px]
    seed : int, Generator or None
        The same seed gives the same batch.
    ccw_frac : float
        Fraction of anticlockwise dials, 0-1.
    workers : int
        Threads to render blocks in, 1-64 (OpenCV releases the GIL while it draws and warps;
        2 threads give about 1.5x on 2 cores).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Images (n, size, size, 3) ``uint8`` BGR and labels (n,) ``float32``: the needle
        angle clockwise from 12 o'clock in divisions (36 degrees each).
    """
    owner = "dial_dataset"
    check_param(
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1_000_000,
        "n",
        owner,
        "an int in [1, 1000000]",
        n,
    )
    check_param(
        isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 512,
        "size",
        owner,
        "an int in [16, 512]",
        size,
    )
    check_param(
        isinstance(ccw_frac, int | float) and 0.0 <= ccw_frac <= 1.0,
        "ccw_frac",
        owner,
        "a number in [0, 1]",
        ccw_frac,
    )
    most = MAX_DATASET_BYTES // (size * size * 3)
    check_param(
        n <= most,
        "n",
        owner,
        f"at most {most} for {size}x{size} crops (1 GiB of images; ask for more in batches "
        "with different seeds)",
        n,
    )
    check_param(
        isinstance(workers, int) and not isinstance(workers, bool) and 1 <= workers <= 64,
        "workers",
        owner,
        "an int in [1, 64]",
        workers,
    )
    images = np.empty((n, size, size, 3), np.uint8)
    values = np.empty(n, np.float32)
    starts = range(0, n, _BLOCK)
    seeds = np.random.default_rng(seed).integers(0, 2**63, len(starts))

    def block(k: int) -> None:
        rng = np.random.default_rng(int(seeds[k]))
        for i in range(starts[k], min(n, starts[k] + _BLOCK)):
            v = _mod10(float(rng.uniform(0.0, 10.0)))
            st = DialStyle.random(rng)
            d = "ccw" if rng.random() < ccw_frac else "cw"
            pos = v if d == "cw" else _mod10(10.0 - v)  # the same needle angle either way
            images[i], _ = _crop(
                rng, pos, size, st, d, 0.0, 0.15, 0.5, 2.0, 0.5, 0.9, 0.03, truth=False
            )
            values[i] = v

    if workers == 1 or len(starts) == 1:
        for k in range(len(starts)):
            block(k)
    else:
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            list(pool.map(block, range(len(starts))))
    return images, values


# ---------------------------------------------------------------------------------------------
# Validation


def _check_value(value: object, owner: str) -> None:
    check_param(
        isinstance(value, int | float | np.floating | np.integer)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and 0.0 <= float(value) < 10.0,
        "value",
        owner,
        "a finite number in [0, 10) (divisions)",
        value,
    )


def _check_direction(direction: object, owner: str) -> None:
    check_param(direction in ("cw", "ccw"), "direction", owner, "'cw' or 'ccw'", direction)


def _check_angle(angle: object, name: str, owner: str) -> None:
    check_param(
        isinstance(angle, int | float | np.floating | np.integer)
        and not isinstance(angle, bool)
        and math.isfinite(float(angle))
        and -360.0 <= float(angle) <= 360.0,
        name,
        owner,
        "an angle in degrees in [-360, 360]",
        angle,
    )


# ---------------------------------------------------------------------------------------------
# Gearing


def _mod10(x: float) -> float:
    p = round(x, 9) % 10.0
    return 0.0 if p >= 10.0 else p


def _angle(value: float, direction: str, zero_deg: float) -> float:
    """Needle angle, clockwise from 12 o'clock. [degrees]"""
    return zero_deg + (36.0 if direction == "cw" else -36.0) * value


# ---------------------------------------------------------------------------------------------
# Drawing (coordinates in pixel-centre units, drawn with sub-pixel precision)


def _fx(p: tuple[float, float]) -> tuple[int, int]:
    return (round(p[0] * _ONE), round(p[1] * _ONE))


def _disk(img: U8, c: tuple[float, float], r: float, color: BGR, thick: float = -1) -> None:
    t = -1 if thick < 0 else max(1, round(thick))
    cv2.circle(img, _fx(c), max(1, round(r * _ONE)), color, t, cv2.LINE_AA, _SHIFT)


def _poly(img: U8, pts: Sequence[tuple[float, float]], color: BGR) -> None:
    arr = np.array([_fx(p) for p in pts], dtype=np.int32)
    cv2.fillConvexPoly(img, arr, color, cv2.LINE_AA, _SHIFT)


def _unit(angle_deg: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return (math.sin(a), -math.cos(a))


def _draw_face(
    img: U8,
    c: tuple[float, float],
    r: float,
    st: DialStyle,
    direction: str,
    zero_deg: float,
    *,
    disk: bool = True,
) -> None:
    """Face disk, ring, ticks and numerals of a dial of radius ``r`` centred at ``c``."""
    if disk:
        _disk(img, c, r * 1.02, st.face)
    rr = st.ring_radius * r
    lw = max(1.0, 0.022 * r)
    if st.ring:
        _disk(img, c, rr, st.ink, lw)
    if st.ticks:
        sgn = 1.0 if direction == "cw" else -1.0
        per = st.ticks // 10
        inward = st.layout == "inner"
        k = np.arange(st.ticks)
        major = k % per == 0
        half = (per > 1 and per % 2 == 0) & (k % per == per // 2)
        if inward:  # long ticks that cross the rim, numerals inside them
            ln = np.where(major, 0.16, np.where(half, 0.1, 0.065)) * r
            r0, r1 = rr - ln, rr + np.where(major, 0.05 * r, 0.0)
        else:  # short ticks inside the tick circle, numerals outside it
            ln = np.where(major, 0.11, np.where(half, 0.075, 0.05)) * r
            r0, r1 = rr - ln, np.full(st.ticks, rr)
        hw = np.maximum(np.where(major, 0.55, 0.4) * lw, 0.5)
        a = np.radians(zero_deg + sgn * 360.0 * k / st.ticks)
        tx, ty = np.sin(a), -np.cos(a)
        quads = np.stack(
            [
                np.stack([c[0] + tx * ra + ty * sd * hw, c[1] + ty * ra - tx * sd * hw], -1)
                for ra, sd in ((r0, -1.0), (r1, -1.0), (r1, 1.0), (r0, 1.0))
            ],
            1,
        )
        polys = list(np.round(quads * _ONE).astype(np.int32))
        cv2.fillPoly(img, polys, st.ink, cv2.LINE_AA, _SHIFT)
    if st.numerals:
        glyph_h = st.numeral_height * r
        scale0, y_off0, x_offs0 = _glyph_metrics(st.font, st.weight)
        k_h = glyph_h / 200.0
        thick = _thickness(st.weight, glyph_h)
        sgn = 1.0 if direction == "cw" else -1.0
        for d in range(10):
            ux, uy = _unit(zero_deg + sgn * 36.0 * d)
            px, py = c[0] + ux * st.numeral_radius * r, c[1] + uy * st.numeral_radius * r
            org = (px - x_offs0[d] * k_h, py + y_off0 * k_h)
            _text(img, str(d), org, scale0 * k_h, st.ink, thick, st.font)


def _needle_polys(
    c: tuple[float, float], r: float, angle: float, st: DialStyle
) -> tuple[list[list[tuple[float, float]]], list[tuple[tuple[float, float], float]]]:
    """Convex polygons and disks (centre, radius) of the needle, hub excluded."""
    ux, uy = _unit(angle)
    nx, ny = -uy, ux

    def at(a: float, b: float) -> tuple[float, float]:
        return (c[0] + (ux * a + nx * b) * r, c[1] + (uy * a + ny * b) * r)

    L, w, t = st.needle_length, st.needle_width, st.tail
    polys: list[list[tuple[float, float]]] = []
    disks: list[tuple[tuple[float, float], float]] = []
    if st.shape == "wedge":
        polys.append([at(L, 0.0), at(0.0, w), at(-0.3 * w, 0.0), at(0.0, -w)])
    elif st.shape == "arrow":
        head = min(0.3, max(0.12, 0.22 * L))
        hw = max(2.6 * w, 0.07)
        polys.append([at(-t, w), at(L - head * 0.8, w), at(L - head * 0.8, -w), at(-t, -w)])
        polys.append([at(L, 0.0), at(L - head, hw), at(L - head * 0.75, 0.0), at(L - head, -hw)])
        if t > 0.12:
            disks.append((at(-t, 0.0), 1.6 * w + 0.02))
    else:
        tip = max(0.25 * w, 0.008)
        polys.append([at(-t, w), at(L, tip), at(L, -tip), at(-t, -w)])
        disks.append((at(-0.8 * t, 0.0), min(0.12, 0.35 * t + 1.5 * w)))
    return polys, disks


def _draw_needle(
    img: U8, c: tuple[float, float], r: float, angle: float, st: DialStyle, *, shadow: bool = True
) -> None:
    polys, disks = _needle_polys(c, r, angle, st)
    if shadow and st.shadow:
        dx, dy = 0.035 * r, 0.045 * r
        sc = tuple(int(v * 0.55) for v in st.face)
        col: BGR = (sc[0], sc[1], sc[2])
        for p in polys:
            _poly(img, [(x + dx, y + dy) for x, y in p], col)
        for q, rad in disks:
            _disk(img, (q[0] + dx, q[1] + dy), rad * r, col)
        _disk(img, (c[0] + dx, c[1] + dy), st.hub_radius * r, col)
    for p in polys:
        _poly(img, p, st.needle)
    for q, rad in disks:
        _disk(img, q, rad * r, st.needle)
    _disk(img, c, st.hub_radius * r, st.hub)
    if st.shape != "wedge":
        pin = tuple(min(255, int(v * 0.5 + 110)) for v in st.hub)
        _disk(img, c, max(0.3, 0.035 * r), (pin[0], pin[1], pin[2]))


# ---------------------------------------------------------------------------------------------
# Crops


def _crop(
    rng: np.random.Generator,
    value: float,
    size: int,
    st: DialStyle,
    direction: str,
    zero_deg: float,
    offset_frac: float,
    perspective: float,
    rotation_deg: float,
    glare: float,
    blur: float,
    noise: float,
    truth: bool = True,
) -> tuple[U8, dict[str, Any]]:
    ss = 2 if size <= 160 else 1
    r_out = size * rng.uniform(0.36, 0.47)
    r_c = r_out * ss
    cs = math.ceil(size * ss * 1.7) | 1
    cc = ((cs - 1) / 2.0, (cs - 1) / 2.0)
    canvas = np.empty((cs, cs, 3), np.uint8)
    canvas[:] = np.tile(np.array(st.plate, np.uint8), (cs, 1))  # (fast broadcast of a row)
    _distractors(canvas, rng, cc, r_c, st)
    _draw_face(canvas, cc, r_c, st, direction, zero_deg, disk=True)
    angle = _angle(value, direction, zero_deg)
    _draw_needle(canvas, cc, r_c, angle, st)

    # canvas -> crop: centre to origin, rotate, tilt (perspective), scale down, shift.
    rot = rng.uniform(-rotation_deg, rotation_deg)
    a = math.radians(rot)
    ca, sa = math.cos(a), math.sin(a)
    tilt = math.radians(rng.uniform(0.0, 35.0) * perspective)
    az = rng.uniform(0.0, 2.0 * math.pi)
    f = size * rng.uniform(1.5, 4.0)  # focal length [crop px]
    # plane rotation about the in-plane axis at azimuth az by the tilt angle
    k = np.array([math.cos(az), math.sin(az), 0.0])
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rmat = np.eye(3) + math.sin(tilt) * kx + (1 - math.cos(tilt)) * (kx @ kx)
    persp = np.array(
        [
            [rmat[0, 0], rmat[0, 1], 0.0],
            [rmat[1, 0], rmat[1, 1], 0.0],
            [rmat[2, 0] / f, rmat[2, 1] / f, 1.0],
        ]
    )
    off = rng.uniform(-offset_frac, offset_frac, 2) * size
    ox, oy = (size - 1) / 2.0 + off[0], (size - 1) / 2.0 + off[1]
    t_in = np.array([[1.0, 0, -cc[0]], [0, 1.0, -cc[1]], [0, 0, 1.0]])
    rs = np.array([[ca / ss, -sa / ss, 0], [sa / ss, ca / ss, 0], [0, 0, 1.0]])
    t_out = np.array([[1.0, 0, ox], [0, 1.0, oy], [0, 0, 1.0]])
    hmat = t_out @ persp @ rs @ t_in

    # Warp at ss x the crop size, average down, then blur at the crop size.
    up = np.diag([float(ss), float(ss), 1.0]) @ np.array(
        [[1.0, 0, 0.5 - 0.5 / ss], [0, 1.0, 0.5 - 0.5 / ss], [0, 0, 1.0]]
    )
    img = cv2.warpPerspective(
        canvas,
        up @ hmat,
        (size * ss, size * ss),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if ss > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.0, blur)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    f32 = np.asarray(img, dtype=np.float32)
    _lighting(f32, rng, glare, size)
    sd = rng.uniform(0.0, noise) * 255.0
    if sd > 0.5:
        bank = _noise_bank(size, size)  # Gaussian noise at a random offset (synth.py's bank)
        ny, nx = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
        f32 += bank[ny : ny + size, nx : nx + size] * np.float32(
            sd * (1 if rng.random() < 0.5 else -1)
        )
    np.clip(f32, 0.0, 255.0, out=f32)
    out: U8 = f32.astype(np.uint8)
    if rng.random() < 0.6:
        out = _jpeg_roundtrip(out, int(rng.integers(45, 96)))

    if not truth:
        return out, {}
    jac = persp[:2, :2] @ rs[:2, :2]  # Jacobian at the centre (the projective row vanishes)
    radius = r_c * math.sqrt(abs(float(np.linalg.det(jac))))
    ux, uy = _unit(angle)
    tip = hmat @ np.array(
        [cc[0] + ux * st.needle_length * r_c, cc[1] + uy * st.needle_length * r_c, 1.0]
    )
    info: dict[str, Any] = {
        "value": value,
        "direction": direction,
        "zero_deg": zero_deg,
        "center": (float(ox), float(oy)),
        "radius": float(radius),
        "tip": (float(tip[0] / tip[2]), float(tip[1] / tip[2])),
        "rotation_deg": float(rot),
        "style": st.to_dict(),
    }
    return out, info


_LABELS = ("x0,1", "x0,01", "x0.001", "x10", "x100", "1000", "1/10", "x0,0001")


def _distractors(
    canvas: U8, rng: np.random.Generator, c: tuple[float, float], r: float, st: DialStyle
) -> None:
    """What lies around a dial in its box: neighbouring dials, labels, the housing's edge."""
    if rng.random() < 0.35:  # a neighbouring dial's ring and ticks
        ang = rng.uniform(0, 360)
        ux, uy = _unit(ang)
        d = r * rng.uniform(2.05, 2.5)
        q = (c[0] + ux * d, c[1] + uy * d)
        _draw_face(canvas, q, r, st, "cw", 0.0, disk=st.face != st.plate)
    if rng.random() < 0.35:  # a printed label near a corner
        ang = rng.choice([45.0, 135.0, 225.0, 315.0]) + rng.uniform(-15, 15)
        ux, uy = _unit(ang)
        d = r * rng.uniform(1.3, 1.5)
        txt = str(rng.choice(_LABELS))
        h = r * rng.uniform(0.22, 0.32)
        (tw, _), _ = cv2.getTextSize(txt, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
        scale = h / 22.0
        org = (c[0] + ux * d - tw * scale / 2, c[1] + uy * d + h / 2)
        _text(canvas, txt, org, scale, st.ink, max(1, round(h * 0.12)))
    if rng.random() < 0.15:  # the dark housing's edge
        ang = rng.uniform(0, 360)
        ux, uy = _unit(ang)
        big = r * rng.uniform(4.0, 8.0)
        d = big + r * rng.uniform(1.15, 1.5)
        g = int(rng.uniform(10, 60))
        _disk(canvas, (c[0] + ux * d, c[1] + uy * d), big, (g, g, g))


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[F32, F32]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _lighting(f: F32, rng: np.random.Generator, glare: float, size: int) -> None:
    gain = rng.uniform(0.65, 1.25)
    wb = 1.0 + rng.uniform(-0.05, 0.05, 3)
    f *= (gain * wb).astype(np.float32)
    f += np.float32(rng.uniform(-25.0, 25.0))
    yy, xx = _grid(size)
    if rng.random() < 0.5:  # a shadow or light gradient across the crop
        phi = rng.uniform(0, 2 * math.pi)
        ramp = (xx - 0.5) * math.cos(phi) + (yy - 0.5) * math.sin(phi)
        f *= (1.0 + np.float32(rng.uniform(0.1, 0.5)) * ramp)[:, :, None]
    if glare > 0 and rng.random() < 0.5:
        cx, cy = rng.uniform(0.1, 0.9, 2)
        sx, sy = rng.uniform(0.05, 0.3, 2)
        th = rng.uniform(0, math.pi)
        ct, st_ = np.float32(math.cos(th)), np.float32(math.sin(th))
        dx, dy = xx - np.float32(cx), yy - np.float32(cy)
        u, v = dx * ct + dy * st_, -dx * st_ + dy * ct
        blob = np.exp(-0.5 * ((u / np.float32(sx)) ** 2 + (v / np.float32(sy)) ** 2))
        f += (np.float32(glare * rng.uniform(80, 280)) * blob)[:, :, None]


# ---------------------------------------------------------------------------------------------
# Scenes
