"""Whole meters on real data, as a person reads them, with no forgiveness (GRIDLENS_DATA)."""

from __future__ import annotations

import pytest

from gridlens.meter.data import data_root
from gridlens.meter.evaluate import (
    box_robustness,
    composed_meters,
    evaluate_series,
    load_photo_set,
)
from gridlens.meter.model import default_model_path

PHOTOS = data_root() / "meter-photos"

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(
        not (PHOTOS / "wmsc" / "labels.csv").is_file() or not default_model_path().is_file(),
        reason=f"real meter photos not found under {PHOTOS} (set GRIDLENS_DATA)",
    ),
]


def test_wmsc_series_reads_as_a_person_does() -> None:
    ps = load_photo_set(PHOTOS / "wmsc")
    r = evaluate_series(ps)
    # 22 photos: one from an old camera position is rejected with a reason; of the 21 read,
    # at most 2 wheels caught exactly half-way (model 1.55 and 2.5 against "2" and "3"
    # by eye) differ from the labels
    assert r.rejected_single <= 1
    assert r.exact_single >= 19, r.misses
    # the first five photos are out of time order in the source (README), so in sequence
    # some are rightly refused as decreases; none is ever accepted
    assert r.accepted_decreases == 0


def test_laurynas_reads_to_the_last_wheel() -> None:
    ps = load_photo_set(PHOTOS / "laurynas")
    r = evaluate_series(ps)
    assert r.rejected_single == 0
    # watermeter1 is 1340.077; watermeter2's last wheel is half-way between 7 and 8
    assert r.values[0] == pytest.approx(1340.077)
    assert r.values[1] in (pytest.approx(1340.077), pytest.approx(1340.078))


def test_moved_boxes_give_the_same_reading_on_real_photos() -> None:
    ps = load_photo_set(PHOTOS / "wmsc")
    cases = {
        "down 15 %": (0.0, 0.15, 1.0, 0.0),
        "left 15 %": (-0.15, 0.0, 1.0, 0.0),
        "20 % too big": (0.0, 0.0, 1.2, 0.0),
    }
    table = box_robustness(ps, cases)
    for name, row in table.items():
        assert row["same"] >= row["n"] - 1, (name, row)


@pytest.mark.skipif(
    not (data_root() / "meter-digits" / "labels.csv").is_file(),
    reason="meter-digits data not found (set GRIDLENS_DATA)",
)
def test_meters_composed_from_unseen_real_crops() -> None:
    r = composed_meters(400, seed=3)
    assert r["exact"] / r["n"] >= 0.96, r["misses"]
