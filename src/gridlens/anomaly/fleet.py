"""Scoring many meters at once as a Dask job (in-process threads, a LocalCluster, or a
remote scheduler). Each series gets its own detector; results come back as summaries."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gridlens.anomaly.data import Series, load_file
from gridlens.errors import InputError

__all__ = ["score_files", "score_many"]


def _one(
    series: Series | str,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from gridlens.anomaly.run import detect

    if isinstance(series, str):
        series = load_file(series, **(read_options or {}))
    assert isinstance(series, Series)
    res = detect(series, model, **options, **params)
    return res.to_dict()


def score_many(
    series: Sequence[Series | str],
    model: str = "profile",
    *,
    params: dict[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    read_options: dict[str, Any] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Run :func:`gridlens.anomaly.run.detect` on every series as Dask tasks.

    Parameters
    ----------
    series : sequence of Series or file paths
        File paths are loaded on the worker (nothing large crosses the network).
    model : str
        Detector name; ``params`` go to its constructor, ``options`` to ``detect``.
    workers : int, optional
        Start a ``distributed.LocalCluster`` of this many single-threaded processes.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:8786``).
    progress : bool
        One line per finished series on stderr.
    read_options : dict, optional
        ``duplicates`` and ``tz`` for the files (:func:`gridlens.anomaly.data.load_file`).

    Returns
    -------
    list of dict
        :meth:`RunResult.to_dict` per series, in input order. A series that fails with a
        user error gives ``{"series": ..., "error": message}`` and the others go on.
    """
    params = dict(params or {})
    client: Any = None
    cluster: Any = None
    try:
        from distributed import Client, LocalCluster, as_completed

        if scheduler:
            try:
                client = Client(scheduler, timeout="5s")
            except OSError as exc:
                raise InputError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        else:
            cluster = LocalCluster(
                n_workers=max(1, int(workers or 2)),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            )
            client = Client(cluster)
        futs = [
            client.submit(
                _safe, s, model, params, options, read_options, pure=False, key=f"detect-{k}"
            )
            for k, s in enumerate(series)
        ]
        order = {f.key: k for k, f in enumerate(futs)}
        out: list[dict[str, Any]] = [{} for _ in futs]
        for done, fut in enumerate(as_completed(futs), 1):
            r = fut.result()
            out[order[fut.key]] = r
            if progress:
                what = r.get("error") or f"{len(r.get('events', []))} events"
                print(f"[{done}/{len(futs)}] {r.get('series')}: {what}", file=sys.stderr)
        return out
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _safe(
    series: Series | str,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        return _one(series, model, params, options, read_options)
    except InputError as exc:
        name = Path(series).stem if isinstance(series, str) else series.name
        return {"series": name, "error": str(exc)}


def score_files(
    files: Sequence[str], model: str, *, params: dict[str, Any], **kw: Any
) -> list[dict[str, Any]]:
    """:func:`score_many` on file paths (CSV or Green Button)."""
    return score_many(list(files), model, params=params, **kw)
