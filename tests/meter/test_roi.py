"""ROI files: parsing, validation messages, reference paths and the inside-the-image check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gridlens.errors import DataFormatError, NotFoundError, ParameterError
from gridlens.meter.roi import Box, MeterROI, Reference, load_roi


def _roi_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "digits": [{"x": 100 + 50 * i, "y": 200, "w": 40, "h": 60} for i in range(5)],
        "decimals": 1,
        "reference": {
            "image": "ref.jpg",
            "markers": [
                {"x": 10, "y": 10, "w": 30, "h": 30},
                {"x": 500, "y": 400, "w": 30, "h": 30},
            ],
        },
    }
    d.update(over)
    return d


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    p = tmp_path / "roi.json"
    p.write_text(json.dumps(_roi_dict()))
    roi = load_roi(p)
    assert roi.n_digits == 5 and roi.decimals == 1
    assert roi.digits[2] == Box(200, 200, 40, 60)
    assert roi.reference is not None
    assert roi.reference.image_path == tmp_path / "ref.jpg"  # relative to the ROI file
    assert roi.markers[1] == Box(500, 400, 30, 30)
    d = roi.to_dict(base_dir=tmp_path)
    assert d == _roi_dict()
    assert MeterROI.from_dict(d, base_dir=tmp_path) == roi


def test_reference_is_optional_and_markers_too() -> None:
    roi = MeterROI.from_dict({"digits": [{"x": 0, "y": 0, "w": 5, "h": 9}], "decimals": 0})
    assert roi.reference is None and roi.markers == ()
    assert roi.to_dict() == {"digits": [{"x": 0, "y": 0, "w": 5, "h": 9}], "decimals": 0}
    roi = MeterROI.from_dict(_roi_dict(reference={"image": "/abs/ref.png"}), base_dir=Path("/x"))
    assert roi.reference == Reference(Path("/abs/ref.png"), ())


def test_integral_floats_are_accepted() -> None:
    d = _roi_dict(digits=[{"x": 10.0, "y": 20, "w": 30, "h": 40.0}])
    assert MeterROI.from_dict(d).digits == (Box(10, 20, 30, 40),)


def test_box_geometry() -> None:
    b = Box(10, 20, 4, 6)
    assert (b.x2, b.y2) == (14, 26)
    assert b.center == (11.5, 22.5)
    assert b.corners() == [(9.5, 19.5), (13.5, 19.5), (13.5, 25.5), (9.5, 25.5)]
    assert b.inside(14, 26) and not b.inside(13, 26)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"digits": []}, "no digit boxes"),
        ({"digits": "12345"}, "must be a list of boxes"),
        ({"digits": [{"x": 1, "y": 1, "w": 0, "h": 5}]}, r"digit box 1 of 1 has an empty size"),
        ({"digits": [{"x": -3, "y": 1, "w": 4, "h": 5}]}, "negative position"),
        ({"digits": [{"x": 1, "y": 1, "w": 4}]}, "missing h"),
        ({"digits": [{"x": 1, "y": 1, "w": 4, "h": 5, "z": 0}]}, "unknown z"),
        ({"digits": [{"x": 1.5, "y": 1, "w": 4, "h": 5}]}, "whole number of pixels"),
        ({"digits": [{"x": True, "y": 1, "w": 4, "h": 5}]}, "whole number"),
        ({"digits": [[1, 2, 3, 4]]}, "must be an object"),
        (
            {"digits": [{"x": 50, "y": 0, "w": 10, "h": 10}, {"x": 10, "y": 0, "w": 10, "h": 10}]},
            "digit box 2 of 2 .x=10. is left of digit box 1 .x=50.; list the digit boxes from "
            "left to right",
        ),
        (
            {"digits": [{"x": 10, "y": 0, "w": 30, "h": 10}, {"x": 30, "y": 0, "w": 10, "h": 10}]},
            r"digit boxes 1 and 2 of 2 overlap \(x=10..40 and x=30..40\)",
        ),
        ({"decimals": 6}, "decimals is 6, but there are 5 digit boxes"),
        ({"decimals": -1}, "decimals is -1"),
        ({"decimals": "1"}, "decimals must be a whole number"),
        ({"decimal": 1}, "unknown ROI key.s. decimal"),
        ({"reference": {"image": "r.jpg", "marker": []}}, "unknown reference key"),
        ({"reference": {"image": 5}}, "must be a file name"),
        ({"reference": {"markers": [{"x": 1, "y": 1, "w": 5, "h": 5}]}}, "only 1 marker box"),
        ({"reference": {"markers": [{"x": 1, "y": 1, "w": 5, "h": -5}] * 2}}, "marker box 1 of 2"),
        ({"reference": ["r.jpg"]}, '"reference" must be an object'),
    ],
)
def test_invalid_content_is_a_parameter_error(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        MeterROI.from_dict(_roi_dict(**override))


def test_missing_required_keys() -> None:
    d = _roi_dict()
    del d["decimals"]
    with pytest.raises(ParameterError, match='no "decimals" entry'):
        MeterROI.from_dict(d)
    with pytest.raises(ParameterError, match='no "digits" list'):
        MeterROI.from_dict({"decimals": 0})


def test_constructor_validates_too() -> None:
    with pytest.raises(ParameterError, match="overlap"):
        MeterROI((Box(0, 0, 10, 10), Box(5, 0, 10, 10)), 0)
    with pytest.raises(ParameterError, match="empty size"):
        MeterROI((Box(0, 0, 0, 10),), 0)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such ROI file"):
        load_roi(tmp_path / "nope.json")
    p = tmp_path / "broken.json"
    p.write_text('{"digits": [\n  {"x": 1,}\n]}')
    with pytest.raises(DataFormatError, match=r"broken.json: invalid JSON at line 2"):
        load_roi(p)
    p.write_text("[1, 2, 3]")
    with pytest.raises(DataFormatError, match="must be a JSON object"):
        load_roi(p)
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFormatError, match="UTF-8"):
        load_roi(p)
    p.write_text(json.dumps(_roi_dict(decimals=9)))
    with pytest.raises(ParameterError, match=r"broken.json: decimals is 9"):
        load_roi(p)


def test_check_inside_names_the_box() -> None:
    digits = [{"x": 480 + 60 * i, "y": 100, "w": 60, "h": 80} for i in range(3)]
    roi = MeterROI.from_dict({"digits": digits, "decimals": 0})
    roi.check_inside(660, 480)  # fits exactly
    with pytest.raises(
        ParameterError,
        match=r"digit box 3 of 3 \(x=600..660, y=100..180\) lies "
        r"outside the 640x480 image",
    ):
        roi.check_inside(640, 480)
    roi = MeterROI.from_dict(_roi_dict())
    with pytest.raises(ParameterError, match="marker box 2 of 2"):
        roi.check_inside(520, 480)


def test_hostile_json_is_a_format_error(tmp_path: Path) -> None:
    # found by benchmarks/fuzz.py's harness (benchmarks/fuzz_crashes/)
    p = tmp_path / "deep.json"
    p.write_text("[" * 2000 + "]" * 2000)
    with pytest.raises(DataFormatError, match="nested too deeply"):
        load_roi(p)
    p.write_text('{"digits": [{"x": ' + "9" * 5000 + ', "y": 0, "w": 1, "h": 1}]}')
    with pytest.raises(DataFormatError, match="not a valid ROI file"):
        load_roi(p)
