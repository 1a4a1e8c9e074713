"""µPMU placement search: exhaustive or greedy, scored by TVE, scaled out with Dask.

Score of a placement (the seed's Φ): the mean over buses and scenarios of each bus's TVE
against the noise-free truth. ``max_tve_pct`` is the largest single-bus, single-scenario TVE
(for the analytic scorer: the largest predicted per-bus mean TVE).

Execution: placements are cut into chunks; each chunk is one batch for the estimator. Chunks run
on Dask — the local threaded scheduler by default (no start-up cost), a
``distributed.LocalCluster`` of ``workers`` processes, or a remote scheduler address
(``tcp://host:8786``). Progress goes to stderr.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import InputError, ParameterError, check_param
from gridlens.grid.analytic import AnalyticScorer
from gridlens.grid.estimation import Estimator, Study, make_estimator, tve

__all__ = ["PlacementScore", "SearchResult", "evaluate_placements", "search"]

_MAX_EXHAUSTIVE = 200_000


@dataclass(frozen=True)
class PlacementScore:
    buses: tuple[str, ...]
    mean_tve_pct: float
    max_tve_pct: float
    per_bus_tve_pct: tuple[float, ...] = field(repr=False)

    def to_dict(self, per_bus: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "buses": [_as_number(b) for b in self.buses],
            "mean_tve_pct": self.mean_tve_pct,
            "max_tve_pct": self.max_tve_pct,
        }
        if per_bus:
            d["per_bus_tve_pct"] = list(self.per_bus_tve_pct)
        return d


def _as_number(name: str) -> int | str:
    return int(name) if name.isdigit() else name


@dataclass
class SearchResult:
    placements: list[PlacementScore]  # best first
    estimator: str
    search: str
    elapsed_s: float
    evaluated: int
    bus_names: tuple[str, ...]

    @property
    def best(self) -> PlacementScore:
        return self.placements[0]

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        shown = self.placements if limit is None else self.placements[:limit]
        return {
            "placements": [p.to_dict() for p in shown],
            "best": self.best.to_dict(per_bus=True),
            "worst": self.placements[-1].to_dict(per_bus=True),
            "estimator": self.estimator,
            "search": self.search,
            "evaluated": self.evaluated,
            "elapsed_s": self.elapsed_s,
            "bus_names": [_as_number(b) for b in self.bus_names],
        }


Scorer = Estimator | AnalyticScorer


def _chunk_scores(
    study: Study, scorer: Scorer, chunk: Sequence[tuple[int, ...]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-bus mean TVE (P, n) and max TVE (P,) of a chunk of placements, as fractions."""
    if isinstance(scorer, AnalyticScorer):
        per = scorer.per_bus_tve(study, chunk)
        return per, per.max(axis=1)
    est = scorer.estimate(study, chunk)
    t = tve(est, study.truth[None])  # (P, S, n)
    return t.mean(axis=1), t.max(axis=(1, 2))


class _Runner:
    """Runs chunk jobs in-process, on Dask threads, a LocalCluster or a remote scheduler."""

    def __init__(
        self,
        workers: int | None,
        scheduler: str | None,
        progress: bool,
        label: str,
        callback: Callable[[float], None] | None = None,
    ) -> None:
        self.workers, self.scheduler, self.progress, self.label = (
            workers,
            scheduler,
            progress,
            label,
        )
        self.callback = callback
        self._client: Any = None
        self._cluster: Any = None

    def __enter__(self) -> _Runner:
        if self.scheduler or (self.workers and self.workers > 1):
            try:
                from distributed import Client, LocalCluster
            except ImportError as exc:  # pragma: no cover - dependency of gridlens
                raise ParameterError(f"dask.distributed is not installed: {exc}") from None
            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, timeout="3s")
                except OSError as exc:
                    raise InputError(
                        f"cannot reach the Dask scheduler {self.scheduler}: {exc}"
                    ) from None
            else:
                self._cluster = LocalCluster(
                    n_workers=int(self.workers or 1),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                )
                self._client = Client(self._cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def map(
        self,
        fn: Callable[[Study, Scorer, Sequence[tuple[int, ...]]], Any],
        study: Study,
        scorer: Scorer,
        chunks: list[list[tuple[int, ...]]],
    ) -> list[Any]:
        bar = _Progress(len(chunks), self.label, self.progress, self.callback)
        if self._client is not None:
            from distributed import as_completed

            st = self._client.scatter(study, broadcast=True)
            futs = [self._client.submit(fn, st, scorer, c, pure=False) for c in chunks]
            order = {f.key: k for k, f in enumerate(futs)}
            out: list[Any] = [None] * len(chunks)
            for fut in as_completed(futs):
                out[order[fut.key]] = fut.result()
                bar.step()
            bar.close()
            return out
        if len(chunks) == 1 or getattr(scorer, "engine", "") == "opendss":
            # OpenDSS is one engine per process, and crashes when threads take turns on it:
            # its chunks run one after another in this thread
            res = []
            for c in chunks:
                res.append(fn(study, scorer, c))
                bar.step()
            bar.close()
            return res
        from dask.base import compute
        from dask.delayed import delayed

        tasks = [delayed(_Tick(fn, bar))(study, scorer, c) for c in chunks]
        res = list(compute(*tasks, scheduler="threads", num_workers=2))
        bar.close()
        return res


class _Tick:
    def __init__(self, fn: Callable[..., Any], bar: _Progress) -> None:
        self.fn, self.bar = fn, bar

    def __call__(self, *args: Any) -> Any:
        out = self.fn(*args)
        self.bar.step()
        return out


class _Progress:
    """A tqdm bar on stderr when asked for (and when there is more than one step)."""

    def __init__(
        self,
        total: int,
        label: str,
        enabled: bool,
        callback: Callable[[float], None] | None = None,
    ) -> None:
        self._bar: Any = None
        self._total, self._done, self._callback = max(total, 1), 0, callback
        if enabled and total > 1:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, file=sys.stderr, leave=False)

    def step(self) -> None:
        self._done += 1
        if self._callback is not None:
            self._callback(self._done / self._total)
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def evaluate_placements(
    study: Study,
    scorer: Scorer,
    placements: Sequence[tuple[int, ...]],
    *,
    chunk: int = 64,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    label: str = "placements",
    callback: Callable[[float], None] | None = None,
) -> list[PlacementScore]:
    """Score ``placements`` (bus indices) with ``scorer``; returned in the input order.

    ``callback(fraction)`` is called as chunks finish (for a job's progress)."""
    places = [study.check_placement(p) for p in placements]
    chunks = [places[a : a + chunk] for a in range(0, len(places), chunk)]
    with _Runner(workers, scheduler, progress, label, callback) as run:
        parts = run.map(_chunk_scores, study, scorer, chunks)
    names = study.feeder.bus_names
    out: list[PlacementScore] = []
    for c, (per, mx) in zip(chunks, parts, strict=True):
        for p, pb, m in zip(c, per, mx, strict=True):
            out.append(
                PlacementScore(
                    tuple(names[b] for b in p),
                    float(pb.mean() * 100),
                    float(m * 100),
                    tuple(float(v * 100) for v in pb),
                )
            )
    return out


def _combinations(n_free: int, k: int) -> int:
    return math.comb(n_free, k) if 0 <= k <= n_free else 0


def search(
    study: Study,
    k: int,
    *,
    estimator: str | Scorer = "wls",
    fixed: Sequence[str | int] = (),
    method: str = "exhaustive",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    chunk: int | None = None,
    estimator_options: dict[str, Any] | None = None,
    callback: Callable[[float], None] | None = None,
) -> SearchResult:
    """Best placements of ``k`` µPMUs (``fixed`` buses always included), best first.

    ``method='exhaustive'`` scores every combination; ``'greedy'`` adds the best bus one at a
    time (its result lists the candidates of the last step).
    """
    f = study.feeder
    n = f.n_bus
    check_param(isinstance(k, int) and k >= 1, "pmus", "search", "an int >= 1", k)
    if k > n:
        raise InputError(f"--pmus {k} is larger than the feeder's {n} buses")
    fixed_idx = tuple(sorted({f.bus_index(b) for b in fixed}))
    if len(fixed_idx) > k:
        raise InputError(f"{len(fixed_idx)} fixed buses do not fit in {k} µPMUs")
    scorer: Scorer
    name: str
    if isinstance(estimator, str):
        name = estimator
        if estimator == "analytic":
            scorer = AnalyticScorer()
        else:
            opts = dict(estimator_options or {})
            if estimator != "wls":
                opts.setdefault("seed", study.seed)
            scorer = make_estimator(estimator, **opts)
    else:
        scorer, name = estimator, estimator.name
    free = [b for b in range(n) if b not in fixed_idx]
    heuristic = name in ("pso", "ga", "de")
    size = chunk or (8 if heuristic else max(1, 4096 // study.n_scenarios))
    t0 = time.perf_counter()
    if method == "exhaustive":
        total = _combinations(len(free), k - len(fixed_idx))
        if total > _MAX_EXHAUSTIVE:
            raise InputError(
                f"exhaustive search would score {total:,} placements on {n} buses; "
                "use --search greedy"
            )
        combos = [
            tuple(sorted(fixed_idx + c)) for c in itertools.combinations(free, k - len(fixed_idx))
        ]
        scores = evaluate_placements(
            study,
            scorer,
            combos,
            chunk=size,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            label=f"{name} exhaustive",
            callback=callback,
        )
        evaluated = len(combos)
    elif method == "greedy":
        scores, evaluated = _greedy(
            study, scorer, name, k, fixed_idx, free, size, workers, scheduler, progress, callback
        )
    else:
        raise ParameterError(f"unknown search {method!r}; choose exhaustive or greedy")
    scores.sort(key=lambda p: p.mean_tve_pct)
    return SearchResult(scores, name, method, time.perf_counter() - t0, evaluated, f.bus_names)


def _greedy(
    study: Study,
    scorer: Scorer,
    name: str,
    k: int,
    fixed: tuple[int, ...],
    free: list[int],
    size: int,
    workers: int | None,
    scheduler: str | None,
    progress: bool,
    callback: Callable[[float], None] | None = None,
) -> tuple[list[PlacementScore], int]:
    names = study.feeder.bus_names
    chosen = list(fixed)
    steps = max(1, k - len(chosen))

    def part(step: int) -> Callable[[float], None] | None:
        if callback is None:
            return None
        cb = callback
        return lambda frac: cb(min(1.0, (step + frac) / steps))

    evaluated = 0
    last: list[PlacementScore] = []
    if not chosen:  # the first µPMU: the one that alone scores best
        first = [(b,) for b in free]
        sc = evaluate_placements(
            study, scorer, first, chunk=size, workers=workers, scheduler=scheduler
        )
        evaluated += len(first)
        chosen = [first[int(np.argmin([s.mean_tve_pct for s in sc]))][0]]
        last = sc
    for step in range(max(0, k - len(chosen))):
        cand = [b for b in free if b not in chosen]
        if isinstance(scorer, AnalyticScorer):
            per = scorer.extend(study, tuple(sorted(chosen)), cand)
            last = [
                PlacementScore(
                    tuple(names[b] for b in sorted((*chosen, c))),
                    float(pb.mean() * 100),
                    float(pb.max() * 100),
                    tuple(float(v * 100) for v in pb),
                )
                for c, pb in zip(cand, per, strict=True)
            ]
        else:
            last = evaluate_placements(
                study,
                scorer,
                [tuple(sorted((*chosen, c))) for c in cand],
                chunk=size,
                workers=workers,
                scheduler=scheduler,
                progress=progress,
                label=f"{name} greedy step {step + 1}",
                callback=part(step),
            )
        evaluated += len(cand)
        chosen.append(cand[int(np.argmin([s.mean_tve_pct for s in last]))])
    if not last:  # k == len(fixed): score the fixed set itself
        last = evaluate_placements(study, scorer, [tuple(sorted(chosen))])
        evaluated += 1
    return last, evaluated
