"""Real server processes: two servers on one PostgreSQL, and kill -9 in the middle of uploads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gridlens.server.harness import ServerProcess
from gridlens.store import Store
from tests.server.conftest import Layout, _reset_pg, upload_headers

pytestmark = pytest.mark.slow


def _admin(db: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gridlens.cli", "user", "add", "root", "--admin", "--json",
         "--db", db], check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(json.loads(out.stdout)["token"])


def _upload(srv: ServerProcess, dev: int, tok: str, body: bytes, cid: str, at: float) -> int:
    h = upload_headers(tok, cid, at)
    status, _ = srv.request("POST", f"/api/v1/devices/{dev}/images", body, h)
    return status


def _register(srv: ServerProcess, admin: str, layout: Layout, n: int) -> list[tuple[int, str]]:
    out = []
    for i in range(n):
        status, doc = srv.post_json("/api/v1/devices", layout.device_body(f"d{i}"), admin)
        assert status == 201, doc
        out.append((doc["device_id"], doc["token"]))
    return out


def test_two_servers_one_postgresql(pg_url: str, tmp_path: Path, layout: Layout) -> None:
    _reset_pg(pg_url)
    Store.open(pg_url).close()
    admin = _admin(pg_url)
    photos = [layout.photo(500.0 + 0.1 * k, seed=k) for k in range(12)]
    a = ServerProcess(pg_url, tmp_path / "data").start()
    b = ServerProcess(pg_url, tmp_path / "data").start()
    try:
        devices = _register(a, admin, layout, 4)
        t0 = time.time() - 86400
        results: list[tuple[int, str, int]] = []
        lock = threading.Lock()

        def device_loop(d: int) -> None:
            dev, tok = devices[d]
            for k in range(12):
                cid = f"d{d}-{k}"
                # every photo goes to one server, and every third is retried on the other
                # (a device whose first answer was lost): one reading each, never two
                first, second = (a, b) if (d + k) % 2 else (b, a)
                s1 = _upload(first, dev, tok, photos[k], cid, t0 + 60 * k)
                with lock:
                    results.append((dev, cid, s1))
                if k % 3 == 0:
                    s2 = _upload(second, dev, tok, photos[k], cid, t0 + 60 * k)
                    assert s2 == 200  # duplicate, answered by the other process

        threads = [threading.Thread(target=device_loop, args=(d,)) for d in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(s for *_, s in results) == [201] * 48
        store = Store.open(pg_url, migrate=False)
        try:
            assert store.count_readings() == 48
            for dev, _ in devices:
                rows = store.readings(dev)
                assert len({r.capture_id for r in rows}) == 12
                # plausibility saw the other server's readings: all accepted, increasing
                assert [r.status for r in rows] == ["ok"] * 12
                assert [r.value for r in rows] == pytest.approx(
                    [500.0 + 0.1 * k for k in range(12)]
                )
        finally:
            store.close()
        # a command made on one server is delivered by the other
        dev, tok = devices[0]
        status, cmd = a.post_json(
            f"/api/v1/devices/{dev}/commands", {"action": "relay", "state": "on"}, admin
        )
        assert status == 201
        status, got = b.get(f"/api/v1/devices/{dev}/commands", tok)
        assert [c["id"] for c in got["commands"]] == [cmd["id"]]
    finally:
        a.stop()
        b.stop()


def test_kill9_mid_load_loses_no_acknowledged_reading(tmp_path: Path, layout: Layout) -> None:
    db = f"sqlite:///{tmp_path}/k.db"
    Store.open(db).close()
    admin = _admin(db)
    photos = [layout.photo(10.0 + 0.1 * k, seed=k) for k in range(8)]
    srv = ServerProcess(db, tmp_path / "data", workers=2).start()
    devices = _register(srv, admin, layout, 3)
    acked: list[tuple[int, str]] = []
    stop = threading.Event()
    t0 = time.time() - 86400

    def loop(d: int) -> None:
        dev, tok = devices[d]
        k = 0
        while not stop.is_set():
            cid = f"{d}-{k}"
            try:
                if _upload(srv, dev, tok, photos[k % 8], cid, t0 + 60 * k) == 201:
                    acked.append((dev, cid))
            except OSError:
                return  # the server died under us: this one was never acknowledged
            k += 1

    threads = [threading.Thread(target=loop, args=(d,)) for d in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 30
    srv.start()  # restart on the same database and photo store
    try:
        store = Store.open(db, migrate=False)
        have = {(r.device_id, r.capture_id) for dev, _ in devices for r in store.readings(dev)}
        store.close()
        assert set(acked) <= have
        assert srv.get("/healthz")[0] == 200
    finally:
        srv.stop()


def test_metrics_sum_the_workers_of_one_server(tmp_path: Path, layout: Layout) -> None:
    db = f"sqlite:///{tmp_path}/m.db"
    Store.open(db).close()
    admin = _admin(db)
    srv = ServerProcess(db, tmp_path / "data", workers=2).start()
    try:
        ((dev, tok),) = _register(srv, admin, layout, 1)
        t0 = time.time() - 86400
        n = 24
        # one connection per upload: the kernel spreads them over the two workers
        for k in range(n):
            photo = layout.photo(10.0 + 0.1 * k, seed=k)
            assert _upload(srv, dev, tok, photo, f"c{k}", t0 + 60 * k) == 201
        time.sleep(5.5)  # every worker writes its snapshot within metrics_flush_s (5 s)
        status, text = srv.get("/metrics")
        assert status == 200
        text = text if isinstance(text, str) else text.decode()
        assert f'gridlens_uploads_total{{status="ok"}} {n}' in text, text[:2000]
        folder = next((tmp_path / "data" / "metrics").iterdir())
        snaps = sorted(folder.glob("*.json"))
        assert len(snaps) == 2  # one per worker
        per_worker = [
            sum(v for name, _, v in json.loads(f.read_text())["counters"]
                if name == "gridlens_uploads_total")
            for f in snaps
        ]  # fmt: skip
        assert sum(per_worker) == n
    finally:
        srv.stop()
