"""The engines from several threads at once: the placement search runs its chunks on Dask
threads, and a server runs requests on threads. Two threads calculating on one
power-grid-model corrupted the heap ("double free or corruption", the process killed); each
thread now has a model of its own. OpenDSS (one engine per process) is used behind a lock and
from one thread only (the server runs it in child processes)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from gridlens.grid import ieee15
from gridlens.grid.engines import DSS_LOCK, PgmNetwork
from gridlens.grid.estimation import Study
from gridlens.grid.placement import search
from gridlens.grid.scenarios import paper_scenarios


def _in_threads(fn: Any, n: int = 2) -> list[Any]:
    out: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            out[i] = fn(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_each_thread_calculates_on_a_model_of_its_own() -> None:
    f = ieee15()
    net = PgmNetwork(f)
    scen = paper_scenarios(f, 8, seed=0)
    alone, _ = net.power_flow(net.load_update(scen.load_p_kw, scen.load_q_kvar))

    def work(i: int) -> tuple[int, float]:
        worst = 0.0
        for _ in range(400):  # one shared model crashed within ~2000 of these
            ph, _ = net.power_flow(net.load_update(scen.load_p_kw, scen.load_q_kvar), threads=0)
            worst = max(worst, float(np.abs(ph - alone).max()))
        return id(net.model), worst

    (m0, e0), (m1, e1) = _in_threads(work)
    assert m0 != m1 and m0 != id(net.model)
    assert e0 < 1e-12 and e1 < 1e-12  # and they all agree


def test_heuristic_search_on_dask_threads_shares_one_study() -> None:
    """PSO in chunks of 8 placements on Dask's two threads, in two threads at once, all on
    one study (the case that killed ``gridlens serve``); the same best placement as alone."""
    study = Study.build(ieee15(), 2, seed=0)
    alone = search(study, 2, estimator="pso", method="greedy", chunk=8)
    res = _in_threads(lambda i: search(study, 2, estimator="pso", method="greedy", chunk=8))
    assert [r.best.buses for r in res] == [alone.best.buses] * 2
    assert res[0].best.mean_tve_pct == alone.best.mean_tve_pct


def test_opendss_chunks_stay_in_the_calling_thread() -> None:
    """OpenDSS crashed when Dask threads took turns on it (even one at a time, behind
    ``DSS_LOCK``): a search with the OpenDSS engine runs its chunks in the calling thread,
    and gives what power-grid-model gives."""
    study = Study.build(ieee15(), 1, seed=0)
    opts = {"particles": 4, "iterations": 2}
    dss = search(study, 1, estimator="pso", chunk=4, estimator_options=opts | {"engine": "opendss"})
    pgm = search(study, 1, estimator="pso", chunk=4, estimator_options=opts)
    assert dss.evaluated == 15 == pgm.evaluated
    a = {p.buses: p.mean_tve_pct for p in dss.placements}
    b = {p.buses: p.mean_tve_pct for p in pgm.placements}
    assert all(abs(a[k] - b[k]) < 1e-4 for k in b)
    assert DSS_LOCK.acquire(blocking=False)  # nothing holds it afterwards
    DSS_LOCK.release()
