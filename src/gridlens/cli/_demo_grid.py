"""The demo's feeder: its simulated meters on the IEEE 15-bus feeder, with virtual µPMUs.

What :func:`seed_grid` sets up (once; a second call only brings the estimates up to date):

- feeder ``demo-ieee15`` (the built-in IEEE 15-bus feeder) with 3 µPMUs at buses 1, 2 and 9
  (the seed paper's best placement of 3);
- each demo meter on one bus: ``meter-001`` on bus 7, ``meter-002`` on bus 12, the factory
  ``meter-003`` on bus 15. A meter stands for its bus's whole load: its mapping's ``scale`` is
  the bus's nominal kW over the meter's mean kW, so the bus load follows the meter's shape at
  the bus's size;
- the **simulated truth** (``feeders.simulation``): every loaded bus is driven by one demo
  meter's hourly shape scaled to its nominal load (the metered buses by their own meter,
  exactly; the others round-robin by the residential meters, and the 140 kW buses 4 and 11
  by the factory), times ``1 + ε`` with ε ~ N(0, 5 %) per bus and hour. Its power flow is
  the truth the TVE is measured against, and the virtual µPMUs sample it (σ 0.05 % and
  0.05°). The 11 buses without a meter are estimated from pseudo-measurements: their nominal
  load times the shape of the meters read that hour (σ 30 %).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

FEEDER = "demo-ieee15"
PMUS = ["1", "2", "9"]
PLACES = {1: "7", 2: "12", 3: "15"}  # demo meter number -> bus (3: the factory)
_DEMO_NAME = re.compile(r"^meter-0*([1-9][0-9]*)$")
FACTORY_BUSES = ("4", "11")
JITTER = 0.05


def _mean_kw(store: Any, device_id: int) -> float | None:
    t, v = store.counter(device_id)
    if len(t) < 2 or t[-1] - t[0] < 3600:
        return None
    kw = float((v[-1] - v[0]) / (t[-1] - t[0]) * 3600)
    return kw if kw > 0 else None


def seed_grid(db_url: str, server_url: str, token: str, folder: Path) -> None:
    """Put the demo's meters on a feeder once their history is seeded (idempotent)."""
    from gridlens.errors import NotFoundError
    from gridlens.server import grid_se
    from gridlens.store import Store

    t0 = time.perf_counter()
    store = Store.open(db_url)
    try:
        try:
            row = store.feeder(FEEDER)
        except NotFoundError:
            row = None
        if row is None:
            row = _create(store)
            if row is None:
                return
        stats = grid_se.refresh(store, row.id)
        print(
            f"grid: feeder {FEEDER}: {stats['estimated']} hourly estimates in "
            f"{time.perf_counter() - t0:.1f} s (the Grid page: {server_url}/grid)",
            file=sys.stderr,
        )
    finally:
        store.close()


def _create(store: Any) -> Any:
    from gridlens.grid.feeder import ieee15
    from gridlens.server import grid_se

    f = ieee15()
    nominal: dict[str, float] = {}
    for ld in f.loads:
        nominal[ld.bus] = nominal.get(ld.bus, 0.0) + ld.p_kw
    devices: dict[int, tuple[int, float]] = {}
    for dev in store.devices():
        m = _DEMO_NAME.match(dev.name)
        if m is None or int(m.group(1)) not in PLACES or dev.unit != "kWh":
            continue  # not a demo electricity meter (the water meter counts m3)
        kw = _mean_kw(store, dev.id)
        if kw is not None:
            devices[int(m.group(1))] = (dev.id, kw)
    if not devices:
        print("grid: no demo meter with readings: no feeder seeded", file=sys.stderr)
        return None
    row = store.add_feeder(
        FEEDER, "builtin:ieee15", grid_se.builtin_model("ieee15"), actor="demo", pmus=PMUS
    )
    placed = {PLACES[n]: n for n in devices}
    residential = [n for n in devices if n != 3] or list(devices)
    buses: dict[str, dict[str, Any]] = {}
    k = 0
    for bus in sorted(nominal, key=int):
        if bus in placed:
            name, metered = placed[bus], True
        elif bus in FACTORY_BUSES and 3 in devices:
            name, metered = 3, False
        else:
            name, metered = residential[k % len(residential)], False
            k += 1
        dev_id, kw = devices[name]
        buses[bus] = {"device_id": dev_id, "factor": nominal[bus] / kw, "metered": metered}
    for bus, name in placed.items():
        dev_id, kw = devices[name]
        store.place_meter(dev_id, row.id, bus, actor="demo", scale=nominal[bus] / kw)
    store.set_simulation(row.id, {"buses": buses, "jitter": JITTER, "seed": 2026})
    return store.feeder(row.id)
