"""Queries whose cost follows the data asked for, not the data stored: readings in pages
(for streamed answers), a counter window, and consumption with a bounded number of buckets.

Every function takes a :class:`~gridlens.store.repo.Store` and reads through its sessions;
none keeps more than one page of rows in memory at a time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, and_, func, or_, select

from gridlens.errors import ParameterError
from gridlens.store.models import Reading
from gridlens.store.series import consumption
from gridlens.store.timeutil import iso

if TYPE_CHECKING:
    from gridlens.store.repo import Store

__all__ = [
    "MAX_BUCKETS",
    "PAGE_ROWS",
    "bucket_count",
    "consumption_window",
    "counter_arrays",
    "counter_span",
    "counter_thinned",
    "counter_window",
    "iter_readings",
    "readings_csv_chunks",
    "readings_json_chunks",
]

F64 = npt.NDArray[np.float64]

#: Most buckets one consumption answer may hold (a leap year of hours is 8,784).
MAX_BUCKETS = 10_000
#: Rows read per query when paging through readings.
PAGE_ROWS = 2_000


def iter_readings(
    store: Store,
    device_id: int,
    *,
    since: float | None = None,
    until: float | None = None,
    status: str | None = None,
    limit: int | None = None,
    page: int = PAGE_ROWS,
    columns: tuple[Any, ...] | None = None,
) -> Iterator[Sequence[Any]]:
    """The device's readings oldest first (``since`` inclusive, ``until`` exclusive), in
    pages of at most ``page`` rows, each page one short query (keyset on time and id):
    :class:`Reading` objects, or rows of ``columns`` (which must include ``captured_at``
    and ``id``)."""
    after: tuple[float, int] | None = None
    left = limit
    while left is None or left > 0:
        n = page if left is None else min(page, left)
        q: Select[Any] = select(Reading) if columns is None else select(*columns)
        q = q.where(Reading.device_id == device_id)
        if since is not None:
            q = q.where(Reading.captured_at >= since)
        if until is not None:
            q = q.where(Reading.captured_at < until)
        if status is not None:
            q = q.where(Reading.status == status)
        if after is not None:
            t, rid = after
            q = q.where(  # the index range first, then the tie on the time
                Reading.captured_at >= t,
                or_(Reading.captured_at > t, and_(Reading.captured_at == t, Reading.id > rid)),
            )
        q = q.order_by(Reading.captured_at, Reading.id).limit(n)
        with store.session() as s:
            rows = s.scalars(q).all() if columns is None else s.execute(q).all()
        if rows:
            yield rows
        if len(rows) < n:
            return
        after = (rows[-1].captured_at, rows[-1].id)
        if left is not None:
            left -= len(rows)


def readings_json_chunks(
    store: Store,
    device_id: int,
    unit: str,
    **query: object,
) -> Iterator[bytes]:
    """A JSON array of :func:`~gridlens.store.repo.reading_dict` documents, a page at a
    time (``query``: the keyword arguments of :func:`iter_readings`)."""
    from gridlens.store.repo import reading_dict

    yield b"["
    first = True
    for rows in iter_readings(store, device_id, **query):  # type: ignore[arg-type]
        text = ",".join(json.dumps(reading_dict(r, unit), allow_nan=False) for r in rows)
        yield (text if first else "," + text).encode()
        first = False
    yield b"]"


def readings_csv_chunks(
    store: Store,
    device_id: int,
    unit: str,
    *,
    since: float | None = None,
    until: float | None = None,
) -> Iterator[bytes]:
    """Every reading as CSV (``captured_at,value_<unit>,status,raw,reason``), a page at a
    time."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["captured_at", f"value_{unit}", "status", "raw", "reason"])
    columns: tuple[Any, ...] = (Reading.captured_at, Reading.id, Reading.value, Reading.status)
    columns += (Reading.raw, Reading.reason)
    for rows in iter_readings(store, device_id, since=since, until=until, columns=columns):
        for r in rows:
            value = "" if r.value is None else repr(r.value)
            w.writerow([iso(r.captured_at), value, r.status, r.raw or "", r.reason or ""])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


def counter_arrays(store: Store, query: Select[float, float | None]) -> tuple[F64, F64]:
    """Two float arrays from a query of (time, value) rows, read :data:`PAGE_ROWS` at a
    time: 16 bytes a row, never a list of row objects (numpy would take 50 us a row
    converting those)."""
    parts: list[F64] = []
    with store.session() as s:
        result = s.execute(query.execution_options(yield_per=PAGE_ROWS))
        for page in result.partitions():
            flat = np.fromiter(chain.from_iterable(page), dtype=float, count=2 * len(page))
            parts.append(flat)
    if not parts:
        return np.empty(0), np.empty(0)
    a = np.concatenate(parts).reshape(-1, 2)
    return a[:, 0].copy(), a[:, 1].copy()


def counter_window(
    store: Store, device_id: int, lo: float, hi: float | None = None
) -> tuple[F64, F64]:
    """Accepted counter values with ``lo <= t <= hi`` (``hi`` None: no end), plus the last
    one before ``lo`` and the first after ``hi``, oldest first: what interpolating the
    counter anywhere in ``[lo, hi]`` needs, and no more."""
    base = select(Reading.captured_at, Reading.value).where(
        Reading.device_id == device_id, Reading.status == "ok", Reading.value.is_not(None)
    )
    before = base.where(Reading.captured_at < lo).order_by(Reading.captured_at.desc()).limit(1)
    inside = base.where(Reading.captured_at >= lo)
    if hi is not None:
        inside = inside.where(Reading.captured_at <= hi)
    parts = [
        counter_arrays(store, before),
        counter_arrays(store, inside.order_by(Reading.captured_at)),
    ]
    if hi is not None:
        after = base.where(Reading.captured_at > hi).order_by(Reading.captured_at).limit(1)
        parts.append(counter_arrays(store, after))
    return np.concatenate([t for t, _ in parts]), np.concatenate([v for _, v in parts])


def counter_span(store: Store, device_id: int) -> tuple[float, float] | None:
    """Times of the first and last accepted counter value (None: fewer than one)."""
    with store.session() as s:
        lo, hi = s.execute(
            select(func.min(Reading.captured_at), func.max(Reading.captured_at)).where(
                Reading.device_id == device_id, Reading.status == "ok"
            )
        ).one()
    return None if lo is None or hi is None else (float(lo), float(hi))


def counter_thinned(
    store: Store, device_id: int, since: float, points: int = 2000
) -> tuple[F64, F64]:
    """At most about ``points`` accepted counter values from ``since`` on, evenly spaced in
    index (every k-th and the last), read a page at a time and thinned as they come."""
    q = select(Reading.captured_at, Reading.value).where(
        Reading.device_id == device_id,
        Reading.status == "ok",
        Reading.value.is_not(None),
        Reading.captured_at >= since,
    )
    with store.session() as s:
        n = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
    step = max(1, math.ceil(n / points))
    kept_t: list[float] = []
    kept_v: list[float] = []
    last: tuple[float, float] | None = None
    i = 0
    with store.session() as s:
        result = s.execute(q.order_by(Reading.captured_at).execution_options(yield_per=PAGE_ROWS))
        for page in result.partitions():
            for t, v in page:
                value = math.nan if v is None else float(v)  # never: the query wants values
                if i % step == 0:
                    kept_t.append(float(t))
                    kept_v.append(value)
                last = (float(t), value)
                i += 1
    if last is not None and kept_t[-1] != last[0]:
        kept_t.append(last[0])
        kept_v.append(last[1])
    return np.asarray(kept_t, dtype=float), np.asarray(kept_v, dtype=float)


def bucket_count(lo: float, hi: float, bucket_s: float) -> int:
    """How many buckets of ``bucket_s`` (aligned to multiples of it) cover ``[lo, hi]``."""
    return max(1, math.ceil(hi / bucket_s) - math.floor(lo / bucket_s))


def consumption_window(
    store: Store,
    device_id: int,
    bucket_s: float,
    *,
    since: float,
    until: float | None,
    now: float,
    max_buckets: int = MAX_BUCKETS,
) -> tuple[F64, F64]:
    """Energy per bucket over ``[since, until]`` (``until`` None: up to the last accepted
    reading), from the readings in that window only.

    No buckets when ``until`` is not after ``since``.

    Raises
    ------
    ParameterError
        More than ``max_buckets`` buckets (counted up to ``until``, or to ``now`` when it
        is None), naming the limit and what to ask instead.
    """
    end = now if until is None else until
    if until is not None and until <= since:
        return np.empty(0), np.empty(0)
    n = bucket_count(since, max(end, since), bucket_s)
    if n > max_buckets:
        width = {3600.0: "an hour", 86400.0: "a day"}.get(float(bucket_s), f"{bucket_s:g} s")
        coarser = "bucket=day or " if bucket_s < 86400 else ""
        raise ParameterError(
            f"since..until spans {n:,} buckets of {width}; the limit is {max_buckets:,} per "
            f"request: ask for {coarser}a shorter range"
        )
    first = math.floor(since / bucket_s) * bucket_s
    last = None if until is None else math.ceil(until / bucket_s) * bucket_s
    t, v = counter_window(store, device_id, first, last)
    return consumption(t, v, bucket_s, since=since, until=until)
