"""Synthetic pointer dials: crops, their truth, batches, water meters and dial registers."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gridlens.errors import ParameterError
from gridlens.meter.align import Aligner
from gridlens.meter.roi import Box, MeterROI, Reference, load_roi
from gridlens.meter.synth_dial_meters import (
    WATER_FACTORS,
    dial_positions,
    register_directions,
    render_register,
    render_register_reference,
    render_water_meter,
    render_water_reference,
    write_dial_example,
)
from gridlens.meter.synth_dials import DialStyle, dial_dataset, render_dial_crop

CLEAN = {
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

# A plain dial whose parts can be told apart by colour: black ring, red needle, green hub.
PLAIN = dataclasses.replace(
    DialStyle.random(0),
    face=(245, 245, 245),
    plate=(245, 245, 245),
    ink=(20, 20, 20),
    needle=(30, 30, 220),
    hub=(30, 200, 30),
    shape="arrow",
    layout="inner",
    numerals=False,
    ring=True,
    ticks=0,
    ring_radius=1.0,
    needle_length=0.85,
    needle_width=0.04,
    hub_radius=0.16,
    tail=0.0,
    shadow=False,
)


def _mask(img: np.ndarray, bgr: tuple[int, int, int], tol: int = 70) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(bgr)) < tol, axis=-1)


def _points(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], 1).astype(float)


def test_crop_is_deterministic_by_seed() -> None:
    a, ta = render_dial_crop(3.7, seed=5)
    b, tb = render_dial_crop(3.7, seed=5)
    c, _ = render_dial_crop(3.7, seed=6)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and ta == tb
    assert not np.array_equal(a, c)
    json.dumps(ta)  # the truth is JSON-ready


@pytest.mark.parametrize("perspective", [0.0, 1.0])
def test_crop_truth_matches_the_drawn_dial(perspective: float) -> None:
    for seed in range(6):
        value = 1.3 * seed + 0.4
        img, t = render_dial_crop(
            value, size=96, style=PLAIN, seed=seed, perspective=perspective, glare=0.0
        )
        assert t["value"] == value and t["direction"] == "cw"
        cx, cy = t["center"]
        assert abs(cx - 47.5) <= 0.15 * 96 + 1e-9 and abs(cy - 47.5) <= 0.15 * 96 + 1e-9
        hub = _points(_mask(img, PLAIN.hub))
        assert np.hypot(*(hub.mean(0) - (cx, cy))) < 1.0  # the pivot is the hub's centre
        gray = img.astype(float).mean(-1)
        ring = _points(gray < 0.6 * np.median(gray))  # ink (lighting varies across the crop)
        dist = np.hypot(ring[:, 0] - cx, ring[:, 1] - cy) / t["radius"]
        near = dist[(dist > 0.6) & (dist < 1.4)]  # leave out neighbouring dials and labels
        assert len(near) > 150
        assert abs(np.median(near) - 1.0) < (0.03 if perspective == 0 else 0.08)
        red = _points(_mask(img, PLAIN.needle))
        far = red[np.argmax(np.hypot(red[:, 0] - cx, red[:, 1] - cy))]
        assert np.hypot(*(far - t["tip"])) < 2.5


@pytest.mark.parametrize(
    ("value", "direction", "zero_deg", "side"),
    [
        (2.5, "cw", 0.0, "right"),
        (2.5, "ccw", 0.0, "left"),
        (7.5, "ccw", 0.0, "right"),
        (0.0, "cw", 90.0, "right"),
        (0.0, "ccw", -90.0, "left"),
        (5.0, "ccw", 0.0, "down"),
    ],
)
def test_crop_direction_and_zero(value: float, direction: str, zero_deg: float, side: str) -> None:
    img, t = render_dial_crop(
        value,
        size=80,
        style=PLAIN,
        seed=1,
        direction=direction,
        zero_deg=zero_deg,
        perspective=0.0,
        rotation_deg=0.0,
        glare=0.0,
    )
    red = _points(_mask(img, PLAIN.needle))
    d = red.mean(0) - t["center"]
    ang = math.degrees(math.atan2(d[0], -d[1])) % 360  # clockwise from 12 o'clock
    want = {"right": 90.0, "left": 270.0, "down": 180.0}[side]
    assert abs((ang - want + 180) % 360 - 180) < 6
    assert t["direction"] == direction and t["zero_deg"] == zero_deg


def test_random_styles_vary_and_contrast() -> None:
    styles = [DialStyle.random(s) for s in range(200)]
    assert {s.shape for s in styles} == {"arrow", "wedge", "line"}
    assert any(not s.numerals for s in styles) and any(s.layout == "outer" for s in styles)
    for s in styles:  # the needle always stands out from the face
        assert np.abs(np.subtract(s.needle, s.face)).sum() > 120


@pytest.mark.parametrize("name", ["wmsc", "laurynas", "register"])
def test_presets_render_at_their_value(name: str) -> None:
    st = DialStyle.preset(name)
    img, t = render_dial_crop(2.5, size=96, style=st, seed=0, perspective=0.0, rotation_deg=0.0)
    assert img.shape == (96, 96, 3) and t["style"] == st.to_dict()
    dx, dy = np.subtract(t["tip"], t["center"])
    assert dx > 0 and abs(dy) < 0.05 * dx  # 2.5 divisions = 3 o'clock


def test_dataset_shape_dtype_and_determinism() -> None:
    x, y = dial_dataset(24, size=48, seed=3)
    assert x.shape == (24, 48, 48, 3) and x.dtype == np.uint8
    assert y.shape == (24,) and y.dtype == np.float32
    assert np.all((y >= 0) & (y < 10))
    x2, y2 = dial_dataset(24, size=48, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, y3 = dial_dataset(300, size=24, seed=3, workers=2)  # two blocks in two threads
    x4, y4 = dial_dataset(300, size=24, seed=3)
    assert np.array_equal(x3, x4) and np.array_equal(y3, y4)
    assert x.std() > 20  # not blank


def test_dataset_labels_are_needle_angles() -> None:
    # all-ccw and all-cw batches of one seed: same labels, same needle angles
    x_cw, y_cw = dial_dataset(6, size=64, seed=9, ccw_frac=0.0)
    x_ccw, y_ccw = dial_dataset(6, size=64, seed=9, ccw_frac=1.0)
    assert np.array_equal(y_cw, y_ccw)
    assert not np.array_equal(x_cw, x_ccw)  # the numerals run the other way


def test_dial_positions_and_register_directions() -> None:
    assert dial_positions(391.4876, WATER_FACTORS).round(6).tolist() == [4.876, 8.76, 7.6, 6.0]
    assert dial_positions(19375.0, (10000, 1000, 100, 10, 1)).round(6).tolist() == [
        1.9375,
        9.375,
        3.75,
        7.5,
        5.0,
    ]
    assert register_directions(5) == ["cw", "ccw", "cw", "ccw", "cw"]
    assert register_directions(4) == ["ccw", "cw", "ccw", "cw"]


def test_water_meter_gearing_roi_and_determinism() -> None:
    m = render_water_meter(391.4876, seed=2)
    assert m.image.shape == (480, 640, 3)
    assert np.allclose(m.dials, dial_positions(391.4876, WATER_FACTORS))
    # the units wheel turns with the reading, 0.35 behind the dials (as on the wmsc meter)
    assert m.wheels.round(6).tolist() == [0.0, 0.0, 3.0, 9.0, 1.1376]
    assert m.reading == pytest.approx(391.4876)
    assert render_water_meter(400.2, **CLEAN).wheels.round(6).tolist() == [0, 0, 3.85, 9.85, 9.85]
    exact = render_water_meter(391.4876, wheel_lag=0.0, **CLEAN)
    assert exact.wheels[-1] == pytest.approx(1.4876)
    carry = render_water_meter(391.4876, wheel_roll="carry", **CLEAN)
    assert carry.wheels.tolist() == [0.0, 0.0, 3.0, 9.0, 1.0]  # the units wheel waits for x0.1
    rolling = render_water_meter(391.95, wheel_roll="carry", **CLEAN)
    assert rolling.wheels.round(6).tolist() == [0.0, 0.0, 3.0, 9.0, 1.5]  # mid-roll
    again = render_water_meter(391.4876, seed=2)
    assert np.array_equal(m.image, again.image) and m.roi == again.roi
    roi = m.roi
    assert set(roi) == {"digits", "decimals", "dials", "reference"}
    assert len(roi["digits"]) == 5 and roi["decimals"] == 0
    assert [d["factor"] for d in roi["dials"]] == list(WATER_FACTORS)
    for d in roi["dials"]:
        assert set(d) == {"x", "y", "w", "h", "factor", "direction", "zero_deg"}
        assert d["direction"] == "cw" and d["zero_deg"] == 0.0 and d["w"] == d["h"]
        assert Box(d["x"], d["y"], d["w"], d["h"]).inside(640, 480)
    assert len(roi["reference"]["markers"]) == 4
    json.dumps(roi)
    ref, roi_ref = render_water_reference()
    assert roi_ref == roi and ref.shape == m.image.shape
    clean = render_water_meter(
        0.0, wheel_lag=0.0, seed=0, **{**CLEAN, "jpeg_quality": 92, "noise": 0.01}
    )
    assert np.array_equal(ref, clean.image)  # the reference shows whole digits: 00000
    parsed = MeterROI.from_dict(roi)  # the ROI file format accepts it
    assert [d.factor for d in parsed.dials] == list(WATER_FACTORS)


def test_water_meter_needles_point_at_their_values() -> None:
    # Red needles in the clean view: the red pixels of each dial lie in its needle direction.
    for ls in range(4):
        reading = 12.3456 + 7.77 * ls
        m = render_water_meter(reading, layout_seed=ls, **CLEAN)
        for d, p in zip(m.roi["dials"], m.dials, strict=True):
            crop = m.image[d["y"] : d["y"] + d["h"], d["x"] : d["x"] + d["w"]]
            b, g, r = (crop[..., i].astype(int) for i in range(3))
            red = _points((r > 150) & (r - g > 80) & (r - b > 80))
            if len(red) == 0:
                continue  # a black needle on this layout
            c = (d["w"] - 1) / 2.0
            v = red - c
            far = v[np.hypot(v[:, 0], v[:, 1]) > 0.45 * c]
            ang = math.degrees(math.atan2(far[:, 0].mean(), -far[:, 1].mean())) % 360
            assert abs((ang - 36.0 * p + 180) % 360 - 180) < 8


def test_lag_moves_all_but_the_finest_dial() -> None:
    exact = dial_positions(1234.5678, WATER_FACTORS)
    m = render_water_meter(1234.5678, lag=0.3, seed=4, **CLEAN)
    diff = (m.dials - exact + 5) % 10 - 5
    assert np.all(np.abs(diff) <= 0.3 + 1e-9) and diff[-1] == 0 and np.any(diff != 0)


def test_register_gearing_directions_and_roi() -> None:
    r = render_register(19375.4, seed=1)
    assert r.wheels.size == 0 and r.reading == pytest.approx(19375.4)
    assert np.allclose(r.dials, dial_positions(19375.4, (10000, 1000, 100, 10, 1)))
    roi = r.roi
    assert roi["digits"] == [] and roi["decimals"] == 0
    assert [d["direction"] for d in roi["dials"]] == ["cw", "ccw", "cw", "ccw", "cw"]
    assert [d["factor"] for d in roi["dials"]] == [10000.0, 1000.0, 100.0, 10.0, 1.0]
    xs = [d["x"] for d in roi["dials"]]
    assert xs == sorted(xs)  # left to right
    four = render_register(123456.0, n_dials=4, **CLEAN)
    assert four.reading == pytest.approx(3456.0)  # wraps at 10^4
    assert [d["direction"] for d in four.roi["dials"]] == ["ccw", "cw", "ccw", "cw"]
    ref, roi_ref = render_register_reference(4)
    assert roi_ref == four.roi and ref.shape == (480, 640, 3)
    parsed = MeterROI.from_dict(roi)
    assert parsed.digits == () and [d.direction for d in parsed.dials][:2] == ["cw", "ccw"]


def test_scenes_align_to_their_reference() -> None:
    ref, d = render_water_reference(layout_seed=1)
    markers = tuple(Box(**b) for b in d["reference"]["markers"])
    roi = MeterROI(tuple(Box(**b) for b in d["digits"]), 0, Reference(None, markers))
    al = Aligner(ref, roi)
    m = render_water_meter(55.5, seed=3, layout_seed=1)
    a = al.align(m.image)
    c = np.array([[b["x"] + b["w"] / 2.0, b["y"] + b["h"] / 2.0, 1.0] for b in d["dials"]]).T
    want, got = m.transform @ c, a.matrix @ c
    assert np.abs(want[:2] / want[2] - got[:2] / got[2]).max() < 0.5


@pytest.mark.parametrize("kind", ["water", "register"])
def test_write_dial_example(tmp_path: Path, kind: str) -> None:
    ex = write_dial_example(tmp_path / kind, kind=kind)
    roi = load_roi(ex.roi)
    assert roi.reference is not None and roi.reference.image_path == ex.reference.resolve()
    assert len(roi.dials) == (4 if kind == "water" else 5)
    assert ex.meter.stat().st_size > 10_000
    assert ex.reading == pytest.approx(391.4876 if kind == "water" else 19375.4)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: render_dial_crop(float("nan")), "'value' parameter of render_dial_crop"),
        (lambda: render_dial_crop(10.0), "in [0, 10)"),
        (lambda: render_dial_crop(-0.1), "'value'"),
        (lambda: render_dial_crop("3"), "'value'"),  # type: ignore[arg-type]
        (lambda: render_dial_crop(1.0, size=8), "'size' parameter of render_dial_crop"),
        (lambda: render_dial_crop(1.0, size=1024), "an int in [16, 512]"),
        (lambda: render_dial_crop(1.0, direction="left"), "'direction'"),
        (lambda: render_dial_crop(1.0, zero_deg=math.inf), "'zero_deg'"),
        (lambda: render_dial_crop(1.0, style="red"), "'style'"),  # type: ignore[arg-type]
        (lambda: render_dial_crop(1.0, perspective=2.0), "'perspective'"),
        (lambda: dial_dataset(0), "'n' parameter of dial_dataset"),
        (lambda: dial_dataset(4, size=4), "'size'"),
        (lambda: dial_dataset(4, workers=0), "'workers'"),
        (lambda: dial_dataset(200_000), "at most 87381 for 64x64 crops"),
        (lambda: dial_positions(-1.0, (0.1,)), "'reading'"),
        (lambda: dial_positions(1.0, (0.3,)), "'factors'"),
        (lambda: render_water_meter(float("nan")), "'reading' parameter of render_water_meter"),
        (lambda: render_water_meter(1.0, factors=(0.01, 0.1)), "a tenth of the one before"),
        (lambda: render_water_meter(1.0, factors=(0.1, 0.001)), "a tenth of the one before"),
        (lambda: render_water_meter(1.0, factors=(0.01,)), "the first one 0.1"),
        (lambda: render_water_meter(1.0, wheel_roll="jumpy"), "'wheel_roll'"),
        (lambda: render_water_meter(1.0, lag=2.0), "'lag'"),
        (lambda: render_water_meter(1.0, wheel_lag=-0.1), "'wheel_lag'"),
        (lambda: render_water_meter(1.0, glare=3.0), "'glare'"),
        (lambda: render_register(1.0, n_dials=7), "'n_dials' parameter of render_register"),
        (lambda: render_register(1.0, transform=np.eye(2)), "'transform'"),
        (lambda: register_directions(0), "'n_dials'"),
        (lambda: write_dial_example("/tmp", kind="gas"), "'kind'"),
        (lambda: DialStyle.preset("elster"), "'name' parameter of DialStyle.preset"),
    ],
)
def test_bad_inputs_raise_one_clear_error(call: object, needle: str) -> None:
    with pytest.raises(ParameterError) as e:
        call()  # type: ignore[operator]
    assert needle in str(e.value)
