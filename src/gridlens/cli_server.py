"""``gridlens serve``, ``gridlens device ...``, ``gridlens user add``, ``gridlens db upgrade``,
``gridlens export`` / ``gridlens import``: the commands that touch the store."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from gridlens.errors import DataFormatError, NotFoundError, ParameterError


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=None,
        help="database URL (default $GRIDLENS_DB or sqlite:///gridlens.db); "
        "PostgreSQL: postgresql+psycopg://user@host/dbname",
    )


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < v < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {v}")
    return v


def add_server_commands(sub: Any, emit_json: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="run the AMI server (REST API, device ingest, MQTT, dashboard)",
        description="Run the server: devices upload meter photos, people see readings on the "
        "dashboard and send commands. The schema is migrated on start.",
    )
    _db(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=int(os.environ.get("GRIDLENS_PORT", "8000")))
    s.add_argument(
        "--data-dir", default="gridlens-data", help="photo store (default ./gridlens-data)"
    )
    s.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    s.add_argument(
        "--mqtt",
        default=os.environ.get("GRIDLENS_MQTT", ""),
        help="MQTT broker HOST[:PORT] to publish readings to (default: off)",
    )
    s.add_argument("--mqtt-prefix", default="gridlens")
    s.add_argument(
        "--image-retention-days",
        type=float,
        default=7.0,
        help="delete photos older than this (0 = keep forever); readings stay",
    )
    s.add_argument("--max-upload-mb", type=float, default=2.0)
    s.add_argument("--no-request-log", action="store_true", help="no log line per request")
    s.set_defaults(func=_cmd_serve)

    d = sub.add_parser("device", help="register and list meter cameras")
    dsub = d.add_subparsers(dest="device_command", metavar="{add,list}")
    a = dsub.add_parser(
        "add",
        help="register a camera; prints its id and upload token once",
        description="Register a meter camera. The ROI file is the one `gridlens read` uses; its "
        "reference photo is stored in the database. The upload token is printed once.",
    )
    a.add_argument("name")
    a.add_argument("--roi", type=Path, required=True, help="ROI JSON (with its reference photo)")
    a.add_argument("--unit", default="kWh")
    a.add_argument("--max-rate", type=float, help="plausibility limit, unit per hour")
    a.add_argument("--interval-s", type=int, default=60, help="expected photo interval")
    _db(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=lambda x: _cmd_device_add(x, emit_json))
    ls = dsub.add_parser("list", help="devices with their last reading")
    _db(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=lambda x: _cmd_device_list(x, emit_json))

    u = sub.add_parser("user", help="dashboard users and API tokens")
    usub = u.add_subparsers(dest="user_command", metavar="{add}")
    ua = usub.add_parser(
        "add",
        help="create a user; prints the password and an API token once",
        description="Create a dashboard user. Roles: viewer (read), operator (also send "
        "commands), admin (also manage devices and users). Without --password-stdin a random "
        "password is generated. Both secrets are printed once and stored hashed.",
    )
    ua.add_argument("name")
    g = ua.add_mutually_exclusive_group()
    g.add_argument("--admin", action="store_true", help="same as --role admin")
    g.add_argument("--role", choices=("viewer", "operator", "admin"), default="viewer")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _db(ua)
    ua.add_argument("--json", action="store_true")
    ua.set_defaults(func=lambda x: _cmd_user_add(x, emit_json))

    m = sub.add_parser("db", help="database maintenance")
    msub = m.add_subparsers(dest="db_command", metavar="{upgrade}")
    up = msub.add_parser("upgrade", help="apply the schema migrations (serve does it on start)")
    _db(up)
    up.set_defaults(func=_cmd_db_upgrade)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gridlens.server.logs import setup_logging
    from gridlens.server.settings import Settings
    from gridlens.store import Store

    if args.workers < 1 or args.workers > 64:
        raise ParameterError(f"--workers must be 1-64, got {args.workers}")
    host, _, port = args.mqtt.partition(":")
    settings = Settings(
        db=args.db or os.environ.get("GRIDLENS_DB") or "sqlite:///gridlens.db",
        data_dir=str(Path(args.data_dir).resolve()),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        image_retention_days=args.image_retention_days,
        mqtt_host=host,
        mqtt_port=int(port) if port else 1883,
        mqtt_prefix=args.mqtt_prefix,
        log_requests=not args.no_request_log,
    )
    Store.open(settings.db).close()  # migrate once, before any worker starts
    os.environ.update(settings.to_env())
    setup_logging()
    print(
        f"gridlens serve: http://{args.host}:{args.port}/ (API docs /docs) db={settings.db} "
        f"photos={settings.data_dir}",
        file=sys.stderr,
    )
    uvicorn.run(
        "gridlens.server.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def _cmd_device_add(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.meter.roi import load_roi
    from gridlens.server.ingest import device_roi
    from gridlens.store import Store

    roi = load_roi(args.roi)  # validates; resolves the reference path
    ref_bytes = None
    if roi.reference is not None and roi.reference.image_path is not None:
        path = roi.reference.image_path
        if not path.is_file():
            raise NotFoundError(f"reference photo {path} (named in {args.roi}) does not exist")
        ref_bytes = path.read_bytes()
    doc = device_roi(roi.to_dict(), ref_bytes)
    store = Store.open(args.db)
    try:
        dev, token = store.add_device(
            args.name,
            doc,
            reference_jpeg=ref_bytes,
            unit=args.unit,
            max_rate=args.max_rate,
            interval_s=args.interval_s,
            actor=f"cli:{_whoami()}",
        )
    finally:
        store.close()
    if args.json:
        emit_json({"device_id": dev.id, "token": token})
    else:
        print(f"device {dev.id} ({dev.name}) registered")
        print(f"upload token (shown once): {token}")
    return 0


def _cmd_device_list(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.store import Store

    store = Store.open(args.db)
    try:
        rows = store.overview()
    finally:
        store.close()
    if args.json:
        emit_json({"devices": rows})
        return 0
    print(f"{'id':>4}  {'name':<20} {'value':>12} {'unit':<5} {'last photo':<21} status")
    for r in rows:
        last = r["last"] or {}
        val = "-" if r["value"] is None else f"{r['value']:.3f}"
        print(
            f"{r['id']:>4}  {r['name']:<20} {val:>12} {r['unit']:<5} "
            f"{last.get('captured_at') or '-':<21} {last.get('status') or '-'}"
        )
    return 0


def _cmd_user_add(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.store import Store

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise DataFormatError("no password on stdin")
    role = "admin" if args.admin else args.role
    store = Store.open(args.db)
    try:
        user, password, token = store.add_user(
            args.name, role=role, password=password, actor=f"cli:{_whoami()}"
        )
    finally:
        store.close()
    if args.json:
        emit_json(
            {
                "user": user.name,
                "role": role,
                "token": token,
                "password": None if args.password_stdin else password,
            }
        )
    else:
        print(f"user {user.name} ({role}) created")
        if not args.password_stdin:
            print(f"password (shown once): {password}")
        print(f"API token (shown once): {token}")
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gridlens.store import Store
    from gridlens.store.db import current_revision

    store = Store.open(args.db)
    try:
        print(f"{store.url}: schema at revision {current_revision(store.engine)}")
    finally:
        store.close()
    return 0


def _whoami() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "unknown")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} is not JSON: {exc}") from None


def add_interop_commands(sub: Any, emit_json: Any) -> None:
    e = sub.add_parser(
        "export",
        help="export a meter's readings (CSV or Green Button XML)",
        description="Export a meter's readings: --format csv writes every reading "
        "(captured_at,value,status,raw,reason); greenbutton writes NAESB ESPI interval data "
        "from the accepted counter readings.",
    )
    e.add_argument("device", help="device id or name")
    e.add_argument("--format", choices=("csv", "greenbutton"), default="csv")
    e.add_argument("--interval", type=int, default=3600, help="Green Button interval, s")
    e.add_argument("--out", type=Path, help="file to write (default stdout)")
    _db(e)
    e.set_defaults(func=_cmd_export)
    i = sub.add_parser(
        "import",
        help="import Green Button interval data into a meter's history",
        description="Add the energy intervals of a Green Button (ESPI) file to a meter's "
        "counter history. Idempotent.",
    )
    i.add_argument("device", help="device id or name")
    i.add_argument("file", type=Path)
    _db(i)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=lambda x: _cmd_import(x, emit_json))


def _device_id(store: Any, ref: str) -> int:
    if ref.isdigit():
        return int(store.device(int(ref)).id)
    return int(store.device_by_name(ref).id)


def _cmd_export(args: argparse.Namespace) -> int:
    from gridlens.store import Store
    from gridlens.store.repo import greenbutton_export, readings_csv

    store = Store.open(args.db)
    try:
        dev_id = _device_id(store, args.device)
        if args.format == "greenbutton":
            data = greenbutton_export(store, dev_id, args.interval)
        else:
            data = readings_csv(store, dev_id).encode()
    finally:
        store.close()
    if args.out:
        args.out.write_bytes(data)
        print(f"wrote {args.out} ({len(data):,} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


def _cmd_import(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.store import Store
    from gridlens.store.repo import greenbutton_import

    if not args.file.is_file():
        raise NotFoundError(f"{args.file} does not exist")
    store = Store.open(args.db)
    try:
        doc = greenbutton_import(
            store, _device_id(store, args.device), args.file.read_bytes(), actor=f"cli:{_whoami()}"
        )
    finally:
        store.close()
    if args.json:
        emit_json(doc)
    else:
        print(
            f"imported {doc['intervals']} intervals ({doc['kwh']} kWh, {doc['from']} .. "
            f"{doc['to']}): {doc['added']} new counter readings"
        )
    return 0
