"""Consumption series in: files and arrays to regular, gap-filled :class:`Series`.

Every reader ends in :func:`regularize`, which puts the points on a regular time grid
and fills the slots that have no value, so the detectors see one clean array per series:

1. Timestamps (ISO 8601 with or without a zone -- aware ones are converted to UTC -- or
   epoch seconds) must strictly increase in file order; a step back or a repeat is a
   :class:`~gridlens.errors.DataFormatError` naming the line.  Nothing is sorted silently.
2. The step, unless given, is the most common positive difference between timestamps,
   which ignores gaps; jittered timestamps (readings at 00:00:07, 00:15:02, ...) are
   snapped to the nearest common step first.  Points are binned with
   ``floor((t - t0) / step)`` where ``t0`` is the first timestamp floored to the step;
   several points in one slot are averaged (labels: maximum).
3. Empty slots and NaN values are imputed as the seed does, with scikit-learn's
   ``KNNImputer`` [1]_: the series is cut into rows of one day (or of 24 samples when a
   day is not a whole number of 4-2000 steps), so a missing slot takes the mean of the
   same slot in the ``k`` most similar days that observed it.  A slot no day observed
   falls back to linear interpolation in time.  The ``imputed`` mask records them all.

The multi-series formats are those of the LEAD1.0 building set [2]_
(``building_id,timestamp,meter_reading,anomaly``) and of the AIOps challenge KPIs [3]_
(``timestamp,value,label,KPI ID``); writers of both let tests build files of those formats.

References
----------
.. [1] O. Troyanskaya et al., "Missing value estimation methods for DNA microarrays",
   Bioinformatics 17(6), 2001 (the k-nearest-neighbour imputation of ``KNNImputer``).
.. [2] M. Gulati and P. Arjunan, "LEAD1.0: a large-scale annotated dataset for energy
   anomaly detection in commercial buildings", ACM e-Energy 2022.
.. [3] H. Xu et al., "Unsupervised anomaly detection via variational auto-encoder for
   seasonal KPIs in web applications" (Donut), WWW 2018.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import numpy as np
import numpy.typing as npt
from sklearn.impute import KNNImputer

from gridlens.errors import (
    DataFormatError,
    InsufficientDataError,
    NotFoundError,
    ParameterError,
    check_param,
)
from gridlens.greenbutton import parse_greenbutton

__all__ = [
    "Series",
    "from_arrays",
    "load_file",
    "read_csv",
    "read_greenbutton",
    "read_kpi",
    "read_lead",
    "regularize",
    "write_kpi",
    "write_lead",
]

FloatArray = npt.NDArray[np.float64]
Source = str | os.PathLike[str] | IO[str]

#: Steps [s] that jittered timestamps are snapped to when inferring the step.
_SUBHOUR_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800)
NICE_STEPS_S = (*_SUBHOUR_S, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_SLOTS = 20_000_000
_MISSING = {"", "nan", "na", "null", "none"}
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, eq=False)
class Series:
    """A regular, gap-filled time series.

    Parameters
    ----------
    name : str
        Name of the series (file stem, building id, KPI ID ...).
    times : ndarray of datetime64[s]
        Start of each slot, UTC without zone, strictly increasing by ``step_s``.
    values : ndarray of float64
        Value per slot in the source's unit (e.g. [kWh] per interval); no NaN.
    labels : ndarray of int8 or None
        Anomaly label per slot (0/1), or None when the source had none.
    step_s : int
        Resolution. [s]
    imputed : ndarray of bool
        True where the value was filled by imputation.
    n_rows : int
        Data rows (points) read from the source.
    """

    name: str
    times: npt.NDArray[np.datetime64]
    values: FloatArray
    labels: npt.NDArray[np.int8] | None
    step_s: int
    imputed: npt.NDArray[np.bool_]
    n_rows: int = field(default=0)

    def __post_init__(self) -> None:
        n = len(self.times)
        sizes = [len(self.values), len(self.imputed)]
        sizes += [] if self.labels is None else [len(self.labels)]
        check_param(all(s == n for s in sizes), "values", "Series", f"{n} long", sizes)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def n_imputed(self) -> int:
        """Number of imputed slots."""
        return int(self.imputed.sum())

    @property
    def epoch_s(self) -> FloatArray:
        """Slot start times as seconds since 1970-01-01 UTC. [s]"""
        return self.times.astype("datetime64[s]").astype(np.int64).astype(np.float64)

    def head(self, n: int) -> Series:
        """The first ``n`` slots (``n_rows`` is kept)."""
        lab = None if self.labels is None else self.labels[:n]
        return replace(
            self, times=self.times[:n], values=self.values[:n], labels=lab, imputed=self.imputed[:n]
        )

    def resample(self, step_s: int, *, how: Literal["mean", "sum"] = "mean") -> Series:
        """Aggregate to a coarser step.

        Buckets are aligned to multiples of ``step_s`` since the epoch, so the first and
        last bucket may be partial (their mean or sum covers the slots present).

        Parameters
        ----------
        step_s : int
            New resolution, a whole multiple of :attr:`step_s`. [s]
        how : {"mean", "sum"}
            ``"mean"`` for power-like values [W], ``"sum"`` for energy per interval [kWh].

        Returns
        -------
        Series
            Labels are the maximum over each bucket, ``imputed`` is True where any slot was.

        Raises
        ------
        ParameterError
            If ``step_s`` is not a positive multiple of the current step, or ``how`` is unknown.
        """
        owner, expected = "Series.resample", f"a positive multiple of {self.step_s} (s)"
        ok = isinstance(step_s, int) and step_s > 0 and step_s % self.step_s == 0
        check_param(ok, "step_s", owner, expected, step_s)
        check_param(how in ("mean", "sum"), "how", owner, "'mean' or 'sum'", how)
        t = self.epoch_s.astype(np.int64)
        bucket = t // step_s
        starts, idx, counts = np.unique(bucket, return_index=True, return_counts=True)
        sums = np.add.reduceat(self.values, idx)
        values = sums if how == "sum" else sums / counts
        labels = None if self.labels is None else np.maximum.reduceat(self.labels, idx)
        imputed = np.logical_or.reduceat(self.imputed, idx)
        times = (starts * step_s).astype("datetime64[s]")
        return Series(self.name, times, values, labels, step_s, imputed, self.n_rows)


@dataclass
class _Rows:
    """Points of one series before regularisation.

    ``pos`` (line numbers) and ``raw`` (time texts) are empty for arrays: messages then
    name the point number and the ISO time.
    """

    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)
    lab: list[int] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)


def _iso(t_s: float) -> str:
    return str(np.datetime64(round(t_s * 1e6), "us")).removesuffix(".000000")


def _epoch_of(x: object) -> float:
    """Seconds since the epoch of a datetime (aware: converted to UTC) or a number."""
    if isinstance(x, datetime):
        if x.tzinfo is not None:
            x = x.astimezone(UTC).replace(tzinfo=None)
        return (x - _EPOCH).total_seconds()
    if isinstance(x, str):
        return _parse_time(x)
    return float(x)  # type: ignore[arg-type]


def _parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 string or a number; NaN if it is neither."""
    s = text.strip()
    try:
        x = float(s)
    except ValueError:
        try:
            return _epoch_of(datetime.fromisoformat(s))
        except ValueError:
            return math.nan
    return x if math.isfinite(x) else math.nan


def _infer_step(t: FloatArray) -> int:
    """Most common positive difference [s]; jittered differences snap to NICE_STEPS_S."""
    d = np.diff(t)
    d = d[d > 0]
    vals, counts = np.unique(np.round(d), return_counts=True)
    if 2 * counts.max() >= d.size:  # regular, possibly with gaps
        return max(1, int(vals[np.argmax(counts)]))
    nice = np.asarray(NICE_STEPS_S, dtype=np.float64)
    snapped = nice[np.abs(np.log(d[:, None] / nice[None, :])).argmin(axis=1)]
    vals, counts = np.unique(snapped, return_counts=True)
    return int(vals[np.argmax(counts)])


def _impute(v: FloatArray, step_s: int, k: int) -> FloatArray:
    """Fill NaN by KNN over seasonal rows, then linear interpolation for what is left."""
    miss = np.isnan(v)
    out = v.copy()
    if not miss.any():
        return out
    n = v.size
    per_day, rem = divmod(86400, step_s)
    period = per_day if rem == 0 and 4 <= per_day <= 2000 else 24
    n_per = -(-n // period)
    rest = miss.copy()
    if n_per >= 2:
        flat = np.full(n_per * period, np.nan)
        flat[:n] = v
        grid = flat.reshape(n_per, period)
        filled = grid.copy()
        full, width = divmod(n, period)
        # full rows, then the partial last row on its own columns (so its padding costs nothing)
        for rows, cols in ((slice(0, full), period), (slice(full, full + 1), width)):
            need = np.isnan(grid[rows, :cols]).any(axis=1)
            if cols and need.any():
                imputer = KNNImputer(n_neighbors=k, keep_empty_features=True)
                imputer.fit(grid[:, :cols])
                filled[rows, :cols][need] = imputer.transform(grid[rows, :cols][need])
        by_knn = miss & ~np.isnan(grid).all(axis=0)[np.arange(n) % period]
        out[by_knn] = filled.reshape(-1)[:n][by_knn]
        rest &= ~by_knn
    if rest.any():
        idx = np.arange(n, dtype=np.float64)
        out[rest] = np.interp(idx[rest], idx[~miss], v[~miss])
    return out


def _build(
    rows: _Rows,
    name: str,
    where: str,
    step_s: int | None,
    k: int = 5,
    n_rows: int | None = None,
    duplicates: str = "error",
) -> Series:
    """Check the order, bin onto the grid and impute: the core of :func:`regularize`."""
    t = np.asarray(rows.t, dtype=np.float64)
    unit = "line" if rows.pos else "point"
    if t.size < 2:
        raise InsufficientDataError(f"{where} has {t.size} point(s); at least 2 are needed.")
    check_param(
        duplicates in ("error", "mean"), "duplicates", "read_csv", "'error' or 'mean'", duplicates
    )
    gaps = np.diff(t)
    bad = np.flatnonzero(gaps < 0 if duplicates == "mean" else gaps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        pos = rows.pos or [i, i + 1]
        raw = rows.raw or [_iso(t[i - 1]), _iso(t[i])]
        a, b = (i - 1, i) if rows.pos else (0, 1)
        how = "repeats" if t[i] == t[i - 1] else "is earlier than"
        raise DataFormatError(
            f"{where} {unit} {pos[b]}: timestamp {raw[b]} {how} {raw[a]} of {unit} {pos[a]}; "
            "rows must be in time order (they are never sorted)."
        )
    v = np.asarray(rows.v, dtype=np.float64)
    if np.isnan(v).all():
        raise DataFormatError(f"{where} has no numeric values.")
    step = _infer_step(t) if step_s is None else step_s
    t0 = math.floor(t[0] / step) * step
    slot = np.floor((t - t0) / step).astype(np.int64)
    n = int(slot[-1]) + 1
    if n > _MAX_SLOTS:
        raise ParameterError(f"{where} spans {n} steps of {step} s; give a larger step_s.")
    if n < 2:
        raise InsufficientDataError(f"{where} fits in one step of {step} s; need at least 2.")
    ok = ~np.isnan(v)
    total = np.bincount(slot[ok], weights=v[ok], minlength=n)
    count = np.bincount(slot[ok], minlength=n)
    mean = np.full(n, np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    labels = None
    if rows.lab:
        labels = np.zeros(n, dtype=np.int8)
        np.maximum.at(labels, slot, np.asarray(rows.lab, dtype=np.int8))
    times = (t0 + step * np.arange(n, dtype=np.int64)).astype("datetime64[s]")
    filled = _impute(mean, step, k)
    return Series(
        name, times, filled, labels, step, np.isnan(mean), t.size if n_rows is None else n_rows
    )


def regularize(
    times: npt.ArrayLike | Sequence[datetime],
    values: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    name: str = "series",
    step_s: int | None = None,
    n_rows: int | None = None,
    k_neighbors: int = 5,
) -> Series:
    """Put points on a regular grid and impute the gaps (rules in the module docstring).

    Parameters
    ----------
    times : array-like
        datetime64 values, datetimes (aware ones are converted to UTC), ISO 8601 strings or
        epoch seconds [s]; strictly increasing.
    values : array-like of float
        One value per time; NaN marks an unknown value, which is imputed.
    labels : array-like of {0, 1}, optional
        Anomaly label per time.
    name : str
        Name of the series, used in messages.
    step_s : int, optional
        Grid step [s]; inferred from the timestamps when None.
    n_rows : int, optional
        Rows read from the source (default: the number of points).
    k_neighbors : int
        Number of days (seasonal rows) a missing slot is averaged over.

    Returns
    -------
    Series

    Raises
    ------
    DataFormatError
        If the times do not strictly increase or are invalid, all values are NaN, a value
        is infinite or a label is not 0/1.
    InsufficientDataError
        If there are fewer than two points (or grid steps).
    ParameterError
        If an option is out of range or the lengths differ.
    """
    owner = "regularize"
    ok = step_s is None or (isinstance(step_s, int) and step_s > 0)
    check_param(ok, "step_s", owner, "None or a positive int (s)", step_s)
    ok = isinstance(k_neighbors, int) and k_neighbors > 0
    check_param(ok, "k_neighbors", owner, "a positive int", k_neighbors)
    tt = np.asarray(times).ravel()
    if tt.dtype.kind == "M":
        tf = tt.astype("datetime64[us]").astype(np.int64) / 1e6
    elif tt.dtype.kind in "OUS":
        tf = np.array([_epoch_of(x) for x in tt.tolist()], dtype=np.float64)
    else:
        tf = tt.astype(np.float64)
    v = np.asarray(values, dtype=np.float64).ravel()
    lab = None if labels is None else np.asarray(labels, dtype=np.float64).ravel()
    sizes = [tf.size, v.size] + ([] if lab is None else [lab.size])
    check_param(len(set(sizes)) == 1, "values", owner, "as long as times", sizes)
    for bad, what in ((~np.isfinite(tf), "has no valid time"), (np.isinf(v), "is infinite")):
        if bad.any():
            raise DataFormatError(f"{name} point {int(bad.argmax()) + 1} {what}.")
    if lab is not None and not np.isin(lab, (0, 1)).all():
        i = int(np.isin(lab, (0, 1)).argmin())
        raise DataFormatError(f"{name} point {i + 1}: label {lab[i]:g} is not 0 or 1.")
    rows = _Rows(tf.tolist(), v.tolist(), [] if lab is None else lab.astype(int).tolist())
    return _build(rows, name, name, step_s, k_neighbors, n_rows)


def from_arrays(
    epoch_s: npt.ArrayLike,
    values: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    name: str = "series",
    step_s: int | None = None,
) -> Series:
    """A :class:`Series` from epoch seconds and values, e.g. hourly consumption buckets.

    Parameters
    ----------
    epoch_s : array-like of float
        Bucket start times, seconds since 1970-01-01 UTC. [s]
    values : array-like of float
        Value per bucket (e.g. [kWh]); NaN marks an unknown bucket, which is imputed.
    labels : array-like of {0, 1}, optional
        Anomaly label per bucket.
    name : str
        Name of the series.
    step_s : int, optional
        Bucket length [s]; inferred when None.

    Returns
    -------
    Series
    """
    t = np.asarray(epoch_s, dtype=np.float64)
    return regularize(t, values, labels, name=name, step_s=step_s)


# --------------------------------------------------------------------------- files


@contextmanager
def _opened(source: Source, mode: str = "r") -> Iterator[tuple[IO[str], str]]:
    """A text handle on ``source`` and its name for messages."""
    if not isinstance(source, str | os.PathLike):
        yield source, str(getattr(source, "name", "the input"))
        return
    path = Path(source)
    try:
        handle = path.open(mode, newline="", encoding="utf-8-sig" if mode == "r" else "utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"File not found: {path}") from None
    except IsADirectoryError:
        raise ParameterError(f"{path} is a directory, not a CSV file.") from None
    with handle:
        yield handle, path.name


def _number(text: str, where: str, what: str) -> float:
    s = text.strip()
    if s.lower() in _MISSING:
        return math.nan
    try:
        x = float(s)
    except ValueError:
        x = math.inf
    if math.isinf(x):
        raise DataFormatError(f"{where}: {what} {s[:40]!r} is not a finite number.")
    return x


def _read_table(
    source: Source, *, cols: tuple[str, str, str], key: str | None, need_label: bool
) -> tuple[str, dict[str, _Rows]]:
    """Rows grouped by the ``key`` column; ``cols`` = time, value and label column names."""
    with _opened(source) as (handle, where):
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not header:
                raise DataFormatError(f"{where} is empty (no header line).")
            names = [h.strip().lower() for h in header]
            need = [cols[0], cols[1], *([cols[2]] if need_label else []), *([key] if key else [])]
            missing = [c for c in need if c.lower() not in names]
            if missing:
                raise DataFormatError(
                    f"{where} has no {', '.join(missing)} column: its header is "
                    f"{','.join(header)!r}, expected {','.join(need)!r}."
                )
            it, iv = names.index(cols[0]), names.index(cols[1])
            il = names.index(cols[2]) if cols[2] in names else None
            ik = names.index(key.lower()) if key else None
            groups: dict[str, _Rows] = {}
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                at = f"{where} line {reader.line_num}"
                if len(row) != len(header):
                    hint = " (truncated?)" if len(row) < len(header) else ""
                    raise DataFormatError(
                        f"{at} has {len(row)} fields, the header {len(header)}{hint}."
                    )
                rows = groups.setdefault("" if ik is None else row[ik].strip(), _Rows())
                t = _parse_time(row[it])
                if math.isnan(t):
                    raise DataFormatError(f"{at}: {row[it].strip()[:40]!r} is not a timestamp.")
                rows.t.append(t)
                rows.raw.append(row[it].strip())
                rows.v.append(_number(row[iv], at, cols[1]))
                rows.pos.append(reader.line_num)
                if il is not None:
                    lab = _number(row[il], at, cols[2])
                    if lab not in (0.0, 1.0):
                        raise DataFormatError(f"{at}: {cols[2]} {row[il]!r} is not 0 or 1.")
                    rows.lab.append(int(lab))
        except csv.Error as err:
            raise DataFormatError(f"{where} line {reader.line_num}: {err}.") from None
    return where, groups


def read_csv(
    source: Source,
    *,
    name: str | None = None,
    step_s: int | None = None,
    duplicates: Literal["error", "mean"] = "error",
) -> Series:
    """Read a ``timestamp,value[,label]`` CSV file (NAB, KPI and UCR-derived files).

    Parameters
    ----------
    source : str, path-like or text file
        The file.  Timestamps are ISO 8601 or epoch seconds [s]; an empty value or ``NaN``
        is a missing value (imputed); other columns are ignored.
    name : str, optional
        Name of the series (default: the file stem, or ``"series"``).
    step_s : int, optional
        Grid step [s]; inferred when None.
    duplicates : {"error", "mean"}
        A repeated timestamp is an error (default), or, with ``"mean"``, its values are
        averaged like several readings in one step (some NAB files repeat timestamps).

    Returns
    -------
    Series

    Raises
    ------
    NotFoundError
        If the file does not exist.
    DataFormatError
        If the file is empty, lacks a column, has a short (truncated) or non-numeric line,
        a label other than 0/1, times out of order, or no numeric value at all.
    InsufficientDataError
        If it has fewer than two points.
    """
    where, groups = _read_table(
        source, cols=("timestamp", "value", "label"), key=None, need_label=False
    )
    rows = groups.get("", _Rows())
    path = source if isinstance(source, str | os.PathLike) else getattr(source, "name", "series")
    default = Path(str(path)).stem
    return _build(rows, name or default, where, step_s, duplicates=duplicates)


def _read_many(source: Source, cols: tuple[str, str, str], key: str) -> dict[str, Series]:
    where, groups = _read_table(source, cols=cols, key=key, need_label=True)
    if not groups:
        raise InsufficientDataError(f"{where} has no data rows.")
    return {k: _build(rows, k, f"{where} ({key} {k})", None) for k, rows in groups.items()}


def read_lead(source: Source) -> dict[str, Series]:
    """Read a LEAD1.0 file [2]_: ``building_id,timestamp,meter_reading,anomaly``.

    Parameters
    ----------
    source : str, path-like or text file
        The file; hourly meter readings [kWh], an empty ``meter_reading`` is missing.

    Returns
    -------
    dict of str to Series
        One series per building id (in file order), ``labels`` = ``anomaly``.

    Raises
    ------
    DataFormatError, InsufficientDataError, NotFoundError
        As :func:`read_csv`, per building.
    """
    return _read_many(source, ("timestamp", "meter_reading", "anomaly"), "building_id")


def read_kpi(source: Source) -> dict[str, Series]:
    """Read an AIOps KPI file [3]_: ``timestamp,value,label,KPI ID``.

    Parameters
    ----------
    source : str, path-like or text file
        The file; timestamps in epoch seconds [s], missing points are absent rows.

    Returns
    -------
    dict of str to Series
        One series per KPI ID (in file order).

    Raises
    ------
    DataFormatError, InsufficientDataError, NotFoundError
        As :func:`read_csv`, per KPI.
    """
    return _read_many(source, ("timestamp", "value", "label"), "KPI ID")


def read_greenbutton(
    source: bytes | str | os.PathLike[str], *, name: str | None = None, which: int = 0
) -> Series:
    """Read one channel of a Green Button file as energy per interval.

    Parameters
    ----------
    source : bytes, str or path-like
        As :func:`gridlens.greenbutton.parse_greenbutton`.
    name : str, optional
        Name of the series (default: the channel title).
    which : int
        Index of the MeterReading (channel) in the file.

    Returns
    -------
    Series
        Energy per interval [kWh], ``times`` = interval start, ``step_s`` = the most common
        interval length; no labels.

    Raises
    ------
    ParameterError
        If ``which`` is out of range or the channel is not in an energy unit.
    DataFormatError, NotFoundError
        As :func:`~gridlens.greenbutton.parse_greenbutton`.
    """
    channels = parse_greenbutton(source)
    check_param(
        isinstance(which, int) and 0 <= which < len(channels),
        "which",
        "read_greenbutton",
        f"an int in [0, {len(channels) - 1}]",
        which,
    )
    usage = channels[which]
    kwh = [v for _, v in usage.to_kwh()]
    if len(kwh) < 2:
        raise InsufficientDataError(f"Green Button channel {which} has {len(kwh)} interval(s).")
    durations, counts = np.unique([iv.duration_s for iv in usage.intervals], return_counts=True)
    t = [_epoch_of(iv.start) for iv in usage.intervals]
    return regularize(
        t, kwh, name=name or usage.title or "greenbutton", step_s=int(durations[np.argmax(counts)])
    )


def _write(path: Source, header: str, lines: Iterator[str]) -> None:
    with _opened(path, "w") as (handle, _):
        handle.write(header + "\n")
        handle.writelines(line + "\n" for line in lines)


def write_lead(path: Source, series: Mapping[str, Series]) -> None:
    """Write series as a LEAD1.0 file; imputed points get an empty ``meter_reading``.

    Parameters
    ----------
    path : str, path-like or text file
        Destination.
    series : mapping of str to Series
        Building id to hourly series; missing labels are written as 0.
    """

    def lines() -> Iterator[str]:
        for key, s in series.items():
            labels = np.zeros(len(s), np.int8) if s.labels is None else s.labels
            for t, v, lab, imp in zip(s.times, s.values, labels, s.imputed, strict=True):
                stamp = str(t.astype("datetime64[s]")).replace("T", " ")
                yield f"{key},{stamp},{'' if imp else repr(float(v))},{int(lab)}"

    _write(path, "building_id,timestamp,meter_reading,anomaly", lines())


def write_kpi(path: Source, series: Mapping[str, Series]) -> None:
    """Write series as an AIOps KPI file; imputed points are left out, as in the originals.

    Parameters
    ----------
    path : str, path-like or text file
        Destination.
    series : mapping of str to Series
        KPI ID to series; missing labels are written as 0.
    """

    def lines() -> Iterator[str]:
        for key, s in series.items():
            labels = np.zeros(len(s), np.int8) if s.labels is None else s.labels
            keep = ~s.imputed
            for t, v, lab in zip(s.epoch_s[keep], s.values[keep], labels[keep], strict=True):
                yield f"{int(t)},{float(v)!r},{int(lab)},{key}"

    _write(path, "timestamp,value,label,KPI ID", lines())


def load_file(
    path: str | os.PathLike[str], *, duplicates: Literal["error", "mean"] = "error"
) -> Series:
    """A ``timestamp,value[,label]`` CSV or a Green Button XML file, told apart by content.

    Raises
    ------
    NotFoundError
        If the file does not exist.
    DataFormatError
        As :func:`read_csv` / :func:`read_greenbutton`.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no such file: {path}")
    with p.open("rb") as f:
        head = f.read(512).lstrip()
    if head.startswith(b"<"):
        return read_greenbutton(p, name=p.stem)
    return read_csv(p, name=p.stem, duplicates=duplicates)
