"""Synthetic pointer dials: single dial crops, water meters with dials, dial registers.

No licensed photos of pointer dials exist in numbers, so the needle reader is trained, tested
and benchmarked on these renders, with a known position for every pointer.

**Angles.** A dial's position ``value`` is in divisions, 0 <= value < 10. Angles are in
degrees, measured clockwise from 12 o'clock in the upright dial (image y grows down).
``zero_deg`` is where the 0 mark sits (0 = 12 o'clock). A ``"cw"`` dial points at
``zero_deg + 36 * value``, a ``"ccw"`` dial at ``zero_deg - 36 * value``; its numerals are
printed the same way round, so a ccw dial is numbered anticlockwise.

**Gearing.** On a meter the dials are geared to each other without slip: the dial whose one
division is worth ``factor`` sits at ``(reading / factor) mod 10`` (:func:`dial_positions`),
a continuous function of the reading. On a water meter the dials continue the wheel counter
below its last wheel. With ``wheel_roll="continuous"`` (the default) the last wheel turns
with the reading but ``wheel_lag`` digits behind the dials: 0.35 by default, as measured on
the ZR MAP16 of ``meter-photos/wmsc``, whose units digit is centred when the x0.1 dial reads
about 4 and half rolled at about 9 (its README). The higher wheels roll while the wheel
below goes from 9 to 10 (:func:`gridlens.meter.synth.wheel_positions`). With ``"carry"`` the
last wheel, too, rests on its digit and rolls only while the first dial (a tenth of the last
wheel) goes from 9 to 10. A small random ``lag`` of each pointer (gear backlash) can be added.

**Dial registers.** Electricity meters with clock dials show 4 or 5 dials, left to right
worth 10 000, 1 000, 100, 10 and 1 kWh. Neighbouring dials mesh directly, so they turn in
opposite senses. The rightmost (1 kWh) dial turns clockwise and the sense alternates going
left (:func:`register_directions`): a 5-dial register is cw, ccw, cw, ccw, cw [1]_ [2]_.

**Crops** (:func:`render_dial_crop`, :func:`dial_dataset`). One dial in a square crop with a
random :class:`DialStyle` (face, numerals, ticks, ring, needle colour and shape, hub) and
random camera effects: the dial off-centre in the crop, tilt (the ring becomes an ellipse),
a small rotation, neighbouring dials and labels at the edges, shadow, glare, blur, lighting,
noise and JPEG. The dial is drawn at twice the crop size with sub-pixel precision and warped
down in one step.

**Scenes** (:func:`render_water_meter`, :func:`render_register` and their ``*_reference``
views) follow :func:`gridlens.meter.synth.render_meter`: a cached, seeded layout with four
L-shaped corner marks for alignment, and the same camera model (homography, blur, lighting,
glare, noise, JPEG). They return the ROI as a JSON-ready dict with a ``dials`` list.

References
----------
.. [1] Energylinx, "How to read your dial electricity meter",
   https://energylinx.co.uk/dialmeter.htm (read the lower number; dials alternate).
.. [2] Hillsborough County, "Energy guide: meters" (every other dial is numbered
   counterclockwise; the hands move in the counting order of their numbers).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import check_param
from gridlens.meter.image import encode_jpeg
from gridlens.meter.roi import Box
from gridlens.meter.synth import (
    _FONTS,
    _NOISE_PAD,
    ExampleFiles,
    _camera_homography,
    _check_camera,
    _check_size,
    _glyph_metrics,
    _jpeg_roundtrip,
    _Layout,
    _noise_bank,
    _paint_wheels,
    _photograph,
    _rounded_rect,
    _text,
    _thickness,
    _u8,
    _wheel_optics,
    _wheel_strip,
    wheel_positions,
)

__all__ = [
    "DIAL_PRESETS",
    "MAX_DATASET_BYTES",
    "NEEDLE_SHAPES",
    "WATER_FACTORS",
    "DialStyle",
    "SynthDialMeter",
    "dial_dataset",
    "dial_positions",
    "register_directions",
    "render_dial_crop",
    "render_register",
    "render_register_reference",
    "render_water_meter",
    "render_water_reference",
    "write_dial_example",
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
WATER_FACTORS = (0.1, 0.01, 0.001, 0.0001)

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


@dataclass(frozen=True)
class SynthDialMeter:
    """One synthetic photo of a meter with pointer dials, and its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        BGR ``uint8`` photo.
    reading : float
        The true reading (wrapped to the meter's range) [m³ or kWh].
    wheels : numpy.ndarray
        Wheel positions in [0, 10), left to right (empty for a dial register).
    dials : numpy.ndarray
        Pointer positions in [0, 10), in the order of ``roi["dials"]``, lag included.
    roi : dict
        The ROI in reference pixels (the same as the ``*_reference`` function returns):
        ``{"digits": [...], "decimals": int, "dials": [{"x", "y", "w", "h", "factor",
        "direction", "zero_deg"}, ...], "reference": {"markers": [...]}}``.
    transform : numpy.ndarray
        3x3 homography from reference pixels to ``image`` pixels.
    """

    image: U8
    reading: float
    wheels: F64
    dials: F64
    roi: dict[str, Any]
    transform: F64


# ---------------------------------------------------------------------------------------------
# Public functions


def dial_positions(reading: float, factors: Sequence[float]) -> F64:
    """Pointer positions of continuously geared dials showing ``reading``.

    Parameters
    ----------
    reading : float
        The meter reading (>= 0). [m³ or kWh]
    factors : sequence of float
        What one division of each dial is worth, e.g. (0.1, 0.01). [m³ or kWh]

    Returns
    -------
    numpy.ndarray
        ``(reading / factor) mod 10`` for each dial, in [0, 10).

    Examples
    --------
    >>> dial_positions(391.4876, WATER_FACTORS).round(6).tolist()
    [4.876, 8.76, 7.6, 6.0]
    """
    _check_reading(reading, "dial_positions")
    _check_factors(factors, "dial_positions")
    return np.array([_mod10(float(reading) / f) for f in factors], dtype=np.float64)


def register_directions(n_dials: int) -> list[Direction]:
    """Turning sense of each dial of a clock-dial register, left to right.

    The rightmost dial turns clockwise and neighbours alternate, so a 5-dial register is
    ``["cw", "ccw", "cw", "ccw", "cw"]`` and a 4-dial one ``["ccw", "cw", "ccw", "cw"]``.
    """
    check_param(
        isinstance(n_dials, int) and not isinstance(n_dials, bool) and 1 <= n_dials <= 6,
        "n_dials",
        "register_directions",
        "an int in [1, 6]",
        n_dials,
    )
    return ["cw" if (n_dials - 1 - i) % 2 == 0 else "ccw" for i in range(n_dials)]


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


def render_water_reference(
    n_digits: int = 5,
    decimals: int = 0,
    *,
    factors: Sequence[float] = WATER_FACTORS,
    layout_seed: int = 0,
    size: tuple[int, int] = (640, 480),
    reading: float = 0.0,
    seed: Seed = 0,
    noise: float = 0.01,
    jpeg_quality: int | None = 92,
) -> tuple[U8, dict[str, Any]]:
    """Render the canonical, undistorted view of a water meter with wheels and dials.

    Parameters are those of :func:`render_water_meter`, as in
    :func:`gridlens.meter.synth.render_reference`. The wheels turn without lag, so the
    default reading 0 shows whole digits (the digit boxes are refined against them).

    Returns
    -------
    (numpy.ndarray, dict)
        The BGR reference image and the ROI dict (see :class:`SynthDialMeter`).
    """
    m = render_water_meter(
        reading,
        n_digits=n_digits,
        decimals=decimals,
        factors=factors,
        wheel_lag=0.0,  # whole digits (at a whole reading) for refining the digit boxes
        layout_seed=layout_seed,
        size=size,
        seed=seed,
        **_clean(noise, jpeg_quality),
    )
    return m.image, m.roi


def render_water_meter(
    reading: float,
    *,
    n_digits: int = 5,
    decimals: int = 0,
    factors: Sequence[float] = WATER_FACTORS,
    wheel_roll: str = "continuous",
    wheel_lag: float = 0.35,
    lag: float = 0.0,
    seed: Seed = None,
    layout_seed: int = 0,
    size: tuple[int, int] = (640, 480),
    perspective: float = 0.5,
    glare: float = 0.5,
    noise: float = 0.02,
    blur: float = 0.8,
    shift_frac: float = 0.03,
    rotation_deg: float = 3.0,
    zoom: float = 0.03,
    brightness: float = 0.2,
    jpeg_quality: int | None = 85,
    transform: npt.ArrayLike | None = None,
) -> SynthDialMeter:
    """Render a camera photo of a round water meter with wheels and pointer dials.

    The face resembles the ZR MAP16 meter of ``meter-photos/wmsc``: black digits on white
    wheels (white on red for decimal wheels), an "m³" sign, a flow star, and the dials on an
    arc below the counter (or in a row, by ``layout_seed``), each labelled with its factor.
    All dials turn clockwise with 0 at 12 o'clock.

    Parameters
    ----------
    reading : float
        The reading (>= 0) [m³]; it wraps at 10^(n_digits - decimals).
    n_digits, decimals : int
        Wheel counter layout (see :func:`gridlens.meter.synth.render_meter`).
    factors : sequence of float
        1-5 dial factors [m³ per division]: powers of ten, each a tenth of the one before,
        the first a tenth of the last wheel (10^-(decimals+1)), as the ROI requires.
        Default :data:`WATER_FACTORS`.
    wheel_roll : str
        ``"continuous"``: the last wheel turns with the reading, ``wheel_lag`` behind it;
        ``"carry"``: it rests on its digit and rolls during the last tenth of a turn of the
        dial one decade below it.
    wheel_lag : float
        How far the last wheel runs behind the dials with ``"continuous"``, 0-1. [digits]
    lag : float
        Largest pointer lag (backlash), 0-1 divisions: each dial but the finest is offset by
        a random amount in [-lag, +lag]. [divisions]
    seed, layout_seed, size, perspective, glare, noise, blur, shift_frac, rotation_deg, zoom,
    brightness, jpeg_quality, transform
        As in :func:`gridlens.meter.synth.render_meter`.

    Returns
    -------
    SynthDialMeter
        Image, reading, wheel and pointer positions, ROI and the applied transform.
    """
    owner = "render_water_meter"
    _check_reading(reading, owner)
    _check_counter_w(n_digits, decimals, owner)
    fs = _check_factors(factors, owner, below=10.0**-decimals)
    check_param(
        wheel_roll in ("carry", "continuous"),
        "wheel_roll",
        owner,
        "'carry' or 'continuous'",
        wheel_roll,
    )
    _check_lag(lag, owner)
    check_param(
        isinstance(wheel_lag, int | float)
        and not isinstance(wheel_lag, bool)
        and 0.0 <= wheel_lag <= 1.0,
        "wheel_lag",
        owner,
        "a number in [0, 1] (digits of the last wheel)",
        wheel_lag,
    )
    _check_size(size, 64, 4096, owner)
    cam = _camera_kw(perspective, glare, noise, blur, shift_frac, rotation_deg, zoom, brightness)
    _check_camera(owner, **cam, jpeg_quality=jpeg_quality)
    wrap = 10.0 ** (n_digits - decimals)
    shown = round(float(reading) * 10.0**decimals, 6) % (10.0**n_digits) / 10.0**decimals
    if wheel_roll == "continuous":
        behind = round(shown - wheel_lag * 10.0**-decimals, 9 + decimals) % wrap
        wheels = wheel_positions(behind, n_digits, decimals)
    else:
        wheels = _carry_wheels(shown, n_digits, decimals)
    lay = _water_layout(n_digits, decimals, fs, layout_seed, (int(size[0]), int(size[1])))
    rng = np.random.default_rng(seed)
    dials = _lagged(shown, fs, lag, rng)
    scene = lay.base.scene.copy()
    _paint_wheels(scene, lay.base, wheels)
    _paint_star(scene, lay, shown)
    for d, p in zip(lay.dials, dials, strict=True):
        _draw_needle(scene, d.center, d.radius, _angle(p, d.direction, d.zero_deg), d.style)
    m = _shoot(scene, lay, rng, owner, cam, jpeg_quality, transform)
    return SynthDialMeter(
        image=m[0], reading=shown % wrap, wheels=wheels, dials=dials, roi=lay.roi, transform=m[1]
    )


def render_register_reference(
    n_dials: int = 5,
    *,
    layout_seed: int = 0,
    size: tuple[int, int] = (640, 480),
    reading: float = 0.0,
    seed: Seed = 0,
    noise: float = 0.01,
    jpeg_quality: int | None = 92,
) -> tuple[U8, dict[str, Any]]:
    """Render the canonical, undistorted view of a clock-dial register.

    Parameters are those of :func:`render_register`.

    Returns
    -------
    (numpy.ndarray, dict)
        The BGR reference image and the ROI dict (``digits`` is empty).
    """
    m = render_register(
        reading,
        n_dials=n_dials,
        layout_seed=layout_seed,
        size=size,
        seed=seed,
        **_clean(noise, jpeg_quality),
    )
    return m.image, m.roi


def render_register(
    reading: float,
    *,
    n_dials: int = 5,
    lag: float = 0.0,
    seed: Seed = None,
    layout_seed: int = 0,
    size: tuple[int, int] = (640, 480),
    perspective: float = 0.5,
    glare: float = 0.5,
    noise: float = 0.02,
    blur: float = 0.8,
    shift_frac: float = 0.03,
    rotation_deg: float = 3.0,
    zoom: float = 0.03,
    brightness: float = 0.2,
    jpeg_quality: int | None = 85,
    transform: npt.ArrayLike | None = None,
) -> SynthDialMeter:
    """Render a camera photo of an electricity meter with a clock-dial register.

    ``n_dials`` dials in a row, left to right worth 10^(n_dials-1) ... 1 kWh, alternate ones
    numbered and turning anticlockwise (:func:`register_directions`), each labelled with its
    factor and an arrow showing its sense; "KILOWATT HOURS", rating text and a rotating-disc
    slot around them. There are no wheels.

    Parameters
    ----------
    reading : float
        The reading (>= 0) [kWh]; it wraps at 10^n_dials.
    n_dials : int
        Number of dials, 3-6 (usually 4 or 5).
    lag : float
        Largest pointer lag (backlash), 0-1 divisions, of each dial but the 1 kWh one.
        [divisions]
    seed, layout_seed, size, perspective, glare, noise, blur, shift_frac, rotation_deg, zoom,
    brightness, jpeg_quality, transform
        As in :func:`gridlens.meter.synth.render_meter`.

    Returns
    -------
    SynthDialMeter
        Image, reading, pointer positions (``wheels`` is empty), ROI and transform.
    """
    owner = "render_register"
    _check_reading(reading, owner)
    check_param(
        isinstance(n_dials, int) and not isinstance(n_dials, bool) and 3 <= n_dials <= 6,
        "n_dials",
        owner,
        "an int in [3, 6]",
        n_dials,
    )
    _check_lag(lag, owner)
    _check_size(size, 64, 4096, owner)
    cam = _camera_kw(perspective, glare, noise, blur, shift_frac, rotation_deg, zoom, brightness)
    _check_camera(owner, **cam, jpeg_quality=jpeg_quality)
    shown = round(float(reading), 6) % (10.0**n_dials)
    lay = _register_layout(n_dials, layout_seed, (int(size[0]), int(size[1])))
    rng = np.random.default_rng(seed)
    fs = tuple(float(10**k) for k in range(n_dials - 1, -1, -1))
    dials = _lagged(shown, fs, lag, rng)
    scene = lay.base.scene.copy()
    _paint_slot(scene, lay.base, shown)
    for d, p in zip(lay.dials, dials, strict=True):
        _draw_needle(scene, d.center, d.radius, _angle(p, d.direction, d.zero_deg), d.style)
    m = _shoot(scene, lay, rng, owner, cam, jpeg_quality, transform)
    return SynthDialMeter(
        image=m[0],
        reading=shown,
        wheels=np.zeros(0, np.float64),
        dials=dials,
        roi=lay.roi,
        transform=m[1],
    )


def write_dial_example(
    folder: str | os.PathLike[str],
    reading: float | None = None,
    seed: int = 0,
    *,
    kind: str = "water",
    layout_seed: int = 0,
) -> ExampleFiles:
    """Write ``reference.jpg``, ``roi.json`` (with ``dials``) and ``meter.jpg`` into ``folder``.

    Then a user can run ``gridlens read meter.jpg --roi roi.json`` on a meter with dials.

    Parameters
    ----------
    folder : path
        Created if missing; existing files of these names are overwritten.
    reading : float, optional
        The reading ``meter.jpg`` shows [m³ or kWh]; default 391.4876 m³ for ``"water"``
        and 19375.4 kWh for ``"register"``.
    seed : int
        Seed of the photo's camera pose and effects.
    kind : str
        ``"water"`` (5 wheels and 4 dials, :func:`render_water_meter`) or ``"register"``
        (5 dials, :func:`render_register`).
    layout_seed : int
        Face design.

    Returns
    -------
    ExampleFiles
        The three paths and the reading shown.
    """
    check_param(
        kind in ("water", "register"), "kind", "write_dial_example", "'water' or 'register'", kind
    )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "water":
        value = 391.4876 if reading is None else reading
        ref_img, roi = render_water_reference(layout_seed=layout_seed, seed=seed)
        m = render_water_meter(value, seed=seed, layout_seed=layout_seed)
    else:
        value = 19375.4 if reading is None else reading
        ref_img, roi = render_register_reference(layout_seed=layout_seed, seed=seed)
        m = render_register(value, seed=seed, layout_seed=layout_seed)
    ref_path, roi_path, meter_path = out / "reference.jpg", out / "roi.json", out / "meter.jpg"
    ref_path.write_bytes(encode_jpeg(ref_img, 95))
    meter_path.write_bytes(encode_jpeg(m.image, 95))
    full = {**roi, "reference": {"image": ref_path.name, **roi["reference"]}}
    roi_path.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return ExampleFiles(reference=ref_path, roi=roi_path, meter=meter_path, reading=m.reading)


# ---------------------------------------------------------------------------------------------
# Validation


def _check_reading(reading: object, owner: str) -> None:
    check_param(
        isinstance(reading, int | float | np.floating | np.integer)
        and not isinstance(reading, bool)
        and math.isfinite(float(reading))
        and float(reading) >= 0,
        "reading",
        owner,
        "a finite number >= 0",
        reading,
    )


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


def _check_lag(lag: object, owner: str) -> None:
    check_param(
        isinstance(lag, int | float) and not isinstance(lag, bool) and 0.0 <= lag <= 1.0,
        "lag",
        owner,
        "a number in [0, 1] (divisions)",
        lag,
    )


def _check_counter_w(n_digits: int, decimals: int, owner: str) -> None:
    check_param(
        isinstance(n_digits, int) and not isinstance(n_digits, bool) and 1 <= n_digits <= 8,
        "n_digits",
        owner,
        "an int in [1, 8]",
        n_digits,
    )
    check_param(
        isinstance(decimals, int) and not isinstance(decimals, bool) and 0 <= decimals <= n_digits,
        "decimals",
        owner,
        f"an int in [0, n_digits={n_digits}]",
        decimals,
    )


def _check_factors(factors: object, owner: str, below: float | None = None) -> tuple[float, ...]:
    ok = isinstance(factors, Sequence) and not isinstance(factors, str) and 1 <= len(factors) <= 6
    fs: list[float] = []
    if ok:
        assert isinstance(factors, Sequence)
        for f in factors:
            if (
                not isinstance(f, int | float)
                or isinstance(f, bool)
                or not math.isfinite(f)
                or f <= 0
                or abs(math.log10(f) - round(math.log10(f))) > 1e-9
            ):
                ok = False
                break
            fs.append(float(10.0 ** round(math.log10(f))))
        ok = ok and all(math.isclose(a, 10 * b) for a, b in itertools.pairwise(fs))
        ok = ok and (below is None or math.isclose(fs[0], below / 10))
    extra = "" if below is None else f", the first one {below / 10:g} (a tenth of the last wheel)"
    check_param(
        ok,
        "factors",
        owner,
        f"1-6 powers of ten, each a tenth of the one before, e.g. (0.1, 0.01){extra}",
        factors,
    )
    return tuple(fs)


def _camera_kw(
    perspective: float,
    glare: float,
    noise: float,
    blur: float,
    shift_frac: float,
    rotation_deg: float,
    zoom: float,
    brightness: float,
) -> dict[str, float]:
    return {
        "perspective": perspective,
        "glare": glare,
        "noise": noise,
        "blur": blur,
        "shift_frac": shift_frac,
        "rotation_deg": rotation_deg,
        "zoom": zoom,
        "brightness": brightness,
    }


def _clean(noise: float, jpeg_quality: int | None) -> dict[str, Any]:
    return {
        "perspective": 0.0,
        "glare": 0.0,
        "noise": noise,
        "blur": 0.0,
        "shift_frac": 0.0,
        "rotation_deg": 0.0,
        "zoom": 0.0,
        "brightness": 0.0,
        "jpeg_quality": jpeg_quality,
    }


# ---------------------------------------------------------------------------------------------
# Gearing


def _mod10(x: float) -> float:
    p = round(x, 9) % 10.0
    return 0.0 if p >= 10.0 else p


def _angle(value: float, direction: str, zero_deg: float) -> float:
    """Needle angle, clockwise from 12 o'clock. [degrees]"""
    return zero_deg + (36.0 if direction == "cw" else -36.0) * value


def _carry_wheels(reading: float, n_digits: int, decimals: int) -> F64:
    """Wheels whose last one rolls during the last tenth of the next decade's turn."""
    v = round(reading * 10.0**decimals, 9) % (10.0**n_digits)
    vi = math.floor(v)
    below = (v - vi) * 10.0  # the (possibly hidden) dial one decade below the last wheel
    pos = np.empty(n_digits, dtype=np.float64)
    lower = below
    for k in range(n_digits):
        p = (vi // 10**k) % 10 + max(0.0, lower - 9.0)
        pos[n_digits - 1 - k] = p
        lower = p
    return pos


def _lagged(reading: float, factors: Sequence[float], lag: float, rng: np.random.Generator) -> F64:
    pos = np.array([_mod10(reading / f) for f in factors], dtype=np.float64)
    if lag > 0:
        off = rng.uniform(-lag, lag, len(factors))
        off[-1] = 0.0  # the finest dial is driven directly
        pos = np.array([_mod10(p + o) for p, o in zip(pos, off, strict=True)])
    return pos


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


@dataclass(frozen=True)
class _Dial:
    center: tuple[float, float]
    radius: float
    factor: float
    direction: str
    zero_deg: float
    style: DialStyle


@dataclass(frozen=True)
class _DialLayout:
    base: _Layout  # scene with the static print; wheels, markers and glare targets
    dials: tuple[_Dial, ...]
    roi: dict[str, Any]
    star: tuple[float, float, float]  # flow star centre x, y and radius (0 = none)


def _shoot(
    scene: U8,
    lay: _DialLayout,
    rng: np.random.Generator,
    owner: str,
    cam: dict[str, float],
    jpeg_quality: int | None,
    transform: npt.ArrayLike | None,
) -> tuple[U8, F64]:
    w, h = lay.base.size
    hmat = _camera_homography(
        transform,
        rng,
        w,
        h,
        cam["perspective"],
        cam["shift_frac"],
        cam["rotation_deg"],
        cam["zoom"],
        owner,
    )
    img = _photograph(
        scene,
        lay.base,
        rng,
        hmat,
        cam["blur"],
        cam["brightness"],
        cam["glare"],
        cam["noise"],
        jpeg_quality,
    )
    return img, hmat


def _dial_box(d: _Dial) -> dict[str, Any]:
    r = round(d.radius)
    x, y = round(d.center[0]) - r, round(d.center[1]) - r
    return {
        "x": x,
        "y": y,
        "w": 2 * r + 1,
        "h": 2 * r + 1,
        "factor": d.factor,
        "direction": d.direction,
        "zero_deg": d.zero_deg,
    }


def _corner_mark(
    scene: U8,
    px: _Px,
    sc: _Sc,
    at: tuple[float, float],
    sx: int,
    sy: int,
    n_dots: int,
    ink: BGR,
) -> Box:
    """An L-shaped mark with 1-4 cells of a 2x2 grid filled (as in synth.py); its box."""
    arm, thick_m, box_sz = 26, 6, 44
    cx, cy = at
    p0 = px(cx, cy)
    cv2.rectangle(scene, p0, px(cx + sx * arm, cy + sy * thick_m), ink, -1)
    cv2.rectangle(scene, p0, px(cx + sx * thick_m, cy + sy * arm), ink, -1)
    for j in range(n_dots):
        a, b = 11 + 10 * (j % 2), 11 + 10 * (j // 2)
        cv2.rectangle(
            scene, px(cx + sx * a, cy + sy * b), px(cx + sx * (a + 7), cy + sy * (b + 7)), ink, -1
        )
    bx, by = px(cx - 6 if sx > 0 else cx + 6 - box_sz, cy - 6 if sy > 0 else cy + 6 - box_sz)
    return Box(bx, by, sc(box_sz), sc(box_sz))


def _scaler(size: tuple[int, int]) -> tuple[float, _Px, _Sc]:
    w, h = size
    s = min(w / 640.0, h / 480.0)
    ox, oy = (w - 640.0 * s) / 2.0, (h - 480.0 * s) / 2.0

    def px(x: float, y: float) -> tuple[int, int]:
        return round(ox + x * s), round(oy + y * s)

    def sc(v: float) -> int:
        return max(1, round(v * s))

    return s, px, sc


def _texture(
    rng: np.random.Generator, size: tuple[int, int], base: Sequence[float], amp: float
) -> U8:
    w, h = size
    tex = rng.normal(0, amp, (max(2, h // 24), max(2, w // 24), 1)).astype(np.float32)
    full = cv2.resize(tex, (w, h), interpolation=cv2.INTER_CUBIC)
    if full.ndim == 2:
        full = full[:, :, None]
    return _u8(np.clip(np.asarray(base, dtype=np.float32)[None, None, :] + full, 0, 255))


@lru_cache(maxsize=16)
def _water_layout(
    n_digits: int,
    decimals: int,
    factors: tuple[float, ...],
    layout_seed: int,
    size: tuple[int, int],
) -> _DialLayout:
    rng = np.random.default_rng([layout_seed, n_digits, decimals, len(factors), 0xD1A1])
    w, h = size
    s, px, sc = _scaler(size)
    housing = rng.uniform(20, 60)
    scene = _texture(rng, size, [housing, housing, housing + 3], 10)
    cxy = px(320, 240)
    bezel = (40, 150, 175) if rng.random() < 0.5 else (70, 70, 72)
    cv2.circle(scene, cxy, sc(236), bezel, -1, cv2.LINE_AA)
    cv2.circle(scene, cxy, sc(226), (110, 110, 112), -1, cv2.LINE_AA)
    fc = rng.uniform(215, 242)
    face = (int(fc - rng.uniform(0, 12)), int(fc), int(fc))
    cv2.circle(scene, cxy, sc(222), face, -1, cv2.LINE_AA)
    ink: BGR = (30, 30, 30)

    markers = [
        _corner_mark(scene, px, sc, at, sx, sy, n, (235, 235, 235))
        for n, (at, sx, sy) in enumerate(
            (((62, 52), 1, 1), ((578, 52), -1, 1), ((578, 428), -1, -1), ((62, 428), 1, -1)),
            start=1,
        )
    ]

    # Wheel counter near the top of the face.
    font_t = _FONTS[int(rng.integers(len(_FONTS)))]
    gap_d, ch_d = 8.0, 52.0
    cw_d = min(36.0, (300.0 - (n_digits + 1) * gap_d) / n_digits)
    win_w = n_digits * cw_d + (n_digits + 1) * gap_d
    wx0_d, wy0_d = 300.0 - win_w / 2.0, 92.0
    wx0, wy0 = px(wx0_d, wy0_d)
    wx1, wy1 = px(wx0_d + win_w, wy0_d + ch_d + 2 * gap_d)
    cv2.rectangle(
        scene, (wx0 - sc(3), wy0 - sc(3)), (wx1 + sc(3), wy1 + sc(3)), (150, 150, 150), -1
    )
    cv2.rectangle(scene, (wx0, wy0), (wx1, wy1), (95, 95, 95), -1)
    cw_px, ch_px = sc(cw_d), sc(ch_d)
    digits: list[Box] = []
    for i in range(n_digits):
        x0, y0 = px(wx0_d + gap_d + i * (cw_d + gap_d), wy0_d + gap_d)
        digits.append(Box(x0, y0, cw_px, ch_px))
    font_d = _FONTS[int(rng.integers(len(_FONTS)))]
    int_fg, int_bg = (25.0, 25.0, 25.0), (238.0, 238.0, 236.0)
    dec_fg, dec_bg = (240.0, 240.0, 240.0), (40.0, 40.0, 175.0)
    strip_i = _wheel_strip(cw_px, ch_px, font_d, 0.16, int_fg, int_bg)
    strip_d = _wheel_strip(cw_px, ch_px, font_d, 0.16, dec_fg, dec_bg) if decimals else strip_i
    strips = tuple(strip_d if i >= n_digits - decimals else strip_i for i in range(n_digits))
    row_map, shade = _wheel_optics(ch_px)
    if 0 < decimals < n_digits:
        b = digits[n_digits - decimals - 1]
        cv2.circle(scene, (b.x2 + sc(4), b.y2 + sc(4)), sc(2.5), ink, -1, cv2.LINE_AA)
    _text(scene, "m", px(wx0_d + win_w + 10, wy0_d + 58), 1.4 * s, ink, sc(3), font_t)
    _text(scene, "3", px(wx0_d + win_w + 36, wy0_d + 34), 0.6 * s, ink, sc(2), font_t)
    serial = "".join(str(int(d)) for d in rng.integers(0, 10, 8))
    _text(scene, serial, px(200, 78), 0.9 * s, (90, 90, 90), sc(2), cv2.FONT_HERSHEY_SIMPLEX)
    brand = str(rng.choice(["ZR", "AQ", "HM", "WT"]))
    _text(scene, brand, px(120, 240), 1.4 * s, ink, sc(3), font_t)
    _text(scene, f"MAP{int(rng.integers(10, 40))}", px(120, 188), 0.5 * s, ink, sc(1))
    _text(scene, f"{int(rng.integers(2005, 2024))}", px(300, 200), 0.55 * s, ink, sc(2))
    _text(scene, "Q3=4  R=80", px(420, 200), 0.5 * s, ink, sc(1))

    # The dials: one style for all of them, all clockwise, 0 at 12 o'clock.
    st = DialStyle.random(rng)
    st = DialStyle(
        **{
            **asdict(st),
            "face": face,
            "plate": face,
            "ink": (40, 40, 40) if rng.random() < 0.8 else _RED_INK,
            "needle": (50, 45, 215) if rng.random() < 0.85 else (35, 35, 35),
            "layout": "inner",
            "ring": True,
            "numerals": True,
            "ring_radius": 1.0,
            "numeral_height": 0.27,
            "numeral_radius": 0.64,
            "needle_length": 0.88,
            "ticks": 10,
            "shadow": False,
        }
    )
    if st.shape == "wedge" or rng.random() < 0.5:
        st = DialStyle(**{**asdict(st), "hub": st.needle})
    n = len(factors)
    arc = bool(rng.random() < 0.6 and n >= 2)
    if arc:  # on an arc below the counter, as on the MAP16
        r_d = 46.0 if n <= 4 else 38.0
        step = 41.0 if n <= 4 else 34.0
        a0 = 172.0 - step * (n - 1) / 2.0
        centres = [
            (320 + 152 * _unit(a0 + step * i)[0], 240 + 152 * _unit(a0 + step * i)[1])
            for i in range(n)
        ]
    else:  # in a row
        r_d = 38.0 if n <= 4 else 32.0
        pitch = 2 * r_d + 18
        centres = [(320 + pitch * (i - (n - 1) / 2.0), 335.0) for i in range(n)]
        centres = centres[::-1]  # the coarsest dial on the right, as on the arc
    dials: list[_Dial] = []
    for f, (x, y) in zip(factors, centres, strict=True):
        c = px(x, y)
        r = float(sc(r_d))
        d = _Dial((float(c[0]), float(c[1])), r, f, "cw", 0.0, st)
        _draw_face(scene, d.center, r, st, "cw", 0.0, disk=False)
        lab = "x" + f"{f:.{max(0, round(-math.log10(f)))}f}".replace(".", ",")
        (tw, _), _ = cv2.getTextSize(lab, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, sc(1))
        lx, ly = px(x, y - r_d - 7)
        _text(scene, lab, (lx - tw / 2, ly), 0.45 * s, ink, sc(1))
        dials.append(d)
    star = (*px(262, 242), float(sc(26))) if arc else (*px(420, 250), float(sc(22)))
    base = _Layout(
        size=(w, h),
        scene=scene,
        digits=tuple(digits),
        markers=tuple(markers),
        strips=strips,
        row_map=row_map,
        shade=shade,
        cell_h=ch_px,
        disc=(0, 0, 0, 0),
        face=(*px(120, 60), *px(520, 430)),
    )
    scene.setflags(write=False)
    roi = {
        "digits": [b.to_dict() for b in digits],
        "decimals": decimals,
        "dials": [_dial_box(d) for d in dials],
        "reference": {"markers": [m.to_dict() for m in markers]},
    }
    return _DialLayout(base, tuple(dials), roi, (float(star[0]), float(star[1]), star[2]))


def _paint_star(scene: U8, lay: _DialLayout, reading: float) -> None:
    """The flow indicator: a black six-armed star that turns with the flow."""
    x, y, r = lay.star
    if r <= 0:
        return
    a0 = (reading * 1000.0 % 1.0) * 360.0
    for k in range(3):
        ux, uy = _unit(a0 + 60.0 * k)
        nx, ny = -uy, ux
        hw = 0.17 * r
        pts = [
            (x + ux * r + nx * hw, y + uy * r + ny * hw),
            (x - ux * r + nx * hw, y - uy * r + ny * hw),
            (x - ux * r - nx * hw, y - uy * r - ny * hw),
            (x + ux * r - nx * hw, y + uy * r - ny * hw),
        ]
        _poly(scene, pts, (25, 25, 25))


@lru_cache(maxsize=16)
def _register_layout(n_dials: int, layout_seed: int, size: tuple[int, int]) -> _DialLayout:
    rng = np.random.default_rng([layout_seed, n_dials, 0x4E6])
    w, h = size
    s, px, sc = _scaler(size)
    wall = [rng.uniform(120, 190), rng.uniform(120, 190), rng.uniform(110, 180)]
    scene = _texture(rng, size, wall, 18)
    hc = int(rng.integers(35, 75))
    _rounded_rect(scene, *px(50, 40), *px(590, 440), sc(24), (hc, hc, hc + 4))
    fx0, fy0 = px(78, 64)
    fx1, fy1 = px(562, 416)
    fc = rng.uniform(200, 238)
    face = (int(fc - rng.uniform(0, 18)), int(fc - rng.uniform(0, 6)), int(fc))
    _rounded_rect(scene, fx0, fy0, fx1, fy1, sc(8), face)
    ink: BGR = (25, 25, 25)
    markers = [
        _corner_mark(scene, px, sc, at, sx, sy, n, ink)
        for n, (at, sx, sy) in enumerate(
            (((92, 78), 1, 1), ((548, 78), -1, 1), ((548, 402), -1, -1), ((92, 402), 1, -1)),
            start=1,
        )
    ]
    font_t = _FONTS[int(rng.integers(len(_FONTS)))]
    _text(scene, "KILOWATT HOURS", px(215, 112), 0.8 * s, ink, sc(2), font_t)
    brand = str(rng.choice(["NORDWATT", "VOLTARA", "ELMETRA", "AMPERIX"]))
    _text(scene, brand, px(150, 352), 0.8 * s, ink, sc(2), font_t)
    _text(scene, "1~ 230V 50Hz  10(40)A", px(150, 378), 0.45 * s, ink, sc(1))
    rev = int(rng.choice([120, 150, 375, 600]))
    _text(scene, f"{rev} rev/kWh", px(380, 378), 0.45 * s, ink, sc(1))

    st = DialStyle.random(rng)
    needle = (30, 30, 30) if rng.random() < 0.8 else (40, 40, 175)
    st = DialStyle(
        **{
            **asdict(st),
            "face": face,
            "plate": face,
            "ink": ink,
            "needle": needle,
            "hub": needle,
            "shape": "line" if rng.random() < 0.6 else "arrow",
            "layout": "outer",
            "numerals": True,
            "ring_radius": 0.62,
            "numeral_height": 0.23,
            "numeral_radius": 0.86,
            "needle_length": 0.64,
            "needle_width": 0.035,
            "hub_radius": 0.1,
            "tail": 0.25,
            "ticks": int(rng.choice([10, 50])),
            "shadow": bool(rng.random() < 0.5),
        }
    )
    directions = register_directions(n_dials)
    commas = bool(rng.random() < 0.5)  # "10,000" or "10000"
    r_d = 42.0 if n_dials <= 5 else 35.0
    pitch = 2 * r_d + 12
    dials: list[_Dial] = []
    for i in range(n_dials):
        x, y = 320 + pitch * (i - (n_dials - 1) / 2.0), 222.0
        c = px(x, y)
        r = float(sc(r_d))
        f = float(10 ** (n_dials - 1 - i))
        d = _Dial((float(c[0]), float(c[1])), r, f, directions[i], 0.0, st)
        _draw_face(scene, d.center, r, st, d.direction, 0.0, disk=False)
        lab = f"{int(f):,}" if commas else f"{int(f)}"
        (tw, _), _ = cv2.getTextSize(lab, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, sc(1))
        _text(scene, lab, (c[0] - tw / 2, c[1] - r - sc(22)), 0.45 * s, ink, sc(1))
        _arrow_arc(scene, d.center, r * 1.13, d.direction, ink, sc(1))
        dials.append(d)
    slot = (*px(240, 292), *px(400, 306))
    cv2.rectangle(
        scene, (slot[0] - sc(2), slot[1] - sc(2)), (slot[2] + sc(2), slot[3] + sc(2)), ink, -1
    )
    grad = np.linspace(150, 215, slot[3] - slot[1], dtype=np.float32)
    scene[slot[1] : slot[3], slot[0] : slot[2]] = grad.astype(np.uint8)[:, None, None]
    first, last = dials[0], dials[-1]
    glare_boxes = tuple(
        Box(
            round(d.center[0] - d.radius),
            round(d.center[1] - d.radius),
            round(2 * d.radius),
            round(2 * d.radius),
        )
        for d in (first, last)
    )
    base = _Layout(
        size=(w, h),
        scene=scene,
        digits=glare_boxes,  # not wheels: _add_glare aims at the dial row through these
        markers=tuple(markers),
        strips=(),
        row_map=np.zeros(1, np.float64),
        shade=np.ones((1, 1, 1), np.float32),
        cell_h=0,
        disc=slot,
        face=(fx0, fy0, fx1, fy1),
    )
    scene.setflags(write=False)
    roi = {
        "digits": [],
        "decimals": 0,
        "dials": [_dial_box(d) for d in dials],
        "reference": {"markers": [m.to_dict() for m in markers]},
    }
    return _DialLayout(base, tuple(dials), roi, (0.0, 0.0, 0.0))


def _arrow_arc(
    img: U8, c: tuple[float, float], r: float, direction: str, color: BGR, thick: int
) -> None:
    """A short arc over the dial's top with an arrowhead showing its turning sense."""
    sgn = 1.0 if direction == "cw" else -1.0
    angs = np.linspace(-22.0 * sgn, 22.0 * sgn, 12)
    pts = np.array([[c[0] + r * _unit(a)[0], c[1] + r * _unit(a)[1]] for a in angs])
    cv2.polylines(
        img, [np.round(pts * _ONE).astype(np.int32)], False, color, thick, cv2.LINE_AA, _SHIFT
    )
    tip = pts[-1]
    back = pts[-3]
    d = tip - back
    d /= max(1e-9, float(np.hypot(*d)))
    n = np.array([-d[1], d[0]])
    hl = 0.12 * r
    head = [tuple(tip), tuple(tip - d * hl + n * hl * 0.5), tuple(tip - d * hl - n * hl * 0.5)]
    _poly(img, [(float(p[0]), float(p[1])) for p in head], color)


def _paint_slot(scene: U8, lay: _Layout, reading: float) -> None:
    x0, y0, x1, y1 = lay.disc
    frac = (reading * 0.75) % 1.0
    mw = max(2, (x1 - x0) // 14)
    mx = x0 + round(frac * (x1 - x0 + mw)) - mw
    a, b = max(x0, mx), min(x1, mx + mw)
    if b > a:
        scene[y0:y1, a:b] = (30, 30, 190)
