"""Consumption series in: files and arrays to regular, gap-filled :class:`Series`.

Every reader ends in :func:`regularize`, which puts the points on a regular time grid
and fills the slots that have no value, so the detectors see one clean array per series:

1. Timestamps (ISO 8601 with or without a zone -- aware ones are converted to UTC -- or
   epoch seconds) must strictly increase in file order; a step back is a
   :class:`~gridlens.errors.DataFormatError` naming the line, repeated timestamps are a
   :class:`DuplicateTimestampError` naming every repeating line unless
   ``duplicates="first"`` (keep the first) or ``"mean"`` (average them).  Nothing is
   sorted silently.  A CSV exported in local time reads with ``tz="Europe/Berlin"``: its
   zone-less timestamps are local, the hour the clock repeats in autumn is read in file
   order (first the summer-time pass, then the winter-time one) and the hour skipped in
   spring is no gap.
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
4. :attr:`Series.rows` keeps each source row -- its own timestamp text, value, line and
   grid slot -- so results can be written back one row per input row, in input order.

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
from zoneinfo import ZoneInfo

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
    "DUPLICATES",
    "DuplicateTimestampError",
    "Series",
    "SourceRows",
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

DUPLICATES = ("error", "first", "mean")
"""What the readers do with repeated timestamps (``duplicates=``)."""

Duplicates = Literal["error", "first", "mean"]


class DuplicateTimestampError(DataFormatError):
    """Timestamps repeat in a source read with ``duplicates="error"``.

    Attributes
    ----------
    repeats : list of (int, int)
        ``(line, first_line)`` of each repeating row (point numbers for arrays).
    detail : str
        The message without the advice, for front ends that word the options their way.
    """

    def __init__(self, detail: str, repeats: list[tuple[int, int]]) -> None:
        super().__init__(
            f"{detail}; pass duplicates='first' or 'mean' to keep the first or average "
            "them, or tz='ZONE' if the times are local and the clock went back"
        )
        self.detail = detail
        self.repeats = repeats


@dataclass(frozen=True, eq=False)
class SourceRows:
    """The rows a :class:`Series` was read from, to write results back row by row.

    Parameters
    ----------
    text : tuple of str
        Each row's own timestamp text (ISO 8601 of the time for arrays).
    value : ndarray of float64
        Each row's value; NaN where it was missing.
    line : ndarray of int64
        Line number in the file (point number from 1 for arrays).
    slot : ndarray of int64
        Index of the row's grid slot in the series.
    tz : str or None
        The zone zone-less timestamps were read in (``tz=``), None for UTC.
    """

    text: tuple[str, ...]
    value: FloatArray
    line: npt.NDArray[np.int64]
    slot: npt.NDArray[np.int64]
    tz: str | None = None

    def __len__(self) -> int:
        return len(self.text)

    def format_time(self, epoch_s: float) -> str:
        """A grid time in the rows' own style: epoch seconds, or ISO 8601 with the rows'
        separator, in ``tz`` with its offset (UTC with ``+00:00`` when the rows had zones).
        """
        first = self.text[0] if self.text else ""
        if _is_number(first):
            return f"{epoch_s:.0f}" if float(epoch_s).is_integer() else f"{epoch_s:g}"
        sep = "T" if len(first) > 10 and first[10] == "T" else " "
        if self.tz is not None:
            return datetime.fromtimestamp(epoch_s, ZoneInfo(self.tz)).isoformat(sep)
        if _has_zone(first):
            return datetime.fromtimestamp(epoch_s, UTC).isoformat(sep)
        return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None).isoformat(sep)


def _has_zone(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.strip()).tzinfo is not None
    except ValueError:
        return False


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
    rows : SourceRows or None
        The source rows and the slot each fell in (None after :meth:`head` or
        :meth:`resample`, whose slots are no longer the rows').
    """

    name: str
    times: npt.NDArray[np.datetime64]
    values: FloatArray
    labels: npt.NDArray[np.int8] | None
    step_s: int
    imputed: npt.NDArray[np.bool_]
    n_rows: int = field(default=0)
    rows: SourceRows | None = field(default=None)

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
            self,
            times=self.times[:n],
            values=self.values[:n],
            labels=lab,
            imputed=self.imputed[:n],
            rows=None,
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


def _check_order(rows: _Rows, t: FloatArray, where: str, duplicates: str) -> FloatArray:
    """Refuse steps back and (with ``duplicates="error"``) repeats; the weight of each row
    in its slot's mean (0 for the later repeats with ``duplicates="first"``)."""
    unit = "line" if rows.pos else "point"
    pos = rows.pos or list(range(1, t.size + 1))
    raw = rows.raw or [_iso(x) for x in t]
    _, first, inverse = np.unique(t, return_index=True, return_inverse=True)
    first_of = first[inverse]  # the row where each row's timestamp first appears
    repeat = first_of != np.arange(t.size)
    before = np.maximum.accumulate(t)
    back = np.zeros(t.size, dtype=bool)
    back[1:] = (t[1:] < before[:-1]) & ~repeat[1:]
    if back.any():
        i = int(back.argmax())
        j = int(np.flatnonzero(t[:i] > t[i])[0])
        hint = "; if the times are local and the clock went back, give their zone (tz)"
        raise DataFormatError(
            f"{where} {unit} {pos[i]}: timestamp {raw[i]} is earlier than {raw[j]} of {unit} "
            f"{pos[j]}; rows must be in time order (they are never sorted){hint}."
        )
    if repeat.any() and duplicates == "error":
        idx = np.flatnonzero(repeat)
        pairs = [(pos[i], pos[int(first_of[i])]) for i in idx]
        shown = ", ".join(
            f"{unit} {pos[i]} repeats {raw[i]} of {unit} {pos[int(first_of[i])]}" for i in idx[:5]
        )
        more = f" and {idx.size - 5} more" if idx.size > 5 else ""
        raise DuplicateTimestampError(
            f"{where} has {idx.size} repeated timestamp(s): {shown}{more}", pairs
        )
    return (~repeat if duplicates == "first" else np.ones(t.size, dtype=bool)).astype(np.float64)


def _build(
    rows: _Rows,
    name: str,
    where: str,
    step_s: int | None,
    k: int = 5,
    n_rows: int | None = None,
    duplicates: str = "error",
    tz: str | None = None,
) -> Series:
    """Check the order, bin onto the grid and impute: the core of :func:`regularize`."""
    t = np.asarray(rows.t, dtype=np.float64)
    if t.size < 2:
        raise InsufficientDataError(f"{where} has {t.size} point(s); at least 2 are needed.")
    check_param(
        duplicates in DUPLICATES, "duplicates", "read_csv", "'error', 'first' or 'mean'", duplicates
    )
    weight = _check_order(rows, t, where, duplicates)
    v = np.asarray(rows.v, dtype=np.float64)
    if np.isnan(v).all():
        raise DataFormatError(f"{where} has no numeric values.")
    step = _infer_step(np.unique(t)) if step_s is None else step_s
    t0 = math.floor(t[0] / step) * step
    slot = np.floor((t - t0) / step).astype(np.int64)
    n = int(slot.max()) + 1
    if n > _MAX_SLOTS:
        raise ParameterError(f"{where} spans {n} steps of {step} s; give a larger step_s.")
    if n < 2:
        raise InsufficientDataError(f"{where} fits in one step of {step} s; need at least 2.")
    ok = ~np.isnan(v) & (weight > 0)
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
    source = SourceRows(
        text=tuple(rows.raw) if rows.raw else tuple(_iso(x) for x in t),
        value=v,
        line=np.asarray(rows.pos or range(1, t.size + 1), dtype=np.int64),
        slot=slot,
        tz=tz,
    )
    return Series(
        name,
        times,
        filled,
        labels,
        step,
        np.isnan(mean),
        t.size if n_rows is None else n_rows,
        source,
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
    duplicates: Duplicates = "error",
    tz: str | None = None,
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
    duplicates : {"error", "first", "mean"}
        A repeated timestamp is a :class:`DuplicateTimestampError` naming the lines
        (default); ``"first"`` keeps the first row's value, ``"mean"`` averages them like
        several readings in one step (some NAB files repeat timestamps).  Either way every
        row stays in :attr:`Series.rows`.
    tz : str, optional
        IANA zone (``"Europe/Berlin"``) of timestamps written without an offset: local
        times of an export across clock changes.  A local time the autumn change repeats
        is read as summer time until the file steps back, then as winter time; a local time
        the spring change skips is an error.  Default: zone-less times are UTC.

    Returns
    -------
    Series
        With :attr:`Series.rows` (the rows' own timestamp texts and slots).

    Raises
    ------
    NotFoundError
        If the file does not exist.
    DataFormatError
        If the file is empty, lacks a column, has a short (truncated) or non-numeric line,
        a label other than 0/1, times out of order or repeated (see ``duplicates``), a
        local time that does not exist in ``tz``, or no numeric value at all.
    ParameterError
        If ``tz`` is not a known zone or ``duplicates`` not one of :data:`DUPLICATES`.
    InsufficientDataError
        If it has fewer than two points.
    """
    zone = _zone(tz, "read_csv")
    where, groups = _read_table(
        source, cols=("timestamp", "value", "label"), key=None, need_label=False
    )
    rows = groups.get("", _Rows())
    if zone is not None:
        rows.t = _localize(rows, zone, where)
    path = source if isinstance(source, str | os.PathLike) else getattr(source, "name", "series")
    default = Path(str(path)).stem
    return _build(rows, name or default, where, step_s, duplicates=duplicates, tz=tz)


def _zone(tz: str | None, owner: str) -> ZoneInfo | None:
    if tz is None:
        return None
    try:
        return ZoneInfo(tz)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        check_param(False, "tz", owner, "an IANA time zone such as 'Europe/Berlin'", tz)
        raise  # pragma: no cover - check_param raised


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _localize(rows: _Rows, zone: ZoneInfo, where: str) -> list[float]:
    """Epoch seconds of the rows with zone-less ISO times read as local times in ``zone``.

    An ambiguous local time (the hour an autumn change repeats) is the earlier instant
    unless that would not come after the previous row, then the later one; a local time
    that does not exist (the hour a spring change skips) is an error naming the line.
    """
    out: list[float] = []
    prev = -math.inf
    for t, raw, line in zip(rows.t, rows.raw, rows.pos, strict=True):
        naive = None if _is_number(raw) else datetime.fromisoformat(raw)
        if naive is None or naive.tzinfo is not None:  # epoch seconds or an offset: instants
            out.append(t)
            prev = max(prev, t)
            continue
        early = naive.replace(tzinfo=zone, fold=0).timestamp()
        late = naive.replace(tzinfo=zone, fold=1).timestamp()
        if datetime.fromtimestamp(min(early, late), zone).replace(tzinfo=None) != naive:
            raise DataFormatError(
                f"{where} line {line}: local time {raw} does not exist in {zone.key} "
                "(the clock skips it)."
            )
        x = min(early, late)
        if early != late and x <= prev:
            x = max(early, late)
        out.append(x)
        prev = max(prev, x)
    return out


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
    path: str | os.PathLike[str], *, duplicates: Duplicates = "error", tz: str | None = None
) -> Series:
    """A ``timestamp,value[,label]`` CSV or a Green Button XML file, told apart by content.

    ``duplicates`` and ``tz`` apply to CSV files (:func:`read_csv`); Green Button times
    are instants and do not repeat.

    Raises
    ------
    NotFoundError
        If the file does not exist.
    DataFormatError
        As :func:`read_csv` / :func:`read_greenbutton`.
    ParameterError
        As :func:`read_csv`.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no such file: {path}")
    with p.open("rb") as f:
        head = f.read(512).lstrip()
    if head.startswith(b"<"):
        return read_greenbutton(p, name=p.stem)
    return read_csv(p, name=p.stem, duplicates=duplicates, tz=tz)
