"""The ``gridlens`` command: one subcommand per job.

Every subcommand that produces results accepts ``--json`` and then prints exactly one JSON
document on stdout. User errors print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gridlens import __version__
from gridlens.cli._common import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Parser, emit_json
from gridlens.cli.anomaly import add_anomaly_commands
from gridlens.cli.demo import add_demo_command
from gridlens.cli.grid import add_grid_commands
from gridlens.cli.meter import add_meter_commands
from gridlens.cli.pq import add_pq_commands
from gridlens.cli.roi import add_roi_commands
from gridlens.cli.server import add_interop_commands, add_server_commands
from gridlens.cli.simulate import add_simulate_command
from gridlens.errors import GridlensError

__all__ = ["EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


# ------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``gridlens`` argument parser with every subcommand."""
    parser = Parser(prog="gridlens", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gridlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    add_pq_commands(sub)
    add_grid_commands(sub, emit_json)
    add_meter_commands(sub, emit_json)
    add_roi_commands(sub)
    add_server_commands(sub, emit_json)
    add_interop_commands(sub, emit_json)
    add_simulate_command(sub, emit_json)
    add_demo_command(sub, emit_json)
    add_anomaly_commands(sub, emit_json)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gridlens`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except GridlensError as exc:
        print(f"gridlens {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`gridlens ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"gridlens {args.command}: internal error: {type(exc).__name__}: {exc}"
            " (rerun with --debug for a traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
