"""Placement search: exhaustive, greedy, analytic, Dask, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gridlens.errors import InputError, NotFoundError
from gridlens.grid.estimation import Study
from gridlens.grid.placement import search


def test_exhaustive_scores_all_91_placements(study15: Study) -> None:
    res = search(study15, 3, estimator="wls", fixed=["1"])
    assert len(res.placements) == 91 == res.evaluated
    assert all(p.buses[0] == "1" and len(p.buses) == 3 for p in res.placements)
    assert len({p.buses for p in res.placements}) == 91
    phi = [p.mean_tve_pct for p in res.placements]
    assert phi == sorted(phi)
    assert 0.01 < phi[0] < phi[-1] < 0.22  # exact WLS below the paper's best everywhere
    assert res.best.max_tve_pct >= res.best.mean_tve_pct


def test_greedy_finds_a_good_placement(study15: Study) -> None:
    full = search(study15, 3, estimator="wls", fixed=["1"])
    greedy = search(study15, 3, estimator="wls", fixed=["1"], method="greedy")
    assert greedy.evaluated == 14 + 13  # two steps: 14 then 13 candidates
    rank = [p.buses for p in full.placements].index(greedy.best.buses)
    assert rank < 30  # greedy lands in the best third of all placements
    assert greedy.best.mean_tve_pct == pytest.approx(full.placements[rank].mean_tve_pct)


def test_analytic_greedy_matches_analytic_exhaustive(study15: Study) -> None:
    ex = search(study15, 3, estimator="analytic", fixed=["1"])
    gr = search(study15, 3, estimator="analytic", fixed=["1"], method="greedy")
    by = {p.buses: p.mean_tve_pct for p in ex.placements}
    assert gr.best.mean_tve_pct == pytest.approx(by[gr.best.buses], rel=1e-9)


def test_bad_searches_are_clear(study15: Study) -> None:
    with pytest.raises(InputError, match="larger than the feeder"):
        search(study15, 16, fixed=["1"])
    with pytest.raises(NotFoundError, match="unknown bus '99'"):
        search(study15, 3, fixed=["99"])
    with pytest.raises(InputError, match="do not fit"):
        search(study15, 1, fixed=["1", "2"])


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_answer(study15: Study) -> None:
    local = search(study15, 3, estimator="wls", fixed=["1"])
    dist = search(study15, 3, estimator="wls", fixed=["1"], workers=2, chunk=20)
    assert [p.buses for p in dist.placements] == [p.buses for p in local.placements]
    assert dist.best.mean_tve_pct == pytest.approx(local.best.mean_tve_pct, rel=1e-9)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridlens.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_powerflow_json() -> None:
    r = run("powerflow", "--feeder", "ieee15", "--engine", "opendss", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [b["bus"] for b in doc["buses"]] == [str(k) for k in range(1, 16)]
    assert doc["losses_kw"] == pytest.approx(61.794, abs=1e-3)
    assert doc["min_v"] == {"bus": "13", "v_pu": pytest.approx(0.94452, abs=1e-5)}


def test_cli_place_json_and_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    png = tmp_path / "tve.png"
    r = run("place", "--pmus", "3", "--fixed", "1", "--scenarios", "5", "--estimator", "wls",
            "--json", "--plot", str(png))  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["placements"]) == 91 and doc["estimator"] == "wls"
    assert doc["best"]["buses"][0] == 1 and doc["best"] == {**doc["best"], **doc["placements"][0]}
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("powerflow", "--feeder", "ieee99"), "no feeder named 'ieee99'"),
        (("powerflow", "--pv-bus", "77", "--pv-kw", "5"), "unknown bus '77'"),
        (("place", "--pmus", "40"), "larger than the feeder"),
        (("place", "--fixed", "0"), "unknown bus '0'"),
        (("place", "--pmus", "3", "--scheduler", "tcp://127.0.0.1:9"), "cannot reach the Dask"),
    ],
)
def test_cli_bad_input_exits_2(args: tuple[str, ...], needle: str) -> None:
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
