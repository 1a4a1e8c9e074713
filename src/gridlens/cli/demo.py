"""``gridlens demo``: what ``make run`` starts — the server, seeded with simulated meters."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridlens.errors import ParameterError


def add_demo_command(sub: Any, emit_json: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="run the server seeded with simulated meters (what `make run` starts)",
        description="Start `gridlens serve` on a local SQLite database in DIR, create an admin "
        "user (credentials in DIR/credentials.json), upload the last --backfill of photos "
        "from --devices simulated meter cameras, then keep them uploading every "
        "--interval-s until Ctrl-C. Publishes to MQTT when a broker answers on 127.0.0.1:1883.",
    )
    d.add_argument("--dir", type=Path, default=Path(".venv/demo"), help="demo state folder")
    d.add_argument("--port", type=int, default=int(os.environ.get("GRIDLENS_PORT", "8000")))
    d.add_argument("--devices", type=int, default=3, help="simulated meters (last is a factory)")
    d.add_argument("--backfill", default="48h", help="history to seed on the first run")
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
    from gridlens.simulate import Simulator, parse_duration
    from gridlens.store import Store

    if args.devices < 1 or args.devices > 50:
        raise ParameterError(f"--devices must be 1-50, got {args.devices}")
    if _port_open("127.0.0.1", args.port):
        raise ParameterError(
            f"port {args.port} is in use; stop what runs there or set GRIDLENS_PORT=8001"
        )
    backfill_s = parse_duration(args.backfill, "--backfill")
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
            print(f"seeding {args.backfill} of photos from {args.devices} meters", file=sys.stderr)
            Simulator(
                url, creds["token"], args.devices, interval_s=600.0, speedup=0,
                start=datetime.now(UTC) - timedelta(seconds=backfill_s), state_file=state,
                n_factories=n_fact, name_prefix="meter",
            ).run()  # fmt: skip
        if not stopping:
            from gridlens.cli._demo_grid import seed_grid

            seed_grid(db, url, creds["token"], folder)
        if not stopping:
            print(f"meters upload every {args.interval_s:.0f} s; Ctrl-C stops", file=sys.stderr)
            Simulator(
                url, creds["token"], args.devices, interval_s=args.interval_s, speedup=1.0,
                state_file=state, n_factories=n_fact, name_prefix="meter", progress=False,
            ).run()  # fmt: skip
    except KeyboardInterrupt:
        pass
    finally:
        stopping = True  # from here on, signals change nothing: the server is being stopped
        srv.stop()
        time.sleep(0.1)
    print("gridlens demo: stopped", file=sys.stderr)
    return 0
