"""ROI suggestion: digit boxes, decimals and markers proposed from one photo."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gridlens.cli.roi import add_roi_commands
from gridlens.errors import ComputationError, InputError, NotFoundError, ParameterError
from gridlens.meter.data import data_root
from gridlens.meter.image import decode_image, encode_jpeg
from gridlens.meter.model import default_model_path
from gridlens.meter.reading import MeterReader
from gridlens.meter.roi import Box, MeterROI
from gridlens.meter.suggest import NoCounterError, Suggestion, suggest_roi
from gridlens.meter.synth import matches_register, render_meter, render_reference

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="the shipped digit model is missing"
)

PHOTOS = data_root() / "meter-photos"
needs_photos = pytest.mark.skipif(
    not (PHOTOS / "laurynas" / "roi.json").is_file(),
    reason=f"meter-photos data not found at {PHOTOS} (set GRIDLENS_DATA)",
)


def iou(a: Box, b: Box) -> float:
    w = max(0, min(a.x2, b.x2) - max(a.x, b.x))
    h = max(0, min(a.y2, b.y2) - max(a.y, b.y))
    inter = w * h
    return inter / (a.w * a.h + b.w * b.h - inter)


def read_with(sug: Suggestion, image: np.ndarray) -> tuple[float | None, str | None]:
    roi = MeterROI.from_dict({k: v for k, v in sug.to_roi_dict().items() if k != "reference"})
    r = MeterReader(roi).read(image)
    return r.value, r.raw


# ---------------------------------------------------------------- synthetic meters


@pytest.mark.parametrize(
    ("n_digits", "decimals", "layout_seed", "size"),
    [(6, 1, 0, (640, 480)), (8, 3, 4, (800, 600)), (5, 0, 9, (640, 480))],
)
def test_reference_view_boxes_match_the_layout(
    n_digits: int, decimals: int, layout_seed: int, size: tuple[int, int]
) -> None:
    # the last wheel rests on a digit here; a last wheel caught mid-roll is sometimes missed
    reading = round(1234.5678 % 10 ** (n_digits - decimals), decimals)
    img, truth = render_reference(
        n_digits, decimals, layout_seed=layout_seed, size=size, reading=reading
    )
    sug = suggest_roi(img)
    assert len(sug.digits) == n_digits
    assert sug.decimals == decimals
    for got, want in zip(sug.digits, truth.digits, strict=True):
        assert iou(got.box, want) > 0.5
        assert 0.0 <= got.confidence <= 1.0
    value, _ = read_with(sug, img)
    assert matches_register(value, reading, decimals)
    assert 0.0 < sug.confidence <= 1.0
    assert 2 <= len(sug.markers) <= 4
    counter = sug.counter
    for m in sug.markers:  # markers stay off the counter
        assert iou(m.box, counter) == 0.0


def test_camera_photos_read_right() -> None:
    right = 0
    cases = [(6, 1, 1, 2), (7, 2, 2, 3), (5, 1, 6, 5), (4, 0, 7, 11)]
    for n_digits, decimals, layout_seed, seed in cases:
        m = render_meter(
            float(np.random.default_rng(seed).uniform(0, 10 ** (n_digits - decimals))),
            n_digits=n_digits,
            decimals=decimals,
            layout_seed=layout_seed,
            seed=seed,
        )
        sug = suggest_roi(m.image)
        value, _ = read_with(sug, m.image)
        right += matches_register(value, m.reading, decimals) and sug.decimals == decimals
    assert right >= 3


@pytest.mark.parametrize(
    ("reading", "n_digits", "decimals", "layout_seed", "seed"),
    [(1384773.653, 7, 0, 119, 1004), (56615.4273, 5, 0, 810, 1099), (920.6617, 6, 3, 408, 1033)],
)
def test_a_last_wheel_caught_mid_roll_is_kept(
    reading: float, n_digits: int, decimals: int, layout_seed: int, seed: int
) -> None:
    # the last wheel shows two half digits, which are no digit-like shapes; it was dropped
    m = render_meter(
        reading, n_digits=n_digits, decimals=decimals, layout_seed=layout_seed, seed=seed
    )
    sug = suggest_roi(m.image)
    assert len(sug.digits) == n_digits


def test_roi_dict_is_a_valid_roi_file() -> None:
    img, _ = render_reference(6, 1)
    d = suggest_roi(img).to_roi_dict()
    assert set(d) == {"digits", "decimals", "reference"}
    assert set(d["reference"]) == {"markers"}
    roi = MeterROI.from_dict(json.loads(json.dumps(d)))
    roi.check_inside(img.shape[1], img.shape[0])
    assert roi.n_digits == 6 and roi.decimals == 1
    assert json.dumps(suggest_roi(img).to_dict())  # JSON-ready


# ---------------------------------------------------------------- bad input


def test_blank_image_is_a_clear_error() -> None:
    with pytest.raises(NoCounterError, match="uniform"):
        suggest_roi(np.full((480, 640, 3), 128, np.uint8))


def test_noise_image_has_no_counter() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with pytest.raises(NoCounterError) as info:
        suggest_roi(noise)
    assert isinstance(info.value, ComputationError) and isinstance(info.value, InputError)
    assert "row" in str(info.value)


def test_wrong_array_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match="'image' parameter of suggest_roi"):
        suggest_roi(np.zeros((480, 640, 3), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        suggest_roi(np.zeros((20, 20), np.uint8))


# ---------------------------------------------------------------- real photos


@pytest.mark.data
@needs_photos
@pytest.mark.parametrize("name", ["wmsc", "laurynas"])
def test_real_reference_photos(name: str) -> None:
    folder = PHOTOS / name
    truth = MeterROI.from_dict(json.loads((folder / "roi.json").read_text()), base_dir=folder)
    img = decode_image(folder / "reference.jpg")
    sug = suggest_roi(img)
    assert len(sug.digits) == truth.n_digits
    assert sug.decimals == truth.decimals
    # every suggested box overlaps its hand-drawn wheel window (none on the dials)
    for got, want in zip(sug.digits, truth.digits, strict=True):
        assert iou(got.box, want) > 0.4
    with (folder / "labels.csv").open() as f:
        labels = {row["file"]: row["digits"] for row in csv.DictReader(f)}
    ref_file = {"wmsc": "20191125-2118_6e36054_cc6856db.jpg", "laurynas": "watermeter1.jpg"}[name]
    _, raw = read_with(sug, img)
    assert raw is not None and raw.replace(".", "") == labels[ref_file]


# ---------------------------------------------------------------- CLI


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gridlens")
    add_roi_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_writes_roi_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img, _ = render_reference(6, 1)
    photo = tmp_path / "meter.jpg"
    photo.write_bytes(encode_jpeg(img, 95))
    out, plot = tmp_path / "roi.json", tmp_path / "plot.png"
    assert _run(["roi", "suggest", str(photo), "-o", str(out), "--plot", str(plot)]) == 0
    roi = MeterROI.from_dict(json.loads(out.read_text()))
    assert roi.n_digits == 6
    assert decode_image(plot).shape == img.shape
    assert "6 wheels" in capsys.readouterr().err
    assert _run(["roi", "suggest", str(photo), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["roi"]["decimals"] == 1 and len(doc["digits"]) == 6


def test_cli_errors_are_gridlens_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        _run(["roi", "suggest", str(tmp_path / "missing.jpg")])
    blank = tmp_path / "blank.png"
    blank.write_bytes(encode_jpeg(np.full((240, 320, 3), 200, np.uint8), 95))
    with pytest.raises(NoCounterError):
        _run(["roi", "suggest", str(blank)])
    assert _run(["roi"]) == 2
