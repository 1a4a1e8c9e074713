"""Feeder benchmarks: placement search and estimation times against their anchors.

Rows (all in this one run, 2 CPU cores):
1. Exhaustive IEEE 15-bus placement, K = 3, bus 1 fixed, 15 scenarios, exact WLS: gridlens
   ``search`` end to end vs power-grid-model alone running the same 1,365 estimations (one
   prepared batch call). Target: <= 1 s and <= 2x the bare power-grid-model time.
2. The paper's PSO over the same search: gridlens (particles batched in power-grid-model) vs
   particles one power flow at a time through OpenDSS (timed on one swarm, extrapolated to the
   same number of power flows). Target: >= 5x faster. Mean TVE beside WLS's.
3. Greedy analytic and greedy WLS placement on the IEEE 123-bus feeder (K = 4), target <= 10 s.
4. One WLS estimate on the 8500-node feeder (3 µPMUs), target <= 2 s, with its TVE.

Usage: ``python benchmarks/bench_grid.py`` (needs GRIDLENS_DATA for rows 3-4). Progress on stderr.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from gridlens.grid import ieee15
from gridlens.grid.estimation import PSOEstimator, Study, WLSEstimator, tve
from gridlens.grid.placement import search


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bare_pgm_1365(study: Study) -> float:
    """power-grid-model alone: one prepared batch of the 1,365 estimations."""
    import itertools

    from power_grid_model import CalculationMethod, ComponentType, DatasetType, initialize_array

    WLSEstimator().estimate(study, [(0,)])  # builds the sensor model
    se = study.engine_cache["se"]
    m, S, n = study.meas, study.n_scenarios, study.feeder.n_bus
    combos = [(0, *c) for c in itertools.combinations(range(1, n), 2)]
    B = len(combos) * S
    vu = initialize_array(DatasetType.update, ComponentType.sym_voltage_sensor, (B, n))
    vu["id"] = se.vs_ids
    vu["u_measured"] = np.tile(np.abs(m.pmu) * 11e3, (len(combos), 1))
    vu["u_angle_measured"] = np.tile(np.angle(m.pmu), (len(combos), 1))
    sig = np.full((len(combos), S, n), np.inf)
    for k, c in enumerate(combos):
        sig[k][:, list(c)] = 8.0
    vu["u_sigma"] = sig.reshape(B, n)
    upd = {ComponentType.sym_voltage_sensor: vu}

    def run() -> None:
        se.model.calculate_state_estimation(
            calculation_method=CalculationMethod.newton_raphson,
            update_data=upd,
            threading=0,
            error_tolerance=1e-9,
            output_component_types={ComponentType.node: ["u_pu", "u_angle"]},
        )

    return timed(run)[0]


def main() -> None:
    rows: list[tuple[str, str, str, str, str]] = []
    st = Study.build(ieee15(pv_bus=14, pv_kw=100), 15, seed=0)
    print("1/4 exhaustive 15-bus WLS ...", file=sys.stderr)
    t_bare = bare_pgm_1365(st)
    tracemalloc.start()
    t_ours, res = timed(lambda: search(st, 3, estimator="wls", fixed=["1"]))
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rows.append(("15-bus exhaustive K=3, 15 scen., exact WLS (1,365 SE)",
                 f"{t_ours:.3f} s", f"pgm alone {t_bare:.3f} s", f"{t_ours / t_bare:.2f}x",
                 f"Φ best {res.best.mean_tve_pct:.4f} %, py peak {peak:.1f} MiB"))  # fmt: skip

    print("2/4 PSO placement (pgm batches) ...", file=sys.stderr)
    t0 = time.perf_counter()
    pso = search(st, 3, estimator="pso", fixed=["1"], progress=True)
    t_pso = time.perf_counter() - t0
    n_pf = 91 * 15 * 20 * 41
    one = Study.build(ieee15(pv_bus=14, pv_kw=100), 1, seed=0)
    est = PSOEstimator(engine="opendss", iterations=4)
    t0 = time.perf_counter()
    est.estimate(one, [(0, 1, 8)])
    per_pf = (time.perf_counter() - t0) / est.last_power_flows
    t_dss = per_pf * n_pf
    rows.append(("15-bus exhaustive K=3, PSO (20 x 40), " f"{n_pf:,} power flows",
                 f"{t_pso:.1f} s", f"OpenDSS 1-by-1 ≈{t_dss:.0f} s ({per_pf * 1e3:.2f} ms/PF)",
                 f"{t_dss / t_pso:.0f}x faster",
                 f"Φ best {pso.best.mean_tve_pct:.4f} % "
                 f"(WLS {res.best.mean_tve_pct:.4f} %)"))  # fmt: skip

    data = Path(os.environ.get("GRIDLENS_DATA", "../shared/data")) / "feeders"
    if data.is_dir():
        from gridlens.grid.dssio import load_dss

        print("3/4 IEEE 123-bus greedy ...", file=sys.stderr)
        f123 = load_dss(data / "123Bus" / "IEEE123Master.dss")
        st123 = Study.build(f123, 15, seed=0)
        for name in ("analytic", "wls"):
            t, r = timed(
                lambda name=name: search(  # type: ignore[misc]
                    st123, 4, estimator=name, fixed=[f123.source_bus], method="greedy"
                ),
                repeat=1,
            )
            rows.append((f"123-bus greedy K=4, 15 scen., {name}", f"{t:.2f} s", "target 10 s",
                         f"{10 / t:.0f}x under",
                         f"{'-'.join(r.best.buses)} Φ {r.best.mean_tve_pct:.4f} %"))  # fmt: skip
        print("4/4 8500-node WLS ...", file=sys.stderr)
        f85 = load_dss(data / "8500-Node" / "Master.dss")
        st85 = Study.build(f85, 1, seed=0)
        src = f85.bus_index(f85.source_bus)
        place = [(src, f85.n_bus // 3, 2 * f85.n_bus // 3)]
        wls = WLSEstimator()
        wls.estimate(st85, place)  # model build
        t, e = timed(lambda: wls.estimate(st85, place))
        tv = tve(e, st85.truth[None]) * 100
        rows.append((f"8500-node ({f85.n_bus} buses) one WLS estimate, 3 µPMUs", f"{t:.3f} s",
                     "target 2 s", f"{2 / t:.0f}x under",
                     f"TVE mean {tv.mean():.4f} % max {tv.max():.4f} % "
                     f"({wls.method_used})"))  # fmt: skip
    else:
        print(f"skipping rows 3-4: {data} not found (set GRIDLENS_DATA)", file=sys.stderr)

    print("| case | gridlens | anchor | ratio | result |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\npeak RSS of the whole run: {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
