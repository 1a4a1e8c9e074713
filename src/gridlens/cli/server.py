"""``gridlens serve``, ``gridlens device ...``, ``gridlens user add``, ``gridlens db upgrade``,
``gridlens export`` / ``gridlens import``: the commands that touch the store."""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridlens.errors import DataFormatError, NotFoundError, ParameterError

if TYPE_CHECKING:
    from gridlens.store import Store

# gridlens.store.repo.CACHE_TTL_S (a test keeps them equal): importing the store here would
# load SQLAlchemy for every gridlens command
CACHE_TTL_S = 10.0


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


def _pull_options(p: argparse.ArgumentParser, *, change: bool = False) -> None:
    """--pull-url, --pull-interval and --pull-auth (and, for ``device set``, --no-pull and
    --no-pull-auth)."""
    g = p.add_argument_group("cameras that serve snapshots (the server fetches the photos)")
    url = g.add_mutually_exclusive_group() if change else g
    url.add_argument(
        "--pull-url", metavar="URL", help="http(s) snapshot URL, e.g. http://192.168.1.40/capture"
    )
    if change:
        url.add_argument("--no-pull", action="store_true", help="stop fetching: the camera pushes")
    g.add_argument(
        "--pull-interval", type=int, metavar="S", help="seconds between fetches (default 60)"
    )
    auth = g.add_mutually_exclusive_group() if change else g
    auth.add_argument(
        "--pull-auth",
        metavar="USER:PASS",
        help="HTTP basic/digest login at the camera (stored, never shown)",
    )
    if change:
        auth.add_argument("--no-pull-auth", action="store_true", help="forget the camera login")


def _pull_change(args: argparse.Namespace) -> Any:
    """The pull settings of ``device add|set`` as a checked PullChange (None: not given)."""
    from gridlens.store.pulls import PullChange

    url = "" if getattr(args, "no_pull", False) else args.pull_url
    auth = "" if getattr(args, "no_pull_auth", False) else args.pull_auth
    if url is None and args.pull_interval is None and auth is None:
        return None
    return PullChange(url, args.pull_interval, auth)


def _pull_line(pull: dict[str, Any] | None) -> str:
    if pull is None:
        return "photos are uploaded by the camera"
    login = ", with a login" if pull["auth"] else ""
    return f"photos fetched from {pull['url']} every {pull['interval_s']} s{login}"


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
        "--mqtt-user",
        default=os.environ.get("GRIDLENS_MQTT_USER", ""),
        help="broker user name (default: none)",
    )
    s.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        default=os.environ.get("GRIDLENS_MQTT_PASSWORD_FILE", ""),
        help="file whose first line is the broker password (never on the command line)",
    )
    s.add_argument(
        "--mqtt-tls",
        action="store_true",
        help="connect to the broker over TLS, checking its certificate (default port 8883)",
    )
    s.add_argument(
        "--mqtt-cafile",
        metavar="PEM",
        default="",
        help="CA certificate that signed the broker's (implies --mqtt-tls; default: the "
        "system's CAs)",
    )
    s.add_argument(
        "--image-retention-days",
        type=float,
        default=7.0,
        help="delete photos older than this (0 = keep forever); readings stay",
    )
    s.add_argument("--max-upload-mb", type=float, default=2.0)
    s.add_argument("--no-request-log", action="store_true", help="no log line per request")
    s.add_argument(
        "--no-pull",
        action="store_true",
        help="do not fetch photos from cameras registered with --pull-url (other servers on "
        "the same database still do)",
    )
    s.add_argument(
        "--anomaly-every-s",
        type=float,
        default=900.0,
        help="score every meter for the anomaly page this often (0: never; default 900)",
    )
    s.add_argument(
        "--anomaly-webhook-url",
        metavar="URL",
        default=os.environ.get("GRIDLENS_ANOMALY_WEBHOOK_URL", ""),
        help="POST each new anomaly event here as JSON (default: none)",
    )
    s.set_defaults(func=_cmd_serve)

    d = sub.add_parser("device", help="register, list and manage meter cameras")
    dsub = d.add_subparsers(dest="device_command", metavar="{add,list,set,token,revoke}")
    a = dsub.add_parser(
        "add",
        help="register a camera; prints its id and upload token once",
        description="Register a meter camera. The ROI file is the one `gridlens read` uses; its "
        "reference photo is stored in the database. The upload token is printed once. A "
        "camera that serves snapshots (ESP32-CAM CameraWebServer /capture, AI-on-the-edge "
        "/img_tmp/raw.jpg, ESPHome, IP cameras) is given --pull-url: the server fetches it.",
    )
    a.add_argument("name")
    a.add_argument("--roi", type=Path, required=True, help="ROI JSON (with its reference photo)")
    a.add_argument("--unit", default="kWh")
    a.add_argument("--max-rate", type=float, help="plausibility limit, unit per hour")
    a.add_argument(
        "--interval-s",
        type=int,
        default=None,
        help="expected photo interval (default 60, or the pull interval)",
    )
    _pull_options(a)
    _db(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=lambda x: _cmd_device_add(x, emit_json))
    ls = dsub.add_parser("list", help="devices with their last reading")
    _db(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=lambda x: _cmd_device_list(x, emit_json))
    ds = dsub.add_parser(
        "set",
        help="change a camera's unit, plausibility limit, ROI or name",
        description="Change a registered camera. Only the options given change; the same "
        "checks as `device add` apply. Servers pick the change up with the next upload "
        f"(other server processes within {CACHE_TTL_S:g} s).",
    )
    ds.add_argument("device", metavar="NAME_OR_ID", help="device name or id")
    ds.add_argument("--unit", help="new unit (1-16 characters)")
    ds.add_argument("--max-rate", type=float, help="new plausibility limit, unit per hour")
    ds.add_argument("--roi", type=Path, help="new ROI JSON (with its reference photo)")
    ds.add_argument("--rename", metavar="NEW", help="new device name")
    ds.add_argument("--feeder", metavar="F", help="put the meter on a bus of feeder F ('-': off)")
    ds.add_argument("--bus", metavar="B", help="the bus of --feeder the meter is on")
    ds.add_argument("--scale", type=float, default=1.0, help="bus load = kWh x scale")
    _pull_options(ds, change=True)
    _db(ds)
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=lambda x: _cmd_device_set(x, emit_json))
    dt = dsub.add_parser(
        "token",
        help="issue a new upload token (revokes the old ones); prints it once",
        description="Rotate a camera's upload token: every token it had is revoked and a new "
        "one is printed once (stored hashed). Put it on the camera; the old one gets 401 "
        f"(from running servers within {CACHE_TTL_S:g} s).",
    )
    dt.add_argument("device", metavar="NAME_OR_ID", help="device name or id")
    _db(dt)
    dt.add_argument("--json", action="store_true")
    dt.set_defaults(func=lambda x: _cmd_device_token(x, emit_json))
    dr = dsub.add_parser(
        "revoke",
        help="revoke all upload tokens of a camera (decommission)",
        description="Revoke every upload token of a camera: its uploads get 401 (from "
        f"running servers within {CACHE_TTL_S:g} s). Readings stay; `gridlens device token` "
        "issues a new token.",
    )
    dr.add_argument("device", metavar="NAME_OR_ID", help="device name or id")
    _db(dr)
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=lambda x: _cmd_device_revoke(x, emit_json))

    u = sub.add_parser("user", help="dashboard users and API tokens")
    usub = u.add_subparsers(dest="user_command", metavar="{add,list,token,revoke}")
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
    ul = usub.add_parser("list", help="users with their role and live API tokens")
    _db(ul)
    ul.add_argument("--json", action="store_true")
    ul.set_defaults(func=lambda x: _cmd_user_list(x, emit_json))
    ut = usub.add_parser(
        "token",
        help="issue another API token for a user; prints it once",
        description="Issue a new API token for a user (printed once, stored hashed). The "
        "user's other tokens keep working: `gridlens user revoke` first to replace a leaked one.",
    )
    ut.add_argument("name")
    _db(ut)
    ut.add_argument("--json", action="store_true")
    ut.set_defaults(func=lambda x: _cmd_user_token(x, emit_json))
    ur = usub.add_parser(
        "revoke",
        help="revoke all API tokens of a user (and dashboard sessions with --sessions)",
        description="Revoke every API token of a user, at once on every server. With "
        "--sessions the user's dashboard logins end too.",
    )
    ur.add_argument("name")
    ur.add_argument("--sessions", action="store_true", help="also end dashboard sessions")
    _db(ur)
    ur.add_argument("--json", action="store_true")
    ur.set_defaults(func=lambda x: _cmd_user_revoke(x, emit_json))

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
    tls = args.mqtt_tls or bool(args.mqtt_cafile)
    data_dir = Path(args.data_dir).resolve()
    # one folder per server (host and port): /metrics sums this server's workers only, even
    # when several hosts share the data folder
    metrics_dir = data_dir / "metrics" / f"{socket.gethostname()}-{args.port}"
    settings = Settings(
        db=args.db or os.environ.get("GRIDLENS_DB") or "sqlite:///gridlens.db",
        data_dir=str(data_dir),
        metrics_dir=str(metrics_dir) if args.workers > 1 else "",
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        image_retention_days=args.image_retention_days,
        mqtt_host=host,
        mqtt_port=int(port) if port else (8883 if tls else 1883),
        mqtt_prefix=args.mqtt_prefix,
        mqtt_user=args.mqtt_user,
        mqtt_password_file=args.mqtt_password_file,
        mqtt_tls=tls,
        mqtt_cafile=args.mqtt_cafile,
        log_requests=not args.no_request_log,
        pull=not args.no_pull,
        anomaly_every_s=args.anomaly_every_s,
        anomaly_webhook_url=args.anomaly_webhook_url,
    )
    Store.open(settings.db).close()  # migrate once, before any worker starts
    if settings.metrics_dir:
        from gridlens.server.metrics import clear_snapshots

        clear_snapshots(metrics_dir)  # counters start at 0 with the server
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


def _read_roi(path: Path) -> tuple[dict[str, Any], bytes | None]:
    """An ROI file (validated) and the bytes of the reference photo it names, if any."""
    from gridlens.meter.roi import load_roi

    roi = load_roi(path)  # validates; resolves the reference path
    ref_bytes = None
    if roi.reference is not None and roi.reference.image_path is not None:
        ref = roi.reference.image_path
        if not ref.is_file():
            raise NotFoundError(f"reference photo {ref} (named in {path}) does not exist")
        ref_bytes = ref.read_bytes()
    return roi.to_dict(), ref_bytes


def _cmd_device_add(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.server.ingest import device_roi
    from gridlens.store.pulls import pull_dict, pull_source

    pull = _pull_change(args)  # checked before anything is read or stored
    if pull is not None and not pull.url:
        raise ParameterError("--pull-interval and --pull-auth need --pull-url")
    interval_s = args.interval_s
    if interval_s is None:  # a pulled camera's photos come every pull interval
        every = 60 if pull is None or pull.interval_s is None else pull.interval_s
        interval_s = min(max(every, 10), 86400)
    roi, ref_bytes = _read_roi(args.roi)
    doc = device_roi(roi, ref_bytes)
    with _open_store(args.db) as store:
        dev, token = store.add_device(
            args.name,
            doc,
            reference_jpeg=ref_bytes,
            unit=args.unit,
            max_rate=args.max_rate,
            interval_s=interval_s,
            pull=pull,
            actor=f"cli:{_whoami()}",
        )
        pulled = pull_dict(pull_source(store, dev.id))
    if args.json:
        emit_json({"device_id": dev.id, "token": token, "pull": pulled})
    else:
        print(f"device {dev.id} ({dev.name}) registered")
        print(f"upload token (shown once): {token}")
        if pulled is not None:
            print(_pull_line(pulled))
    return 0


def _cmd_device_list(args: argparse.Namespace, emit_json: Any) -> int:
    with _open_store(args.db) as store:
        rows = store.overview()
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


def _cmd_device_bus(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.cli.grid import set_device_bus

    if (args.bus is None) != (args.feeder == "-"):
        raise ParameterError("--feeder F needs --bus B (--feeder - takes the meter off)")
    with _open_store(args.db) as store:
        dev = store.device(_device_id(store, args.device))
        doc = set_device_bus(store, dev.id, args.feeder, args.bus, f"cli:{_whoami()}", args.scale)
    if args.json:
        emit_json({"device_id": dev.id, "name": dev.name, **doc})
    elif doc["feeder"] is None:
        print(f"device {dev.id} ({dev.name}): on no feeder")
    else:
        print(f"device {dev.id} ({dev.name}): on bus {doc['bus']} of feeder {doc['feeder']}")
    return 0


def _cmd_device_set(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.server.ingest import device_roi
    from gridlens.store.pulls import pull_source
    from gridlens.store.repo import device_dict

    pull = _pull_change(args)
    if args.feeder is not None:  # a meter on a feeder's bus (cli/grid.py)
        return _cmd_device_bus(args, emit_json)
    if all(v is None for v in (args.unit, args.max_rate, args.roi, args.rename, pull)):
        raise ParameterError(
            "nothing to change: give --unit, --max-rate, --roi, --rename or the --pull-... options"
        )
    roi = ref_bytes = None
    if args.roi is not None:
        roi, ref_bytes = _read_roi(args.roi)  # before the database: a bad file changes nothing
    with _open_store(args.db) as store:
        dev = store.device(_device_id(store, args.device))
        if roi is not None:  # boxes inside the new reference photo, or else the stored one
            roi = device_roi(roi, ref_bytes if ref_bytes is not None else dev.reference_jpeg)
        dev = store.update_device(
            dev.id,
            actor=f"cli:{_whoami()}",
            unit=args.unit,
            max_rate=args.max_rate,
            roi=roi,
            name=args.rename,
            reference_jpeg=ref_bytes,
            pull=pull,
        )
        doc = device_dict(dev, pull_source(store, dev.id))
    if args.json:
        emit_json(doc)
    else:
        rate = "-" if dev.max_rate is None else f"{dev.max_rate:g} {dev.unit}/h"
        print(f"device {dev.id} ({dev.name}): unit {dev.unit}, max rate {rate}")
        if pull is not None:
            print(_pull_line(doc["pull"]))
    return 0


def _cmd_device_token(args: argparse.Namespace, emit_json: Any) -> int:
    with _open_store(args.db) as store:
        dev = store.device(_device_id(store, args.device))
        token = store.rotate_device_token(dev.id, actor=f"cli:{_whoami()}")
    if args.json:
        emit_json({"device_id": dev.id, "token": token})
    else:
        print(f"device {dev.id} ({dev.name}): old upload tokens revoked")
        print(f"upload token (shown once): {token}")
    return 0


def _cmd_device_revoke(args: argparse.Namespace, emit_json: Any) -> int:
    with _open_store(args.db) as store:
        dev = store.device(_device_id(store, args.device))
        n = store.revoke_device_tokens(dev.id, actor=f"cli:{_whoami()}")
    if args.json:
        emit_json({"device_id": dev.id, "revoked": n})
    else:
        print(
            f"device {dev.id} ({dev.name}): {n} upload token{'' if n == 1 else 's'} revoked; "
            f"`gridlens device token {dev.id}` issues a new one"
        )
    return 0


def _cmd_user_list(args: argparse.Namespace, emit_json: Any) -> int:
    with _open_store(args.db) as store:
        rows = store.users()
    if args.json:
        emit_json({"users": rows})
        return 0
    print(f"{'name':<20} {'role':<9} {'created':<24} {'API tokens':>10} {'sessions':>8}")
    for r in rows:
        print(
            f"{r['name']:<20} {r['role']:<9} {r['created_at']:<24} {r['api_tokens']:>10} "
            f"{r['sessions']:>8}"
        )
    return 0


def _cmd_user_token(args: argparse.Namespace, emit_json: Any) -> int:
    with _open_store(args.db) as store:
        token = store.new_api_token(args.name, actor=f"cli:{_whoami()}")
    if args.json:
        emit_json({"user": args.name, "token": token})
    else:
        print(f"API token for {args.name} (shown once): {token}")
    return 0


def _cmd_user_revoke(args: argparse.Namespace, emit_json: Any) -> int:
    kind = "all" if args.sessions else "api"
    with _open_store(args.db) as store:
        n = store.revoke_user_tokens(args.name, actor=f"cli:{_whoami()}", kind=kind)
    if args.json:
        emit_json({"user": args.name, "revoked": n})
    else:
        what = "API tokens and sessions" if args.sessions else "API tokens"
        print(f"user {args.name}: {n} {what} revoked")
    return 0


def _cmd_user_add(args: argparse.Namespace, emit_json: Any) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise DataFormatError("no password on stdin")
    role = "admin" if args.admin else args.role
    with _open_store(args.db) as store:
        user, password, token = store.add_user(
            args.name, role=role, password=password, actor=f"cli:{_whoami()}"
        )
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
    from gridlens.store.db import current_revision

    with _open_store(args.db) as store:
        print(f"{store.url}: schema at revision {current_revision(store.engine)}")
    return 0


@contextmanager
def _open_store(url: str | None) -> Iterator[Store]:
    """The store at ``url`` (migrated), closed when the block ends."""
    from gridlens.store import Store

    store = Store.open(url)
    try:
        yield store
    finally:
        store.close()


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
    """The id of the device with id ``ref`` (digits) or else named ``ref``."""
    if ref.isdigit():
        try:
            return int(store.device(int(ref)).id)
        except NotFoundError:
            try:
                return int(store.device_by_name(ref).id)
            except NotFoundError:
                raise NotFoundError(f"no device with id or name {ref!r}") from None
    return int(store.device_by_name(ref).id)


def _cmd_export(args: argparse.Namespace) -> int:
    from gridlens.store.repo import greenbutton_export, readings_csv

    with _open_store(args.db) as store:
        dev_id = _device_id(store, args.device)
        if args.format == "greenbutton":
            data = greenbutton_export(store, dev_id, args.interval)
        else:
            data = readings_csv(store, dev_id).encode()
    if args.out:
        args.out.write_bytes(data)
        print(f"wrote {args.out} ({len(data):,} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


def _cmd_import(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.store.repo import greenbutton_import

    if not args.file.is_file():
        raise NotFoundError(f"{args.file} does not exist")
    with _open_store(args.db) as store:
        doc = greenbutton_import(
            store, _device_id(store, args.device), args.file.read_bytes(), actor=f"cli:{_whoami()}"
        )
    if args.json:
        emit_json(doc)
    else:
        print(
            f"imported {doc['intervals']} intervals ({doc['kwh']} kWh, {doc['from']} .. "
            f"{doc['to']}): {doc['added']} new counter readings"
        )
    return 0
