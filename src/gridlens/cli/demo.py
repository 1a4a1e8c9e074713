"""``gridlens demo``: what ``make run`` starts — the server, seeded with simulated meters."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridlens.errors import ParameterError

_HISTORY_STEP_S = 600.0  # like the photos: one reading every 10 minutes


def _seed_history(db: str, devices: list[Any], start: float, end: float) -> int:
    """Store the meters' registers from ``start`` to ``end`` as readings (no photos: five
    weeks of photos through the API would take many minutes); returns how many."""
    from gridlens.simulate import history_points
    from gridlens.store import Store

    store = Store.open(db)
    n = 0
    try:
        for d in devices:
            pts = history_points(d, start, end, _HISTORY_STEP_S)
            n += store.import_counter(d.device_id, pts, source="demo", actor="demo")
    finally:
        store.close()
    return n


def _write_demo_json(
    folder: Path, devices: list[Any], plan: list[Any], url: str, token: str, t0: float
) -> None:
    """Score the fleet in the server (its notifications go out) and write DIR/demo.json:
    the injected anomalies and the seeding time."""
    import httpx

    ids = {d.name: d.device_id for d in devices}
    scored: Any = None
    try:
        r = httpx.post(
            f"{url}/api/v1/anomaly-ranking/rescore",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120.0,
            trust_env=False,
        )
        scored = r.json() if r.status_code == 200 else {"error": r.text[:300]}
    except httpx.HTTPError as exc:
        scored = {"error": str(exc)}
    doc = {
        "injected": [
            {
                "device_id": ids[a.device],
                "device": a.device,
                "kind": a.kind,
                "start": a.to_dict()["start"],
                "end": a.to_dict()["end"],
            }
            for a in plan
            if a.device in ids
        ],
        "first_start_s": round(time.monotonic() - t0, 1),
        "scored": scored,
    }
    (folder / "demo.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"seeded in {doc['first_start_s']:.0f} s; {len(doc['injected'])} injected anomalies "
        f"(listed in {folder / 'demo.json'}) on {url}/anomaly",
        file=sys.stderr,
    )


def add_demo_command(sub: Any, emit_json: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="run the server seeded with simulated meters (what `make run` starts)",
        description="Start `gridlens serve` on a local SQLite database in DIR, create an admin "
        "user (credentials in DIR/credentials.json), seed --history of readings from "
        "--devices simulated electricity meters and --water water meters with pointer dials "
        "(stored directly; the last --backfill of it as photos uploaded through the API), "
        "inject three anomalies (a machine left running at night, "
        "a stuck meter, a working day that looks like a holiday; listed in DIR/demo.json), "
        "score the fleet for the anomaly page, then keep the cameras uploading every "
        "--interval-s until Ctrl-C. Publishes to MQTT when a broker answers on 127.0.0.1:1883.",
    )
    d.add_argument("--dir", type=Path, default=Path(".venv/demo"), help="demo state folder")
    d.add_argument("--port", type=int, default=int(os.environ.get("GRIDLENS_PORT", "8000")))
    d.add_argument(
        "--devices", type=int, default=3, help="simulated electricity meters (last is a factory)"
    )
    d.add_argument(
        "--water",
        type=int,
        default=1,
        help="water meters with 5 wheels and 4 pointer dials (m³), after the electricity "
        "meters (default 1; 0 for none)",
    )
    d.add_argument("--history", default="5w", help="readings to seed on the first run (default 5w)")
    d.add_argument(
        "--backfill", default="36h", help="the end of --history uploaded as photos (default 36h)"
    )
    d.add_argument("--interval-s", type=float, default=60.0, help="live photo interval")
    d.add_argument("--no-mqtt", action="store_true")
    d.set_defaults(func=_cmd_demo)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cmd_demo(args: argparse.Namespace) -> int:
    from gridlens.server.harness import ServerProcess
    from gridlens.simulate import Simulator, parse_duration, plan_demo_anomalies
    from gridlens.store import Store

    if args.devices < 1 or args.devices > 50:
        raise ParameterError(f"--devices must be 1-50, got {args.devices}")
    if args.water < 0 or args.water > 10:
        raise ParameterError(f"--water must be 0-10, got {args.water}")
    if _port_open("127.0.0.1", args.port):
        raise ParameterError(
            f"port {args.port} is in use; stop what runs there or set GRIDLENS_PORT=8001"
        )
    backfill_s = parse_duration(args.backfill, "--backfill")
    history_s = max(parse_duration(args.history, "--history"), backfill_s)
    folder = args.dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'gridlens.db'}"
    creds_file = folder / "credentials.json"
    store = Store.open(db)
    try:
        if creds_file.is_file():
            creds = json.loads(creds_file.read_text())
        else:
            _, password, token = store.add_user("admin", role="admin", actor="demo")
            creds = {"user": "admin", "password": password, "token": token}
            creds_file.write_text(json.dumps(creds, indent=2) + "\n")
            creds_file.chmod(0o600)
        seeded = store.count_readings() > 0
    finally:
        store.close()
    mqtt = None if args.no_mqtt or not _port_open("127.0.0.1", 1883) else "127.0.0.1:1883"
    srv = ServerProcess(
        db, folder / "data", port=args.port, mqtt=mqtt, log=folder / "server.log",
        request_log=True,
    )  # fmt: skip

    stopping = False

    def _stop(_sig: int, _frame: Any) -> None:
        # SIGTERM (kill, make's Ctrl-C) and SIGINT (Ctrl-C) stop the whole demo. The Simulator
        # turns a KeyboardInterrupt into "interrupted" and returns, so the flag, not the
        # exception, decides that the demo ends; a second signal while stopping is ignored.
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    url = f"http://127.0.0.1:{args.port}"
    state = folder / "simulator.json"
    n_fact = 1 if args.devices >= 3 else 0
    n_all = args.devices + args.water  # the water meters come last: meter-004 by default
    try:
        srv.start()
        print(
            f"\ngridlens demo: dashboard {url}/  (user {creds['user']}, password "
            f"{creds['password']})\n  API docs {url}/docs   API token in {creds_file}\n"
            f"  database {db}   server log {folder / 'server.log'}"
            + (f"\n  MQTT: publishing to {mqtt} (topics gridlens/#, Home Assistant discovery)"
               if mqtt else "")
            + "\n",
            file=sys.stderr,
        )  # fmt: skip
        if not seeded and not stopping:
            t_seed = time.monotonic()
            now = time.time()
            kinds = ["household"] * (args.devices - n_fact) + ["factory"] * n_fact
            kinds += ["water"] * args.water
            fleet = [(f"meter-{i + 1:03d}", k) for i, k in enumerate(kinds)]
            plan = plan_demo_anomalies(fleet, now) if history_s >= 14 * 86400 else []
            sim = Simulator(
                url, creds["token"], n_all, interval_s=600.0, speedup=0,
                start=datetime.fromtimestamp(now - backfill_s, UTC), state_file=state,
                n_factories=n_fact, n_water=args.water, name_prefix="meter", anomalies=plan,
            )  # fmt: skip
            devices = sim.register()
            water = "".join(
                f"; {d.name} is a water meter with 4 pointer dials (m³)"
                for d in devices
                if d.meter.kind == "water"
            )
            print(f"seeding {args.backfill} of photos from {n_all} meters, and their "
                  f"readings back to {args.history} ago{water}", file=sys.stderr)  # fmt: skip
            _seed_history(db, devices, now - history_s, now - backfill_s)
            if not stopping:
                sim.run()
            if not stopping:
                _write_demo_json(folder, devices, plan, url, creds["token"], t_seed)
        if not stopping:
            from gridlens.cli._demo_grid import seed_grid

            seed_grid(db, url, creds["token"], folder)
        if not stopping:
            print(f"meters upload every {args.interval_s:.0f} s; Ctrl-C stops", file=sys.stderr)
            Simulator(
                url, creds["token"], n_all, interval_s=args.interval_s, speedup=1.0,
                state_file=state, n_factories=n_fact, n_water=args.water, name_prefix="meter",
                progress=False,
            ).run()  # fmt: skip
    except KeyboardInterrupt:
        pass
    finally:
        stopping = True  # from here on, signals change nothing: the server is being stopped
        srv.stop()
        time.sleep(0.1)
    print("gridlens demo: stopped", file=sys.stderr)
    return 0
