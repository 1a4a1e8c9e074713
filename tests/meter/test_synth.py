"""Synthetic meters: odometer wheel semantics, determinism, layout and example files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gridlens.errors import ParameterError
from gridlens.meter.align import Aligner, crop_digits
from gridlens.meter.image import decode_image
from gridlens.meter.roi import load_roi
from gridlens.meter.synth import (
    NO_CAMERA_EFFECTS,
    render_digit_crop,
    render_meter,
    render_reference,
    wheel_positions,
    write_example,
)

CLEAN = NO_CAMERA_EFFECTS


@pytest.mark.parametrize(
    ("reading", "n", "dec", "expected"),
    [
        (129.95, 4, 1, [1.0, 2.5, 9.5, 9.5]),  # tens wheel mid-roll, carried by 9.5 below
        (1234.57, 6, 1, [0.0, 1.0, 2.0, 3.0, 4.0, 5.7]),  # only the last wheel is fractional
        (129.5, 4, 1, [1.0, 2.0, 9.0, 5.0]),  # a 9 does not roll until the wheel below passes 9
        (999.9, 4, 1, [9.0, 9.0, 9.0, 9.0]),
        (999.95, 4, 1, [9.5, 9.5, 9.5, 9.5]),  # halfway through the roll-over
        (999.99, 4, 1, [9.9, 9.9, 9.9, 9.9]),
        (1000.0, 4, 1, [0.0, 0.0, 0.0, 0.0]),  # the counter wraps at 10^(n - decimals)
        (1234.5, 4, 1, [2.0, 3.0, 4.0, 5.0]),
        (19.99, 4, 0, [0.0, 0.0, 1.99, 9.99]),  # units at 9.99: the tens wheel is 99 % rolled
        (18.5, 4, 0, [0.0, 0.0, 1.0, 8.5]),  # units below 9: the tens wheel waits
        (0.0, 3, 3, [0.0, 0.0, 0.0]),
        (0.0995, 3, 3, [0.5, 9.5, 9.5]),
        (0.0895, 3, 3, [0.0, 8.5, 9.5]),  # an 8 rolls too; the 0 above it does not
    ],
)
def test_wheel_positions(reading: float, n: int, dec: int, expected: list[float]) -> None:
    np.testing.assert_allclose(wheel_positions(reading, n, dec), expected, atol=1e-6)


def test_only_the_wheel_below_a_nine_makes_it_roll() -> None:
    # 1299.95: units wheel 9 rolls with the tenths wheel at 9.5; that roll (9.5) carries the
    # tens wheel (9.5), which carries the hundreds wheel (2.5)
    np.testing.assert_allclose(wheel_positions(1299.95, 5, 1), [1.0, 2.5, 9.5, 9.5, 9.5], atol=1e-6)
    # 1289.95: the tens wheel shows 8 and does not roll, so nothing above it moves
    np.testing.assert_allclose(wheel_positions(1289.95, 5, 1), [1.0, 2.0, 8.5, 9.5, 9.5], atol=1e-6)


def test_positions_are_continuous_and_invertible() -> None:
    readings = np.linspace(985.0, 1003.0, 18001)  # across the 999.9 -> 000.0 roll-over
    pos = np.array([wheel_positions(float(r), 4, 1) for r in readings])
    assert pos.min() >= 0.0 and pos.max() < 10.0
    step = np.diff(pos, axis=0)
    circular = np.minimum(np.abs(step), 10.0 - np.abs(step))
    assert circular.max() < 0.011  # at most one tenth of a reading step on any wheel
    rng = np.random.default_rng(1)
    for r in rng.uniform(0, 99999.9, 200):
        p = wheel_positions(float(r), 6, 1)
        value = (p[-1] + sum(math.floor(p[-1 - k]) * 10**k for k in range(1, 6))) / 10
        assert value == pytest.approx(r, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1.0, 4, 1), "reading"),
        ((float("nan"), 4, 1), "reading"),
        ((1.0, 0, 0), "n_digits"),
        ((1.0, 4, 5), "decimals"),
    ],
)
def test_wheel_positions_validation(args: tuple[float, int, int], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        wheel_positions(*args)


def test_render_is_deterministic_for_a_seed() -> None:
    a = render_meter(1234.5, seed=7)
    b = render_meter(1234.5, seed=np.random.default_rng(7))
    c = render_meter(1234.5, seed=8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.transform, b.transform)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (480, 640, 3) and a.image.dtype == np.uint8
    assert a.reading == pytest.approx(1234.5)
    np.testing.assert_allclose(a.wheels, wheel_positions(1234.5, 6, 1))


def test_reference_roi_is_shared_by_all_renders_of_a_layout() -> None:
    ref, roi = render_reference(6, 1)
    assert ref.shape == (480, 640, 3)
    assert roi.n_digits == 6 and roi.decimals == 1 and len(roi.markers) == 4
    roi.check_inside(640, 480)
    m = render_meter(50.0, seed=3)
    assert m.roi == roi
    ref2, roi2 = render_reference(8, 2, layout_seed=5)
    assert roi2.n_digits == 8 and roi2.decimals == 2 and roi2 != roi
    roi2.check_inside(640, 480)
    # different layouts look different
    assert np.abs(ref.astype(int) - ref2.astype(int)).mean() > 5


def test_reading_wraps_to_the_counter_range() -> None:
    m = render_meter(1_234_567.8, seed=0, n_digits=6, decimals=1)
    assert m.reading == pytest.approx(34_567.8)


def test_clean_render_has_identity_transform_and_shows_the_wheels() -> None:
    _, roi = render_reference(6, 1)
    a = render_meter(333333.3, seed=0, **CLEAN)
    np.testing.assert_allclose(a.transform, np.eye(3))
    crops = crop_digits(a.image, roi)
    # the five integer wheels all show a 3 and look identical; the red decimal wheel differs
    for c in crops[1:5]:
        assert np.array_equal(c, crops[0])
    assert crops[5][:, :, 2].mean() > crops[5][:, :, 0].mean() + 40  # red background
    # a wheel just before a full turn looks almost like one at 0; one at 1 does not
    near = crop_digits(render_meter(0.0999, seed=0, **CLEAN).image, roi)[4].astype(int)
    zero = crop_digits(render_meter(0.0, seed=0, **CLEAN).image, roi)[4].astype(int)
    one = crop_digits(render_meter(1.0, seed=0, **CLEAN).image, roi)[4].astype(int)
    assert np.abs(near - zero).mean() < 2.0
    assert np.abs(one - zero).mean() > 20.0


def test_explicit_transform_is_applied() -> None:
    shift = np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]])
    m = render_meter(10.0, seed=0, transform=shift, **CLEAN)
    ref = render_meter(10.0, seed=0, **CLEAN)
    np.testing.assert_allclose(m.transform, shift)
    # the content moved by (12, -7): compare an interior region
    assert np.array_equal(m.image[100:300, 112:512], ref.image[107:307, 100:500])


def test_render_options_and_validation() -> None:
    m = render_meter(42.0, seed=1, size=(320, 240), n_digits=5, decimals=0)
    assert m.image.shape == (240, 320, 3)
    m.roi.check_inside(320, 240)
    with pytest.raises(ParameterError, match="glare"):
        render_meter(1.0, glare=2.0)
    with pytest.raises(ParameterError, match="size"):
        render_meter(1.0, size=(10, 10))
    with pytest.raises(ParameterError, match="transform"):
        render_meter(1.0, transform=np.eye(2))


def test_write_example(tmp_path: Path) -> None:
    ex = write_example(tmp_path / "demo", reading=4321.0, seed=2)
    assert ex.reading == pytest.approx(4321.0)
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {
        "reference.jpg",
        "roi.json",
        "meter.jpg",
    }
    roi = load_roi(ex.roi)
    assert roi.reference is not None and roi.reference.image_path == ex.reference
    assert '"image": "reference.jpg"' in ex.roi.read_text()
    al = Aligner.from_roi(roi).align(decode_image(ex.meter))
    assert al.method == "markers" and al.score > 0.8


def test_digit_crops() -> None:
    a = render_digit_crop(3.5, seed=4)
    assert a.shape == (48, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_digit_crop(3.5, seed=4))
    assert not np.array_equal(a, render_digit_crop(3.5, seed=5))
    assert render_digit_crop(9.99, seed=1, size=(20, 30)).shape == (30, 20, 3)
    # without effects, a crop is not flat: it shows a digit
    clean = render_digit_crop(7.0, seed=2, glare=0, noise=0, blur=0, jitter=0)
    assert clean.std() > 30
    with pytest.raises(ParameterError, match="position"):
        render_digit_crop(10.0)
