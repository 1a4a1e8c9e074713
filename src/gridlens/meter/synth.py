"""Synthetic photos of mechanical (odometer) electricity meters with a known reading.

No real photos of whole meters may be shipped, so tests, benchmarks and the demo use these
renders. Each render has a known reading, known wheel positions and a known camera
transform.

**Odometer semantics** (:func:`wheel_positions`). A counter has ``n`` wheels; the rightmost
``decimals`` of them are after the decimal point. Let v = reading x 10^decimals, the count in
units of the rightmost wheel. The rightmost wheel turns continuously: its position is
v mod 10. Every higher wheel k (k = 1 is the second from the right) rests on its integer digit
d_k = floor(v / 10^k) mod 10. It rolls only while the wheel below it goes from 9 to 10, the
last tenth of that wheel's turn, as a real carry mechanism does::

    p_0 = v mod 10
    p_k = d_k + max(0, p_{k-1} - 9)          k = 1 .. n-1

Reading 129.95 with 4 wheels and 1 decimal gives positions (1, 2.5, 9.5, 9.5). 999.95 gives
(9.5, 9.5, 9.5, 9.5), halfway through the roll-over to 000.0. Positions are continuous in the
reading. The counter wraps at 10^(n - decimals).

*Inverse.* floor(p_k) = d_k for every k >= 1, because a roll never reaches a whole digit. So::

    reading = (p_0 + sum_{k>=1} floor(p_k) * 10^k) / 10^decimals

The fractional parts of the upper wheels carry no extra information: each is
max(0, p_{k-1} - 9). Carry resolution uses this redundancy when a mid-roll wheel is
ambiguous.

**Scene.** A fixed layout, set by (n_digits, decimals, layout_seed, size), has these parts:

- a textured wall and a dark meter housing with two screws;
- a light face plate with a brand name, rating text, "kWh", a barcode and a rotating-disc
  slot with a red mark;
- four printed L-shaped corner marks, which are the alignment markers;
- a dark window with the wheels: white on black, and white on red for decimal wheels.

Each wheel is a vertical strip of the digits ..., 9, 0, 1, ..., 9, 0, 1. It is seen through
its aperture at its fractional position, with cylinder foreshortening (arcsine row mapping)
and shading that darkens the top and bottom. :func:`render_reference` is the canonical view,
and its ROI boxes apply to every distorted render of the same layout.

**Camera model** (:func:`render_meter`), all seeded:

- a homography made of a shift, a rotation about the image centre, a zoom and a perspective
  warp (random corner displacements), exposed as ``SynthMeter.transform``;
- Gaussian blur, a brightness, contrast and white-balance change, and flash glare (a bright
  elliptical Gaussian blob that can cover digits);
- sensor noise and JPEG compression.

The noise is drawn from a per-size bank of Gaussian noise at a random offset, because
drawing fresh normal variates costs ~12 ms per frame. A 640x480 render takes about 10 ms,
with the JPEG round trip included.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import ParameterError, check_param
from gridlens.meter.carry import register_value
from gridlens.meter.image import encode_jpeg
from gridlens.meter.roi import Box, MeterROI, Reference

__all__ = [
    "NO_CAMERA_EFFECTS",
    "ExampleFiles",
    "SynthMeter",
    "matches_register",
    "render_digit_crop",
    "render_meter",
    "render_reference",
    "wheel_positions",
    "write_example",
]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Seed = int | np.random.Generator | None

#: ``render_meter`` keyword arguments for the ideal view: no shift, rotation, perspective,
#: glare, noise, blur or JPEG.
NO_CAMERA_EFFECTS: dict[str, float | None] = {
    "perspective": 0.0,
    "glare": 0.0,
    "noise": 0.0,
    "blur": 0.0,
    "shift_frac": 0.0,
    "rotation_deg": 0.0,
    "zoom": 0.0,
    "brightness": 0.0,
    "jpeg_quality": None,
}

_DESIGN_W, _DESIGN_H = 640, 480
# Under OpenCV 5 these are three distinct typefaces; thickness 1 is light, more is bold.
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL)
_BRANDS = ("NORDWATT", "VOLTARA", "ELMETRA", "AMPERIX", "KILOTEC", "WATTMARK")
_NOISE_PAD = 64
_CV5_TEXT = int(cv2.__version__.split(".")[0]) >= 5


@dataclass(frozen=True)
class SynthMeter:
    """One synthetic meter photo with its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        BGR ``uint8`` photo.
    reading : float
        The reading the counter shows (wrapped to the counter's range).
    wheels : numpy.ndarray
        True wheel positions in [0, 10), left to right (see :func:`wheel_positions`).
    roi : MeterROI
        Digit and marker boxes in the reference frame (the same as :func:`render_reference`).
    transform : numpy.ndarray
        3x3 homography that maps reference-frame pixel coordinates to ``image`` coordinates.
    """

    image: U8
    reading: float
    wheels: F64
    roi: MeterROI
    transform: F64


@dataclass(frozen=True)
class ExampleFiles:
    """Files written by :func:`write_example`."""

    reference: Path
    roi: Path
    meter: Path
    reading: float


def matches_register(value: float | None, truth: float, decimals: int) -> bool:
    """Whether ``value`` is exactly what a person reads off a meter whose true reading is
    ``truth`` (:func:`gridlens.meter.carry.register_value`): every wheel, carries included,
    with no tolerance.
    """
    if value is None:
        return False
    want = round(register_value(truth, decimals) * 10**decimals)
    return bool(round(float(value) * 10**decimals) == want)


def wheel_positions(reading: float, n_digits: int, decimals: int) -> F64:
    """Wheel positions of an odometer counter showing ``reading``.

    Parameters
    ----------
    reading : float
        The meter reading (>= 0), e.g. 1234.57 kWh. It wraps at 10^(n_digits - decimals).
    n_digits : int
        Number of wheels.
    decimals : int
        Number of wheels after the decimal point.

    Returns
    -------
    numpy.ndarray
        ``n_digits`` floats in [0, 10), left to right. The rightmost is
        (reading x 10^decimals) mod 10; a higher wheel sits on its digit and rolls during the
        last tenth of the turn of the wheel below it.

    Examples
    --------
    >>> wheel_positions(129.95, 4, 1).round(6).tolist()
    [1.0, 2.5, 9.5, 9.5]
    """
    _check_counter(n_digits, decimals, "wheel_positions")
    check_param(
        isinstance(reading, int | float | np.floating | np.integer)
        and math.isfinite(reading)
        and reading >= 0,
        "reading",
        "wheel_positions",
        "a finite number >= 0",
        reading,
    )
    v = round(float(reading) * 10.0**decimals, 6) % (10.0**n_digits)
    vi = math.floor(v)
    pos = np.empty(n_digits, dtype=np.float64)
    lower = (vi % 10) + (v - vi)
    pos[-1] = lower
    for k in range(1, n_digits):
        p = (vi // 10**k) % 10 + max(0.0, lower - 9.0)
        pos[n_digits - 1 - k] = p
        lower = p
    return pos


def render_reference(
    n_digits: int = 6,
    decimals: int = 1,
    *,
    layout_seed: int = 0,
    size: tuple[int, int] = (640, 480),
    reading: float = 0.0,
    seed: Seed = 0,
    noise: float = 0.01,
    jpeg_quality: int | None = 92,
) -> tuple[U8, MeterROI]:
    """Render the canonical, undistorted view of a meter layout and its ROI.

    Parameters
    ----------
    n_digits, decimals : int
        Counter layout.
    layout_seed : int
        Selects the face design (colours, brand, font); renders with the same
        (n_digits, decimals, layout_seed, size) share the layout.
    size : (int, int)
        Image (width, height).
    reading : float
        Reading shown on the reference (its digits are not used for alignment).
    seed : int, Generator or None
        Noise seed.
    noise : float
        Sensor noise standard deviation as a fraction of full scale.
    jpeg_quality : int or None
        JPEG round trip at this quality; None for none.

    Returns
    -------
    (numpy.ndarray, MeterROI)
        The BGR reference image, and the ROI with digit boxes and four corner-mark marker
        boxes (``reference.image_path`` is None).
    """
    m = render_meter(
        reading,
        n_digits=n_digits,
        decimals=decimals,
        layout_seed=layout_seed,
        size=size,
        seed=seed,
        perspective=0.0,
        glare=0.0,
        noise=noise,
        blur=0.0,
        shift_frac=0.0,
        rotation_deg=0.0,
        zoom=0.0,
        brightness=0.0,
        jpeg_quality=jpeg_quality,
    )
    return m.image, m.roi


def render_meter(
    reading: float,
    *,
    n_digits: int = 6,
    decimals: int = 1,
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
) -> SynthMeter:
    """Render a camera photo of a meter showing ``reading``.

    Parameters
    ----------
    reading : float
        The reading (>= 0); it wraps at 10^(n_digits - decimals).
    n_digits, decimals : int
        Counter layout: number of wheels, and how many are after the decimal point.
    seed : int, Generator or None
        Randomness of camera pose and image effects; the same seed gives the same image.
    layout_seed : int
        Selects the face design (see :func:`render_reference`).
    size : (int, int)
        Image (width, height).
    perspective : float
        0..1: each frame corner moves by up to ``perspective`` x 3 % of the image size.
    glare : float
        0..1: peak brightness of a flash-glare blob (0 = none, 1 = saturating).
    noise : float
        Sensor noise standard deviation as a fraction of full scale (0.02 = 5 grey levels).
    blur : float
        Gaussian blur sigma in pixels (0 = none).
    shift_frac : float
        Largest camera shift, as a fraction of the width and height (uniform in +-).
    rotation_deg : float
        Largest camera rotation in degrees (uniform in +-).
    zoom : float
        Largest relative scale change (uniform in +-).
    brightness : float
        Largest relative gain change; contrast offset and white balance vary with it.
    jpeg_quality : int or None
        JPEG round trip at this quality; None for none.
    transform : array_like, optional
        A 3x3 reference-to-image homography used instead of the random shift, rotation, zoom
        and perspective.

    Returns
    -------
    SynthMeter
        Image, reading, wheel positions, ROI and the applied transform.
    """
    _check_counter(n_digits, decimals, "render_meter")
    _check_size(size, 64, 4096, "render_meter")
    _check_camera(
        "render_meter",
        perspective=perspective,
        glare=glare,
        noise=noise,
        blur=blur,
        shift_frac=shift_frac,
        rotation_deg=rotation_deg,
        zoom=zoom,
        brightness=brightness,
        jpeg_quality=jpeg_quality,
    )
    wheels = wheel_positions(reading, n_digits, decimals)
    shown = round(float(reading) * 10.0**decimals, 6) % (10.0**n_digits) / 10.0**decimals
    rng = np.random.default_rng(seed)
    lay = _layout(n_digits, decimals, layout_seed, (int(size[0]), int(size[1])))
    w, h = lay.size

    scene = lay.scene.copy()
    _paint_wheels(scene, lay, wheels)
    _paint_disc(scene, lay, shown)

    hmat = _camera_homography(
        transform, rng, w, h, perspective, shift_frac, rotation_deg, zoom, "render_meter"
    )
    out = _photograph(scene, lay, rng, hmat, blur, brightness, glare, noise, jpeg_quality)
    roi = MeterROI(lay.digits, decimals, Reference(None, lay.markers))
    return SynthMeter(image=out, reading=shown, wheels=wheels, roi=roi, transform=hmat)


def _check_camera(
    owner: str,
    *,
    perspective: float,
    glare: float,
    noise: float,
    blur: float,
    shift_frac: float,
    rotation_deg: float,
    zoom: float,
    brightness: float,
    jpeg_quality: int | None,
) -> None:
    """Validate the camera-effect parameters of :func:`render_meter` (and its kin)."""
    for name, val, hi in (
        ("perspective", perspective, 1.0),
        ("glare", glare, 1.0),
        ("noise", noise, 0.5),
        ("blur", blur, 10.0),
        ("shift_frac", shift_frac, 0.3),
        ("rotation_deg", rotation_deg, 45.0),
        ("zoom", zoom, 0.3),
        ("brightness", brightness, 0.8),
    ):
        check_param(
            isinstance(val, int | float) and 0.0 <= val <= hi,
            name,
            owner,
            f"a number in [0, {hi}]",
            val,
        )
    check_param(
        jpeg_quality is None or (isinstance(jpeg_quality, int) and 1 <= jpeg_quality <= 100),
        "jpeg_quality",
        owner,
        "None or an int in [1, 100]",
        jpeg_quality,
    )


def _camera_homography(
    transform: npt.ArrayLike | None,
    rng: np.random.Generator,
    w: int,
    h: int,
    perspective: float,
    shift_frac: float,
    rotation_deg: float,
    zoom: float,
    owner: str,
) -> F64:
    """The given reference-to-image homography (normalised), or a random camera pose."""
    if transform is not None:
        hmat = np.asarray(transform, dtype=np.float64)
        if hmat.shape != (3, 3) or not np.all(np.isfinite(hmat)) or abs(hmat[2, 2]) < 1e-12:
            raise ParameterError(
                f"The 'transform' parameter of {owner} must be a finite 3x3 homography."
            )
        out: F64 = hmat / hmat[2, 2]
        return out
    return _random_homography(rng, w, h, perspective, shift_frac, rotation_deg, zoom)


def _photograph(
    scene: U8,
    lay: _Layout,
    rng: np.random.Generator,
    hmat: F64,
    blur: float,
    brightness: float,
    glare: float,
    noise: float,
    jpeg_quality: int | None,
) -> U8:
    """Take the camera photo of ``scene``: warp, blur, lighting, glare, noise and JPEG.

    Glare falls on ``lay.digits`` or ``lay.face`` (see :func:`_add_glare`).
    """
    h, w = scene.shape[:2]
    if np.allclose(hmat, np.eye(3)):
        img = scene
    else:
        img = _u8(
            cv2.warpPerspective(
                scene, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
            )
        )
    if blur > 0:
        img = _u8(cv2.GaussianBlur(img, (0, 0), float(blur)))

    f = img.astype(np.float32)
    if brightness > 0:
        gain = 1.0 + rng.uniform(-brightness, brightness)
        wb = 1.0 + rng.uniform(-0.25, 0.25, 3) * brightness
        offset = rng.uniform(-40.0, 40.0) * brightness
        f *= (gain * wb).astype(np.float32)
        f += np.float32(offset)
    if glare > 0:
        _add_glare(f, rng, lay, hmat, glare)
    if noise > 0:
        bank = _noise_bank(w, h)
        oy, ox = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
        f += bank[oy : oy + h, ox : ox + w] * np.float32(noise * 255.0)
    np.clip(f, 0.0, 255.0, out=f)
    out: U8 = f.astype(np.uint8)
    if jpeg_quality is not None:
        out = _jpeg_roundtrip(out, jpeg_quality)
    return out


def write_example(
    folder: str | os.PathLike[str],
    reading: float = 12345.6,
    seed: int = 0,
    *,
    n_digits: int = 6,
    decimals: int = 1,
    layout_seed: int = 0,
) -> ExampleFiles:
    """Write ``reference.jpg``, ``roi.json`` and ``meter.jpg`` into ``folder``.

    Then a user can run ``gridlens read meter.jpg --roi roi.json``.

    Parameters
    ----------
    folder : path
        Created if missing; existing files of these names are overwritten.
    reading : float
        The reading ``meter.jpg`` shows.
    seed : int
        Seed of the photo's camera pose and effects.
    n_digits, decimals, layout_seed : int
        Counter layout (see :func:`render_meter`).

    Returns
    -------
    ExampleFiles
        The three paths and the reading shown.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ref_img, roi = render_reference(n_digits, decimals, layout_seed=layout_seed, seed=seed)
    m = render_meter(
        reading, n_digits=n_digits, decimals=decimals, layout_seed=layout_seed, seed=seed
    )
    ref_path, roi_path, meter_path = out / "reference.jpg", out / "roi.json", out / "meter.jpg"
    ref_path.write_bytes(encode_jpeg(ref_img, 95))
    meter_path.write_bytes(encode_jpeg(m.image, 95))
    full = MeterROI(roi.digits, roi.decimals, Reference(ref_path, roi.markers))
    roi_path.write_text(json.dumps(full.to_dict(base_dir=out), indent=2) + "\n", encoding="utf-8")
    return ExampleFiles(reference=ref_path, roi=roi_path, meter=meter_path, reading=m.reading)


def render_digit_crop(
    position: float,
    *,
    seed: Seed = None,
    size: tuple[int, int] = (32, 48),
    glare: float = 0.3,
    noise: float = 0.03,
    blur: float = 0.6,
    jitter: float = 0.04,
) -> U8:
    """Render one wheel as seen through its window, with random style and image effects.

    Use it to add variety to training data. The style varies: Hershey font, stroke width,
    digit size, colour scheme (white on black, black on white, white on red, red on white),
    digit pitch and cylinder shading. So do the image effects: box misplacement (``jitter``),
    small rotation, glare, blur, noise, gain and sometimes JPEG.

    Parameters
    ----------
    position : float
        Wheel position in [0, 10); digit floor(position) moves up and out as the next one
        comes in from below (3.5 shows the lower half of 3 above the upper half of 4).
    seed : int, Generator or None
        Randomness of style and effects.
    size : (int, int)
        Crop (width, height).
    glare : float
        0..1: strength of an occasional glare blob.
    noise : float
        Largest noise standard deviation as a fraction of full scale.
    blur : float
        Largest Gaussian blur sigma in output pixels.
    jitter : float
        Largest box misplacement as a fraction of the crop size. The vertical part is a
        quarter of it, because it shifts the apparent position.

    Returns
    -------
    numpy.ndarray
        BGR ``uint8`` crop of shape (height, width, 3).
    """
    check_param(
        isinstance(position, int | float | np.floating) and 0.0 <= float(position) < 10.0,
        "position",
        "render_digit_crop",
        "a number in [0, 10)",
        position,
    )
    _check_size(size, 8, 512, "render_digit_crop")
    rng = np.random.default_rng(seed)
    ow, oh = int(size[0]), int(size[1])
    ss = 4  # supersampling
    cw, ch = ow * ss, oh * ss
    schemes = (
        ((235, 235, 235), (28, 28, 28)),
        ((20, 20, 20), (225, 225, 220)),
        ((240, 240, 240), (40, 40, 170)),
        ((30, 30, 190), (230, 230, 230)),
    )
    fg0, bg0 = schemes[int(rng.choice(len(schemes), p=[0.55, 0.2, 0.15, 0.1]))]
    fg = tuple(float(np.clip(c + rng.normal(0, 8), 0, 255)) for c in fg0)
    bg = tuple(float(np.clip(c + rng.normal(0, 8), 0, 255)) for c in bg0)
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    pitch = ch * rng.uniform(0.85, 1.1)
    glyph_h = pitch * rng.uniform(0.5, 0.7)
    # weight 0 is the light weight of OpenCV 5's typefaces; otherwise stroke width / height
    weight = 0.0 if _CV5_TEXT and rng.random() < 0.3 else round(rng.uniform(0.1, 0.17), 2)
    dx = rng.uniform(-jitter, jitter) * cw
    dy = rng.uniform(-jitter, jitter) * 0.25 * ch
    strip = _digit_strip(cw, pitch, glyph_h, font, weight, fg, bg, float(position), dx, dy, ch)
    # One remap: rows map through an arcsine (cylinder), then a small rotation of the print.
    radius = ch * rng.uniform(0.55, 0.8)
    r = np.arange(ch, dtype=np.float64) - (ch - 1) / 2.0
    yc = ((ch - 1) / 2.0 + radius * np.arcsin(np.clip(r / radius, -1, 1)))[:, None]
    xs = np.arange(cw, dtype=np.float64)[None, :]
    rot = cv2.getRotationMatrix2D(((cw - 1) / 2.0, (ch - 1) / 2.0), rng.uniform(-3.0, 3.0), 1.0)
    inv = cv2.invertAffineTransform(rot)
    map_x = (inv[0, 0] * xs + inv[0, 1] * yc + inv[0, 2]).astype(np.float32)
    map_y = (inv[1, 0] * xs + inv[1, 1] * yc + inv[1, 2]).astype(np.float32)
    img = cv2.remap(strip, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    crop = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA).astype(np.float32)
    shade_depth = rng.uniform(0.15, 0.5)
    t = (np.arange(oh, dtype=np.float32) - (oh - 1) / 2.0) / (oh / 2.0)
    crop *= (1.0 - shade_depth * t**2)[:, None, None]
    crop *= np.float32(rng.uniform(0.6, 1.3))
    crop += np.float32(rng.uniform(-25, 25))
    if glare > 0 and rng.random() < 0.5:
        cx, cy = rng.uniform(0, ow), rng.uniform(0, oh)
        sx, sy = rng.uniform(0.15, 0.6) * ow, rng.uniform(0.1, 0.4) * oh
        yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float32)
        blob = np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
        crop += (glare * rng.uniform(80, 255) * blob)[:, :, None].astype(np.float32)
    sigma = rng.uniform(0, blur)
    if sigma > 0.2:
        crop = np.asarray(cv2.GaussianBlur(crop, (0, 0), sigma), dtype=np.float32)
    if noise > 0:
        crop += rng.standard_normal(crop.shape, dtype=np.float32) * np.float32(
            rng.uniform(0, noise) * 255.0
        )
    out: U8 = np.clip(crop, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = _jpeg_roundtrip(out, int(rng.integers(60, 96)))
    return out


# ---------------------------------------------------------------------------------------------
# Layout (cached per design) and painting helpers


@dataclass(frozen=True)
class _Layout:
    size: tuple[int, int]
    scene: U8
    digits: tuple[Box, ...]
    markers: tuple[Box, ...]
    strips: tuple[F32, ...]  # one per wheel: 13 cells (digits 9, 0..9, 0, 1), float32 BGR
    row_map: F64  # aperture row -> strip row offset (cylinder foreshortening)
    shade: F32  # (ch, 1, 1) cylinder shading
    cell_h: int
    disc: tuple[int, int, int, int]  # slot x0, y0, x1, y1
    face: tuple[int, int, int, int]  # face plate x0, y0, x1, y1


def _check_size(size: object, lo: int, hi: int, owner: str) -> None:
    check_param(
        isinstance(size, tuple | list)
        and len(size) == 2
        and all(isinstance(s, int) and lo <= s <= hi for s in size),
        "size",
        owner,
        f"a (width, height) pair of ints in [{lo}, {hi}]",
        size,
    )


def _check_counter(n_digits: int, decimals: int, owner: str) -> None:
    check_param(
        isinstance(n_digits, int) and not isinstance(n_digits, bool) and 1 <= n_digits <= 10,
        "n_digits",
        owner,
        "an int in [1, 10]",
        n_digits,
    )
    check_param(
        isinstance(decimals, int) and not isinstance(decimals, bool) and 0 <= decimals <= n_digits,
        "decimals",
        owner,
        f"an int in [0, n_digits={n_digits}]",
        decimals,
    )


@lru_cache(maxsize=8)
def _noise_bank(w: int, h: int) -> F32:
    rng = np.random.default_rng(0x5EED)
    bank: F32 = rng.standard_normal((h + _NOISE_PAD, w + _NOISE_PAD, 3), dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _jpeg_roundtrip(img: U8, quality: int) -> U8:
    _, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return _u8(cv2.imdecode(enc, cv2.IMREAD_COLOR if img.ndim == 3 else cv2.IMREAD_GRAYSCALE))


def _u8(a: object) -> U8:
    """View an OpenCV result (typed as a generic array) as uint8; no copy."""
    return np.asarray(a, dtype=np.uint8)


def _text(
    img: U8,
    text: str,
    org: tuple[float, float],
    scale: float,
    color: tuple[int, int, int],
    thick: int,
    font: int = cv2.FONT_HERSHEY_SIMPLEX,
) -> None:
    cv2.putText(
        img,
        text,
        (round(org[0]), round(org[1])),
        font,
        scale,
        color,
        max(1, thick),
        cv2.LINE_AA,
    )


_GLYPH_REF_H = 200.0  # digit ink height at which glyph metrics are measured


@lru_cache(maxsize=64)
def _glyph_metrics(font: int, weight: float) -> tuple[float, float, tuple[float, ...]]:
    """Font scale and ink offsets for digits whose ink is ``_GLYPH_REF_H`` px tall.

    ``getTextSize`` reports the line height, not the digits' ink, and differs between OpenCV
    versions, so the ink is measured once per (font, weight) and scaled linearly. Returns the
    scale, the height of the ink centre above the baseline, and each digit's ink centre to
    the right of the text origin.
    """
    ref_h = _GLYPH_REF_H
    thick = _thickness(weight, ref_h)
    (_, th), _ = cv2.getTextSize("0", font, 1.0, thick)
    scale = ref_h / max(0.75 * th, 1.0)
    size = round(ref_h * 2.5 + 4 * thick)
    base = round(size * 0.75)
    for final in (False, True):
        tops, bottoms, x_offs = [], [], []
        for d in range(10):
            canvas = np.zeros((size, size), np.uint8)
            cv2.putText(canvas, str(d), (size // 4, base), font, scale, 255, thick, cv2.LINE_AA)
            ys = np.flatnonzero(canvas.max(axis=1) > 127)
            xs = np.flatnonzero(canvas.max(axis=0) > 127)
            if len(ys) == 0:  # pragma: no cover - every typeface draws digits
                continue
            tops.append(int(ys[0]))
            bottoms.append(int(ys[-1]))
            x_offs.append((xs[0] + xs[-1]) / 2.0 - size // 4)
        top, bottom = min(tops), max(bottoms)
        if not final:
            scale *= ref_h / (bottom - top + 1)
    y_off = base - (top + bottom) / 2.0
    return scale, float(y_off), tuple(float(x) for x in x_offs)


def _thickness(weight: float, glyph_h: float) -> int:
    """Stroke thickness: ``weight`` x digit height, at least 2 (bold); 0 means 1 (light)."""
    return 1 if weight <= 0 else max(2, round(weight * glyph_h))


def _digit_strip(
    cw: int,
    pitch: float,
    glyph_h: float,
    font: int,
    weight: float,
    fg: tuple[float, ...],
    bg: tuple[float, ...],
    position: float,
    dx: float,
    dy: float,
    ch: int,
) -> U8:
    """Draw the digits visible at ``position`` into a (ch, cw) canvas, ``pitch`` px apart.

    Digit floor(position) is centred at the canvas centre when the position is whole; higher
    digits lie below it. ``weight`` is the stroke width relative to the digit height (0 for
    the light weight).
    """
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = np.array(bg, dtype=np.float64).round().astype(np.uint8)
    scale0, y_off0, x_offs0 = _glyph_metrics(font, weight)
    k_h = glyph_h / _GLYPH_REF_H
    scale, thick = scale0 * k_h, _thickness(weight, glyph_h)
    base = math.floor(position)
    color = tuple(round(c) for c in fg)
    for k in range(base - 2, base + 3):
        cy = (ch - 1) / 2.0 + (k - position) * pitch + dy
        if cy < -glyph_h or cy > ch + glyph_h:
            continue
        d = k % 10
        org = ((cw - 1) / 2.0 + dx - x_offs0[d] * k_h, cy + y_off0 * k_h)
        _text(canvas, str(d), org, scale, (color[0], color[1], color[2]), thick, font)
    return canvas


def _rounded_rect(
    img: U8, x0: int, y0: int, x1: int, y1: int, r: int, color: tuple[int, int, int]
) -> None:
    cv2.rectangle(img, (x0 + r, y0), (x1 - r, y1), color, -1)
    cv2.rectangle(img, (x0, y0 + r), (x1, y1 - r), color, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(img, (cx, cy), r, color, -1, cv2.LINE_AA)


@lru_cache(maxsize=16)
def _layout(n_digits: int, decimals: int, layout_seed: int, size: tuple[int, int]) -> _Layout:
    rng = np.random.default_rng([layout_seed, n_digits, decimals, 0x3E7E])
    w, h = size
    s = min(w / _DESIGN_W, h / _DESIGN_H)
    ox, oy = (w - _DESIGN_W * s) / 2.0, (h - _DESIGN_H * s) / 2.0

    def px(x: float, y: float) -> tuple[int, int]:
        return round(ox + x * s), round(oy + y * s)

    def sc(v: float) -> int:
        return max(1, round(v * s))

    # Wall: smooth random texture plus a cabinet edge.
    wall = np.array([rng.uniform(120, 190), rng.uniform(120, 190), rng.uniform(110, 180)])
    tex = rng.normal(0, 18, (max(2, h // 24), max(2, w // 24), 1)).astype(np.float32)
    tex_full = cv2.resize(tex, (w, h), interpolation=cv2.INTER_CUBIC)
    if tex_full.ndim == 2:
        tex_full = tex_full[:, :, None]
    scene = np.clip(wall[None, None, :] + tex_full, 0, 255).astype(np.uint8)
    edge_x = px(rng.uniform(20, 50), 0)[0]
    cv2.line(scene, (edge_x, 0), (edge_x, h - 1), (60, 60, 60), sc(3), cv2.LINE_AA)

    # Housing and face plate.
    hc = int(rng.integers(35, 70))
    _rounded_rect(scene, *px(70, 45), *px(570, 435), sc(22), (hc, hc, hc + 4))
    fx0, fy0 = px(98, 68)
    fx1, fy1 = px(542, 412)
    face_col = np.array([rng.uniform(185, 225)] * 3) + rng.uniform(-8, 8, 3)
    face_c = tuple(int(c) for c in np.clip(face_col, 0, 255))
    _rounded_rect(scene, fx0, fy0, fx1, fy1, sc(8), (face_c[0], face_c[1], face_c[2]))
    for sx in (84, 556):  # screws on the housing
        c = px(sx, 240)
        cv2.circle(scene, c, sc(9), (150, 150, 155), -1, cv2.LINE_AA)
        cv2.circle(scene, c, sc(9), (90, 90, 95), sc(1), cv2.LINE_AA)
        a = rng.uniform(0, math.pi)
        d = (round(math.cos(a) * 7 * s), round(math.sin(a) * 7 * s))
        cv2.line(scene, (c[0] - d[0], c[1] - d[1]), (c[0] + d[0], c[1] + d[1]), (60, 60, 60), sc(2))

    ink = (25, 25, 25)
    # L-shaped corner marks, each opening towards the face centre; marker boxes around them.
    markers: list[Box] = []
    arm, thick_m, inset, box_sz = 26, 6, 16, 44
    for n_dots, (cx_d, cy_d, sx_, sy_) in enumerate(
        (
            (98 + inset, 68 + inset, 1, 1),
            (542 - inset, 68 + inset, -1, 1),
            (542 - inset, 412 - inset, -1, -1),
            (98 + inset, 412 - inset, 1, -1),
        ),
        start=1,
    ):
        p0 = px(cx_d, cy_d)
        p1 = px(cx_d + sx_ * arm, cy_d + sy_ * thick_m)
        p2 = px(cx_d + sx_ * thick_m, cy_d + sy_ * arm)
        cv2.rectangle(scene, p0, p1, ink, -1)
        cv2.rectangle(scene, p0, p2, ink, -1)
        # 1-4 filled cells of a 2x2 grid make each mark unique (no flip/rotation ambiguity).
        for j in range(n_dots):
            a, b = 11 + 10 * (j % 2), 11 + 10 * (j // 2)
            q0 = px(cx_d + sx_ * a, cy_d + sy_ * b)
            q1 = px(cx_d + sx_ * (a + 7), cy_d + sy_ * (b + 7))
            cv2.rectangle(scene, q0, q1, ink, -1)
        bx0, by0 = px(
            cx_d - 6 if sx_ > 0 else cx_d + 6 - box_sz, cy_d - 6 if sy_ > 0 else cy_d + 6 - box_sz
        )
        markers.append(Box(bx0, by0, sc(box_sz), sc(box_sz)))

    # Text.
    brand = _BRANDS[int(rng.integers(len(_BRANDS)))]
    font_t = _FONTS[int(rng.integers(len(_FONTS)))]
    _text(scene, brand, px(150, 118), 1.0 * s, ink, sc(2), font_t)
    _text(
        scene, f"DZ-{int(rng.integers(2, 9))}  1~  230V  50Hz", px(150, 140), 0.45 * s, ink, sc(1)
    )
    serial = "".join(str(int(d)) for d in rng.integers(0, 10, 8))
    _text(scene, f"Nr. {serial}", px(360, 118), 0.5 * s, ink, sc(1))
    rev = int(rng.choice([75, 120, 150, 375, 600]))
    _text(scene, f"{rev} U/kWh", px(150, 330), 0.55 * s, ink, sc(1))
    _text(scene, "10(60) A   Kl. 2", px(150, 356), 0.5 * s, ink, sc(1))
    _text(scene, f"{int(rng.integers(1990, 2024))}", px(150, 382), 0.5 * s, ink, sc(1))
    # Barcode with random bar widths.
    x = 365.0
    while x < 490:
        bw = rng.choice([1.5, 2.5, 3.5])
        if rng.random() < 0.55:
            cv2.rectangle(scene, px(x, 340), px(x + bw, 382), ink, -1)
        x += bw + rng.choice([1.5, 2.5])

    # Counter window and wheel apertures.
    gap_d = 8.0
    cw_d = min(40.0, (360.0 - (n_digits + 1) * gap_d) / n_digits)
    ch_d = 58.0
    win_w = n_digits * cw_d + (n_digits + 1) * gap_d
    wx0_d = 320.0 - win_w / 2.0 - 18.0
    wy0_d = 168.0
    wx0, wy0 = px(wx0_d, wy0_d)
    wx1, wy1 = px(wx0_d + win_w, wy0_d + ch_d + 2 * gap_d)
    cv2.rectangle(
        scene, (wx0 - sc(3), wy0 - sc(3)), (wx1 + sc(3), wy1 + sc(3)), (120, 120, 125), -1
    )
    cv2.rectangle(scene, (wx0, wy0), (wx1, wy1), (18, 18, 18), -1)
    cw_px, ch_px = sc(cw_d), sc(ch_d)
    digits: list[Box] = []
    for i in range(n_digits):
        x0, y0 = px(wx0_d + gap_d + i * (cw_d + gap_d), wy0_d + gap_d)
        digits.append(Box(x0, y0, cw_px, ch_px))
    if 0 < decimals < n_digits:
        last_int = digits[n_digits - decimals - 1]
        dot_c = (last_int.x2 + round(gap_d * s / 2), last_int.y2 + round(gap_d * s / 2))
        cv2.circle(scene, dot_c, sc(2.5), (230, 230, 230), -1, cv2.LINE_AA)
    _text(scene, "kWh", px(wx0_d + win_w + 10, wy0_d + 52), 0.9 * s, ink, sc(2), font_t)

    # Rotating-disc slot.
    disc = (*px(230, 280), *px(410, 296))
    cv2.rectangle(
        scene, (disc[0] - sc(2), disc[1] - sc(2)), (disc[2] + sc(2), disc[3] + sc(2)), ink, -1
    )
    grad = np.linspace(150, 215, disc[3] - disc[1], dtype=np.float32)
    scene[disc[1] : disc[3], disc[0] : disc[2]] = grad.astype(np.uint8)[:, None, None]

    # Wheel strips: digits 9, 0, 1, ..., 9, 0, 1 (13 cells), digit k centred in cell k + 1.
    font_d = _FONTS[int(rng.integers(len(_FONTS)))]
    int_fg, int_bg = (235, 235, 235), (30, 30, 30)
    dec_fg, dec_bg = (240, 240, 240), (38, 38, 168)
    strips_cache: dict[bool, F32] = {}
    strips: list[F32] = []
    weight_d = 0.18
    for i in range(n_digits):
        is_dec = i >= n_digits - decimals
        if is_dec not in strips_cache:
            fg, bg = (dec_fg, dec_bg) if is_dec else (int_fg, int_bg)
            strips_cache[is_dec] = _wheel_strip(cw_px, ch_px, font_d, weight_d, fg, bg)
        strips.append(strips_cache[is_dec])
    row_map, shade = _wheel_optics(ch_px)
    scene.setflags(write=False)
    return _Layout(
        size=(w, h),
        scene=scene,
        digits=tuple(digits),
        markers=tuple(markers),
        strips=tuple(strips),
        row_map=row_map,
        shade=shade,
        cell_h=ch_px,
        disc=disc,
        face=(fx0, fy0, fx1, fy1),
    )


def _wheel_strip(
    cw_px: int,
    ch_px: int,
    font: int,
    weight: float,
    fg: tuple[float, ...],
    bg: tuple[float, ...],
) -> F32:
    """A read-only wheel strip of 13 cells (digits 9, 0..9, 0, 1), each ``ch_px`` tall."""
    cells = [
        _digit_strip(cw_px, ch_px, ch_px * 0.62, font, weight, fg, bg, float(k % 10), 0, 0, ch_px)
        for k in range(-1, 12)
    ]
    strip: F32 = np.concatenate(cells, axis=0).astype(np.float32)
    strip.setflags(write=False)
    return strip


def _wheel_optics(ch_px: int) -> tuple[F64, F32]:
    """Row map (cylinder foreshortening) and shading of a wheel aperture ``ch_px`` tall."""
    radius = 0.62 * ch_px
    r = np.arange(ch_px, dtype=np.float64) - (ch_px - 1) / 2.0
    row_map: F64 = (ch_px - 1) / 2.0 + radius * np.arcsin(r / radius)
    t = r / (ch_px / 2.0)
    shade: F32 = (1.0 - 0.42 * t**2).astype(np.float32)[:, None, None]
    return row_map, shade


def _paint_wheels(scene: U8, lay: _Layout, wheels: F64) -> None:
    ch = lay.cell_h
    for box, strip, p in zip(lay.digits, lay.strips, wheels, strict=True):
        y = ch + float(p) * ch + lay.row_map  # strip cell 0 holds digit 9, so digit 0 is at ch
        i0 = np.floor(y).astype(np.intp)
        f = (y - i0).astype(np.float32)[:, None, None]
        rows = strip[i0] * (1.0 - f) + strip[i0 + 1] * f
        rows *= lay.shade
        scene[box.y : box.y2, box.x : box.x2] = rows.astype(np.uint8)


def _paint_disc(scene: U8, lay: _Layout, reading: float) -> None:
    x0, y0, x1, y1 = lay.disc
    frac = (reading * 75.0) % 1.0  # the disc mark moves with consumption
    mw = max(2, (x1 - x0) // 14)
    mx = x0 + round(frac * (x1 - x0 + mw)) - mw
    a, b = max(x0, mx), min(x1, mx + mw)
    if b > a:
        scene[y0:y1, a:b] = (30, 30, 190)


def _random_homography(
    rng: np.random.Generator,
    w: int,
    h: int,
    perspective: float,
    shift_frac: float,
    rotation_deg: float,
    zoom: float,
) -> F64:
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ang = math.radians(rng.uniform(-rotation_deg, rotation_deg))
    k = 1.0 + rng.uniform(-zoom, zoom)
    tx, ty = rng.uniform(-shift_frac, shift_frac) * w, rng.uniform(-shift_frac, shift_frac) * h
    c, s_ = math.cos(ang) * k, math.sin(ang) * k
    sim = np.array(
        [[c, -s_, cx - c * cx + s_ * cy + tx], [s_, c, cy - s_ * cx - c * cy + ty], [0, 0, 1.0]]
    )
    if perspective > 0:
        src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
        amp = perspective * 0.03 * np.array([w, h])
        dst = (src + rng.uniform(-1, 1, (4, 2)) * amp).astype(np.float32)
        persp = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
        sim = persp @ sim
    out: F64 = sim / sim[2, 2]
    return out


def _add_glare(f: F32, rng: np.random.Generator, lay: _Layout, hmat: F64, glare: float) -> None:
    """Add a bright elliptical Gaussian blob somewhere on the (warped) meter face."""
    h, w = f.shape[:2]
    s = min(w / _DESIGN_W, h / _DESIGN_H)
    if rng.random() < 0.5:  # over the counter window, partly covering digits
        b0, b1 = lay.digits[0], lay.digits[-1]
        x = rng.uniform(b0.x, b1.x2)
        y = rng.uniform(b0.y - 0.5 * b0.h, b0.y2 + 0.5 * b0.h)
    else:
        x0, y0, x1, y1 = lay.face
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
    p = hmat @ np.array([x, y, 1.0])
    cx, cy = p[0] / p[2], p[1] / p[2]
    sx, sy = rng.uniform(12, 55) * s, rng.uniform(8, 32) * s
    ang = rng.uniform(0, math.pi)
    amp = glare * rng.uniform(160, 300)
    r = 3.0 * max(sx, sy)
    xa, xb = max(0, int(cx - r)), min(w, int(cx + r) + 1)
    ya, yb = max(0, int(cy - r)), min(h, int(cy + r) + 1)
    if xb <= xa or yb <= ya:
        return
    yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    ca, sa = np.float32(math.cos(ang)), np.float32(math.sin(ang))
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    blob = np.exp(-0.5 * ((u / np.float32(sx)) ** 2 + (v / np.float32(sy)) ** 2))
    f[ya:yb, xa:xb] += (np.float32(amp) * blob)[:, :, None]
