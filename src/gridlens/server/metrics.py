"""Prometheus text-format metrics, summed over the worker processes of one server.

Each process counts in its own :class:`Metrics`. With ``gridlens serve --workers N`` every
process also writes a snapshot to ``Settings.metrics_dir`` (one JSON file per process,
every ``metrics_flush_s``), and ``/metrics`` sums the snapshots, so a scrape sees the whole
server whichever worker answers (at most ``metrics_flush_s`` old for the other workers).

Numbers that live in the database (the pull state of each camera that serves snapshots) are
not counted by processes: :func:`render_pull_state` renders them from one query at scrape
time, so they are not multiplied by the number of workers.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Snapshot = dict[str, Any]


class Metrics:
    """Counters, gauges and one latency histogram per route; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.hist: dict[str, list[float]] = {}
        self.hist_sum: dict[str, float] = defaultdict(float)
        self.hist_count: dict[str, int] = defaultdict(int)
        self.gauges: dict[str, float] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += amount

    def observe(self, route: str, seconds: float) -> None:
        with self._lock:
            h = self.hist.setdefault(route, [0.0] * len(_BUCKETS))
            for i, b in enumerate(_BUCKETS):
                if seconds <= b:
                    h[i] += 1
            self.hist_sum[route] += seconds
            self.hist_count[route] += 1

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    def snapshot(self) -> Snapshot:
        """This process's numbers as a JSON-ready dict (what :func:`render` sums)."""
        with self._lock:
            return {
                "counters": [
                    [n, [list(kv) for kv in lab], v] for (n, lab), v in self.counters.items()
                ],
                "gauges": dict(self.gauges),
                "hist": {
                    r: {"buckets": list(h), "sum": self.hist_sum[r], "count": self.hist_count[r]}
                    for r, h in self.hist.items()
                },
            }

    def render(self) -> str:
        """This process alone, in Prometheus text format."""
        return render([self.snapshot()])


def render(snapshots: Iterable[Snapshot]) -> str:
    """Prometheus text format of the sum of ``snapshots`` (counters, histograms and gauges
    are added up over processes)."""
    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    gauges: dict[str, float] = defaultdict(float)
    hist: dict[str, list[float]] = {}
    hsum: dict[str, float] = defaultdict(float)
    hcount: dict[str, int] = defaultdict(int)
    for snap in snapshots:
        for name, labels, v in snap["counters"]:
            counters[(name, tuple((str(k), str(x)) for k, x in labels))] += float(v)
        for name, v in snap["gauges"].items():
            gauges[name] += float(v)
        for route, h in snap["hist"].items():
            acc = hist.setdefault(route, [0.0] * len(_BUCKETS))
            for i, c in enumerate(h["buckets"]):
                acc[i] += float(c)
            hsum[route] += float(h["sum"])
            hcount[route] += int(h["count"])
    lines: list[str] = []
    seen: set[str] = set()
    for (name, labels), v in sorted(counters.items()):
        if name not in seen:
            lines.append(f"# TYPE {name} counter")
            seen.add(name)
        lab = ",".join(f'{k}="{_esc(val)}"' for k, val in labels)
        lines.append(f"{name}{{{lab}}} {v:g}" if lab else f"{name} {v:g}")
    for name, v in sorted(gauges.items()):
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name} {v:g}")
    if hist:
        lines.append("# TYPE gridlens_request_seconds histogram")
    for route, h in sorted(hist.items()):
        r = _esc(route)
        for b, c in zip(_BUCKETS, h, strict=True):
            lines.append(f'gridlens_request_seconds_bucket{{route="{r}",le="{b:g}"}} {c:g}')
        n = hcount[route]
        lines.append(f'gridlens_request_seconds_bucket{{route="{r}",le="+Inf"}} {n}')
        lines.append(f'gridlens_request_seconds_sum{{route="{r}"}} {hsum[route]:.6f}')
        lines.append(f'gridlens_request_seconds_count{{route="{r}"}} {n}')
    return "\n".join(lines) + "\n"


def render_pull_state(states: Iterable[tuple[Any, Any]]) -> str:
    """Prometheus text of the pulled cameras' state in the database, for the whole fleet
    (every server process and host sharing it), from (device, pull source) rows.

    ``gridlens_pull_devices`` (gauge): cameras the server fetches; per camera (labels
    ``device_id``, ``device``): ``gridlens_pull_device_failures`` (consecutive failed fetches
    now, gauge), ``gridlens_pull_device_failures_total`` and
    ``gridlens_pull_device_fetches_total`` (counters).
    """
    rows = list(states)
    lines = ["# TYPE gridlens_pull_devices gauge", f"gridlens_pull_devices {len(rows)}"]
    series = (
        ("gridlens_pull_device_failures", "gauge", "failures"),
        ("gridlens_pull_device_failures_total", "counter", "failures_total"),
        ("gridlens_pull_device_fetches_total", "counter", "fetches_total"),
    )
    for name, kind, attr in series:
        if rows:
            lines.append(f"# TYPE {name} {kind}")
        for dev, pull in rows:
            lab = f'device_id="{dev.id}",device="{_esc(dev.name)}"'
            lines.append(f"{name}{{{lab}}} {getattr(pull, attr)}")
    return "\n".join(lines) + "\n"


def write_snapshot(metrics: Metrics, folder: Path) -> None:
    """Replace this process's snapshot file in ``folder`` (atomically: write, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps(metrics.snapshot()))
    tmp.replace(folder / f"{os.getpid()}.json")


def read_snapshots(folder: Path) -> list[Snapshot]:
    """Every process's snapshot in ``folder``; an unreadable file is skipped."""
    out: list[Snapshot] = []
    for f in sorted(folder.glob("*.json")):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return out


def clear_snapshots(folder: Path) -> None:
    """Forget the snapshots of an earlier run (call before the workers start)."""
    for f in folder.glob("*.json"):
        f.unlink(missing_ok=True)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
