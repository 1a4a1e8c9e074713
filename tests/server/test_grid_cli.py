"""``gridlens feeder ...``, ``gridlens device set --feeder --bus`` and the demo's feeder
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gridlens.cli import main

HOUR = 3600.0


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _meters(db: str, hours: int) -> None:
    from gridlens.simulate import factory_profile, household_profile
    from gridlens.store import Store

    store = Store.open(db)
    try:
        start = (1_790_000_000.0 // HOUR) * HOUR
        t = start + np.arange(0.0, hours * HOUR + 1, 600.0)
        for k in (1, 2, 3):
            dev, _ = store.add_device(f"meter-{k:03d}", {})
            prof = factory_profile(k) if k == 3 else household_profile(k)
            pts = [(float(x), float(prof.energy_kwh(x))) for x in t]
            store.import_counter(dev.id, pts, source="sim", actor="t")
    finally:
        store.close()


def test_feeder_commands(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = ["--db", db_url]
    code, out, _ = _run(capsys, "feeder", "add", "main", "--builtin", "ieee15",
                        "--pmus", "1,2,9", *db)  # fmt: skip
    assert code == 0 and "15 buses" in out
    code, _, err = _run(capsys, "feeder", "add", "main", "--builtin", "ieee15", *db)
    assert code == 2 and "exists already" in err
    code, _, err = _run(capsys, "feeder", "add", "x", "--builtin", "ieee15", "--pmus", "77", *db)
    assert code == 2 and "unknown bus '77'" in err
    bad = tmp_path / "bad.dss"
    bad.write_text("New Circuit.x\nRedirect /etc/passwd\n")
    code, _, err = _run(capsys, "feeder", "add", "x", "--dss", str(bad), *db)
    assert code == 2 and "outside the uploaded files" in err
    code, out, _ = _run(capsys, "feeder", "list", "--json", *db)
    assert [f["name"] for f in json.loads(out)["feeders"]] == ["main"]
    _meters(db_url, 30)
    code, out, _ = _run(capsys, "device", "set", "meter-001", "--feeder", "main", "--bus", "7",
                        "--scale", "200", *db)  # fmt: skip
    assert code == 0 and "on bus 7 of feeder main" in out
    code, _, err = _run(capsys, "device", "set", "meter-002", "--feeder", "main", "--bus", "99",
                        *db)  # fmt: skip
    assert code == 2 and "unknown bus" in err
    code, _, err = _run(capsys, "device", "set", "meter-002", "--feeder", "main", *db)
    assert code == 2 and "needs --bus" in err
    code, out, _ = _run(capsys, "feeder", "estimate", "main", "--json", *db)
    doc = json.loads(out)
    assert code == 0 and doc["estimated"] == 30
    assert doc["latest"]["meters_read"] == 1 and len(doc["latest"]["buses"]) == 15
    code, out, _ = _run(capsys, "feeder", "estimate", "main", *db)
    assert code == 0 and "0 hour(s) estimated" in out and "lowest voltages" in out
    code, out, _ = _run(capsys, "device", "set", "meter-001", "--feeder", "-", *db)
    assert code == 0 and "on no feeder" in out
    code, out, _ = _run(capsys, "feeder", "remove", "main", *db)
    assert code == 0 and "removed" in out
    code, _, err = _run(capsys, "feeder", "remove", "main", *db)
    assert code == 2 and "no feeder" in err


def test_demo_feeder_is_idempotent_and_accurate(db_url: str, tmp_path: Path) -> None:
    from gridlens.cli._demo_grid import FEEDER, seed_grid
    from gridlens.store import Store

    _meters(db_url, 72)
    seed_grid(db_url, "http://-", "-", tmp_path)
    seed_grid(db_url, "http://-", "-", tmp_path)  # a second start changes nothing
    store = Store.open(db_url)
    try:
        assert [f["name"] for f in store.feeders()] == [FEEDER]
        row = store.feeder(FEEDER)
        places = {m.bus: name for m, name in store.feeder_meters(row.id)}
        assert places == {"7": "meter-001", "12": "meter-002", "15": "meter-003"}
        assert row.pmus == ["1", "2", "9"] and row.simulation is not None
        hours = store.feeder_hours(row.id, 0, 4e9)
        assert len(hours) == 72
        tve = np.array([h.tve for h in hours], dtype=float)
        assert tve.mean() < 1.0  # % against the simulated truth
    finally:
        store.close()


def test_refresh_newest_first_within_its_budget(db_url: str) -> None:
    from gridlens.server import grid_se
    from gridlens.store import Store

    _meters(db_url, 200)
    store = Store.open(db_url)
    try:
        row = store.add_feeder("f", "builtin:ieee15", grid_se.builtin_model("ieee15"), actor="t")
        store.place_meter(store.device_by_name("meter-001").id, row.id, "7", actor="t")
        first = grid_se.refresh(store, row.id, budget_s=0.0)
        assert first["estimated"] == grid_se.CHUNK_HOURS and not first["complete"]
        hours = store.feeder_hours(row.id, 0, 4e9)
        assert store.latest_hour(row.id) == hours[-1].hour  # the newest week came first
        assert store.feeder(row.id).readings_seen == 0  # not all taken into account yet
        rest = grid_se.refresh(store, row.id)
        assert rest["complete"] and rest["estimated"] == 200 - grid_se.CHUNK_HOURS
        assert store.feeder(row.id).readings_seen > 0
        assert grid_se.refresh(store, row.id)["estimated"] == 0
    finally:
        store.close()
