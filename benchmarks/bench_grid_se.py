"""Hourly state estimation from the store: speed and accuracy against the issue-18 targets.

Every case runs the real path — readings in a SQLite store, ``grid_se.refresh`` reading
them, forming the bus loads, running power-grid-model's WLS for all missing hours in one
batch and storing the estimates — and prints ours against its anchor as a ratio:

- ``month15``: the demo's setup (``cli/_demo_grid.py``: 3 simulated meters — 2 households
  and a factory, a reading every 10 minutes — on buses 7, 12 and 15 of the IEEE 15-bus
  feeder, µPMUs at 1, 2, 9, the simulated truth) over 31 days. Target: a month of hourly
  estimates in <= 5 s; mean TVE against the simulated truth < 1 %. Anchor: the same hours
  estimated one at a time (one refresh per hour, as a server would when each hour closes).
- ``meters``: the same feeder with every loaded bus driven by its own simulated household
  (14 meters, 14 days), K of them on their buses (the rest pseudo-measured from the metered
  buses' shape): how the mean TVE falls as more buses carry meters.
- ``ieee123``: the IEEE 123-bus feeder (``$GRIDLENS_DATA/feeders/123Bus``) with 100 simulated
  households on its loaded buses (48 hours). Target <= 1 s per hour of data; anchor: 1 s
  per hour.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_grid_se.py [month15 meters ieee123]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HOUR = 3600.0
START = 1_780_000_000.0 // 86400 * 86400  # a fixed UTC midnight (2026-05-28)


def _readings(profile: Any, hours: int, step_s: float = 600.0) -> list[tuple[float, float]]:
    t = START + np.arange(0.0, hours * HOUR + 1, step_s)
    return [(float(x), float(profile.energy_kwh(x))) for x in t]


def _store(tmp: str, name: str) -> Any:
    from gridlens.store import Store

    return Store.open(f"sqlite:///{tmp}/{name}.db")


def _add_meters(store: Any, kinds: list[str], hours: int) -> list[int]:
    from gridlens.simulate import factory_profile, household_profile

    ids = []
    for k, kind in enumerate(kinds, start=1):
        dev, _ = store.add_device(f"meter-{k:03d}", {})
        prof = factory_profile(k) if kind == "factory" else household_profile(k)
        store.import_counter(dev.id, _readings(prof, hours), source="sim", actor="bench")
        ids.append(dev.id)
    return ids


def _mean_tve(store: Any, feeder_id: int) -> tuple[float, float, int]:
    hours = store.feeder_hours(feeder_id, 0.0, 4e9)
    tve = np.array([h.tve for h in hours], dtype=float)
    return float(tve.mean()), float(np.percentile(tve.max(axis=1), 95)), len(hours)


def month15(tmp: str) -> None:
    from gridlens.cli._demo_grid import seed_grid
    from gridlens.server import grid_se

    days = 31
    store = _store(tmp, "month15")
    _add_meters(store, ["household", "household", "factory"], days * 24)
    url = store.url
    store.close()
    t0 = time.perf_counter()
    seed_grid(url, "http://-", "-", Path(tmp))
    total = time.perf_counter() - t0
    store = _store(tmp, "month15")
    row = store.feeder("demo-ieee15")
    mean, p95, n = _mean_tve(store, row.id)
    # anchor: the same hours, one refresh per hour
    store.set_pmus(row.id, list(row.pmus), actor="bench")  # drops every estimate
    hours = np.arange(START, START + n * HOUR, HOUR)
    meters = [m for m, _ in store.feeder_meters(row.id)]
    t1 = time.perf_counter()
    for h in hours[:48]:
        store.save_hours(row.id, grid_se.estimate_hours(store, store.feeder(row.id), meters,
                                                        np.array([h])), None)  # fmt: skip
    one = (time.perf_counter() - t1) / 48 * n
    store.close()
    print(f"month15: {n} hours ({days} days, 3 meters, 15 buses) estimated and stored in "
          f"{total:.2f} s (seed_grid, incl. feeder set-up); target 5 s: {5 / total:.1f}x "
          f"inside it; hour-at-a-time anchor {one:.2f} s (extrapolated from 48 h), batch "
          f"{one / total:.1f}x faster")  # fmt: skip
    print(f"month15: mean TVE against the simulated truth {mean:.3f} % (target < 1 %), "
          f"95th percentile of the hourly worst bus {p95:.3f} %")  # fmt: skip


def meters(tmp: str) -> None:
    from gridlens.grid import ieee15
    from gridlens.server import grid_se

    days = 14
    store = _store(tmp, "meters")
    f = ieee15()
    loaded = [ld.bus for ld in f.loads]
    nominal = {ld.bus: ld.p_kw for ld in f.loads}
    ids = _add_meters(store, ["household"] * len(loaded), days * 24)
    kw = {}
    for d in ids:
        t, v = store.counter(d)
        kw[d] = float((v[-1] - v[0]) / (t[-1] - t[0]) * HOUR)
    drive = dict(zip(loaded, ids, strict=True))
    order = ["7", "12", "15", "5", "10", "13", "3", "8", "14", "4", "6", "9", "11", "2"]
    print("meters: buses with meters -> mean TVE % (95th pct of hourly worst bus), 14 days")
    for k in (0, 1, 3, 6, 9, 14):
        name = f"m{k}"
        row = store.add_feeder(name, "builtin:ieee15", grid_se.builtin_model("ieee15"),
                               actor="bench", pmus=["1", "2", "9"])  # fmt: skip
        on = set(order[:k])
        sim = {b: {"device_id": drive[b], "factor": nominal[b] / kw[drive[b]],
                   "metered": b in on} for b in loaded}  # fmt: skip
        store.set_simulation(row.id, {"buses": sim, "jitter": 0.0, "seed": 1})
        # meters belong to one feeder: move the k metered ones onto this feeder
        for b in loaded:
            store.place_meter(drive[b], row.id if b in on else None, b if b in on else None,
                              actor="bench", scale=nominal[b] / kw[drive[b]])  # fmt: skip
        if k == 0:  # no meter at all: the shape comes from nowhere (nominal loads)
            pass
        t0 = time.perf_counter()
        grid_se.refresh(store, row.id, now=START + days * 86400)
        dt = time.perf_counter() - t0
        mean, p95, n = _mean_tve(store, row.id)
        print(f"  {k:>2} of 14 buses metered: mean TVE {mean:.3f} % ({p95:.3f} %), "
              f"{n} hours in {dt:.2f} s")  # fmt: skip
    store.close()


def ieee123(tmp: str) -> None:
    from gridlens.server import grid_se

    root = Path(os.environ.get("GRIDLENS_DATA", "/work/shared/data")) / "feeders" / "123Bus"
    main = root / "IEEE123Master.dss"
    if not main.is_file():
        print(f"ieee123: skipped, {main} not found (set GRIDLENS_DATA)")
        return
    from gridlens.cli.grid import dss_files

    hours = 48
    store = _store(tmp, "ieee123")
    model, src = grid_se.compile_files(dss_files(main), main.name)
    row = store.add_feeder("ieee123", f"dss:{src}", model, actor="bench", pmus=["150", "67"])
    f = grid_se.load_model(row)
    loaded = sorted({ld.bus for ld in f.loads})
    nominal: dict[str, float] = {}
    for ld in f.loads:
        nominal[ld.bus] = nominal.get(ld.bus, 0.0) + ld.p_kw
    ids = _add_meters(store, ["household"] * 100, hours)
    for j, d in enumerate(ids):  # 100 meters over the loaded buses (some carry two)
        bus = loaded[j % len(loaded)]
        store.place_meter(d, row.id, bus, actor="bench", scale=nominal[bus] / 0.6 / 2)
    t0 = time.perf_counter()
    stats = grid_se.refresh(store, row.id, now=START + hours * HOUR)
    dt = time.perf_counter() - t0
    per = dt / max(stats["estimated"], 1)
    # one more hour of readings arrives: the incremental refresh a server does each hour
    from gridlens.simulate import household_profile

    for k, d in enumerate(ids, start=1):
        t = START + hours * HOUR + np.arange(600.0, HOUR + 1, 600.0)
        prof = household_profile(k)
        store.import_counter(d, [(float(x), float(prof.energy_kwh(x))) for x in t],
                             source="sim2", actor="bench")  # fmt: skip
    t1 = time.perf_counter()
    inc = grid_se.refresh(store, row.id, now=START + (hours + 1) * HOUR + 1)
    dt1 = time.perf_counter() - t1
    store.close()
    print(f"ieee123: {f.n_bus} buses, 100 meters on {len(loaded)} loaded buses: "
          f"{stats['estimated']} hours in {dt:.2f} s = {per * 1000:.0f} ms per hour "
          f"(target 1 s: {1 / per:.0f}x inside it)")  # fmt: skip
    print(f"ieee123: one new hour of readings from 100 meters: refresh {dt1:.2f} s "
          f"({inc['estimated']} estimated, {inc['dirty']} re-estimated for the new readings; "
          f"target 1 s: {1 / dt1:.1f}x)")  # fmt: skip


CASES = {"month15": month15, "meters": meters, "ieee123": ieee123}


def main(argv: list[str]) -> int:
    names = argv or list(CASES)
    with tempfile.TemporaryDirectory(prefix="bench-grid-se-") as tmp:
        for n in names:
            CASES[n](tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
