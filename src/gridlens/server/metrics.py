"""Prometheus text-format metrics, per process (scrape each worker, or sum them)."""

from __future__ import annotations

import threading
from collections import defaultdict

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters and one latency histogram per route; thread-safe."""

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

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            seen: set[str] = set()
            for (name, labels), v in sorted(self.counters.items()):
                if name not in seen:
                    lines.append(f"# TYPE {name} counter")
                    seen.add(name)
                lab = ",".join(f'{k}="{_esc(val)}"' for k, val in labels)
                lines.append(f"{name}{{{lab}}} {v:g}" if lab else f"{name} {v:g}")
            for name, v in sorted(self.gauges.items()):
                lines.append(f"# TYPE {name} gauge")
                lines.append(f"{name} {v:g}")
            if self.hist:
                lines.append("# TYPE gridlens_request_seconds histogram")
            for route, h in sorted(self.hist.items()):
                r = _esc(route)
                for b, c in zip(_BUCKETS, h, strict=True):
                    lines.append(f'gridlens_request_seconds_bucket{{route="{r}",le="{b:g}"}} {c:g}')
                n = self.hist_count[route]
                lines.append(f'gridlens_request_seconds_bucket{{route="{r}",le="+Inf"}} {n}')
                lines.append(
                    f'gridlens_request_seconds_sum{{route="{r}"}} {self.hist_sum[route]:.6f}'
                )
                lines.append(f'gridlens_request_seconds_count{{route="{r}"}} {n}')
        return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
