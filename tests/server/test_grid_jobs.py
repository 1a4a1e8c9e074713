"""Placement studies in a child process (``gridlens.server.grid_jobs``): what a crash, a
limit or a bad study leaves behind is one failed job with a message; the server process
never runs the study itself."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gridlens.errors import ConflictError
from gridlens.grid import ieee15
from gridlens.grid.feeder import feeder_to_dict
from gridlens.server import grid_jobs
from gridlens.server.grid_jobs import run_child

MODEL = feeder_to_dict(ieee15())
WLS = {"k": 3, "fixed": ["1"], "estimator": "wls", "search": "exhaustive", "scenarios": 4}
PSO = {"k": 3, "fixed": [], "estimator": "pso", "search": "exhaustive", "scenarios": 15}


def test_a_study_runs_in_its_child() -> None:
    seen: list[float] = []
    pids: list[int] = []
    status, values = run_child(MODEL, WLS, seen.append, on_start=pids.append)
    assert status == "done", values
    assert values["result"]["evaluated"] == 91 and values["progress"] == 1.0
    assert values["result"]["best"]["buses"][0] == 1
    assert pids and pids[0] != os.getpid()
    assert all(0 <= p < 1 for p in seen)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"cpu_s": 1}, "the study used over 1 s of CPU time and was stopped"),
        ({"wall_s": 1.5}, "the study took over 1.5 s and was stopped"),
        ({"max_bytes": 150 * 2**20}, "the study needs more than 150 MiB"),
    ],
)
def test_limits_fail_the_study_with_a_message(limits: dict[str, Any], message: str) -> None:
    status, values = run_child(MODEL, PSO, lambda p: None, **limits)
    assert (status, values) == ("failed", {"error": message})


def test_a_crash_of_the_engine_is_the_studys_alone() -> None:
    def crash(pid: int) -> None:
        os.kill(pid, signal.SIGSEGV)

    status, values = run_child(MODEL, PSO, lambda p: None, on_start=crash)
    assert status == "failed"
    assert values["error"] == "the study's process stopped (SIGSEGV); the server is unaffected"


def test_a_bad_study_says_why() -> None:
    status, values = run_child(MODEL, WLS | {"fixed": ["nope"]}, lambda p: None)
    assert status == "failed" and values["error"].startswith("unknown bus 'nope'")


def test_slots_refuse_the_study_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every slot taken: the next study is refused before anything is stored; each slot is
    free again when its study ends (here by the time limit)."""
    import time

    from gridlens.store import Store

    monkeypatch.setattr(grid_jobs, "JOB_WALL_S", 2.0)
    store = Store.open(f"sqlite:///{tmp_path}/j.db")
    fid = store.add_feeder("f", "builtin:ieee15", MODEL, actor="t").id
    jobs = [
        grid_jobs.start_placement(store, fid, MODEL, PSO, actor="t")
        for _ in range(grid_jobs.MAX_PLACEMENT_JOBS)
    ]
    with pytest.raises(ConflictError, match="the most it runs at once"):
        grid_jobs.start_placement(store, fid, MODEL, PSO, actor="t")
    assert sorted(grid_jobs.busy()) == sorted(j.id for j in jobs)
    deadline = time.monotonic() + 30
    while grid_jobs.busy() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert grid_jobs.busy() == []
    done = [store.job(j.id) for j in jobs]
    assert [(j.status, j.error) for j in done] == [
        ("failed", "the study took over 2 s and was stopped")
    ] * len(jobs)
    job = grid_jobs.start_placement(store, fid, MODEL, WLS, actor="t")
    while store.job(job.id).status not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.job(job.id).status == "done"
    store.close()
