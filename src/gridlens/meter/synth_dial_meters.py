"""Synthetic meters with pointer dials: water meters with wheels and dials, dial registers.

The scenes follow :func:`gridlens.meter.synth.render_meter`: a cached, seeded layout with four
L-shaped corner marks for alignment, and the same camera model (homography, blur, lighting,
glare, noise, JPEG). They return the ROI as a JSON-ready dict with a ``dials`` list. The dials
themselves are drawn by :mod:`gridlens.meter.synth_dials` (styles, faces, needles).

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
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import check_param
from gridlens.meter.image import encode_jpeg
from gridlens.meter.roi import Box
from gridlens.meter.synth import (
    _FONTS,
    ExampleFiles,
    _camera_homography,
    _check_camera,
    _check_size,
    _Layout,
    _paint_wheels,
    _photograph,
    _rounded_rect,
    _text,
    _u8,
    _wheel_optics,
    _wheel_strip,
    wheel_positions,
)
from gridlens.meter.synth_dials import (
    _ONE,
    _RED_INK,
    _SHIFT,
    DialStyle,
    Direction,
    _angle,
    _draw_face,
    _draw_needle,
    _mod10,
    _poly,
    _unit,
)

__all__ = [
    "WATER_FACTORS",
    "SynthDialMeter",
    "dial_positions",
    "register_directions",
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
_Px = Callable[[float, float], tuple[int, int]]
_Sc = Callable[[float], int]

WATER_FACTORS = (0.1, 0.01, 0.001, 0.0001)


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
