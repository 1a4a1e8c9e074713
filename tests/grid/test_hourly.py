"""Hourly state estimation (grid/hourly.py), the radial layout and the feeder document."""

from __future__ import annotations

import numpy as np
import pytest

from gridlens.errors import ParameterError
from gridlens.grid import ieee15
from gridlens.grid.estimation import tve
from gridlens.grid.feeder import feeder_from_dict, feeder_to_dict
from gridlens.grid.hourly import (
    PSEUDO_REL,
    READ_REL,
    HourlySE,
    MeterSeries,
    bus_loads,
    meter_profile,
    virtual_pmus,
)
from gridlens.grid.layout import bus_layout, tree_layout

H = 72
HOURS = 3600.0 * (np.arange(H) + 500_000)


def _truth_loads(f, rng):  # type: ignore[no-untyped-def]
    nom = np.zeros(f.n_bus)
    for ld in f.loads:
        nom[f.bus_index(ld.bus)] += ld.p_kw
    hod = (HOURS // 3600) % 24
    shape = 1 + 0.4 * np.sin(2 * np.pi * (hod - 8) / 24)
    p = nom[None] * shape[:, None] * (1 + 0.05 * rng.standard_normal((H, f.n_bus)))
    return nom, p


def test_more_meters_lower_tve_and_uncertainty() -> None:
    f = ieee15()
    rng = np.random.default_rng(3)
    _, p = _truth_loads(f, rng)
    pmus = [f.bus_index(b) for b in ("1", "2", "9")]
    out = {}
    for k in (0, 7, 14):
        buses = list(range(1, 15))[:k]
        se = HourlySE(f, pmus, buses)
        truth = se.power_flow(p, p)  # PF 0.707 as the feeder's nominal loads
        loads = bus_loads(f, HOURS, [MeterSeries(b, p[:, b]) for b in buses])
        est = se.estimate(loads, virtual_pmus(truth, pmus, seed=1))
        out[k] = (float(tve(est.phasors, truth).mean()), float(est.vm_sigma.mean()))
        assert est.vm_pu.shape == (H, 15) and np.all(est.vm_sigma > 0)
    assert out[14][0] < out[7][0] < out[0][0] < 0.01  # mean TVE < 1 %, falling
    assert out[14][1] < out[7][1] < out[0][1]  # and so does the estimated σ


def test_missing_readings_become_pseudo_measurements() -> None:
    f = ieee15()
    kwh = np.full(H, 2.0)
    kwh[10:14] = np.nan
    loads = bus_loads(f, HOURS, [MeterSeries(f.bus_index("7"), kwh, scale=70.0)])
    b = f.bus_index("7")
    assert loads.read.tolist().count(0) == 4 and loads.pseudo[10:14].tolist() == [1] * 4
    assert loads.p_kw[0, b] == pytest.approx(140.0)
    assert loads.p_sigma[0, b] == pytest.approx(140.0 * READ_REL)
    assert loads.p_kw[11, b] == pytest.approx(140.0)  # its own profile at that hour
    assert loads.p_sigma[11, b] == pytest.approx(140.0 * PSEUDO_REL)
    assert loads.metered[b] and not loads.metered[f.bus_index("8")]
    prof = meter_profile(HOURS, kwh)
    assert prof.shape == (24,) and np.nanmax(np.abs(prof - 2.0)) == 0
    with pytest.raises(ParameterError):
        bus_loads(f, HOURS, [MeterSeries(99, kwh)])
    with pytest.raises(ParameterError):
        bus_loads(f, HOURS, [MeterSeries(3, kwh[:5])])


def test_without_pmus_the_source_voltage_is_the_reference() -> None:
    f = ieee15()
    rng = np.random.default_rng(5)
    _, p = _truth_loads(f, rng)
    se = HourlySE(f, [], list(range(1, 15)))
    truth = se.power_flow(p, p)
    est = se.estimate(bus_loads(f, HOURS, [MeterSeries(b, p[:, b]) for b in range(1, 15)]))
    assert float(tve(est.phasors, truth).mean()) < 0.01
    assert np.all(np.abs(est.va_deg[:, 0]) < 1e-6)


def test_layout_and_model_round_trip() -> None:
    f = ieee15()
    pos = tree_layout(f)
    assert pos[0, 0] == 0 and pos[:, 0].max() == 5  # bus 1 at the root, 13 five lines away
    xy, source = bus_layout(f)
    assert source == "tree" and xy.min() >= 0 and xy.max() <= 1
    assert feeder_from_dict(feeder_to_dict(f)) == f
    from dataclasses import replace

    g = replace(f, coords=tuple((b, float(k), float(k % 3)) for k, b in enumerate(f.bus_names)))
    xy, source = bus_layout(g)
    assert source == "buscoords" and xy[0, 0] == 0 and xy[-1, 0] == 1


def test_an_impossible_hour_does_not_sink_the_batch() -> None:
    f = ieee15()
    rng = np.random.default_rng(9)
    nom, p = _truth_loads(f, rng)
    buses = list(range(1, 15))
    kwh = p.copy()
    kwh[5] = nom * 20  # 20x every load: no voltage solves it
    se = HourlySE(f, [0], buses)
    est = se.estimate(bus_loads(f, HOURS, [MeterSeries(b, kwh[:, b]) for b in buses]))
    assert np.isfinite(est.vm_pu).all() and est.vm_pu.shape == (H, 15)
    assert est.vm_sigma[5].mean() > est.vm_sigma[4].mean()  # the capped hour: wide σ
    spike = 1.0 + 50.0 * (np.arange(H) == 3)  # one meter, one kettle hour
    shape = bus_loads(f, HOURS, [MeterSeries(7, spike)])
    assert shape.p_kw[3, 2] <= 2.5 * 70.0 + 1e-9  # the typical shape is capped
