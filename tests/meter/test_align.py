"""Alignment to the reference: accuracy against the renderer's known camera transform."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from gridlens.errors import ComputationError, NotFoundError, ParameterError
from gridlens.meter._align_match import halve, score, to_gray
from gridlens.meter.align import Aligner, crop_digits
from gridlens.meter.data import data_root
from gridlens.meter.image import decode_image
from gridlens.meter.reading import MeterReader
from gridlens.meter.roi import MeterROI, Reference, load_roi
from gridlens.meter.synth import NO_CAMERA_EFFECTS, render_meter, render_reference

HARD = dict(shift_frac=0.05, rotation_deg=5.0, perspective=1.0, glare=1.0, noise=0.03)
CLEAN = NO_CAMERA_EFFECTS
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def reference() -> tuple[npt.NDArray[np.uint8], MeterROI]:
    return render_reference(6, 1)


@pytest.fixture(scope="module")
def aligners(reference: tuple[npt.NDArray[np.uint8], MeterROI]) -> dict[str, Aligner]:
    ref, roi = reference
    return {m: Aligner(ref, roi, method=m) for m in ("auto", "markers", "features")}


def _corner_error(
    matrix: npt.NDArray[np.float64], truth: npt.NDArray[np.float64], roi: MeterROI
) -> float:
    """Largest distance in photo pixels between digit-box corners mapped by two transforms."""
    corners = np.array([c for b in roi.digits for c in b.corners()], np.float64)[None]
    p = cv2.perspectiveTransform(corners, matrix)[0]
    q = cv2.perspectiveTransform(corners, truth)[0]
    return float(np.hypot(*(p - q).T).max())


@pytest.mark.parametrize("method", ["markers", "features"])
def test_recovers_the_camera_transform(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI], method: str
) -> None:
    _, roi = reference
    errors = []
    for seed in range(30):
        m = render_meter(1000.0 + 37.1 * seed, seed=seed, **HARD)
        al = aligners[method].align(m.image)
        assert al.method == method
        assert al.warped.shape == (480, 640, 3)
        assert al.score > 0.8
        errors.append(_corner_error(al.matrix, m.transform, roi))
    assert max(errors) < 1.0, errors
    assert float(np.mean(errors)) < 0.3


def test_reports_shift_and_rotation(aligners: dict[str, Aligner]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        ang = np.radians(rng.uniform(-5, 5))
        t = np.array(
            [
                [np.cos(ang), -np.sin(ang), rng.uniform(-32, 32)],
                [np.sin(ang), np.cos(ang), rng.uniform(-24, 24)],
                [0, 0, 1.0],
            ]
        )
        m = render_meter(77.7, seed=1, transform=t, noise=0.02, glare=0.3)
        al = aligners["auto"].align(m.image)
        assert al.method == "markers" and al.inliers == 4
        assert al.rotation_deg == pytest.approx(np.degrees(ang), abs=0.05)
        assert al.scale == pytest.approx(1.0, abs=0.003)
        center = aligners["auto"]._center
        moved = t @ np.array([*center, 1.0])
        assert al.shift_px == pytest.approx(float(np.hypot(*(moved[:2] - center))), abs=0.3)


def test_aligned_crops_show_the_true_wheels(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI]
) -> None:
    _, roi = reference
    reading = 5280.7
    truth = crop_digits(render_meter(reading, seed=0, **CLEAN).image, roi)
    m = render_meter(reading, seed=11, **{**HARD, "glare": 0.0})
    aligned = crop_digits(aligners["auto"].align(m.image).warped, roi)
    unaligned = crop_digits(m.image, roi)
    assert [c.shape for c in aligned] == [(b.h, b.w, 3) for b in roi.digits]

    def ncc(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
        x, y = a.astype(float).ravel(), b.astype(float).ravel()
        x, y = x - x.mean(), y - y.mean()
        return float(x @ y / np.sqrt((x @ x) * (y @ y)))

    for a, u, t in zip(aligned, unaligned, truth, strict=True):
        assert ncc(a, t) > 0.9
        assert ncc(a, t) > ncc(u, t) + 0.2


def test_one_hidden_marker_is_dropped(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI]
) -> None:
    _, roi = reference
    m = render_meter(12.3, seed=5, **{**HARD, "perspective": 0.0})
    img = m.image.copy()
    b = roi.markers[2]
    c = cv2.perspectiveTransform(np.array([[b.center]], np.float64), m.transform)[0, 0]
    cv2.circle(img, (round(c[0]), round(c[1])), 30, (255, 255, 255), -1)  # saturated glare
    al = aligners["markers"].align(img)
    assert al.inliers == 3
    assert _corner_error(al.matrix, m.transform, roi) < 1.0


def test_auto_falls_back_to_features_when_markers_fail(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI]
) -> None:
    _, roi = reference
    m = render_meter(12.3, seed=6, **HARD)
    img = m.image.copy()
    for b in roi.markers:
        c = cv2.perspectiveTransform(np.array([[b.center]], np.float64), m.transform)[0, 0]
        cv2.circle(img, (round(c[0]), round(c[1])), 32, (200, 200, 200), -1)
    with pytest.raises(ComputationError, match="could not align"):
        aligners["markers"].align(img)
    al = aligners["auto"].align(img)
    assert al.method == "features" and al.inliers >= 8
    assert _corner_error(al.matrix, m.transform, roi) < 1.0
    # a new reader with markers prepares its features only now, on the first failure
    fresh = Aligner(reference[0], roi)
    assert fresh.align(m.image).method == "markers"
    again = fresh.align(img)
    assert again.method == "features"
    np.testing.assert_allclose(again.matrix, al.matrix, atol=1e-9)


@pytest.mark.parametrize("method", ["auto", "markers", "features"])
@pytest.mark.parametrize("kind", ["noise", "grey"])
def test_unrelated_image_is_refused(
    aligners: dict[str, Aligner],
    reference: tuple[npt.NDArray[np.uint8], MeterROI],
    method: str,
    kind: str,
) -> None:
    # (the renderer's faces are left-right symmetric and share one geometry, so a mirrored
    # or other synthetic meter is not a wrong meter here: see the real photos below)
    rng = np.random.default_rng(0)
    img = {
        "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "grey": np.full((480, 640, 3), 128, np.uint8),
    }[kind]
    with pytest.raises(ComputationError, match=r"^could not align the image to the reference: "):
        aligners[method].align(img)


@pytest.mark.parametrize("method", ["auto", "markers", "features"])
def test_upside_down_photo_aligns_but_not_unturned(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI], method: str
) -> None:
    ref, roi = reference
    h, w = ref.shape[:2]
    turned = np.ascontiguousarray(ref[::-1, ::-1])
    truth = np.array([[-1.0, 0, w - 1], [0, -1.0, h - 1], [0, 0, 1]])
    al = aligners[method].align(turned)
    assert abs(al.rotation_deg) == pytest.approx(180.0, abs=0.1)
    assert al.score > 0.9
    assert _corner_error(al.matrix, truth, roi) < 0.3
    # the score check still refuses the upside-down photo taken as upright
    half = halve(to_gray(turned, "photo"))
    aligner = aligners[method]
    unturned, _ = score(aligner._score_ref, aligner._score_mask, half, np.eye(3))
    assert unturned < 0.5 < aligner.min_score + 0.3 < al.score


def test_failure_message_names_the_counts(aligners: dict[str, Aligner]) -> None:
    with pytest.raises(ComputationError) as exc:
        aligners["features"].align(np.full((480, 640), 90, np.uint8))
    msg = str(exc.value)
    assert "only 0 features in the image (need 8)" in msg
    assert "check that the camera still sees the meter face" in msg
    assert "\n" not in msg


def test_grayscale_and_rescaled_photos(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI]
) -> None:
    _, roi = reference
    m = render_meter(99.9, seed=9, **{**HARD, "glare": 0.3})
    gray = cv2.cvtColor(m.image, cv2.COLOR_BGR2GRAY)
    al = aligners["auto"].align(gray)
    assert al.warped.shape == (480, 640)
    assert _corner_error(al.matrix, m.transform, roi) < 1.0
    # the same photo at 1.5x size: the matrix maps into the larger photo
    big = cv2.resize(m.image, (960, 720), interpolation=cv2.INTER_LINEAR)
    up = np.array([[1.5, 0, 0.25], [0, 1.5, 0.25], [0, 0, 1.0]])  # pixel centres
    for method in ("markers", "features"):
        al = aligners[method].align(big)
        assert al.warped.shape == (480, 640, 3)
        assert _corner_error(al.matrix, up @ m.transform, roi) < 2.0


def test_identity_without_reference(reference: tuple[npt.NDArray[np.uint8], MeterROI]) -> None:
    _, roi = reference
    plain = MeterROI(roi.digits, roi.decimals, None)
    aligner = Aligner.from_roi(plain)
    assert not aligner.has_reference
    img = render_meter(5.0, seed=0, **CLEAN).image
    al = aligner.align(img)
    assert al.method == "identity" and al.warped is img
    np.testing.assert_array_equal(al.matrix, np.eye(3))
    with pytest.raises(ParameterError, match=r"digit box 6 of 6 .* outside the 400x300 image"):
        aligner.align(img[:300, :400])
    with pytest.raises(ParameterError, match="needs a reference image"):
        Aligner(None, plain, method="markers")


def test_from_roi_loads_the_reference(
    tmp_path: Path, reference: tuple[npt.NDArray[np.uint8], MeterROI]
) -> None:
    ref, roi = reference
    cv2.imwrite(str(tmp_path / "ref.png"), ref)
    with_ref = MeterROI(roi.digits, roi.decimals, Reference(tmp_path / "ref.png", roi.markers))
    al = Aligner.from_roi(with_ref).align(render_meter(1.0, seed=2).image)
    assert al.method == "markers"
    missing = MeterROI(roi.digits, roi.decimals, Reference(tmp_path / "nope.png", roi.markers))
    with pytest.raises(NotFoundError):
        Aligner.from_roi(missing)


def test_reference_problems_are_reported(reference: tuple[npt.NDArray[np.uint8], MeterROI]) -> None:
    ref, roi = reference
    flat = np.full_like(ref, 150)
    with pytest.raises(ParameterError, match=r"marker box 1 of 4 .* nearly uniform"):
        Aligner(flat, roi)
    no_markers = MeterROI(roi.digits, roi.decimals, Reference(None, ()))
    with pytest.raises(ComputationError, match="reference image has only 0 distinctive features"):
        Aligner(flat, no_markers)
    with pytest.raises(ParameterError, match="needs marker boxes"):
        Aligner(ref, no_markers, method="markers")
    with pytest.raises(ParameterError, match="outside the 320x240 image"):
        Aligner(ref[:240, :320], roi)
    with pytest.raises(ParameterError, match="method"):
        Aligner(ref, roi, method="ecc")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="uint8 image array"):
        Aligner(ref, roi).align(ref.astype(np.float32))  # type: ignore[arg-type]


def test_crop_digits_validates(reference: tuple[npt.NDArray[np.uint8], MeterROI]) -> None:
    ref, roi = reference
    crops = crop_digits(ref, roi)
    assert len(crops) == 6
    crops[0][:] = 0  # copies, not views
    assert ref[roi.digits[0].y, roi.digits[0].x].any()
    with pytest.raises(ParameterError, match="outside"):
        crop_digits(ref[:100], roi)


# --- any rotation, +-25 % scale, shift, lighting -----------------------------------------------


def _turn(ang_ccw: float, scale: float, shift: tuple[float, float], size: tuple[int, int]) -> F64:
    """The 3x3 map of cv2.warpAffine that turns a photo about its centre."""
    w, h = size
    a = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), ang_ccw, scale)
    a[:, 2] += shift
    return np.vstack([a, [0.0, 0.0, 1.0]])


def _warp(img: U8, t: F64, gamma: float = 1.0) -> U8:
    h, w = img.shape[:2]
    out = cv2.warpAffine(img, t[:2], (w, h), flags=cv2.INTER_LINEAR)
    if gamma != 1.0:
        lut = (255.0 * (np.arange(256) / 255.0) ** gamma).round().astype(np.uint8)
        out = cv2.LUT(out, lut)
    return np.asarray(out, dtype=np.uint8)


# (angle counter-clockwise [deg], scale, shift [px], gamma)
POSES = [
    (0.0, 1.0, (0.0, 0.0), 1.0),
    (35.0, 1.0, (12.0, -8.0), 1.0),
    (90.0, 1.0, (0.0, 0.0), 1.0),
    (180.0, 1.0, (-20.0, 10.0), 1.0),
    (270.0, 1.0, (0.0, 0.0), 1.0),
    (330.0, 1.0, (0.0, 0.0), 1.0),
    (0.0, 0.75, (25.0, 15.0), 1.0),
    (0.0, 1.25, (-15.0, 0.0), 1.0),
    (35.0, 0.75, (20.0, -15.0), 1.0),
    (200.0, 1.25, (-20.0, -10.0), 1.0),
    (0.0, 1.0, (40.0, 30.0), 1.0),
    (0.0, 1.0, (0.0, 0.0), 2.0),
    (120.0, 1.0, (0.0, 0.0), 0.5),
]


@pytest.mark.parametrize("pose", POSES, ids=lambda p: f"{p[0]:g}deg-x{p[1]:g}-g{p[3]:g}")
def test_synthetic_photo_at_any_pose(
    aligners: dict[str, Aligner],
    reference: tuple[npt.NDArray[np.uint8], MeterROI],
    pose: tuple[float, float, tuple[float, float], float],
) -> None:
    _, roi = reference
    ang, scale, shift, gamma = pose
    truth = _turn(ang, scale, shift, (640, 480))
    m = render_meter(321.4, seed=int(ang), transform=truth, noise=0.02, glare=0.3)
    img = _warp(m.image, np.eye(3), gamma)
    for method in ("auto", "features"):
        al = aligners[method].align(img)
        assert _corner_error(al.matrix, truth, roi) < 1.0, method
        assert al.scale == pytest.approx(scale, rel=0.02)
        assert (al.rotation_deg + ang + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=0.5)


def test_rotate_hint_finds_the_markers_directly(
    reference: tuple[npt.NDArray[np.uint8], MeterROI],
) -> None:
    ref, roi = reference
    truth = _turn(145.0, 0.9, (10.0, -5.0), (640, 480))  # all four corner marks in view
    img = render_meter(7.5, seed=4, transform=truth, noise=0.02).image
    plain = Aligner(ref, roi)
    hinted = Aligner(ref, dataclasses.replace(roi, rotate=145.0))
    a, b = plain.align(img), hinted.align(img)
    assert (a.method, a.coarse) == ("markers", "features")
    assert (b.method, b.coarse) == ("markers", "markers")
    assert plain._orb_pending is False and hinted._orb_pending is True  # ORB never needed
    assert _corner_error(b.matrix, truth, roi) < 0.5
    assert _corner_error(a.matrix, truth, roi) < 0.5
    # a wrong hint costs time, not the result
    wrong = Aligner(ref, dataclasses.replace(roi, rotate=-90.0)).align(img)
    assert wrong.coarse == "features"
    assert _corner_error(wrong.matrix, truth, roi) < 0.5


def test_portrait_photo_of_a_landscape_reference(
    aligners: dict[str, Aligner], reference: tuple[npt.NDArray[np.uint8], MeterROI]
) -> None:
    _, roi = reference
    m = render_meter(42.0, seed=8, **{**HARD, "glare": 0.3})
    img = cv2.rotate(m.image, cv2.ROTATE_90_CLOCKWISE)  # 480 wide, 640 high
    al = aligners["auto"].align(img)
    to_portrait = np.array([[0.0, -1.0, 479.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert _corner_error(al.matrix, to_portrait @ m.transform, roi) < 1.0
    assert al.warped.shape == (480, 640, 3)


def test_photo_cut_off_too_far_is_refused(aligners: dict[str, Aligner]) -> None:
    m = render_meter(3.0, seed=1, transform=_turn(0.0, 1.0, (-300.0, 0.0), (640, 480)))
    img = m.image.copy()
    img[:, 340:] = 0  # the synthetic border reflects the face; a camera sees nothing there
    with pytest.raises(ComputationError, match="could not align"):
        aligners["auto"].align(img)


# --- real photos (GRIDLENS_DATA/meter-photos) --------------------------------------------------

PHOTOS = data_root() / "meter-photos"
# frames of the reference camera whose wheels sit well inside their windows
REAL = [
    ("wmsc", "20200126-2058_5108b11_9db1f64e.jpg"),
    ("wmsc", "20200524-0830_f706ef6_6cc012d7.jpg"),
    ("laurynas", "watermeter2.jpg"),
]


@pytest.fixture(scope="module")
def readers() -> dict[str, MeterReader]:
    if not (PHOTOS / "wmsc" / "roi.json").is_file():
        pytest.skip(f"real meter photos not found under {PHOTOS} (set GRIDLENS_DATA)")
    return {
        name: MeterReader(load_roi(PHOTOS / name / "roi.json")) for name in ("wmsc", "laurynas")
    }


@pytest.mark.data
@pytest.mark.parametrize(("meter", "frame"), REAL, ids=[f for _, f in REAL])
def test_real_photo_at_any_pose_reads_the_same(
    readers: dict[str, MeterReader], meter: str, frame: str
) -> None:
    reader = readers[meter]
    assert reader.aligner is not None
    photo = decode_image(PHOTOS / meter / frame)
    h, w = photo.shape[:2]
    base = reader.aligner.align(photo)
    value = reader.read(photo).value
    assert value is not None
    for ang, scale, shift, gamma in POSES:
        t = _turn(ang, scale, shift, (w, h))
        img = _warp(photo, t, gamma)
        al = reader.aligner.align(img)
        assert _corner_error(al.matrix, t @ base.matrix, reader.roi) < 1.5, (ang, scale, gamma)
        got = reader.read(img)
        assert got.value == value, (ang, scale, gamma, got.reason)


@pytest.mark.data
def test_real_photo_with_rotate_hint(readers: dict[str, MeterReader]) -> None:
    reader = readers["wmsc"]
    photo = decode_image(PHOTOS / "wmsc" / REAL[0][1])
    h, w = photo.shape[:2]
    t = _turn(35.0, 1.0, (10.0, 5.0), (w, h))
    base = reader.aligner.align(photo)  # type: ignore[union-attr]
    hinted = MeterReader(dataclasses.replace(reader.roi, rotate=35.0), model=reader.model)
    al = hinted.aligner.align(_warp(photo, t))  # type: ignore[union-attr]
    assert (al.method, al.coarse) == ("markers", "markers")
    assert _corner_error(al.matrix, t @ base.matrix, reader.roi) < 1.0
    # a camera mounted upside down (the wmsc source frames are) with its ROI saying so
    upside = MeterReader(dataclasses.replace(reader.roi, rotate=180.0), model=reader.model)
    assert upside.read(photo[::-1, ::-1].copy()).value == reader.read(photo).value


@pytest.mark.data
def test_real_photo_of_another_meter_or_blank_is_rejected(
    readers: dict[str, MeterReader],
) -> None:
    other = {"wmsc": "laurynas/watermeter1.jpg", "laurynas": "wmsc/" + REAL[0][1]}
    for meter, reader in readers.items():
        for img in (
            decode_image(PHOTOS / other[meter]),
            np.full((480, 640, 3), 200, np.uint8),
            cv2.rotate(decode_image(PHOTOS / other[meter]), cv2.ROTATE_180),
        ):
            got = reader.read(img)
            assert got.status == "rejected" and got.value is None
            assert got.reason is not None
            assert got.reason.startswith("could not align the image to the reference: ")
