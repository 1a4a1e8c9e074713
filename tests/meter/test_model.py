"""The digit model: decoding, a tiny training run, ONNX parity, the shipped model held out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gridlens.cli import main
from gridlens.meter.data import (
    INPUT_HW,
    circular_error,
    data_root,
    load_digit_set,
    meter_family,
    preprocess,
)
from gridlens.meter.model import N_CLASSES, DigitReader, default_model_path, digit_metrics

DIGITS = data_root() / "meter-digits"
needs_data = pytest.mark.skipif(
    not (DIGITS / "labels.csv").is_file(),
    reason=f"meter-digits data not found at {DIGITS} (set GRIDLENS_DATA)",
)


def test_decode_peaks_wraparound_and_confidence() -> None:
    probs = np.zeros((3, N_CLASSES))
    probs[0, 37] = 1.0
    probs[1, [99, 0]] = 0.5  # half-way between 9.9 and 0.0
    probs[2, [10, 60]] = 0.5  # bimodal: confidence must say so
    values, conf = DigitReader.decode(probs)
    assert values[0] == pytest.approx(3.7) and conf[0] == pytest.approx(1.0)
    assert values[1] in (pytest.approx(9.9), pytest.approx(0.0))
    assert conf[1] == pytest.approx(1.0)
    assert conf[2] == pytest.approx(0.5)


def test_circular_error_and_metrics() -> None:
    assert circular_error([9.9, 0.2, 5.0], [0.0, 9.9, 5.5]).tolist() == pytest.approx(
        [0.1, 0.3, 0.5]
    )
    m = digit_metrics([9.9, 0.2, 5.0, 1.0], [0.0, 9.9, 5.5, 6.0])
    assert m["within_0.2"] == 0.25 and m["within_0.5"] == 0.75


def test_meter_family_folds_dates_and_spellings() -> None:
    a = meter_family("collected_powermeter_ISKRA.T3F-01S1_20250630_20250527")
    b = meter_family("collected_powermeter_ISKRA_T3F-01S1_20230626")
    assert a == b == "collected_powermeter_iskra_t3f-01s1"
    assert meter_family("3.0_3_dig6_20220522-051256.jpg") == "single-image-crops"


def test_preprocess_shapes() -> None:
    rng = np.random.default_rng(0)
    for shape in [(45, 25, 3), (114, 64), (20, 32, 4)]:
        out = preprocess(rng.integers(0, 255, shape, dtype=np.uint8))
        assert out.shape == INPUT_HW and out.dtype == np.uint8


@needs_data
def test_tiny_model_learns_held_out_meters_and_onnx_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from gridlens.meter.train import TrainConfig, export_onnx, predict_torch, train_digit_model

    ds = load_digit_set(limit=4000)
    train, test = ds.split(0)
    assert not set(train.families.tolist()) & set(test.families.tolist())
    model = train_digit_model(train, TrainConfig(epochs=4, width=8, hidden=64), progress=False)
    pred_t, conf_t = predict_torch(model, test.images)
    path = export_onnx(model, tmp_path / "tiny.onnx", card={"name": "tiny"})
    reader = DigitReader(path)
    probs = reader.probabilities(test.images)
    pred_o, conf_o = reader.decode(probs)
    # the two engines agree crop for crop
    assert np.mean(pred_o == pred_t) > 0.995
    assert np.max(np.abs(conf_o - conf_t)) < 1e-3
    m = digit_metrics(pred_o, test.labels)
    # chance is 5 % within ±0.2; a few epochs on 3,400 crops already read most unseen meters
    assert m["within_0.5"] > 0.6, m


@needs_data
def test_shipped_model_on_its_held_out_meter_models() -> None:
    reader = DigitReader()
    card = reader.card
    fold = card["folds"][0]["fold"]
    assert card["trained_on"] == f"all crops except fold {fold}"
    assert default_model_path().stat().st_size < 5_000_000
    _, test = load_digit_set().split(fold)
    pred, conf = reader.predict(test.images)
    m = digit_metrics(pred, test.labels, conf)
    assert m["n"] > 1000
    assert m["within_0.2"] >= 0.97, m
    assert m["within_0.5"] >= 0.995, m
    # the card's numbers are this model's numbers
    assert m["within_0.2"] == pytest.approx(card["held_out"]["within_0.2"], abs=2e-3)


@needs_data
def test_read_digits_cli_on_real_crops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [r.split(",") for r in (DIGITS / "labels.csv").read_text().splitlines()[1:]]
    picked = [r for r in rows if "iotson_emeter1" in r[2]][:40]
    for i, r in enumerate(picked):
        shutil.copy(DIGITS / r[0], tmp_path / f"{i:02d}{Path(r[0]).suffix}")
    assert main(["read-digits", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == len(picked)
    err = circular_error([o["value"] for o in out], [float(r[1]) for r in picked])
    assert np.mean(err <= 0.2) >= 0.9
    assert all(0.0 <= o["confidence"] <= 1.0 for o in out)


def test_read_digits_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg at all")
    assert main(["read-digits", str(tmp_path / "a.jpg")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["read-digits", str(tmp_path / "missing.jpg")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["read-digits", str(empty)]) == 2
