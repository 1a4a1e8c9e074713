"""Capacitor steps from fundamental Q1 with the C/k dead band, and the PF tariff."""

from __future__ import annotations

import numpy as np
import pytest

from gridlens.errors import ParameterError
from gridlens.pq import TariffParams, pf_adjustment, recommend_steps


def test_best_fit_is_closest_to_the_deficit():  # type: ignore[no-untyped-def]
    # P1 = 100 kW at PF 0.80 lagging: Q1 = 75 kvar; PF 0.95 allows 32.87 kvar -> need 42.13
    plan = recommend_steps(100e3, 75e3, steps_kvar=[10, 20, 20, 40], target_pf=0.95)
    assert plan.action == "switch"
    assert sorted(plan.switch_kvar) == [40.0]
    assert plan.q_needed_var == pytest.approx(75e3 - 100e3 * np.tan(np.arccos(0.95)))
    assert plan.pf_after == pytest.approx(100 / np.hypot(100, 35), abs=1e-9)
    # 40 kvar leaves 2.1 kvar of deficit, inside the 6.5 kvar dead band: a controller stops here
    assert not plan.leading_after and not plan.target_reached
    # with a 45 kvar step available the target is reached
    assert recommend_steps(100e3, 75e3, steps_kvar=[10, 45], target_pf=0.95).target_reached


def test_dead_band_switches_nothing():  # type: ignore[no-untyped-def]
    # need = 35 - 32.87 = 2.1 kvar < 0.65 * 10 kvar
    plan = recommend_steps(100e3, 35e3, steps_kvar=[10, 20], target_pf=0.95)
    assert plan.switch_kvar == ()
    assert plan.action.startswith("none: within dead band")
    assert plan.pf_after == plan.pf_before and not plan.target_reached


def test_leading_load_switches_nothing():  # type: ignore[no-untyped-def]
    plan = recommend_steps(100e3, -20e3, steps_kvar=[10, 20])
    assert plan.switch_kvar == ()
    assert "leading" in plan.action


def test_never_overcompensates_beyond_dead_band():  # type: ignore[no-untyped-def]
    # need 9 kvar < 0.65 * 40 kvar: inside the dead band of a bank of one 40 kvar step
    assert recommend_steps(100e3, 42e3, steps_kvar=[40], target_pf=0.95).switch_kvar == ()
    # need 27 kvar > 26 kvar: switch, leaving 20 kvar lagging
    plan = recommend_steps(100e3, 60e3, steps_kvar=[40], target_pf=0.95)
    assert plan.switch_kvar == (40.0,) and plan.pf_after == pytest.approx(100 / np.hypot(100, 20))
    # Q1 = 10 kvar with PF target 1.0: a 40 kvar step would go 30 kvar leading > 26 -> refuse
    plan = recommend_steps(100e3, 10e3, steps_kvar=[40], target_pf=1.0)
    assert plan.switch_kvar == ()


def test_voltage_scaling_of_steps():  # type: ignore[no-untyped-def]
    plan = recommend_steps(
        100e3, 75e3, steps_kvar=[40], target_pf=0.95, v1_rms_v=207.0, rated_v=230.0
    )
    assert plan.q_comp_var == pytest.approx(40e3 * (207 / 230) ** 2)


@pytest.mark.parametrize("bad", [{"steps_kvar": []}, {"steps_kvar": [-5]}, {"target_pf": 1.5}])
def test_bad_parameters(bad):  # type: ignore[no-untyped-def]
    kw = {"steps_kvar": [10.0], "target_pf": 0.95} | bad
    with pytest.raises(ParameterError):
        recommend_steps(1e3, 1e3, **kw)


@pytest.mark.parametrize(
    "pf,expected",
    [(0.90, 0.0), (0.80, 0.02), (0.50, 0.06), (0.93, -0.006), (0.99, -0.01), (0.95, -0.01)],
)
def test_kepco_adjustment(pf, expected):  # type: ignore[no-untyped-def]
    assert pf_adjustment(pf) == pytest.approx(expected, abs=1e-12)


def test_tariff_is_parametrised():  # type: ignore[no-untyped-def]
    t = TariffParams(reference_pf=0.85, rate_per_pct=0.005, floor_pf=0.5, cap_pf=0.9)
    assert pf_adjustment(0.80, t) == pytest.approx(0.025)
    with pytest.raises(ParameterError):
        TariffParams(reference_pf=0.99, cap_pf=0.95)
