"""CPU profile of one device upload, in process (no HTTP): where do the milliseconds go?

Runs the server's real upload function, :func:`gridlens.server.ingest.ingest`, for a stream
of rendered meter photos against a fresh store, and charges the CPU time of this process
(``time.process_time``, so other load on the machine hardly matters) to phases by wrapping
the functions ``ingest`` calls:

=====================  ===================================================================
decode                 ``decode_image`` of the upload body (JPEG checks + decode)
meter: align           ``Aligner.align`` (markers or features, checks, score; before the
                       digit crops warped only the counter, also the whole colour photo)
meter: crop+model      the rest of ``MeterReader.read``: digit crops (with their warp when
                       ``align`` leaves it to them), ONNX digit model, carries
meter: plausibility    ``judge`` against the history
store: history         every store call before the read (duplicate check + history)
store: insert          ``Store.add_reading`` (insert, last seen, pending commands)
photo write            ``save_image``
other                  the rest of ``ingest`` (checks, response document)
=====================  ===================================================================

With PostgreSQL the CPU time of the database backends serving this process is measured as
well (``/proc/<pid>/schedstat`` of each pooled connection's backend), since a database on
the same two cores competes with the server for them.

Usage::

    python benchmarks/profile_upload.py                       # SQLite
    python benchmarks/profile_upload.py --db postgresql       # SQLite and PostgreSQL
    python benchmarks/profile_upload.py --db postgresql+psycopg://u@h/db --cprofile 25

``--db postgresql`` creates (and drops afterwards) a scratch database on
``$GRIDLENS_TEST_PG`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``); a full
URL is used as it is and must point to an empty or gridlens database.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridlens.meter.image import encode_jpeg
from gridlens.meter.synth import render_meter, render_reference
from gridlens.store import Store

PG_ADMIN = os.environ.get("GRIDLENS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Store methods that ingest may call before the meter read (old and new code paths).
_STORE_BEFORE = ("find_reading", "history", "upload_history")
PHASES = (
    "decode",
    "meter: align",
    "meter: crop+model",
    "meter: plausibility",
    "store: history",
    "store: insert",
    "photo write",
    "other",
)


def iso(t: float) -> str:
    """ISO 8601 UTC with milliseconds, as a device sends ``X-Captured-At``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Ledger:
    """CPU seconds charged to each phase (inclusive of nested phases; see :func:`table`)."""

    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    db_cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    backends: set[int] = field(default_factory=set)
    active: bool = False
    overhead: float = 0.0  # CPU seconds spent reading /proc inside timed phases

    def db_time(self) -> float:
        """Total on-CPU seconds of the known database backends (0 without any)."""
        total = 0
        for pid in self.backends:
            try:
                with open(f"/proc/{pid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total / 1e9

    def wrap(self, phase: str, fn: Callable[..., Any], *, db: bool = False) -> Callable[..., Any]:
        """``fn`` with its CPU time (and its database backends' CPU time) added to ``phase``."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return fn(*args, **kwargs)
            watch = db and bool(self.backends)
            o0 = time.process_time()
            d0 = self.db_time() if watch else 0.0
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                t1 = time.process_time()
                self.cpu[phase] += t1 - t0
                if watch:
                    self.db_cpu[phase] += self.db_time() - d0
                    self.overhead += (t0 - o0) + (time.process_time() - t1)

        return timed


@contextmanager
def instrumented(ledger: Ledger) -> Iterator[None]:
    """Wrap the functions ``ingest`` calls; restore them afterwards."""
    import gridlens.meter.reading as reading_mod
    import gridlens.server.ingest as ingest_mod
    from gridlens.meter.align import Aligner
    from gridlens.meter.model import DigitReader

    targets: list[tuple[Any, str, str, bool]] = [
        (ingest_mod, "decode_image", "decode", False),
        (ingest_mod, "save_image", "photo write", False),
        (reading_mod.MeterReader, "read", "meter", False),
        (Aligner, "align", "meter: align", False),
        (reading_mod, "judge", "meter: plausibility", False),
        (DigitReader, "read_crops_continuous", "model", False),
        (Store, "add_reading", "store: insert", True),
    ]
    targets += [(Store, name, "store: history", True) for name in _STORE_BEFORE]
    patches = [
        (obj, name, ledger.wrap(phase, getattr(obj, name), db=db))
        for obj, name, phase, db in targets
        if hasattr(obj, name)
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, new in patches:
        setattr(obj, name, new)
    try:
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)


def table(ledger: Ledger, n: int) -> list[tuple[str, float, float | None]]:
    """(phase, ms per upload in this process, ms per upload in the database backends)."""
    c = ledger.cpu
    c["total"] -= ledger.overhead  # the inner phases' /proc reads
    meter_rest = c["meter"] - c["meter: align"] - c["meter: plausibility"]
    own = {
        "decode": c["decode"],
        "meter: align": c["meter: align"],
        "meter: crop+model": meter_rest,
        "meter: plausibility": c["meter: plausibility"],
        "store: history": c["store: history"],
        "store: insert": c["store: insert"],
        "photo write": c["photo write"],
    }
    own["other"] = c["total"] - sum(own.values())
    rows: list[tuple[str, float, float | None]] = []
    db = bool(ledger.backends)
    for p in PHASES:
        dbv = ledger.db_cpu.get(p, 0.0) * 1e3 / n if db else None
        rows.append((p, own[p] * 1e3 / n, dbv))
    rows.append(("  (of which ONNX model)", c["model"] * 1e3 / n, None))
    rows.append(("total", c["total"] * 1e3 / n, ledger.db_cpu["total"] * 1e3 / n if db else None))
    return rows


def photos(n: int) -> tuple[bytes, dict[str, Any], list[bytes]]:
    """Reference JPEG, ROI and ``n`` camera photos of a slowly rising 6-wheel counter (the
    same as benchmarks/bench_server.py)."""
    ref, roi = render_reference(6, 1)
    values = [1000.0 + 0.1 * k + 0.05 for k in range(n)]
    out = [encode_jpeg(render_meter(v, seed=k).image, 85) for k, v in enumerate(values)]
    return encode_jpeg(ref, 92), roi.to_dict(), out


def run(
    url: str,
    ref: bytes,
    roi: dict[str, Any],
    bodies: list[bytes],
    *,
    devices: int,
    warmup: int,
    profile: int,
) -> tuple[Ledger, int, dict[str, int], str]:
    """Upload every photo once per device (round robin); returns the ledger, the number of
    measured uploads, the reading statuses and the cProfile report (empty when off)."""
    import cv2
    from sqlalchemy import event

    from gridlens.server.ingest import ReaderCache, ingest

    cv2.setNumThreads(1)  # as the server does (gridlens.server.app): one core per request
    store = Store.open(url)
    ledger = Ledger()
    if store.engine.dialect.name == "postgresql":

        def _remember(dbapi_conn: Any, _rec: Any) -> None:
            ledger.backends.add(int(dbapi_conn.info.backend_pid))

        event.listen(store.engine, "connect", _remember)
        store.engine.dispose()  # connections made by the migration are not watched
    cache = ReaderCache()
    devs = [
        store.add_device(f"prof-{i:03d}", roi, reference_jpeg=ref, max_rate=15.0)[0]
        for i in range(devices)
    ]
    t_sim0 = time.time() - 30 * 86400
    statuses: dict[str, int] = defaultdict(int)
    report = ""
    with tempfile.TemporaryDirectory() as images:
        step = [0] * devices

        def upload(i: int) -> None:
            d = i % devices
            k = step[d]
            step[d] += 1
            doc, dup = ingest(
                store,
                cache,
                devs[d],
                bodies[k % len(bodies)],
                images=Path(images),
                max_bytes=2 * 1024 * 1024,
                capture_id=f"{uuid.uuid4().hex[:12]}-{k}",
                captured_at=iso(t_sim0 + 60 * k),
            )
            statuses["duplicate" if dup else doc["reading"]["status"]] += 1

        for i in range(warmup * devices):  # build the readers, warm caches
            upload(i)
        statuses.clear()
        n = len(bodies) * devices
        measured = range(warmup * devices, warmup * devices + n)
        d0 = ledger.db_time()
        with instrumented(ledger):
            ledger.active = True
            timed = ledger.wrap("total", upload)
            for i in measured:
                timed(i)
            ledger.active = False
        ledger.db_cpu["total"] = ledger.db_time() - d0
        counted = dict(statuses)
        if profile:  # on new devices, so that the uploads are the same as measured
            devs[:] = [
                store.add_device(f"prof-{i:03d}", roi, reference_jpeg=ref, max_rate=15.0)[0]
                for i in range(devices, 2 * devices)
            ]
            step[:] = [0] * devices
            for i in range(warmup * devices):
                upload(i)
            prof = cProfile.Profile(time.process_time)
            prof.enable()
            for i in measured:
                upload(i)
            prof.disable()
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf).strip_dirs()
            st.sort_stats("tottime").print_stats(profile)
            st.sort_stats("cumulative").print_stats(profile)
            report = buf.getvalue()
    store.close()
    return ledger, n, counted, report


def scratch_pg() -> tuple[str, Callable[[], None]]:
    """A new empty PostgreSQL database and a function that drops it."""
    import psycopg

    name = f"gridlens_prof_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200, help="photos rendered (and uploaded)")
    ap.add_argument("--devices", type=int, default=2, help="devices, each uploads every photo")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured uploads per device")
    ap.add_argument(
        "--db",
        default="",
        help="PostgreSQL too: 'postgresql' (scratch database on $GRIDLENS_TEST_PG) or a URL",
    )
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="print top N functions")
    args = ap.parse_args()

    print(f"rendering {args.photos} photos ...", file=sys.stderr)
    ref, roi, bodies = photos(args.photos)
    runs: list[tuple[str, Ledger, int, dict[str, int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, str, Callable[[], None] | None]] = []
        if not args.no_sqlite:
            targets.append(("sqlite", f"sqlite:///{tmp}/profile.db", None))
        if args.db:
            if args.db == "postgresql":
                pg_url, pg_drop = scratch_pg()
                targets.append(("postgresql", pg_url, pg_drop))
            else:
                targets.append(("postgresql", args.db, None))
        for kind, url, drop in targets:
            print(f"[{kind}] {args.devices} devices x {args.photos} uploads ...", file=sys.stderr)
            try:
                ledger, n, statuses, report = run(
                    url,
                    ref,
                    roi,
                    bodies,
                    devices=args.devices,
                    warmup=args.warmup,
                    profile=args.cprofile,
                )
            finally:
                if drop is not None:
                    drop()
            runs.append((kind, ledger, n, statuses))
            if report:
                print(f"\n===== cProfile, {kind} =====\n{report}")
    for kind, ledger, n, statuses in runs:
        rows = table(ledger, n)
        db = bool(ledger.backends)
        print(f"\n{kind}: {n} uploads, statuses {statuses}; CPU ms per upload")
        head = f"{'phase':<24} {'server':>8}" + (f" {'database':>9}" if db else "")
        print(head)
        print("-" * len(head))
        for name, own, dbv in rows:
            extra = f" {dbv:9.3f}" if db and dbv is not None else ""
            print(f"{name:<24} {own:8.3f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
