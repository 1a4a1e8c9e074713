"""Power flow: OpenDSS and power-grid-model on the same feeder, against the published values."""

from __future__ import annotations

import numpy as np
import pytest

from gridlens.errors import DataFormatError, NotFoundError, ParameterError
from gridlens.grid import ieee15, solve_power_flow
from gridlens.grid.dssio import load_dss, reduction_error
from gridlens.grid.engines import feeder_to_dss

# Check values of the digest (S2): no PV, nominal loads.
V_PUBLISHED = [1.0, .97128, .95667, .95090, .94992, .95823, .95601, .95695, .96797,
               .96690, .94995, .94583, .94452, .94861, .94844]  # fmt: skip


@pytest.mark.parametrize("engine", ["opendss", "pgm"])
def test_ieee15_matches_published_check_values(engine: str) -> None:
    r = solve_power_flow(ieee15(), engine)
    np.testing.assert_allclose(r.v_pu, V_PUBLISHED, atol=6e-6)
    assert r.buses[int(np.argmin(r.v_pu))] == "13"
    assert r.v_pu.min() == pytest.approx(0.94452, abs=6e-6)
    assert r.losses_kw == pytest.approx(61.794, abs=1e-3)
    assert r.losses_kvar == pytest.approx(57.298, abs=1e-3)


@pytest.mark.parametrize("pv_kw", [0.0, 100.0, 600.0])
def test_engines_agree_to_1e6_pu(pv_kw: float) -> None:
    f = ieee15(pv_bus=14, pv_kw=pv_kw)
    a, b = solve_power_flow(f, "opendss"), solve_power_flow(f, "pgm")
    assert np.abs(a.phasors - b.phasors).max() < 1e-6
    assert a.losses_kw == pytest.approx(b.losses_kw, abs=1e-4)


def test_pv_raises_voltage_and_cuts_losses() -> None:
    base = solve_power_flow(ieee15(), "pgm")
    pv = solve_power_flow(ieee15(pv_bus=14, pv_kw=100), "pgm")
    assert pv.v_pu[13] > base.v_pu[13] + 1e-3
    assert pv.losses_kw < base.losses_kw


def test_pandapower_third_opinion() -> None:
    pp = pytest.importorskip("pandapower")
    f = ieee15(pv_bus=14, pv_kw=100)
    net = pp.create_empty_network(sn_mva=1.0, f_hz=f.frequency_hz)
    idx = {b.name: pp.create_bus(net, vn_kv=b.kv_ll) for b in f.buses}
    pp.create_ext_grid(net, idx[f.source_bus], vm_pu=1.0)
    for ln in f.lines:
        pp.create_line_from_parameters(
            net, idx[ln.from_bus], idx[ln.to_bus], 1.0, ln.r_ohm, ln.x_ohm, 0.0, 1e3
        )
    for ld in f.loads:
        pp.create_load(net, idx[ld.bus], p_mw=ld.p_kw / 1e3, q_mvar=ld.q_kvar / 1e3)
    for g in f.generators:
        pp.create_sgen(net, idx[g.bus], p_mw=g.p_kw / 1e3)
    pp.runpp(net, tolerance_mva=1e-10)
    ours = solve_power_flow(f, "pgm")
    np.testing.assert_allclose(net.res_bus.vm_pu.to_numpy(), ours.v_pu, atol=1e-6)
    np.testing.assert_allclose(net.res_bus.va_degree.to_numpy(), ours.angle_deg, atol=1e-4)


def test_dss_script_is_plain_text() -> None:
    text = feeder_to_dss(ieee15(pv_bus=14, pv_kw=100))
    assert "New Generator.pv bus1=14" in text
    assert text.count("New Line.") == 14 and text.count("New Load.") == 14
    assert "Vminpu=0.7" in text  # no load silently turned into constant impedance


def test_bad_feeder_inputs() -> None:
    with pytest.raises(NotFoundError, match="unknown bus '16'"):
        ieee15(pv_bus=16, pv_kw=10)
    with pytest.raises(ParameterError):
        ieee15(pv_bus=14, pv_kw=-1)
    with pytest.raises(ParameterError, match="unknown engine"):
        solve_power_flow(ieee15(), "matpower")


def test_dss_that_does_not_compile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.dss"
    bad.write_text(
        "Clear\nNew Circuit.x basekv=11\nNew Line.l1 bus1=sourcebus bus2=b linecode=nope\n"
    )
    with pytest.raises(DataFormatError, match=r"OpenDSS could not compile bad\.dss"):
        load_dss(bad)
    with pytest.raises(NotFoundError):
        load_dss(tmp_path / "missing.dss")


@pytest.mark.data
def test_8500_node_reduction_solves_in_both_engines(feeders) -> None:  # type: ignore[no-untyped-def]
    f = load_dss(feeders / "8500-Node" / "Master.dss")
    assert f.n_bus > 4000 and len(f.loads) > 1000
    a, b = solve_power_flow(f, "pgm"), solve_power_flow(f, "opendss")
    assert np.abs(a.phasors - b.phasors).max() < 1e-4
    assert 0.9 < a.v_pu.min() < 1.0


@pytest.mark.data
@pytest.mark.parametrize(
    ("rel", "max_dev"),
    [
        ("13Bus/IEEE13Nodeckt.dss", 0.04),
        ("123Bus/IEEE123Master.dss", 0.03),
        ("37Bus/ieee37.dss", None),
    ],
)
def test_ieee_feeders_load_and_agree(feeders, rel: str, max_dev: float | None) -> None:  # type: ignore[no-untyped-def]
    f = load_dss(feeders / rel)
    a, b = solve_power_flow(f, "pgm"), solve_power_flow(f, "opendss")
    assert np.abs(a.phasors - b.phasors).max() < 1e-4  # both engines solve the same reduction
    if max_dev is not None:  # the reduction stays close to OpenDSS's unbalanced solution
        assert reduction_error(feeders / rel, f) < max_dev


def test_island_and_overload_are_clear_errors() -> None:
    from dataclasses import replace

    from gridlens.errors import ConvergenceError, InputError
    from gridlens.grid.estimation import Study
    from gridlens.grid.feeder import Bus, Line, Load

    f = ieee15()
    island = replace(
        f,
        buses=(*f.buses, Bus("16", 11.0), Bus("17", 11.0)),
        lines=(*f.lines, Line("iso", "16", "17", 1.0, 1.0)),
        loads=(*f.loads, Load("LD17", "17", 50.0, 50.0)),
    )
    with pytest.raises(InputError, match=r"2 bus\(es\) .* not connected .* unobservable"):
        Study.build(island, 2)
    with pytest.raises(InputError, match="not connected"):
        solve_power_flow(island, "opendss")
    heavy = f.with_loads([x.p_kw * 40 for x in f.loads], [x.q_kvar * 40 for x in f.loads])
    for engine in ("pgm", "opendss"):
        with pytest.raises(ConvergenceError):
            solve_power_flow(heavy, engine)
