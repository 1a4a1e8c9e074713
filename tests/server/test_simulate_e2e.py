"""`gridlens simulate` against a real `gridlens serve` process: what the demo and load tests do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridlens.server.harness import ServerProcess
from gridlens.simulate import Simulator
from gridlens.store import Store

pytestmark = pytest.mark.slow


def test_simulated_fleet_uploads_and_reruns_are_duplicates(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    store = Store.open(db)
    _, _, token = store.add_user("root", role="admin")
    # a fixed start: the simulated counters (and so which photos catch a wheel mid-roll) do
    # not depend on when the test runs
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    state = tmp_path / "sim.json"
    with ServerProcess(db, tmp_path / "data") as srv:

        def run() -> dict[str, int]:
            return Simulator(
                srv.url, token, 2, interval_s=600, speedup=0, start=start,
                duration_s=3600, state_file=state, progress=False,
            ).run()  # fmt: skip

        first = run()
        assert first["failed"] == 0 and first["duplicates"] == 0
        assert first["ok"] + first["rejected"] == first["uploads"] >= 12
        # a photo whose last wheel the model is unsure of waits for a clearer one (about 1 in
        # 12 of the simulator's photos)
        assert first["ok"] >= first["uploads"] - 2
        stored = store.count_readings()
        assert stored == first["uploads"]
        again = run()  # same devices (state file), same capture ids: nothing new
        assert again["duplicates"] == again["uploads"] == first["uploads"]
        assert store.count_readings() == stored
        names = sorted(d.name for d in store.devices())
        assert names == ["sim-001", "sim-002"]
        # the accepted readings follow the simulated counters: never decreasing
        for d in store.devices():
            vals = [r.value for r in store.readings(d.id, status="ok")]
            assert vals == sorted(vals) and len(vals) >= 5
    store.close()
