"""``gridlens simulate``: a fleet of simulated meter cameras uploading to a gridlens server.

Examples::

    gridlens simulate --server http://localhost:8000 --devices 5              # live, forever
    gridlens simulate --server URL --devices 20 --speedup 60 --duration 1h    # last hour in 1 min
    gridlens simulate --server URL --devices 3 --backfill 24h                 # last day, fast
    gridlens simulate --server URL --devices 3 --backfill 24h --forever       # ... then live
    gridlens simulate --server URL --devices 2 --water 1 --backfill 6h        # + a water meter

The admin token comes from ``--token`` or ``GRIDLENS_TOKEN``. ``--state FILE`` keeps the
device tokens so the next run reuses the devices instead of registering new ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridlens.errors import ParameterError

if TYPE_CHECKING:
    from gridlens.simulate import Simulator

__all__ = ["add_simulate_command", "simulator_from_args"]

EmitJson = Callable[[dict[str, Any]], None]


def add_simulate_command(sub: Any, emit_json: EmitJson) -> None:
    """Add the ``simulate`` subcommand to an argparse subparsers object.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        From ``parser.add_subparsers``.
    emit_json : callable
        Prints one JSON document on stdout (the main CLI's ``--json`` writer).
    """
    p = sub.add_parser(
        "simulate",
        help="simulate ESP32-CAM meter cameras uploading photos to a gridlens server",
        description="Register N simulated meter cameras on a gridlens server (or reuse them "
        "with --state) and upload a synthetic photo of each meter every --interval-s of "
        "simulated time, as the ESP32-CAM firmware does: capture ids, X-Captured-At, retries "
        "with the same capture id, commands executed and acknowledged. The simulated clock is "
        "start + wall time x --speedup; --speedup 0 sends photos as fast as possible. A "
        "server refuses photos from the future, so with --speedup above 1 and no --start the "
        "run starts --duration before now and ends at the present. "
        "--backfill 24h uploads the last 24 h as fast as possible and stops at the present; "
        "add --forever to continue live afterwards, or --duration D to continue live for D. "
        "Without --duration (and without --backfill) it runs until Ctrl-C. "
        "Exit code 0 if every photo was delivered, 1 if some failed or are still queued.",
    )
    p.add_argument("--server", required=True, metavar="URL", help="e.g. http://localhost:8000")
    p.add_argument("--devices", type=int, default=1, metavar="N", help="cameras (default 1)")
    p.add_argument(
        "--factories", type=int, default=0, metavar="K", help="of which the last K are factories"
    )
    p.add_argument(
        "--water",
        type=int,
        default=0,
        metavar="W",
        help="of which the very last W are water meters: 5 wheels and 4 pointer dials "
        "(x0.1 ... x0.0001 m³), unit m3, 0.1-0.3 m³ a day (default 0)",
    )
    p.add_argument(
        "--interval-s", type=float, default=60.0, help="simulated seconds between photos (60)"
    )
    p.add_argument(
        "--speedup", type=float, help="simulated seconds per second (default 1; 0 = fastest)"
    )
    p.add_argument(
        "--start",
        help="first photo: ISO 8601 (UTC), 'now' or -24h (default now; with --speedup above 1, "
        "--duration before now, so the run ends at the present)",
    )
    p.add_argument("--duration", help="simulated time to cover: 3600, 90m, 1h, 2d (default ∞)")
    p.add_argument("--backfill", metavar="SPAN", help="upload the last SPAN (24h) at full speed")
    p.add_argument("--forever", action="store_true", help="with --backfill: then continue live")
    p.add_argument("--token", help="admin API token (default: $GRIDLENS_TOKEN)")
    p.add_argument("--state", type=Path, metavar="FILE", help="JSON file of device tokens")
    p.add_argument("--prefix", default="sim", help="device names PREFIX-001 ... (default sim)")
    p.add_argument("--seed", type=int, default=0, help="selects layouts and loads (default 0)")
    p.add_argument("--concurrency", type=int, default=4, help="upload threads (default 4)")
    p.add_argument("--jpeg-quality", type=int, default=85, help="photo JPEG quality (85)")
    p.add_argument("--poll-s", type=float, help="also poll for commands every POLL_S s")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    p.set_defaults(func=lambda a: _cmd_simulate(a, emit_json))
    # Let "--start -24h" and "--duration -5m" reach our parsers (and their messages) instead
    # of argparse taking "-24h" for an unknown option; "--start=-24h" works regardless.
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^[-+][\d.]+[a-zA-Z]")


def simulator_from_args(args: argparse.Namespace, *, now: datetime | None = None) -> Simulator:
    """Validate the ``simulate`` options and build the :class:`~gridlens.simulate.Simulator`.

    Nothing is sent to the server yet.

    Raises
    ------
    ParameterError
        An option is out of range, unparsable, or conflicts with another.
    """
    from gridlens.simulate import INTERVAL_RANGE, Simulator, parse_duration, parse_start

    now = datetime.now(UTC).replace(microsecond=0) if now is None else now
    if not str(args.server).startswith(("http://", "https://")):
        raise ParameterError(f"--server must be an http:// or https:// URL, got {args.server!r}")
    if not 1 <= args.devices <= 999:
        raise ParameterError(f"--devices must be 1..999, got {args.devices}")
    if not 0 <= args.factories <= args.devices:
        raise ParameterError(
            f"--factories must be 0..--devices ({args.devices}), got {args.factories}"
        )
    if not 0 <= args.water <= args.devices - args.factories:
        raise ParameterError(
            f"--water must be 0..--devices minus --factories ({args.devices - args.factories}), "
            f"got {args.water}"
        )
    lo, hi = INTERVAL_RANGE
    if not lo <= args.interval_s <= hi:
        raise ParameterError(f"--interval-s must be {lo:g}..{hi:g} s, got {args.interval_s:g}")
    if args.speedup is not None and not args.speedup >= 0:
        raise ParameterError(
            f"--speedup must be >= 0 (0 = as fast as possible), got {args.speedup}"
        )
    if not 1 <= args.concurrency <= 64:
        raise ParameterError(f"--concurrency must be 1..64, got {args.concurrency}")
    if not 1 <= args.jpeg_quality <= 100:
        raise ParameterError(f"--jpeg-quality must be 1..100, got {args.jpeg_quality}")
    if args.poll_s is not None and not args.poll_s > 0:
        raise ParameterError(f"--poll-s must be > 0, got {args.poll_s}")
    if args.seed < 0:
        raise ParameterError(f"--seed must be >= 0, got {args.seed}")
    token = args.token if args.token is not None else os.environ.get("GRIDLENS_TOKEN", "")
    if not token.strip():
        raise ParameterError("give the server's admin API token with --token or GRIDLENS_TOKEN")
    duration = None if args.duration is None else parse_duration(args.duration, "--duration")
    follow = False
    if args.backfill is not None:
        if args.start is not None or args.speedup is not None:
            raise ParameterError(
                "--backfill sets the start (SPAN ago) and the speed (fastest); drop --start "
                "and --speedup"
            )
        if args.forever and duration is not None:
            raise ParameterError("give --forever or --duration after --backfill, not both")
        span = parse_duration(args.backfill, "--backfill")
        start = now.timestamp() - span
        speedup = 0.0
        follow = args.forever or duration is not None
        total = None if args.forever else span + (duration or 0.0)
    else:
        if args.forever:
            raise ParameterError(
                "--forever only applies after --backfill (without --duration a simulation "
                "runs until Ctrl-C anyway)"
            )
        speedup = 1.0 if args.speedup is None else float(args.speedup)
        total = duration
        if args.start is not None:
            start = parse_start(args.start, now).timestamp()
        elif speedup > 1:
            # a server refuses photos from the future: end the fast run at the present
            if total is None:
                raise ParameterError(
                    "--speedup above 1 runs the simulated clock ahead of real time, and the "
                    "server refuses photos from the future: give --duration (the run then "
                    "ends now) or a --start in the past"
                )
            start = now.timestamp() - total
        else:
            start = now.timestamp()
        if speedup == 0 and total is None and start >= now.timestamp():
            raise ParameterError(
                "--speedup 0 without --duration runs up to now, so it needs a --start in the "
                "past (or use --backfill 24h)"
            )
    return Simulator(
        args.server,
        token,
        args.devices,
        interval_s=args.interval_s,
        speedup=speedup,
        start=datetime.fromtimestamp(start, UTC),
        duration_s=total,
        state_file=args.state,
        name_prefix=args.prefix,
        seed=args.seed,
        concurrency=args.concurrency,
        jpeg_quality=args.jpeg_quality,
        progress=not args.no_progress and not args.json,
        n_factories=args.factories,
        n_water=args.water,
        follow=follow,
        poll_s=args.poll_s,
    )


class _TqdmHandler(logging.Handler):
    """Log lines above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _cmd_simulate(args: argparse.Namespace, emit_json: EmitJson) -> int:
    sim = simulator_from_args(args)
    ahead = _ahead_of_real_time(sim)
    if ahead:
        print(f"gridlens simulate: note: {ahead}", file=sys.stderr)
    logger = logging.getLogger("gridlens.simulate")
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("gridlens simulate: %(message)s"))
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        doc = sim.run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    if args.json:
        emit_json(doc)
    else:
        rate = doc["photos_per_s"]
        print(
            f"{doc['uploads']} photos from {doc['devices']} devices in {doc['seconds']:.1f} s"
            + (f" ({rate:g}/s)" if rate else "")
            + f", simulated {doc['sim_start']} .. {doc['sim_end'] or '-'}"
        )
        print(
            f"ok {doc['ok']}, rejected {doc['rejected']}, duplicates {doc['duplicates']}, "
            f"failed {doc['failed']}, still queued {doc['pending']}, retries {doc['retries']}, "
            f"accepted but not the rendered value {doc['mismatched']}, "
            f"commands acked {doc['commands_acked']}"
        )
        print(f"per photo: render {doc['render_ms']:.1f} ms, upload {doc['upload_ms']:.1f} ms")
        if args.state is not None:
            print(f"devices and tokens: {args.state}")
    if doc["interrupted"]:
        return 130
    return 0 if doc["failed"] == 0 and doc["pending"] == 0 else 1


def _ahead_of_real_time(sim: Simulator) -> str | None:
    """A warning if the simulated clock will pass the real one (photos from the future)."""
    now = datetime.now(UTC).timestamp()
    if sim.speedup <= 1 or sim.follow:
        return None
    if sim.duration_s is not None and sim.start + sim.duration_s <= now + 60:
        return None
    when = datetime.fromtimestamp(max(sim.start, now), UTC).isoformat(timespec="seconds")
    return (
        f"the simulated clock overtakes real time (from {when}); a server refuses photos "
        "captured in the future, so start in the past (--start -24h) or shorten --duration"
    )
