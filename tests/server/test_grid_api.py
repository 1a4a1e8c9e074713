"""The feeder REST API: feeders, meters on buses, hourly estimates, placement jobs (SQLite
and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HOUR = 3600.0
START = 1_790_000_000.0 // HOUR * HOUR  # a fixed hour (UTC)


def _feeder(env: dict[str, Any], **body: Any) -> Any:
    return env["client"].post("/api/v1/feeders", json=body, headers=env["admin"])


def _counter(store: Any, dev: int, hours: int, kw: float, skip: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Readings every 10 minutes for ``hours`` hours, a daily shape around ``kw``."""
    t = START + np.arange(0, hours * HOUR + 1, 600.0)
    p = kw * (1 + 0.5 * np.sin(2 * np.pi * (t / 86400.0)))
    e = np.concatenate([[0.0], np.cumsum(p[:-1] * 600 / HOUR)]) + 1000.0
    pts = [
        (float(a), float(b))
        for a, b in zip(t, e, strict=True)
        if int((a - START) // HOUR) not in skip
    ]
    store.import_counter(dev, pts, source="test", actor="test")


def test_feeders_meters_and_estimates(api_env: dict[str, Any]) -> None:
    env, c, store = api_env, api_env["client"], api_env["store"]
    r = _feeder(env, name="f15", builtin="ieee15", pmus=["1", "2", "9"])
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    assert r.json()["buses"] == 15
    lst = c.get("/api/v1/feeders", headers=env["viewer"]).json()
    assert [f["name"] for f in lst] == ["f15"]
    doc = c.get(f"/api/v1/feeders/{fid}", headers=env["viewer"]).json()
    assert len(doc["buses"]) == 15 and len(doc["lines"]) == 14 and doc["pmus"] == ["1", "2", "9"]
    assert doc["layout"] == "tree" and all(0 <= b["x"] <= 1 for b in doc["buses"])
    # two meters on buses (one through the API, one through the store as the CLI does)
    d1, _ = store.add_device("m1", {})
    d2, _ = store.add_device("m2", {})
    _counter(store, d1.id, 30, 1.0, skip={20, 21, 22, 23})  # a gap: pseudo hours
    _counter(store, d2.id, 30, 2.0)
    r = c.put(f"/api/v1/feeders/{fid}/meters", json={"device_id": d1.id, "bus": "5",
              "scale": 44.1}, headers=env["admin"])  # fmt: skip
    assert r.status_code == 200, r.text
    r = c.put(f"/api/v1/feeders/{fid}/meters", json={"device_id": d2.id, "bus": "7",
              "scale": 70.0}, headers=env["admin"])  # fmt: skip
    assert r.status_code == 200, r.text
    doc = c.get(f"/api/v1/feeders/{fid}", headers=env["viewer"]).json()
    on = {b["name"]: [m["name"] for m in b["meters"]] for b in doc["buses"]}
    assert on["5"] == ["m1"] and on["7"] == ["m2"]
    since = "2026-09-21T00:00:00Z"
    r = c.get(f"/api/v1/feeders/{fid}/estimates", params={"since": since}, headers=env["viewer"])
    assert r.status_code == 200, r.text
    hours = r.json()["hours"]
    assert len(hours) == 30
    h0 = hours[0]
    assert {"name", "vm_pu", "va_deg", "vm_sigma_pu"} <= set(h0["buses"][0])
    assert all(0.85 < b["vm_pu"] < 1.05 for h in hours for b in h["buses"])
    gap = [h for h in hours if h["meters_pseudo"] > 0]
    assert 4 <= len(gap) <= 8  # the 4 hours without m1's readings (and their edges)
    # late readings fill the gap: those hours are estimated again, now read
    t = START + np.arange(20 * HOUR, 24 * HOUR, 600.0)
    p = 1.0 * (1 + 0.5 * np.sin(2 * np.pi * (t / 86400.0)))
    first = store.counter(d1.id)
    base = float(np.interp(t[0], *first))
    late = [(float(a), base + float(np.sum(p[:k]) * 600 / HOUR)) for k, a in enumerate(t)]
    store.import_counter(d1.id, late, source="late", actor="test")
    hours2 = c.get(f"/api/v1/feeders/{fid}/estimates", params={"since": since},
                   headers=env["viewer"]).json()["hours"]  # fmt: skip
    assert len(hours2) == 30 and all(h["meters_pseudo"] == 0 for h in hours2)
    # "Apply": new µPMUs drop every estimate and they come back
    r = c.put(f"/api/v1/feeders/{fid}/pmus", json={"buses": ["1", "4"]}, headers=env["admin"])
    assert r.status_code == 200 and r.json()["pmus"] == ["1", "4"]
    r = c.get(f"/api/v1/feeders/{fid}/estimates", params={"since": since}, headers=env["viewer"])
    assert len(r.json()["hours"]) == 30
    r = c.delete(f"/api/v1/feeders/{fid}/meters/{d1.id}", headers=env["admin"])
    assert r.status_code == 200
    assert c.delete(f"/api/v1/feeders/{fid}", headers=env["admin"]).status_code == 200
    assert c.get(f"/api/v1/feeders/{fid}", headers=env["viewer"]).status_code == 404
    assert store.count_readings(d1.id) > 0  # readings stay


def test_bad_inputs_are_4xx_and_store_nothing(api_env: dict[str, Any]) -> None:
    env, c, store = api_env, api_env["client"], api_env["store"]
    bad = {
        "both": {"name": "x", "builtin": "ieee15", "files": {"a.dss": "x"}},
        "no files": {"name": "x", "files": {}},
        "file path": {"name": "x", "files": {"../a.dss": "New Circuit.a\n"}},
        "none": {"name": "x"},
        "garbage": {"name": "x", "files": {"a.dss": "this is not opendss\n"}},
        "escape": {"name": "x", "files": {"a.dss": "New Circuit.a\nRedirect /etc/passwd\n"}},
        "export": {"name": "x", "files": {"a.dss": "New Circuit.a\nExport voltages\n"}},
        "bad name": {"name": "../x", "builtin": "ieee15"},
        "unknown": {"name": "x", "builtin": "ieee999"},
    }
    for what, body in bad.items():
        r = _feeder(env, **body)
        assert r.status_code == 422, (what, r.status_code, r.text)
        assert r.json()["detail"], what
    assert store.feeders() == []
    r = c.post("/api/v1/feeders", json={"name": "v", "builtin": "ieee15"}, headers=env["viewer"])
    assert r.status_code == 403
    fid = _feeder(env, name="f", builtin="ieee15").json()["id"]
    assert _feeder(env, name="f", builtin="ieee15").status_code == 409
    d, _ = store.add_device("m", {})
    r = c.put(f"/api/v1/feeders/{fid}/meters", json={"device_id": d.id, "bus": "nope"},
              headers=env["admin"])  # fmt: skip
    assert r.status_code == 404 and "unknown bus" in r.json()["detail"]
    assert store.meter_place(d.id) is None
    r = c.put(f"/api/v1/feeders/{fid}/meters", json={"device_id": 999, "bus": "3"},
              headers=env["admin"])  # fmt: skip
    assert r.status_code == 404
    r = c.put(f"/api/v1/feeders/{fid}/pmus", json={"buses": ["1", "x"]}, headers=env["admin"])
    assert r.status_code == 404 and store.feeder(fid).pmus == []
    r = _feeder(env, name="y", builtin="ieee15", pmus=["99"])
    assert r.status_code == 404 and "unknown bus '99'" in r.json()["detail"]
    assert [f["name"] for f in store.feeders()] == ["f"]
    bodies = [{"k": 0}, {"k": 11}, {"k": 2, "fixed": ["1", "2", "3"]}]
    bodies += [{"k": 3, "estimator": "magic"}, {"k": 3, "scenarios": 100}]
    for body in bodies:
        r = c.post(f"/api/v1/feeders/{fid}/placement", json=body, headers=env["operator"])
        assert r.status_code == 422, (body, r.text)
    body = {"k": 3, "fixed": ["q"]}
    r = c.post(f"/api/v1/feeders/{fid}/placement", json=body, headers=env["operator"])
    assert r.status_code == 404 and "unknown bus 'q'" in r.json()["detail"]
    r = c.get(f"/api/v1/feeders/{fid}/estimates", params={"since": "yesterday"},
              headers=env["viewer"])  # fmt: skip
    assert r.status_code == 422
    r = c.get(f"/api/v1/feeders/{fid}/estimates",
              params={"since": "2026-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"},
              headers=env["viewer"])  # fmt: skip
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    assert c.get("/api/v1/jobs/12345", headers=env["viewer"]).status_code == 404
    assert c.get("/api/v1/feeders/0", headers=env["viewer"]).status_code == 422


def test_placement_job_runs_and_applies(api_env: dict[str, Any]) -> None:
    env, c = api_env, api_env["client"]
    fid = _feeder(env, name="f", builtin="ieee15").json()["id"]
    body = {"k": 3, "fixed": ["1"], "estimator": "wls", "scenarios": 4}
    r = c.post(f"/api/v1/feeders/{fid}/placement", json=body, headers=env["operator"])
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 60
    while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = c.get(f"/api/v1/jobs/{job['id']}", headers=env["viewer"]).json()
    assert job["status"] == "done", job
    res = job["result"]
    assert res["evaluated"] == 91 and "1" in [str(b) for b in res["best"]["buses"]]
    assert len(res["best"]["per_bus_tve_pct"]) == 15
    best = [str(b) for b in res["best"]["buses"]]
    r = c.put(f"/api/v1/feeders/{fid}/pmus", json={"buses": best}, headers=env["admin"])
    assert r.json()["pmus"] == best


def test_dss_upload(api_env: dict[str, Any]) -> None:
    folder = Path(__file__).resolve().parents[2] / "src/gridlens/grid/data"
    assert folder.is_dir()
    text = """New Circuit.tiny basekv=12.47 pu=1.0 bus1=src
New Line.l1 bus1=src bus2=a r1=0.3 x1=0.6 length=1 units=km
New Line.l2 bus1=a bus2=b r1=0.3 x1=0.6 length=1 units=km
New Load.ld1 bus1=b kv=12.47 kw=500 kvar=200
Set voltagebases=[12.47]
Calcvoltagebases
Buscoords xy.csv
"""
    env, c = api_env, api_env["client"]
    files = {"tiny.dss": text, "xy.csv": "src,0,0\na,1,0\nb,2,1\n"}
    r = _feeder(env, name="tiny", files=files)
    assert r.status_code == 201, r.text
    doc = c.get(f"/api/v1/feeders/{r.json()['id']}", headers=env["viewer"]).json()
    assert doc["layout"] == "buscoords" and doc["source"] == "dss:tiny.dss"
    assert [b["name"] for b in doc["buses"]] == ["src", "a", "b"]
    assert doc["files"] == ["tiny.dss", "xy.csv"]


@pytest.mark.parametrize("n", [1])
def test_page_renders(api_env: dict[str, Any], n: int) -> None:
    env, c = api_env, api_env["client"]
    _feeder(env, name="f", builtin="ieee15")
    r = c.get("/grid", headers=env["viewer"], follow_redirects=False)
    assert r.status_code in (200, 303)


def test_placement_burst_leaves_the_server_serving(db_url: str, tmp_path: Path) -> None:
    """A burst of placement studies at a real ``gridlens serve`` (what schemathesis sends,
    plus the heuristic estimators, whose Dask threads once shared one power-grid-model and
    killed the server: "double free or corruption"): every request is answered 202, 409
    (the slots are taken) or its 4xx; at most ``MAX_PLACEMENT_JOBS`` run, each in a child
    process; the server answers throughout and every accepted study ends done."""
    import threading

    from gridlens.server.grid_jobs import MAX_PLACEMENT_JOBS
    from gridlens.server.harness import ServerProcess
    from gridlens.store import Store

    store = Store.open(db_url)
    _, _, admin = store.add_user("ada", role="admin")
    store.close()
    log = tmp_path / "server.log"
    with ServerProcess(db_url, tmp_path / "data", log=log) as srv:
        status, doc = srv.post_json("/api/v1/feeders", {"name": "f", "builtin": "ieee15"}, admin)
        assert status == 201, doc
        url = f"/api/v1/feeders/{doc['id']}/placement"
        valid: list[dict[str, Any]] = [
            {"estimator": "wls", "fixed": []},
            {"estimator": "wls", "fixed": [], "k": 3, "scenarios": 15},
            {},
            {"estimator": "wls", "fixed": [], "k": 1, "scenarios": 15, "search": "exhaustive"},
            {"estimator": "pso", "search": "greedy", "scenarios": 2},
            {"estimator": "ga", "search": "greedy", "scenarios": 2},
            {"estimator": "pso", "scenarios": 1},
            {"estimator": "analytic", "k": 2},
        ]
        bad = [{"k": 11}, {"fixed": ["nope"]}]
        answers: dict[int, tuple[int, Any]] = {}

        def post(i: int, body: dict[str, Any]) -> None:
            answers[i] = srv.post_json(url, body, admin)

        threads = [threading.Thread(target=post, args=(i, b)) for i, b in enumerate(valid + bad)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = [answers[i][0] for i in range(len(valid) + len(bad))]
        assert all(c in (202, 409) for c in codes[: len(valid)]), answers
        assert codes[len(valid) :] == [422, 404], answers
        accepted = [answers[i][1]["id"] for i, c in enumerate(codes) if c == 202]
        assert 1 <= len(accepted) <= MAX_PLACEMENT_JOBS, answers
        refused = [answers[i][1] for i, c in enumerate(codes) if c == 409]
        assert refused and "the most it runs at once" in refused[0]["detail"]
        deadline = time.monotonic() + 60
        jobs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert srv.get("/healthz", timeout=5)[0] == 200  # serving while they run
            assert srv.get(f"/api/v1/feeders/{doc['id']}", admin)[0] == 200  # its power flow
            jobs = [srv.get(f"/api/v1/jobs/{j}", admin)[1] for j in accepted]
            if all(j["status"] in ("done", "failed") for j in jobs):
                break
            time.sleep(0.2)
        assert [j["status"] for j in jobs] == ["done"] * len(accepted), jobs
        assert all(j["result"]["best"]["buses"] for j in jobs)
        status, job = srv.post_json(url, {"k": 2}, admin)  # the slots are free again
        assert status == 202, job
        assert srv.proc is not None and srv.proc.poll() is None
    assert "Internal Server Error" not in log.read_text()
