"""Compile an OpenDSS feeder in a child process: ``python -m gridlens.grid.dss_child PATH``.

Prints the balanced model (:func:`gridlens.grid.feeder.feeder_to_dict`) as one JSON document on
stdout; a file that does not load prints one line on stderr and exits with code 2. The server
compiles uploads this way: OpenDSS is one global engine per process that is not safe to drive
from changing threads, and a crash or a runaway script in it must not take the server along.
"""

from __future__ import annotations

import json
import sys

#: Limits the child sets on itself: CPU seconds and address space (bytes).
CPU_S = 120
MAX_BYTES = 2 * 1024**3


def _limit() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S + 5))
        resource.setrlimit(resource.RLIMIT_AS, (MAX_BYTES, MAX_BYTES))
    except (ImportError, ValueError, OSError):  # not on this platform: run unlimited
        pass


def main(argv: list[str]) -> int:
    _limit()
    from gridlens.errors import GridlensError
    from gridlens.grid.dssio import load_dss
    from gridlens.grid.feeder import feeder_to_dict

    if len(argv) != 1:
        print("usage: python -m gridlens.grid.dss_child PATH.dss", file=sys.stderr)
        return 2
    try:
        feeder = load_dss(argv[0])
        feeder.check_connected()
    except GridlensError as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 2
    except Exception as exc:  # OpenDSS's own errors
        print(f"OpenDSS could not load it: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    json.dump(feeder_to_dict(feeder), sys.stdout, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
