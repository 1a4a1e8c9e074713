"""Run one µPMU placement study in a child process: ``python -m gridlens.grid.place_child``.

Reads one JSON document on stdin: ``{"model": <feeder_to_dict>, "params": {"k", "fixed",
"estimator", "search", "scenarios"}}``. Writes JSON lines on stdout: ``{"progress": f}`` as
the search goes (at most every 0.3 s), then ``{"result": <SearchResult.to_dict(limit=20)>}``.
A study that cannot run prints one line on stderr and exits with code 2.

The server runs every placement job this way: the search drives power-grid-model (and Dask
threads) for seconds to minutes, and a crash, a runaway or the memory of one study must stay
in its own process. The child lowers its priority, limits its CPU time and address space
(``--cpu-s``, ``--max-bytes``) and asks the kernel to end it when its parent (``--parent``)
dies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from typing import Any

#: Defaults of the limits the child sets on itself: CPU seconds and address space (bytes).
CPU_S = 600
MAX_BYTES = 4 * 1024**3
#: Niceness added to the child's (the server's requests come first).
NICE = 10
#: Most characters of the stdin document (a feeder model and the parameters).
MAX_INPUT = 64 * 1024**2
_PR_SET_PDEATHSIG = 1


def _limit(cpu_s: int, max_bytes: int, parent: int | None) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    except (ImportError, ValueError, OSError):  # not on this platform: run unlimited
        pass
    with contextlib.suppress(AttributeError, OSError):
        os.nice(NICE)
    if parent is not None and sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent ended before prctl took effect
            sys.exit(3)


def run(model: dict[str, Any], params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """The study's result document; ``emit(doc)`` gets each progress line."""
    from gridlens.grid.estimation import Study
    from gridlens.grid.feeder import feeder_from_dict
    from gridlens.grid.placement import search

    f = feeder_from_dict(model)
    study = Study.build(f, int(params["scenarios"]), seed=0)
    last = [0.0]

    def tick(frac: float) -> None:
        now = time.monotonic()
        if now - last[0] > 0.3 or frac >= 1.0:
            last[0] = now
            emit({"progress": round(min(max(frac, 0.0), 0.99), 4)})

    res = search(
        study,
        int(params["k"]),
        estimator=str(params["estimator"]),
        fixed=[str(b) for b in params.get("fixed", [])],
        method=str(params["search"]),
        callback=tick,
    )
    doc = res.to_dict(limit=20)
    doc["bus_names"] = list(f.bus_names)
    clean: dict[str, Any] = _finite(doc)
    return clean


def _finite(v: Any) -> Any:
    """``v`` with every NaN or infinite float as None (JSON has no such numbers)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m gridlens.grid.place_child")
    ap.add_argument("--cpu-s", type=int, default=CPU_S)
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    ap.add_argument("--parent", type=int, default=None)
    args = ap.parse_args(argv)
    _limit(args.cpu_s, args.max_bytes, args.parent)
    from gridlens.errors import GridlensError

    out = sys.stdout

    def emit(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc, allow_nan=False) + "\n")
        out.flush()

    try:
        text = sys.stdin.read(MAX_INPUT + 1)
        if len(text) > MAX_INPUT:
            raise GridlensError(f"the study's input is over {MAX_INPUT // 2**20} MB")
        doc = json.loads(text)
        result = run(doc["model"], doc["params"], emit)
        emit({"result": result})
    except GridlensError as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 2
    except MemoryError:
        print(f"the study needs more than {args.max_bytes / 2**20:,.0f} MiB", file=sys.stderr)
        return 2
    except Exception as exc:  # the engines' own errors: the job's message
        print(f"{type(exc).__name__}: {exc}".splitlines()[0][:500], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
