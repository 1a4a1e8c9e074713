"""Whole-meter reading, end to end on synthetic photos with the shipped model."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gridlens.cli import main
from gridlens.errors import InputError
from gridlens.meter.image import encode_jpeg
from gridlens.meter.model import default_model_path
from gridlens.meter.plausibility import Limits
from gridlens.meter.reading import MeterReader, MeterSession
from gridlens.meter.synth import matches_register, render_meter, render_reference, write_example

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="the shipped digit model is missing"
)


def exact(value: float | None, truth: float) -> bool:
    return matches_register(value, truth, 1)


@pytest.fixture(scope="module")
def reader() -> MeterReader:
    ref, roi = render_reference(6, 1)
    return MeterReader(roi, reference=ref)


def test_mid_roll_photos_read_exactly(reader: MeterReader) -> None:
    rng = np.random.default_rng(7)
    right = 0
    n = 40
    for i in range(n):
        reading = float(rng.uniform(0, 99_999))
        if i % 2:  # put wheels 2-5 into a carry
            unit = 10.0 ** int(rng.integers(0, 4))
            reading = math.floor(reading / unit) * unit + unit - float(rng.uniform(0.001, 0.1))
        m = render_meter(reading, seed=100 + i)
        r = reader.read(encode_jpeg(m.image))
        right += r.status == "ok" and exact(r.value, reading)
    assert right >= n - 1


def test_a_day_of_readings_never_goes_down(reader: MeterReader) -> None:
    session = MeterSession(reader, Limits(max_rate_per_h=15.0))
    energy = 4999.2 + np.cumsum(np.full(120, 2.4 / 60))  # 2.4 kW for two hours, crosses 5000
    accepted = []
    right = 0
    for i, e in enumerate(energy):
        r = session.feed(render_meter(float(e), seed=i).image, now=60.0 * i)
        if r.status == "ok":
            assert r.value is not None
            accepted.append(r.value)
            right += exact(r.value, float(e))
            # never off by more than one unit of the last wheel, carries included
            assert abs(r.value - math.floor(e * 10) / 10) <= 0.1 + 1e-9, (r.value, e)
    assert len(accepted) >= 115
    assert right >= 0.95 * len(accepted)
    assert all(b >= a for a, b in itertools.pairwise(accepted))


def test_read_cli_json_and_plausibility(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = write_example(tmp_path, reading=1234.5, seed=1)
    assert main(["read", str(ex.meter), "--roi", str(ex.roi), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "ok" and doc["value"] == pytest.approx(1234.5)
    assert doc["raw"] == "01234.5"
    assert len(doc["digits"]) == 6 and all(0 < d["confidence"] <= 1 for d in doc["digits"])
    # a previous value above it: rejected with a reason, exit code 1, no value
    args = ["read", str(ex.meter), "--roi", str(ex.roi), "--previous", "1240", "--json"]
    assert main(args) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "rejected" and doc["value"] is None
    assert "below the last accepted 1240.0" in doc["reason"]
    # too fast: 10 kWh in 60 s with a 20 kWh/h limit
    args = ["read", str(ex.meter), "--roi", str(ex.roi), "--previous", "1224.5"]
    assert main([*args, "--elapsed-s", "60", "--max-rate", "20"]) == 1
    assert "above the limit 20/h" in capsys.readouterr().out
    assert main([*args, "--elapsed-s", "7200", "--max-rate", "20"]) == 0


def test_read_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = write_example(tmp_path, reading=1234.5, seed=2)
    roi = json.loads(ex.roi.read_text())
    cases: dict[str, bytes | str] = {}
    (tmp_path / "text.jpg").write_text("hello")
    jpg = ex.meter.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jpg[: len(jpg) * 6 // 10])
    for name in ("text.jpg", "trunc.jpg"):
        assert main(["read", str(tmp_path / name), "--roi", str(ex.roi)]) == 2
        cases[name] = capsys.readouterr().err
        assert cases[name].startswith("gridlens read: error:")
    # ROI problems: empty digit list, a box outside the image, a missing file
    bad = dict(roi, digits=[])
    (tmp_path / "empty.json").write_text(json.dumps(bad))
    assert main(["read", str(ex.meter), "--roi", str(tmp_path / "empty.json")]) == 2
    outside = dict(roi, digits=[*roi["digits"][:-1], {"x": 630, "y": 10, "w": 40, "h": 60}])
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    assert main(["read", str(ex.meter), "--roi", str(tmp_path / "outside.json")]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["read", str(ex.meter), "--roi", str(tmp_path / "nope.json")]) == 2


def test_unalignable_photo_is_rejected_not_guessed(reader: MeterReader) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    r = reader.read(noise)
    assert r.status == "rejected" and r.value is None
    assert r.reason is not None and "align" in r.reason
    with pytest.raises(InputError):
        reader.read(b"\xff\xd8\xff\xe0 broken")


def test_reading_needs_no_pytorch(tmp_path: Path) -> None:
    import subprocess
    import sys

    ex = write_example(tmp_path, reading=321.4, seed=4)
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from gridlens.cli import main\n"
        f"sys.exit(main(['read', {str(ex.meter)!r}, '--roi', {str(ex.roi)!r}, '--json']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["value"] == pytest.approx(321.4)
