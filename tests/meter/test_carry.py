"""Carry resolution and plausibility: pure logic, no model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridlens.errors import DataFormatError, ParameterError
from gridlens.meter.carry import SHOWN_AT, register_value, resolve_wheels
from gridlens.meter.plausibility import History, Limits, judge
from gridlens.meter.synth import wheel_positions


def shown_to_a_tenth(reading: float, decimals: int) -> float:
    """What a person reads once wheel positions are known to a tenth."""
    return register_value(round(reading * 10**decimals, 1) / 10**decimals, decimals)


def test_every_carry_of_a_five_wheel_counter() -> None:
    # sweep 0.00 .. 1100 in steps that cross every carry, positions read to a tenth
    sure = np.ones(5)
    for step in range(0, 110_000, 7):
        reading = step / 100.0
        pos = np.round(wheel_positions(reading, 5, 1), 1) % 10
        fv = resolve_wheels(pos, sure, 1)
        assert fv.primary.value == pytest.approx(shown_to_a_tenth(reading, 1) % 10000), reading


def test_a_single_frame_rounding_wheel_would_jump_but_carry_does_not() -> None:
    # 0129.96: tens wheel mid-roll at 2.6 would round to 3 (a +10 jump)
    pos = np.round(wheel_positions(129.96, 5, 1), 1)
    assert pos[2] == pytest.approx(2.6)
    fv = resolve_wheels(pos, np.ones(5), 1)
    # the last wheel shows more of its 0 than of its 9, so a person reads the carried 130.0
    assert fv.primary.value == pytest.approx(130.0)
    assert fv.raw(1) == "0130.0"
    # half-way (129.95) counts as the lower digit, and nothing jumps to 139.x
    fv = resolve_wheels(np.round(wheel_positions(129.95, 5, 1), 1), np.ones(5), 1)
    assert fv.primary.value == pytest.approx(129.9)


def test_the_last_wheel_is_read_as_shown_never_floored() -> None:
    # sitting on its 6 but read a little low: 6, not 5 (the bug of the floor rule)
    for last, want in ((5.97, 126.0), (6.03, 126.0), (5.8, 126.0), (5.5, 125.0), (5.2, 125.0)):
        fv = resolve_wheels([1.0, 2.0, last], np.ones(3), 0)
        assert fv.primary.value == want, last
    # near the boundary the other digit is offered, and only there
    fv = resolve_wheels([1.0, 2.0, 5.0 + SHOWN_AT + 0.02], np.ones(3), 0)
    assert {c.value for c in fv.candidates} == {125.0, 126.0}
    assert fv.primary.value == 126.0
    fv = resolve_wheels([1.0, 2.0, 5.97], np.ones(3), 0)
    assert [c.value for c in fv.candidates] == [126.0]
    # the carry of a last wheel shown as 0 reaches every wheel above it
    fv = resolve_wheels([1.7, 9.7, 9.7], np.ones(3), 0)
    assert fv.primary.value == 200.0


@pytest.mark.parametrize("reading", [0.0, 5.549, 5.55, 9.99, 129.95, 129.96, 999.96])
def test_register_value_convention(reading: float) -> None:
    want = math.floor(reading) + (1 if round(reading - math.floor(reading), 6) >= SHOWN_AT else 0)
    assert register_value(reading, 0) == want


def test_early_or_late_rolling_wheels_are_tolerated() -> None:
    # 0299.9x: the hundreds wheel should sit at 2.3; early at 2.6 or late at 2.0 is fine
    for hundreds in (2.6, 2.0):
        fv = resolve_wheels([0.0, hundreds, 9.3, 9.3, 9.3], np.ones(5), 1)
        assert fv.primary.value == pytest.approx(299.9)
    # just after the carry, the hundreds wheel lags at 2.7
    fv = resolve_wheels([0.0, 2.7, 0.2, 0.2, 0.2], np.ones(5), 1)
    assert fv.primary.value == pytest.approx(300.0)


def test_ambiguous_carry_offers_the_neighbour() -> None:
    # lower wheels at 9.0: carry fraction 0, upper wheel half-way (3.5) is a coin toss
    fv = resolve_wheels([3.5, 9.0, 2.0], np.ones(3), 0)
    assert 2 not in fv.uncertain_wheels or fv.ambiguity[0] >= 0.3
    assert 0 in fv.uncertain_wheels
    values = sorted(c.value for c in fv.candidates)
    assert 392.0 in values and 492.0 in values


def test_resolve_rejects_malformed_input() -> None:
    with pytest.raises(DataFormatError):
        resolve_wheels([], [], 0)
    with pytest.raises(DataFormatError):
        resolve_wheels([1.0, 2.0], [1.0], 0)
    with pytest.raises(DataFormatError):
        resolve_wheels([1.0, 2.0], [1.0, 1.0], 3)


def _frame(value: float, n: int = 5, decimals: int = 1) -> tuple[object, list[float]]:
    pos = np.round(wheel_positions(value, n, decimals), 1)
    conf = [0.99] * n
    return resolve_wheels(pos, conf, decimals), conf


def test_plausibility_rejects_decrease_and_rate_with_reasons() -> None:
    limits = Limits(max_rate_per_h=10.0)
    hist = History.single(1234.5, elapsed_s=600)
    fv, conf = _frame(1230.1)
    d = judge(fv, conf, now=0.0, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "rejected" and d.value is None
    assert "below the last accepted 1234.5" in (d.reason or "")
    fv, conf = _frame(1240.1)  # 5.6 kWh in 10 min = 33.6 kW
    d = judge(fv, conf, now=0.0, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "rejected" and "above the limit 10/h" in (d.reason or "")
    fv, conf = _frame(1235.9)  # 1.4 kWh in 10 min = 8.4 kW
    d = judge(fv, conf, now=0.0, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "ok" and d.value == pytest.approx(1235.9)


def test_uncertain_carry_is_resolved_from_history() -> None:
    # the hundreds wheel is half-way (2.5) while the wheel below sits at 9.0: 1299.3 or 1399.3?
    pos = [0.0, 1.0, 2.5, 9.0, 9.0, 3.0]
    fv = resolve_wheels(pos, [0.99] * 6, 1)
    hist = History(accepted=((-120.0, 1299.1), (-60.0, 1299.2)))
    d = judge(fv, [0.99] * 6, now=0.0, history=hist, limits=Limits(), decimals=1)
    assert d.status == "ok" and d.value == pytest.approx(1299.3)
    assert d.note is None
    hist = History(accepted=((-120.0, 1399.1), (-60.0, 1399.2)))
    d = judge(fv, [0.99] * 6, now=0.0, history=hist, limits=Limits(), decimals=1)
    assert d.status == "ok" and d.value == pytest.approx(1399.3)
    assert d.note is not None and "resolved from history" in d.note


def test_resync_after_consistent_readings_never_locks_up() -> None:
    limits = Limits(max_rate_per_h=10.0, resync_after=3)
    hist = History.single(100.0, elapsed_s=60)  # a stale value: the meter really reads ~500
    now = 0.0
    statuses = []
    for k in range(4):
        fv, conf = _frame(500.0 + 0.1 * k)
        d = judge(fv, conf, now=now, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
        statuses.append((d.status, d.resynced))
        hist = hist.record(now, d)
        now += 60.0
    assert statuses[:2] == [("rejected", False), ("rejected", False)]
    assert statuses[2] == ("ok", True)
    assert statuses[3] == ("ok", False)
    assert hist.last == (180.0, pytest.approx(500.3))


def test_decreases_do_not_resync_unless_asked() -> None:
    for allow in (False, True):
        limits = Limits(resync_after=3, resync_on_decrease=allow)
        hist = History.single(900.0, elapsed_s=60)
        d = None
        for k in range(3):
            fv, conf = _frame(500.0 + 0.1 * k)
            d = judge(fv, conf, now=60.0 * k, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
            hist = hist.record(60.0 * k, d)
        assert d is not None
        if allow:
            assert d.status == "ok" and d.resynced
        else:
            assert d.status == "rejected" and "reset this meter's history" in (d.reason or "")


def test_unreadable_wheel_is_rejected_and_limits_are_checked() -> None:
    fv = resolve_wheels([1.0, 2.0, 3.0], [0.99, 0.05, 0.99], 0)
    d = judge(fv, [0.99, 0.05, 0.99], now=0.0, history=None, limits=Limits(), decimals=0)
    assert d.status == "rejected" and "wheel 2 is unreadable" in (d.reason or "")
    with pytest.raises(ParameterError):
        Limits(max_rate_per_h=-1.0)
    with pytest.raises(ParameterError):
        Limits(resync_after=1)


def test_a_late_photo_must_fit_below_the_later_reading() -> None:
    # a device kept a photo while offline; a photo taken 10 min after it was accepted first
    limits = Limits(max_rate_per_h=10.0)
    before, later = (-600.0, 1234.5), (600.0, 1235.5)
    hist = History(accepted=(before,), later=later)
    fv, conf = _frame(1235.0)  # between its neighbours: fine
    d = judge(fv, conf, now=0.0, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "ok" and d.value == pytest.approx(1235.0)
    fv, conf = _frame(1235.9)  # above the later reading: a misread digit
    d = judge(fv, conf, now=0.0, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "rejected" and "above 1235.5, accepted for a photo taken 10 min later" in (
        d.reason or ""
    )
    # no earlier reading at all: still judged against the later one, rate included
    only_later = History(later=(600.0, 1240.0))
    fv, conf = _frame(1230.0)  # 10 kWh in 10 min
    d = judge(fv, conf, now=0.0, history=only_later, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "rejected" and "above the limit 10/h" in (d.reason or "")
    fv, conf = _frame(1239.0)
    d = judge(fv, conf, now=0.0, history=only_later, limits=limits, decimals=1)  # type: ignore[arg-type]
    assert d.status == "ok" and d.value == pytest.approx(1239.0)


def test_late_photos_never_resynchronise() -> None:
    # three consistent late photos far above the accepted history do not replace it
    limits = Limits(max_rate_per_h=10.0, resync_after=3)
    hist = History(accepted=((-600.0, 100.0),), later=(6000.0, 100.5))
    for k in range(4):
        fv, conf = _frame(500.0 + 0.1 * k)
        d = judge(fv, conf, now=60.0 * k, history=hist, limits=limits, decimals=1)  # type: ignore[arg-type]
        assert d.status == "rejected" and not d.resynced
        hist = hist.record(60.0 * k, d)


def test_an_unsure_last_wheel_does_not_move_the_meter_on() -> None:
    # a last wheel read 2.2 with little confidence (a "1" half-way to "2", misread) would
    # advance the meter past the true reading and block every true reading below it
    hist = History(accepted=((-120.0, 1234.0), (-60.0, 1234.1)))
    fv, conf = _frame(1234.2)
    conf[-1] = 0.4
    d = judge(fv, conf, now=0.0, history=hist, limits=Limits(), decimals=1)  # type: ignore[arg-type]
    assert d.status == "rejected" and "last wheel is unsure (confidence 0.40)" in (d.reason or "")
    assert d.candidate == pytest.approx(1234.2)
    fv, conf = _frame(1234.1)  # unsure, but no further than the meter already is: fine
    conf[-1] = 0.4
    d = judge(fv, conf, now=0.0, history=hist, limits=Limits(), decimals=1)  # type: ignore[arg-type]
    assert d.status == "ok" and d.value == pytest.approx(1234.1)
    fv, conf = _frame(1234.2)  # sure: accepted
    d = judge(fv, conf, now=0.0, history=hist, limits=Limits(), decimals=1)  # type: ignore[arg-type]
    assert d.status == "ok" and d.value == pytest.approx(1234.2)


def test_an_unsure_first_reading_waits_and_an_unsure_alternative_falls_back() -> None:
    # the first accepted value anchors every later one: an unsure last wheel waits
    fv, conf = _frame(1234.2)
    conf[-1] = 0.4
    d = judge(fv, conf, now=0.0, history=History(), limits=Limits(), decimals=1)  # type: ignore[arg-type]
    assert d.status == "rejected" and "no accepted reading yet" in (d.reason or "")
    # a single photo read without history (gridlens read) still gives its value
    d = judge(fv, conf, now=0.0, history=None, limits=Limits(), decimals=1)  # type: ignore[arg-type]
    assert d.status == "ok" and d.value == pytest.approx(1234.2)
