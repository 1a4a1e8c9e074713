"""AMI server load benchmark: sustained photo uploads through `gridlens serve`, real HTTP on
loopback, on SQLite and PostgreSQL, then a kill -9 in the middle of the load.

Rows (one run, 2 CPU cores shared by the server, the database and the load generator; every
device uploads once before the measurement, so its meter reader is built):
1. Anchor: in-process ``MeterReader.read`` of the same photos, one thread — the work each
   upload must do at least; the server's rate is reported as a ratio to it. Warm (5 untimed
   reads first), median of three passes.
2. Open loop at ``--rate`` uploads/s for ``--seconds`` (latency measured from each
   request's scheduled start, so a stalled server cannot hide queueing): achieved rate,
   p50/p95/p99, non-201 answers, readings in the database vs 201s acknowledged (lost,
   duplicated), server RSS.
3. Closed loop with ``--concurrency`` clients: the most the server sustains.
4. kill -9 of the server (all workers) mid-load, restart on the same database: every
   reading acknowledged with 201 must be there.

Usage: ``python benchmarks/bench_server.py [--rate 100] [--seconds 30] [--db sqlite,postgresql]``
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gridlens.meter import MeterReader
from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import render_meter, render_reference
from gridlens.server.harness import ServerProcess, rss_mib
from gridlens.store import Store

PG_ADMIN = os.environ.get("GRIDLENS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def photo_pool(n: int) -> tuple[bytes, dict[str, Any], list[bytes], list[float]]:
    ref, roi = render_reference(6, 1)
    values = [1000.0 + 0.1 * k + 0.05 for k in range(n)]
    photos = [
        encode_jpeg(render_meter(v, seed=k).image, 85)
        for k, v in enumerate(tqdm(values, desc="render photos", file=sys.stderr))
    ]
    return encode_jpeg(ref, 92), roi.to_dict(), photos, values


def anchor_rate(ref_jpeg: bytes, roi: dict[str, Any], photos: list[bytes]) -> float:
    from gridlens.meter import MeterROI
    from gridlens.meter.image import decode_image

    reader = MeterReader(MeterROI.from_dict(roi), reference=decode_image(ref_jpeg))
    for p in photos[:5]:  # warm-up, untimed: ONNX session, aligner
        reader.read(p)
    rates = []
    for _ in range(3):  # the machine may be shared: median of three passes
        t0 = time.perf_counter()
        for p in photos:
            reader.read(p)
        rates.append(len(photos) / (time.perf_counter() - t0))
    print(f"anchor passes: {', '.join(f'{r:.0f}' for r in rates)} photos/s", file=sys.stderr)
    return float(np.median(rates))


class Fleet:
    """Devices registered on a server, each uploading the photo sequence in order."""

    def __init__(self, srv: ServerProcess, admin: str, n: int, ref: bytes, roi: dict[str, Any]):
        self.devices: list[tuple[int, str]] = []
        body = {"roi": roi, "reference_jpeg_b64": base64.b64encode(ref).decode(),
                "max_rate": 15.0}  # fmt: skip
        for i in range(n):
            status, doc = srv.post_json("/api/v1/devices", {**body, "name": f"load-{i:04d}"}, admin)
            assert status == 201, doc
            self.devices.append((doc["device_id"], doc["token"]))
        self.step = [0] * n
        self.lock = threading.Lock()
        self.t_sim0 = time.time() - 30 * 86400  # simulated minutes, starting a month ago

    def next(self, i: int, photos: list[bytes]) -> tuple[int, str, bytes, str, str]:
        d = i % len(self.devices)
        with self.lock:
            k = self.step[d]
            self.step[d] += 1
        dev, tok = self.devices[d]
        cid = f"{uuid.uuid4().hex[:12]}-{k}"
        return dev, tok, photos[k % len(photos)], cid, iso(self.t_sim0 + 60 * k)


def run_load(
    srv_ports: list[int],
    fleet: Fleet,
    photos: list[bytes],
    *,
    rate: float | None,
    seconds: float,
    concurrency: int,
    stop_after: float | None = None,
    on_stop: Any = None,
    max_requests: int | None = None,
) -> dict[str, Any]:
    """Open loop (rate) or closed loop (rate None). Returns statuses, latencies, acked ids."""
    lat: list[float] = []
    sent: list[float] = []  # scheduled send time of each 201, from t0 [s]
    statuses: dict[int | str, int] = {}
    acked: list[tuple[int, str]] = []
    lock = threading.Lock()
    counter = iter(range(10**9))
    t0 = time.perf_counter() + 0.2
    end = t0 + seconds
    bar = tqdm(total=int(rate * seconds) if rate else None, desc="uploads", file=sys.stderr,
               unit="req")  # fmt: skip

    def worker(wid: int) -> None:
        port = srv_ports[wid % len(srv_ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            i = next(counter)
            if max_requests is not None and i >= max_requests:
                break
            sched = t0 + i / rate if rate else time.perf_counter()
            if sched >= end:
                break
            delay = sched - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            dev, tok, body, cid, at = fleet.next(i, photos)
            h = {"Authorization": f"Bearer {tok}", "Content-Type": "image/jpeg",
                 "X-Capture-Id": cid, "X-Captured-At": at}  # fmt: skip
            try:
                conn.request("POST", f"/api/v1/devices/{dev}/images", body=body, headers=h)
                r = conn.getresponse()
                r.read()
                status: int | str = r.status
            except OSError as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                if stop_after is not None:
                    time.sleep(0.05)
            done = time.perf_counter()
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 201:
                    lat.append(done - sched)
                    sent.append(sched - t0)
                    acked.append((dev, cid))
            bar.update(1)

    killer = None
    if stop_after is not None:
        killer = threading.Timer(stop_after + 0.2, on_stop)
        killer.start()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    wall = max(time.perf_counter() - t0, 1e-9)
    a = np.array(lat) * 1000 if lat else np.array([np.nan])
    sec = np.floor(np.array(sent)).astype(int) if sent else np.zeros(0, int)
    worst = (math.nan, -1, 0)  # p99 [ms], second, requests of the worst 1-s bucket
    slow_s = 0
    for k in np.unique(sec):
        b = a[sec == k]
        q = float(np.percentile(b, 99))
        slow_s += q > 500
        if not q <= worst[0]:
            worst = (q, int(k), b.size)
    return {
        "statuses": statuses,
        "acked": acked,
        "timeline": (np.array(sent), a[: len(sent)]),
        "worst_second": worst,
        "slow_seconds": slow_s,
        "rate": len(lat) / min(wall, seconds + 30),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
    }


def check_db(db: str, acked: list[tuple[int, str]]) -> tuple[int, int, int]:
    """(rows stored, acknowledged but missing, duplicated capture ids)."""
    store = Store.open(db)
    from sqlalchemy import func, select

    from gridlens.store.models import Reading

    with store.session() as s:
        rows = s.execute(select(Reading.device_id, Reading.capture_id)).all()
        n_distinct = s.scalar(
            select(func.count()).select_from(
                select(Reading.device_id, Reading.capture_id).distinct().subquery()
            )
        )
    store.close()
    have = {(d, c) for d, c in rows}
    missing = sum(1 for k in acked if k not in have)
    return len(rows), missing, len(rows) - int(n_distinct or 0)


def fresh_db(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench.db"
    import psycopg

    admin = PG_ADMIN.replace("+psycopg", "")
    name = "gridlens_bench"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def admin_token(db: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gridlens.cli", "user", "add", "bench", "--admin", "--json",
         "--db", db], check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(json.loads(out.stdout)["token"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--photos", type=int, default=240)
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument(
        "--timeline",
        help="write t_s,latency_ms of every open-loop upload to this CSV ({db} = backend)",
    )
    args = ap.parse_args()

    ref, roi, photos, _ = photo_pool(args.photos)
    anchor = anchor_rate(ref, roi, photos)
    rows: list[tuple[str, str]] = [
        ("anchor: in-process MeterReader.read, 1 thread", f"{anchor:.0f} photos/s")
    ]
    for kind in args.db.split(","):
        with tempfile.TemporaryDirectory() as tmpd:
            tmp = Path(tmpd)
            db = fresh_db(kind, tmp)
            token = admin_token(db)
            srv = ServerProcess(db, tmp / "data", workers=args.workers, log=tmp / "server.log")
            srv.start()
            fleet = Fleet(srv, token, args.devices, ref, roi)
            # warm-up: every device's first photo (its meter reader is built then), unmeasured;
            # a long-running server has these cached
            run_load([srv.port], fleet, photos, rate=None, seconds=120,
                     concurrency=args.concurrency, max_requests=args.devices)  # fmt: skip
            print(f"[{kind}] open loop {args.rate:.0f}/s for {args.seconds:.0f} s", file=sys.stderr)
            res = run_load([srv.port], fleet, photos, rate=args.rate, seconds=args.seconds,
                           concurrency=args.concurrency)  # fmt: skip
            mem = rss_mib(srv.pids())
            stored, missing, dups = check_db(db, res["acked"])
            non201 = {k: v for k, v in res["statuses"].items() if k != 201}
            rows.append((
                f"{kind}: open loop {args.rate:.0f}/s, {args.workers} workers",
                f"{res['rate']:.1f}/s ({res['rate'] / anchor:.2f}x anchor), p50 {res['p50']:.0f} "
                f"ms, p95 {res['p95']:.0f} ms, p99 {res['p99']:.0f} ms, non-201 {non201 or 0}, "
                f"acked {len(res['acked'])} stored {stored} lost {missing} dup {dups}, "
                f"RSS {mem:.0f} MiB",
            ))  # fmt: skip
            wq, ws, wn = res["worst_second"]
            rows.append((
                f"{kind}: per second of the open loop",
                f"{res['slow_seconds']} of {math.ceil(args.seconds)} s with p99 > 500 ms; worst: "
                f"second {ws}, p99 {wq:.0f} ms over {wn} uploads",
            ))  # fmt: skip
            if args.timeline:
                t_s, l_ms = res["timeline"]
                path = Path(args.timeline.replace("{db}", kind))
                path.write_text("t_s,latency_ms\n" + "".join(
                    f"{t:.3f},{v:.1f}\n" for t, v in zip(t_s, l_ms, strict=True)))  # fmt: skip
            print(f"[{kind}] closed loop, {args.concurrency} clients", file=sys.stderr)
            res2 = run_load([srv.port], fleet, photos, rate=None, seconds=min(args.seconds, 20),
                            concurrency=args.concurrency)  # fmt: skip
            rows.append((
                f"{kind}: closed loop, {args.concurrency} clients",
                f"{res2['rate']:.1f}/s, p50 {res2['p50']:.0f} ms, p99 {res2['p99']:.0f} ms",
            ))  # fmt: skip
            # kill -9 mid-load, restart, count
            print(f"[{kind}] kill -9 mid-load", file=sys.stderr)
            res3 = run_load(
                [srv.port], fleet, photos, rate=args.rate, seconds=10,
                concurrency=args.concurrency, stop_after=5.0, on_stop=srv.kill,
            )  # fmt: skip
            srv.start()
            _, missing3, dups3 = check_db(db, res3["acked"])
            srv.stop()
            rows.append((
                f"{kind}: kill -9 after 5 s of {args.rate:.0f}/s, restart",
                f"acked {len(res3['acked'])}, missing after restart {missing3}, dup {dups3}",
            ))  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"\n{'case':<{w}}  result")
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
