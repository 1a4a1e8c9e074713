"""Analytic cases, off-nominal frequency, noise and DC for :func:`gridlens.pq.analyze`."""

from __future__ import annotations

import numpy as np
import pytest

from gridlens.errors import InputError, InsufficientDataError, ParameterError
from gridlens.pq import Harmonic, analyze, dq_fundamental, synthesize

SEED_V = (Harmonic(1, 220.0), Harmonic(3, 150.0), Harmonic(5, 100.0))  # THD_V 82 %
SEED_I = (Harmonic(1, 100.0, 60.0), Harmonic(3, 50.0, 30.0), Harmonic(5, 30.0, 30.0))


def truth(v_parts, i_parts):  # type: ignore[no-untyped-def]
    """IEEE 1459 quantities of a sum of harmonics, in closed form."""
    vh = {h.order: h for h in v_parts}
    ih = {h.order: h for h in i_parts}
    v1, i1 = vh[1], ih[1]
    phi1 = np.deg2rad(i1.lag_deg - v1.lag_deg)
    p = q_td = 0.0
    for h in set(vh) & set(ih):
        d = np.deg2rad(ih[h].lag_deg - vh[h].lag_deg)
        p += vh[h].rms * ih[h].rms * np.cos(d)
        q_td -= vh[h].rms * ih[h].rms * np.cos(h * np.pi / 2 + d)
    vrms = np.sqrt(sum(x.rms**2 for x in v_parts))
    irms = np.sqrt(sum(x.rms**2 for x in i_parts))
    return {
        "p1_w": v1.rms * i1.rms * np.cos(phi1),
        "q1_var": v1.rms * i1.rms * np.sin(phi1),
        "pf1": np.cos(phi1),
        "v1_rms_v": v1.rms,
        "i1_rms_a": i1.rms,
        "p_w": p,
        "pf_power_triangle": p / (vrms * irms),
        "pf_time_delay": p / np.hypot(p, q_td),
        "thd_v": np.sqrt(vrms**2 - v1.rms**2) / v1.rms,
        "thd_i": np.sqrt(irms**2 - i1.rms**2) / i1.rms,
        "sn_va": np.sqrt((vrms * irms) ** 2 - (v1.rms * i1.rms) ** 2),
    }


def many_harmonics(rng, lag1):  # type: ignore[no-untyped-def]
    orders = [2, 3, 4, 5, 7, 9, 11, 13, 17, 19, 23, 25]
    v = [Harmonic(1, 230.0)] + [
        Harmonic(h, float(rng.uniform(1, 15)), float(rng.uniform(-180, 180))) for h in orders
    ]
    i = [Harmonic(1, 50.0, lag1)] + [
        Harmonic(h, float(rng.uniform(1, 20)), float(rng.uniform(-180, 180))) for h in orders
    ]
    return v, i


@pytest.mark.parametrize("f0", [50.0, 60.0])
@pytest.mark.parametrize("lag1", [37.0, -25.0], ids=["lagging", "leading"])
def test_analytic_many_harmonics(f0, lag1):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(int(f0) + int(lag1))
    v, i = many_harmonics(rng, lag1)
    wf = synthesize(v, i, f_hz=f0, fs_hz=12_800.0, duration_s=1.0)
    rep = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=f0)
    exp = truth(v, i)
    a = rep.aggregate
    for key in ("p1_w", "q1_var", "v1_rms_v", "i1_rms_a", "p_w", "sn_va"):
        assert getattr(a, key) == pytest.approx(exp[key], rel=2e-4), key
    for key in ("pf1", "pf_power_triangle", "pf_time_delay", "thd_v", "thd_i"):
        assert getattr(a, key) == pytest.approx(exp[key], abs=2e-4), key
    assert rep.displacement == ("lagging" if lag1 > 0 else "leading")
    assert rep.window_cycles == (10 if f0 == 50 else 12)
    assert np.all(np.abs(rep.windows.pf1 - exp["pf1"]) < 2e-4)


@pytest.mark.parametrize("f_hz,f0", [(50.4, 50.0), (59.6, 60.0)])
def test_analytic_many_harmonics_off_nominal(f_hz, f0):  # type: ignore[no-untyped-def]
    """All three methods off nominal: the DQ β terms and the time-delay T/4 follow the
    tracked period, not the nominal one."""
    rng = np.random.default_rng(11)
    v, i = many_harmonics(rng, 41.0)
    wf = synthesize(v, i, f_hz=f_hz, fs_hz=12_800.0, duration_s=2.0)
    a = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=f0).aggregate
    exp = truth(v, i)
    for key in ("p1_w", "q1_var", "v1_rms_v", "i1_rms_a", "p_w"):
        assert getattr(a, key) == pytest.approx(exp[key], rel=2e-4), key
    for key in ("pf1", "pf_power_triangle", "pf_time_delay", "thd_v", "thd_i"):
        assert getattr(a, key) == pytest.approx(exp[key], abs=2e-4), key


def test_engine_agrees_with_reference_dq_on_whole_cycles():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    v, i = many_harmonics(rng, 48.0)
    wf = synthesize(v, i, f_hz=60.0, fs_hz=60.0 * 256, duration_s=0.5)
    ref = dq_fundamental(wf.v[:7680], wf.i[:7680], 256.0)
    a = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=60.0, track_frequency=False).aggregate
    assert a.p1_w == pytest.approx(float(ref.p1_w), rel=1e-6)
    assert a.q1_var == pytest.approx(float(ref.q1_var), rel=1e-6)


@pytest.mark.parametrize("f_hz,f0", [(59.5, 60.0), (60.5, 60.0), (49.5, 50.0), (50.5, 50.0)])
def test_off_nominal_with_seed_distortion_noise_and_dc(f_hz, f0):  # type: ignore[no-untyped-def]
    """Requirement: PF1 within 0.002 of the truth at ±0.5 Hz, THD_V 82 %, noise, DC offset."""
    wf = synthesize(
        SEED_V, SEED_I, f_hz=f_hz, fs_hz=10_000.0, duration_s=3.0,
        noise_rms_v=2.0, noise_rms_a=1.0, dc_v=5.0, dc_a=1.5, seed=1,
    )  # fmt: skip
    rep = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=f0)
    assert np.max(np.abs(rep.windows.pf1 - 0.5)) < 0.002
    assert rep.aggregate.pf1 == pytest.approx(0.5, abs=5e-4)
    assert rep.aggregate.f_hz == pytest.approx(f_hz, abs=2e-3)
    assert np.all(np.abs(rep.windows.f_hz - f_hz) < 0.01)
    assert rep.aggregate.thd_v == pytest.approx(0.8194, abs=2e-3)
    assert rep.aggregate.v_dc_v == pytest.approx(5.0, abs=0.05)


def test_fixed_one_cycle_window_drifts_off_nominal():  # type: ignore[no-untyped-def]
    """The seed's pitfall, shown: one fixed cycle at 60 Hz on a 60.5 Hz grid misses by >0.002."""
    wf = synthesize(SEED_V, SEED_I, f_hz=60.5, fs_hz=10_000.0, duration_s=1.0)
    fixed = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=60.0, window_cycles=1, track_frequency=False)
    tracked = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=60.0, window_cycles=1)
    assert np.max(np.abs(fixed.windows.pf1 - 0.5)) > 0.002
    assert np.max(np.abs(tracked.windows.pf1 - 0.5)) < 0.002


def test_frequency_ramp_is_followed():  # type: ignore[no-untyped-def]
    wf = synthesize(SEED_V, SEED_I, f_hz=59.5, f_ramp_hz_per_s=0.2, fs_hz=10_000.0, duration_s=5.0)
    rep = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=60.0)
    mid = rep.windows.t_s + rep.windows.duration_s / 2
    np.testing.assert_allclose(rep.windows.f_hz, 59.5 + 0.2 * mid, atol=0.01)
    assert np.max(np.abs(rep.windows.pf1 - 0.5)) < 0.002


def test_low_sample_rate():  # type: ignore[no-untyped-def]
    """32 samples per cycle (a revenue meter's rate) still gives PF1 to 0.002 off nominal."""
    wf = synthesize(SEED_V, SEED_I, f_hz=60.4, fs_hz=1920.0, duration_s=2.0, noise_rms_v=0.5)
    rep = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=60.0)
    assert np.max(np.abs(rep.windows.pf1 - 0.5)) < 0.002


def test_short_record_is_one_window():  # type: ignore[no-untyped-def]
    wf = synthesize(SEED_V, SEED_I, f_hz=60.0, fs_hz=6000.0, duration_s=5 / 60)
    rep = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=60.0)
    assert rep.n_windows == 1
    assert 2 <= rep.window_cycles < 5
    assert rep.aggregate.pf1 == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs,err",
    [
        ({"v": np.ones(100), "i": np.ones(99)}, InputError),
        ({"v": np.r_[np.ones(50), np.nan, np.ones(49)], "i": np.ones(100)}, InputError),
        ({"v": np.zeros((2, 50)), "i": np.zeros((2, 50))}, InputError),
    ],
)
def test_bad_arrays(kwargs, err):  # type: ignore[no-untyped-def]
    with pytest.raises(err):
        analyze(kwargs["v"], kwargs["i"], 10_000.0)


def test_fewer_than_two_cycles():  # type: ignore[no-untyped-def]
    wf = synthesize(SEED_V, SEED_I, f_hz=60.0, fs_hz=10_000.0, duration_s=1.5 / 60)
    with pytest.raises(InsufficientDataError, match="2"):
        analyze(wf.v, wf.i, wf.fs_hz)


def test_no_voltage_signal():  # type: ignore[no-untyped-def]
    n = 10_000
    with pytest.raises(InsufficientDataError):
        analyze(np.zeros(n), np.ones(n), 10_000.0)


@pytest.mark.parametrize("bad", [{"window_cycles": 0}, {"f0_hz": -50.0}, {"window_cycles": 2.5}])
def test_bad_parameters(bad):  # type: ignore[no-untyped-def]
    wf = synthesize(SEED_V, SEED_I, duration_s=0.5)
    with pytest.raises(ParameterError, match="parameter of analyze"):
        analyze(wf.v, wf.i, wf.fs_hz, **bad)


def test_sample_rate_too_low():  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match="fs_hz"):
        analyze(np.ones(100), np.ones(100), 500.0, f0_hz=60.0)


def test_no_current_gives_an_undefined_power_factor_not_an_error() -> None:
    """Finding 8: a record without current (a load switched off; a PF controller sees one
    every night) raised ZeroDivisionError. The power factors and THD_I are undefined (NaN),
    the voltage side is still measured, and the capacitor advice is to switch nothing."""
    from gridlens.pq import recommend_steps

    wf = synthesize([Harmonic(1, 230.0), Harmonic(5, 9.0)], [Harmonic(1, 0.0)], f_hz=50.0,
                    fs_hz=5000.0, duration_s=1.0)  # fmt: skip
    assert not wf.i.any()
    rep = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=50.0)
    a = rep.aggregate
    assert not rep.pf_defined and rep.displacement == "undefined"
    for pf in (a.pf1, a.pf_power_triangle, a.pf_time_delay, a.thd_i):
        assert isinstance(pf, float) and np.isnan(pf)
    assert np.isnan(rep.windows.pf1).all()
    assert a.v1_rms_v == pytest.approx(230.0, rel=1e-4)
    assert a.thd_v == pytest.approx(9.0 / 230.0, rel=1e-3)
    assert a.f_hz == pytest.approx(50.0, abs=1e-3)
    assert a.p1_w == 0.0 and a.q1_var == 0.0
    plan = recommend_steps(a.p1_w, a.q1_var, steps_kvar=[5.0, 10.0])
    assert plan.switch_kvar == () and "no current" in plan.action


def test_current_that_stops_leaves_the_aggregate_defined() -> None:
    """A load that switches off half-way: its windows without current have no PF, the
    record's PF is the one of the energy that flowed."""
    wf = synthesize([Harmonic(1, 230.0)], [Harmonic(1, 10.0, 30.0)], f_hz=50.0, fs_hz=5000.0,
                    duration_s=2.0)  # fmt: skip
    i = wf.i.copy()
    i[len(i) // 2 :] = 0.0
    rep = analyze(wf.v, i, wf.fs_hz, f0_hz=50.0)
    assert rep.pf_defined and rep.displacement == "lagging"
    assert rep.aggregate.pf1 == pytest.approx(np.cos(np.radians(30.0)), abs=1e-3)
    assert np.isnan(rep.windows.pf1[-1]) and np.isfinite(rep.windows.pf1[0])
