"""Leave-one-out selection (:func:`gridlens.anomaly.bench.leave_one_out`): the config scored
on a series is never chosen with that series."""

from __future__ import annotations

import math

import pytest

from gridlens.anomaly.bench import leave_one_out
from gridlens.errors import ParameterError


def test_the_held_out_series_never_votes() -> None:
    # "a" wins on the mean of all three series, but only thanks to s1: held out, s1 gets "b"
    table = {
        "a": {"s1": 1.0, "s2": 0.2, "s3": 0.2},
        "b": {"s1": 0.1, "s2": 0.3, "s3": 0.3},
    }
    sel = {s.held_out: s for s in leave_one_out(table)}
    assert sel["s1"].chosen == "b" and sel["s1"].score == pytest.approx(0.1)
    # without s2, "a" has mean 0.6 over s1, s3 and "b" 0.2
    assert sel["s2"].chosen == "a" and sel["s2"].score == pytest.approx(0.2)
    assert sel["s3"].chosen == "a"


def test_nan_is_left_out_and_ties_keep_the_first_config() -> None:
    table = {
        "a": {"s1": math.nan, "s2": 0.5, "s3": 0.5},
        "b": {"s1": math.nan, "s2": 0.5, "s3": 0.5},
    }
    sel = leave_one_out(table)
    assert [s.held_out for s in sel] == ["s2", "s3"]  # s1 has no score anywhere
    assert all(s.chosen == "a" for s in sel)


def test_leave_one_group_out_holds_out_the_whole_group() -> None:
    table = {
        "a": {"n1": 0.9, "n2": 0.9, "k1": 0.0},
        "b": {"n1": 0.5, "n2": 0.5, "k1": 0.1},
    }
    groups = {"n1": "nab", "n2": "nab", "k1": "kpi"}
    sel = {s.held_out: s for s in leave_one_out(table, groups=groups)}
    assert sel["k1"].chosen == "a" and sel["k1"].score == 0.0  # chosen on NAB alone
    assert sel["n1"].chosen == "b" and sel["n1"].score == 0.5  # chosen on KPI alone


def test_an_empty_table_is_refused() -> None:
    with pytest.raises(ParameterError):
        leave_one_out({})
