"""Green Button (NAESB REQ.21 ESPI) interval data: import, export and counter conversion.

Green Button is the North American format in which utilities hand customers their smart
meter data. A file is an Atom feed (``http://www.w3.org/2005/Atom``) whose entries each
carry one ESPI resource (``http://naesb.org/espi``) inside ``<content>``:

* ``UsagePoint`` -- the service (meter) the data belongs to;
* ``MeterReading`` -- one channel of that service (e.g. 15-minute consumption);
* ``ReadingType`` -- what the channel's numbers mean: ``uom`` (72 = Wh, 38 = W, ...),
  ``powerOfTenMultiplier`` (value × 10^m), ``intervalLength``, ``accumulationBehaviour``;
* ``IntervalBlock`` -- a batch of ``IntervalReading`` (customarily one per day), each with
  ``timePeriod`` (``start``, ``duration`` in epoch seconds, UTC), ``value``, optionally
  ``cost`` (in 1/100000 of the currency) and ``ReadingQuality/quality``;
* ``LocalTimeParameters`` -- the service's time zone (``tzOffset`` in seconds).

Entries refer to each other through ``<link rel="self|up|related" href=...>``: a
MeterReading's ``related`` links name its IntervalBlock collection and its ReadingType.

:func:`parse_greenbutton` turns a file into one :class:`UsageSeries` per MeterReading,
:func:`write_greenbutton` writes intervals back as a feed of the same shape, and
:func:`counter_to_intervals` / :func:`intervals_to_counter` convert between cumulative
meter counter readings (kWh) and fixed intervals (Wh).

Files are untrusted: a document type declaration (the vehicle of entity-expansion attacks)
is refused before the XML is parsed, and every defect is reported as one
:class:`~gridlens.errors.DataFormatError` line that says what is wrong and where.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import uuid
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from gridlens.errors import (
    DataFormatError,
    InsufficientDataError,
    NotFoundError,
    ParameterError,
    check_param,
)

__all__ = [
    "UOM_UNITS",
    "Interval",
    "UsageSeries",
    "counter_to_intervals",
    "intervals_to_counter",
    "parse_greenbutton",
    "write_greenbutton",
]

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
_A = f"{{{ATOM_NS}}}"
_E = f"{{{ESPI_NS}}}"

#: ESPI ``UnitSymbolKind`` codes this module names; other codes become ``f"uom{code}"``.
UOM_UNITS: dict[int, str] = {
    5: "A",
    29: "V",
    31: "J",
    33: "Hz",
    38: "W",
    42: "m3",
    61: "VA",
    63: "VAr",
    71: "VAh",
    72: "Wh",
    73: "VArh",
    169: "therm",
}
_UOM_CODES = {unit: code for code, unit in UOM_UNITS.items()}
_ELECTRIC = {"A", "V", "Hz", "W", "VA", "VAr", "VAh", "Wh", "VArh"}
_PER_INTERVAL = {"J", "m3", "VAh", "Wh", "VArh", "therm"}  # quantities summed per interval
#: kWh per unit for the energy units :meth:`UsageSeries.to_kwh` accepts.  The therm is
#: the US therm of 105.4804 MJ (15 U.S.C. 205b), the one North American gas bills use.
_KWH_PER_UNIT = {"Wh": 1e-3, "J": 1 / 3.6e6, "therm": 105.4804 / 3.6}
_COST_SCALE = 100_000  # ESPI costs are in 1/100000 of the currency
_INT48 = 2**47
_MAX_INTERVALS = 10_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RE = re.compile(r"[+-]?\d+")
_DEC_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_HREF_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_XML_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Interval:
    """One interval reading.

    Parameters
    ----------
    start : datetime
        Start of the interval; must be timezone-aware, stored in UTC.
    duration_s : int
        Length of the interval in seconds (> 0).
    value : float
        The reading in the series' unit, powerOfTenMultiplier already applied (e.g. Wh).
    quality : int or None
        ESPI ``ReadingQuality/quality`` code (0 valid, 7 mixed, 8 raw, ...), if given.
    cost : float or None
        Cost of the interval in the file's currency unit (e.g. USD), if given.
    """

    start: datetime
    duration_s: int
    value: float
    quality: int | None = None
    cost: float | None = None

    def __post_init__(self) -> None:
        check_param(
            isinstance(self.start, datetime) and self.start.utcoffset() is not None,
            "start",
            "Interval",
            "a timezone-aware datetime",
            self.start,
        )
        check_param(
            isinstance(self.duration_s, int)
            and not isinstance(self.duration_s, bool)
            and self.duration_s > 0,
            "duration_s",
            "Interval",
            "a positive int (seconds)",
            self.duration_s,
        )
        object.__setattr__(self, "start", self.start.astimezone(UTC))

    @property
    def end(self) -> datetime:
        """End of the interval (UTC)."""
        return self.start + timedelta(seconds=self.duration_s)


@dataclass(frozen=True)
class UsageSeries:
    """The intervals of one MeterReading.

    Parameters
    ----------
    title : str
        ``"UsagePoint title / MeterReading title"`` (only one of them if the other is empty
        or they are equal), or ``""``.
    unit : str
        Unit of :attr:`Interval.value` from the ReadingType ``uom`` code (see
        :data:`UOM_UNITS`); unknown codes give ``f"uom{code}"``.
    intervals : tuple of Interval
        Sorted by start, no duplicate or overlapping intervals.
    tz_offset_s : int or None
        ``LocalTimeParameters/tzOffset`` (seconds east of UTC, standard time), if present.
    """

    title: str
    unit: str
    intervals: tuple[Interval, ...] = field(default_factory=tuple)
    tz_offset_s: int | None = None

    def to_kwh(self) -> list[tuple[datetime, float]]:
        """Energy per interval in kWh.

        Returns
        -------
        list of (datetime, float)
            ``(interval end, energy in kWh)`` for each interval.

        Raises
        ------
        ParameterError
            If the series is not in an energy unit (Wh, J, therm).
        """
        if self.unit not in _KWH_PER_UNIT:
            raise ParameterError(
                f"to_kwh needs a series in an energy unit (Wh, J or therm); "
                f"this series is in {self.unit}."
            )
        if self.unit == "Wh":  # divide, so that integer Wh give the nearest float kWh
            return [(iv.end, iv.value / 1000) for iv in self.intervals]
        factor = _KWH_PER_UNIT[self.unit]
        return [(iv.end, iv.value * factor) for iv in self.intervals]


# --------------------------------------------------------------------------- reading


class _PrologDone(Exception):
    """Raised by the prolog scan when the root element starts (no DTD can follow)."""


def _refuse_doctype(data: bytes | str, name: str) -> None:
    """Refuse a DOCTYPE (and with it any ENTITY declaration) before the real parse.

    Expat reads the document only up to its root element, so the check is cheap and
    honours the document's declared encoding (a byte search would miss UTF-16).
    """
    scanner = xml.parsers.expat.ParserCreate()

    def on_doctype(*_: object) -> None:
        raise DataFormatError(
            f"{name} contains a DOCTYPE declaration; Green Button files have none and "
            "entity declarations are refused for safety."
        )

    def on_start(*_: object) -> None:
        raise _PrologDone

    scanner.StartDoctypeDeclHandler = on_doctype
    scanner.StartElementHandler = on_start
    try:
        scanner.Parse(data, True)
    except _PrologDone:
        return
    except xml.parsers.expat.ExpatError as err:
        raise DataFormatError(
            f"{name} is not well-formed XML (truncated or corrupt?): {err}."
        ) from None


def _load(source: bytes | str | os.PathLike[str]) -> tuple[bytes | str, str]:
    """The document and a name for messages."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), "The input"
    if isinstance(source, str) and source.lstrip().startswith("<"):
        return source, "The input"
    check_param(
        isinstance(source, str | os.PathLike),
        "source",
        "parse_greenbutton",
        "XML bytes, an XML string or a path",
        type(source).__name__,
    )
    path = Path(source)
    try:
        return path.read_bytes(), f"Green Button file {path.name}"
    except FileNotFoundError:
        raise NotFoundError(f"Green Button file not found: {path}") from None
    except IsADirectoryError:
        raise ParameterError(f"{path} is a directory, not a Green Button file.") from None
    except OSError as err:
        raise DataFormatError(f"Cannot read Green Button file {path}: {err.strerror}.") from None


def _text(elem: ET.Element | None) -> str:
    return (elem.text or "").strip() if elem is not None else ""


def _number(parent: ET.Element, path: str, where: str, *, integer: bool) -> int | float | None:
    """The number at ``path`` under ``parent``; None if absent; DataFormatError if bad."""
    elem = parent.find(path)
    if elem is None:
        return None
    raw = _text(elem)
    label = path.replace(_E, "")
    if _INT_RE.fullmatch(raw):
        return int(raw)
    if not integer and _DEC_RE.fullmatch(raw):
        value = float(raw)
        if math.isfinite(value):
            return value
    kind = "an integer" if integer else "a number"
    raise DataFormatError(f"{where} has a {label} that is not {kind}: {raw[:40]!r}.")


def _required(parent: ET.Element, path: str, where: str, *, integer: bool) -> int | float:
    value = _number(parent, path, where, integer=integer)
    if value is None:
        raise DataFormatError(f"{where} has no {path.replace(_E, '')}.")
    return value


@dataclass
class _Entry:
    """One Atom entry holding an ESPI resource."""

    index: int  # 1-based among entries of the same kind, for messages
    kind: str
    body: ET.Element
    title: str
    self_href: str | None
    up_href: str | None
    related: list[str]

    def label(self) -> str:
        return f"{self.kind} entry {self.index}" + (f" ({self.title!r})" if self.title else "")


def _entries(root: ET.Element, name: str) -> dict[str, list[_Entry]]:
    if root.tag == f"{_A}feed":
        atom_entries = root.findall(f"{_A}entry")
    elif root.tag == f"{_A}entry":
        atom_entries = [root]
    else:
        tag = root.tag.rsplit("}", 1)[-1]
        raise DataFormatError(
            f"{name} is not a Green Button (ESPI) feed: the root element is <{tag}>, "
            "expected an Atom <feed>."
        )
    by_kind: dict[str, list[_Entry]] = {}
    for entry in atom_entries:
        content = entry.find(f"{_A}content")
        bodies = [] if content is None else [c for c in content if c.tag.startswith(_E)]
        if not bodies:
            continue
        body = bodies[0]
        kind = body.tag[len(_E) :]
        links: dict[str, list[str]] = {}
        for link in entry.findall(f"{_A}link"):
            href = link.get("href")
            if href:
                links.setdefault(link.get("rel", "alternate"), []).append(href.strip())
        group = by_kind.setdefault(kind, [])
        group.append(
            _Entry(
                index=len(group) + 1,
                kind=kind,
                body=body,
                title=_text(entry.find(f"{_A}title")),
                self_href=links.get("self", [None])[0],
                up_href=links.get("up", [None])[0],
                related=links.get("related", []),
            )
        )
    if not by_kind.get("MeterReading") and not by_kind.get("IntervalBlock"):
        raise DataFormatError(
            f"{name} is not a Green Button (ESPI) feed with usage data: "
            "it has no MeterReading or IntervalBlock entries."
        )
    return by_kind


def _child_of(child: _Entry, parent: _Entry) -> bool:
    """Whether ``child``'s links put it under ``parent`` (up link or self-path prefix)."""
    if child.up_href is not None and child.up_href in parent.related:
        return True
    if parent.self_href is None:
        return False
    prefix = parent.self_href.rstrip("/") + "/"
    return any(h is not None and h.startswith(prefix) for h in (child.self_href, child.up_href))


def _pick(
    candidates: list[_Entry], hrefs: Sequence[str | None], fallback_single: bool = True
) -> _Entry | None:
    """The candidate whose self href is in ``hrefs``, else the only candidate, else None."""
    wanted = {h for h in hrefs if h}
    for cand in candidates:
        if cand.self_href in wanted:
            return cand
    if fallback_single and len(candidates) == 1:
        return candidates[0]
    return None


def _reading_type(rt: _Entry) -> tuple[str, int]:
    where = rt.label()
    uom = _required(rt.body, f"{_E}uom", where, integer=True)
    mult = _number(rt.body, f"{_E}powerOfTenMultiplier", where, integer=True)
    mult = int(mult or 0)
    if not -20 <= mult <= 20:
        raise DataFormatError(f"{where} has an implausible powerOfTenMultiplier {mult}.")
    return UOM_UNITS.get(int(uom), f"uom{int(uom)}"), mult


def _scale(raw: int | float, mult: int) -> float:
    if mult >= 0:
        return float(raw * 10**mult)
    divisor: int = 10**-mult
    return raw / divisor  # true division: integer counts give the nearest float


def _block_intervals(block: _Entry, mult: int) -> list[Interval]:
    out: list[Interval] = []
    for ri, reading in enumerate(block.body.findall(f"{_E}IntervalReading"), 1):
        where = f"IntervalReading {ri} of IntervalBlock {block.index}"
        if reading.find(f"{_E}timePeriod") is None:
            raise DataFormatError(f"{where} has no timePeriod.")
        start = int(_required(reading, f"{_E}timePeriod/{_E}start", where, integer=True))
        duration = int(_required(reading, f"{_E}timePeriod/{_E}duration", where, integer=True))
        if duration <= 0:
            raise DataFormatError(f"{where} has a non-positive timePeriod/duration {duration}.")
        value = _required(reading, f"{_E}value", where, integer=False)
        cost = _number(reading, f"{_E}cost", where, integer=False)
        quality = _number(reading, f"{_E}ReadingQuality/{_E}quality", where, integer=True)
        try:
            start_dt = datetime.fromtimestamp(start, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise DataFormatError(f"{where} has an out-of-range start {start}.") from None
        out.append(
            Interval(
                start=start_dt,
                duration_s=duration,
                value=_scale(value, mult),
                quality=None if quality is None else int(quality),
                cost=None if cost is None else cost / _COST_SCALE,
            )
        )
    return out


def _merge(intervals: list[Interval], where: str) -> tuple[Interval, ...]:
    """Sort, drop exact repeats (utilities repeat readings across blocks), refuse clashes."""
    intervals.sort(key=lambda iv: iv.start)
    out: list[Interval] = []
    for iv in intervals:
        if out and iv.start == out[-1].start:
            if iv == out[-1]:
                continue
            raise DataFormatError(
                f"{where} has two different IntervalReadings starting at "
                f"{iv.start.isoformat()} ({out[-1].value:g} and {iv.value:g})."
            )
        if out and iv.start < out[-1].end:
            raise DataFormatError(
                f"{where} has overlapping IntervalReadings: the one starting at "
                f"{out[-1].start.isoformat()} runs past {iv.start.isoformat()}."
            )
        out.append(iv)
    return tuple(out)


def parse_greenbutton(source: bytes | str | os.PathLike[str]) -> list[UsageSeries]:
    """Read a Green Button (ESPI Atom) file.

    Parameters
    ----------
    source : bytes, str or path-like
        The XML as bytes, an XML string (starting with ``<``), or the path of the file.

    Returns
    -------
    list of UsageSeries
        One series per MeterReading, in file order.  Entries are linked through their
        ``self``/``up``/``related`` hrefs; when a feed has a single ReadingType,
        UsagePoint or LocalTimeParameters entry it is used even without a link.

    Raises
    ------
    NotFoundError
        If the path does not exist.
    DataFormatError
        If the data is not well-formed XML, carries a DOCTYPE, is not an ESPI feed, lacks a
        required element (``uom``, ``timePeriod/start``, ``value`` ...) or has a
        non-numeric or clashing reading.
    """
    data, name = _load(source)
    _refuse_doctype(data, name)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise DataFormatError(
            f"{name} is not well-formed XML (truncated or corrupt?): {err}."
        ) from None
    by_kind = _entries(root, name)
    usage_points = by_kind.get("UsagePoint", [])
    readings = by_kind.get("MeterReading", [])
    reading_types = by_kind.get("ReadingType", [])
    blocks = by_kind.get("IntervalBlock", [])
    local_times = by_kind.get("LocalTimeParameters", [])
    if not readings:  # a bare feed of IntervalBlocks: one implicit MeterReading
        implicit = ET.Element(f"{_E}MeterReading")
        readings = [_Entry(1, "MeterReading", implicit, "", None, None, [])]

    owner: dict[int, int] = {}  # block position -> reading position
    for bi, block in enumerate(blocks):
        for mi, reading in enumerate(readings):
            if _child_of(block, reading):
                owner[bi] = mi
                break
        else:
            if len(readings) > 1:
                raise DataFormatError(
                    f"{name}: {block.label()} belongs to none of the {len(readings)} "
                    'MeterReadings (no matching link rel="up").'
                )
            owner[bi] = 0

    series: list[UsageSeries] = []
    for mi, reading in enumerate(readings):
        rt = _pick(reading_types, reading.related)
        if rt is None:
            raise DataFormatError(
                f"{name}: {reading.label()} links to no ReadingType entry, so its unit is unknown."
            )
        unit, mult = _reading_type(rt)
        point = next((up for up in usage_points if _child_of(reading, up)), None)
        if point is None and len(usage_points) == 1:
            point = usage_points[0]
        ltp = _pick(local_times, point.related if point is not None else [])
        tz = None
        if ltp is not None:
            offset = _number(ltp.body, f"{_E}tzOffset", ltp.label(), integer=True)
            tz = None if offset is None else int(offset)
        intervals: list[Interval] = []
        for bi, block in enumerate(blocks):
            if owner[bi] == mi:
                intervals.extend(_block_intervals(block, mult))
        titles = [t for t in (point.title if point else "", reading.title) if t]
        title = " / ".join(dict.fromkeys(titles))
        series.append(UsageSeries(title, unit, _merge(intervals, reading.label()), tz))
    return series


# --------------------------------------------------------------------------- writing


def _multiplier(values: Sequence[float]) -> tuple[int, list[int]]:
    """The shortest powerOfTenMultiplier in {0, -1, -2, -3} that keeps every value to 1 mWh."""
    milli = [round(v * 1000) for v in values]
    for mult in (0, -1, -2):
        step = 10 ** (3 + mult)
        if all(m % step == 0 for m in milli):
            return mult, [m // step for m in milli]
    return -3, milli


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(
    lines: list[str],
    *,
    self_href: str,
    up_href: str,
    related: Sequence[str],
    title: str,
    body: list[str],
    stamp: str,
) -> None:
    ind = "  "
    lines.append(f"{ind}<entry>")
    lines.append(f"{ind * 2}<id>urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self_href)}</id>")
    lines.append(f'{ind * 2}<link rel="self" href={quoteattr(self_href)}/>')
    lines.append(f'{ind * 2}<link rel="up" href={quoteattr(up_href)}/>')
    lines.extend(f'{ind * 2}<link rel="related" href={quoteattr(h)}/>' for h in related)
    lines.append(f"{ind * 2}<title>{escape(title)}</title>" if title else f"{ind * 2}<title/>")
    lines.append(f"{ind * 2}<content>")
    lines.extend(f"{ind * 3}{b}" for b in body)
    lines.append(f"{ind * 2}</content>")
    lines.append(f"{ind * 2}<published>{stamp}</published>")
    lines.append(f"{ind * 2}<updated>{stamp}</updated>")
    lines.append(f"{ind}</entry>")


def _check_intervals(intervals: Sequence[Interval], owner: str, empty: str) -> list[Interval]:
    """Sorted ``intervals`` after checking their type and overlaps; ``empty`` is the message
    for no intervals at all, in the words of the person who has none (a user exporting a
    meter with too few readings, or importing a file without data), not of this API."""
    check_param(
        isinstance(intervals, Sequence) and all(isinstance(iv, Interval) for iv in intervals),
        "intervals",
        owner,
        "a sequence of Interval",
        type(intervals).__name__,
    )
    if not intervals:
        raise InsufficientDataError(empty)
    ordered = sorted(intervals, key=lambda iv: iv.start)
    for prev, iv in itertools.pairwise(ordered):
        if iv.start < prev.end:
            raise ParameterError(
                f"The intervals given to {owner} overlap: the one starting at "
                f"{prev.start.isoformat()} runs past {iv.start.isoformat()}."
            )
    return ordered


def write_greenbutton(
    intervals: Sequence[Interval],
    *,
    title: str = "gridlens meter",
    unit: str = "Wh",
    tz_offset_s: int | None = 0,
    usage_point_id: str = "1",
) -> bytes:
    """Write intervals as a Green Button (ESPI Atom) feed.

    The feed holds a UsagePoint, LocalTimeParameters, one MeterReading, its ReadingType and
    one IntervalBlock per local day (by ``tz_offset_s``), linked by hrefs under
    ``/espi/1_1/resource/RetailCustomer/1/UsagePoint/{usage_point_id}`` as utilities do.
    Values are written as integers with the shortest ``powerOfTenMultiplier`` (0 to -3)
    that keeps them to 1 mWh; costs in 1/100000 of the currency.  Entry ids are UUIDs
    derived from the hrefs and the time stamps are the end of the data, so the output is
    deterministic.  :func:`parse_greenbutton` reads it back to equal intervals.

    Parameters
    ----------
    intervals : sequence of Interval
        Non-empty, non-overlapping, starts on whole seconds; sorted on output.
    title : str
        Title of the UsagePoint and the MeterReading.
    unit : str
        A unit of :data:`UOM_UNITS` or ``"uom{code}"``.
    tz_offset_s : int or None
        ``LocalTimeParameters/tzOffset`` in seconds east of UTC (no DST rule is written);
        None writes no LocalTimeParameters.
    usage_point_id : str
        Identifier used in the hrefs (letters, digits, ``._~-``).

    Returns
    -------
    bytes
        The UTF-8 XML document.

    Raises
    ------
    InsufficientDataError
        If there are no intervals (readings too few or too close to span one).
    ParameterError
        If an argument is out of range or the intervals overlap or do not fit ESPI.
    """
    owner = "write_greenbutton"
    ordered = _check_intervals(
        intervals,
        owner,
        "There is no complete interval of consumption to export yet: Green Button data needs"
        " meter readings on both sides of at least one whole interval (for hourly data, one"
        " reading at or before the start of an hour and one at or after its end).",
    )
    check_param(
        isinstance(title, str) and not _XML_BAD_CHARS.search(title),
        "title",
        owner,
        "a string without control characters",
        title,
    )
    code_match = re.fullmatch(r"uom(\d+)", unit) if isinstance(unit, str) else None
    uom = _UOM_CODES.get(unit) if code_match is None else int(code_match.group(1))
    if uom is None:
        raise ParameterError(
            f"The 'unit' parameter of {owner} must be one of {sorted(_UOM_CODES)} or "
            f"'uom<code>'. Got {unit!r} instead."
        )
    check_param(
        tz_offset_s is None
        or (
            isinstance(tz_offset_s, int)
            and not isinstance(tz_offset_s, bool)
            and abs(tz_offset_s) <= 14 * 3600
        ),
        "tz_offset_s",
        owner,
        "None or an int of seconds in [-50400, 50400]",
        tz_offset_s,
    )
    check_param(
        isinstance(usage_point_id, str) and _HREF_ID_RE.fullmatch(usage_point_id) is not None,
        "usage_point_id",
        owner,
        "1-64 letters, digits or ._~-",
        usage_point_id,
    )
    for iv in ordered:
        if iv.start.microsecond:
            raise ParameterError(
                f"ESPI times are whole seconds; the interval at {iv.start.isoformat()} "
                "does not start on one."
            )
        bad = [x for x in (iv.value, iv.cost) if x is not None and not math.isfinite(x)]
        if bad:
            raise ParameterError(f"The interval at {iv.start.isoformat()} has a non-finite number.")
    mult, counts = _multiplier([iv.value for iv in ordered])
    costs = [None if iv.cost is None else round(iv.cost * _COST_SCALE) for iv in ordered]
    too_big = [c for c in (*counts, *costs) if c is not None and abs(c) >= _INT48]
    if too_big:
        raise ParameterError(f"A value or cost is too large for an ESPI Int48: {too_big[0]}.")

    base = "/espi/1_1/resource"
    point = f"{base}/RetailCustomer/1/UsagePoint/{usage_point_id}"
    reading = f"{point}/MeterReading/1"
    rtype = f"{base}/ReadingType/1"
    ltp = f"{base}/LocalTimeParameters/1"
    stamp = _iso(ordered[-1].end)
    durations = {iv.duration_s for iv in ordered}

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<feed xmlns="{ATOM_NS}">',
        f"  <id>urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, point + '#feed')}</id>",
        "  <title>Green Button Usage Feed</title>",
        f"  <updated>{stamp}</updated>",
        f'  <link rel="self" href={quoteattr(f"{base}/Batch/RetailCustomer/1/UsagePoint")}/>',
    ]
    point_related = [f"{point}/MeterReading"] + ([ltp] if tz_offset_s is not None else [])
    kind = 0 if unit in _ELECTRIC else (1 if unit == "therm" else None)
    point_body = [f'<UsagePoint xmlns="{ESPI_NS}">']
    if kind is not None:
        point_body += ["  <ServiceCategory>", f"    <kind>{kind}</kind>", "  </ServiceCategory>"]
    point_body.append("</UsagePoint>")
    _entry(
        lines,
        self_href=point,
        up_href=f"{base}/RetailCustomer/1/UsagePoint",
        related=point_related,
        title=title,
        body=point_body,
        stamp=stamp,
    )
    if tz_offset_s is not None:
        _entry(
            lines,
            self_href=ltp,
            up_href=f"{base}/LocalTimeParameters",
            related=[],
            title="Local time (no DST rule)",
            body=[
                f'<LocalTimeParameters xmlns="{ESPI_NS}">',
                "  <dstEndRule>00000000</dstEndRule>",
                "  <dstOffset>0</dstOffset>",
                "  <dstStartRule>00000000</dstStartRule>",
                f"  <tzOffset>{tz_offset_s}</tzOffset>",
                "</LocalTimeParameters>",
            ],
            stamp=stamp,
        )
    _entry(
        lines,
        self_href=reading,
        up_href=f"{point}/MeterReading",
        related=[f"{reading}/IntervalBlock", rtype],
        title=title,
        body=[f'<MeterReading xmlns="{ESPI_NS}"/>'],
        stamp=stamp,
    )
    rt_fields: list[tuple[str, int]] = []
    if unit in _PER_INTERVAL:
        rt_fields.append(("accumulationBehaviour", 4))  # deltaData
    if unit in _ELECTRIC:
        rt_fields.append(("commodity", 1))  # electricity, secondary metered
    elif unit == "therm":
        rt_fields.append(("commodity", 6))  # natural gas
    rt_fields += [("dataQualifier", 12), ("flowDirection", 1)]  # normal, forward
    if len(durations) == 1:
        rt_fields.append(("intervalLength", durations.pop()))
    if unit in ("Wh", "W"):
        rt_fields.append(("kind", 12 if unit == "Wh" else 37))  # energy, power
    rt_fields += [("powerOfTenMultiplier", mult), ("timeAttribute", 0), ("uom", uom)]
    _entry(
        lines,
        self_href=rtype,
        up_href=f"{base}/ReadingType",
        related=[],
        title="Type of Meter Reading Data",
        body=[f'<ReadingType xmlns="{ESPI_NS}">']
        + [f"  <{k}>{v}</{k}>" for k, v in rt_fields]
        + ["</ReadingType>"],
        stamp=stamp,
    )

    day_of = [(int(iv.start.timestamp()) + (tz_offset_s or 0)) // 86400 for iv in ordered]
    first = 0
    for number, stop in enumerate(
        [i for i in range(1, len(ordered)) if day_of[i] != day_of[i - 1]] + [len(ordered)], 1
    ):
        span_start = int(ordered[first].start.timestamp())
        span_end = int(ordered[stop - 1].end.timestamp())
        body = [
            f'<IntervalBlock xmlns="{ESPI_NS}">',
            "  <interval>",
            f"    <duration>{span_end - span_start}</duration>",
            f"    <start>{span_start}</start>",
            "  </interval>",
        ]
        for i in range(first, stop):
            iv = ordered[i]
            body.append("  <IntervalReading>")
            if costs[i] is not None:
                body.append(f"    <cost>{costs[i]}</cost>")
            if iv.quality is not None:
                body.append(f"    <ReadingQuality><quality>{iv.quality}</quality></ReadingQuality>")
            body += [
                "    <timePeriod>",
                f"      <duration>{iv.duration_s}</duration>",
                f"      <start>{int(iv.start.timestamp())}</start>",
                "    </timePeriod>",
                f"    <value>{counts[i]}</value>",
                "  </IntervalReading>",
            ]
        body.append("</IntervalBlock>")
        _entry(
            lines,
            self_href=f"{reading}/IntervalBlock/{number}",
            up_href=f"{reading}/IntervalBlock",
            related=[],
            title="",
            body=body,
            stamp=stamp,
        )
        first = stop
    lines.append("</feed>")
    return ("\n".join(lines) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- counters


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def counter_to_intervals(
    times: Sequence[datetime], values_kwh: Sequence[float], interval_s: int = 3600
) -> list[Interval]:
    """Cumulative meter counter readings to fixed intervals.

    The counter is interpolated linearly in time between readings and differenced at the
    interval boundaries (multiples of ``interval_s`` since the epoch, UTC), so the energy
    between two readings is spread evenly over the intervals they straddle.  Only intervals
    that lie entirely between the first and last reading are returned; nothing is
    extrapolated.  A long gap between readings gives a flat profile across it.

    Parameters
    ----------
    times : sequence of datetime
        Timezone-aware reading times, strictly increasing (irregular spacing is fine).
    values_kwh : sequence of float
        Counter values in kWh, non-decreasing.
    interval_s : int
        Interval length in seconds.

    Returns
    -------
    list of Interval
        Energy per interval in Wh (rounded to 1 µWh to drop float noise).

    Raises
    ------
    ParameterError
        If the arguments have the wrong type, length or range.
    DataFormatError
        If a value is not finite, times do not increase or the counter decreases.
    """
    owner = "counter_to_intervals"
    check_param(
        isinstance(interval_s, int) and not isinstance(interval_s, bool) and interval_s > 0,
        "interval_s",
        owner,
        "a positive int (seconds)",
        interval_s,
    )
    check_param(
        len(times) == len(values_kwh),
        "values_kwh",
        owner,
        f"as long as times ({len(times)})",
        f"{len(values_kwh)} values",
    )
    for t in times:
        check_param(
            isinstance(t, datetime) and t.utcoffset() is not None,
            "times",
            owner,
            "timezone-aware datetimes",
            t,
        )
    micros = [_micros(t) for t in times]
    values = [float(v) for v in values_kwh]
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        if not math.isfinite(v):
            raise DataFormatError(f"The counter reading at {t.isoformat()} is not a number: {v}.")
        if i and micros[i] <= micros[i - 1]:
            raise DataFormatError(
                f"Counter reading times must increase: {t.isoformat()} comes after "
                f"{times[i - 1].isoformat()}."
            )
        if i and v < values[i - 1]:
            raise DataFormatError(
                f"The meter counter decreases at {t.isoformat()}: from {values[i - 1]:g} kWh "
                f"to {v:g} kWh (meter replaced or rolled over? split the history there)."
            )
    if len(times) < 2:
        return []
    step = interval_s * 1_000_000
    k_first = -(-micros[0] // step)  # first boundary at or after the first reading
    k_last = micros[-1] // step  # last boundary at or before the last reading
    if k_last - k_first < 1:
        return []
    if k_last - k_first > _MAX_INTERVALS:
        raise ParameterError(
            f"counter_to_intervals would make {k_last - k_first} intervals; "
            f"use a longer interval_s (at most {_MAX_INTERVALS} intervals)."
        )
    ks = np.arange(k_first, k_last + 1, dtype=np.int64)
    at = np.interp(
        (ks * interval_s).astype(np.float64),
        np.asarray(micros, dtype=np.float64) / 1e6,
        np.asarray(values, dtype=np.float64),
    )
    energy_wh = np.round(np.diff(at) * 1000.0, 6)
    return [
        Interval(
            start=datetime.fromtimestamp(int(k) * interval_s, tz=UTC),
            duration_s=interval_s,
            value=float(wh),
        )
        for k, wh in zip(ks[:-1], energy_wh, strict=True)
    ]


def intervals_to_counter(
    intervals: Sequence[Interval], start_kwh: float = 0.0
) -> list[tuple[datetime, float]]:
    """Energy intervals (Wh) to cumulative counter readings (kWh).

    Parameters
    ----------
    intervals : sequence of Interval
        Contiguous energy intervals with values in Wh (sorted on input).
    start_kwh : float
        The counter at the start of the first interval.

    Returns
    -------
    list of (datetime, float)
        ``(first start, start_kwh)`` followed by ``(interval end, cumulative kWh)`` for each
        interval -- the inverse of :func:`counter_to_intervals`.

    Raises
    ------
    InsufficientDataError
        If there are no intervals.
    ParameterError
        If the intervals overlap or leave a gap (the counter after a gap is unknown; split the
        intervals there), or ``start_kwh`` is not finite.
    """
    owner = "intervals_to_counter"
    ordered = _check_intervals(
        intervals, owner, "The Green Button data holds no energy intervals to add to the counter."
    )
    check_param(
        isinstance(start_kwh, int | float) and math.isfinite(start_kwh),
        "start_kwh",
        owner,
        "a finite number of kWh",
        start_kwh,
    )
    out = [(ordered[0].start, float(start_kwh))]
    total_wh = 0.0
    for prev, iv in zip([None, *ordered], ordered, strict=False):
        if prev is not None and iv.start != prev.end:
            raise ParameterError(
                f"The intervals given to {owner} have a gap from {prev.end.isoformat()} to "
                f"{iv.start.isoformat()}; the counter after it is unknown, split them there."
            )
        total_wh += iv.value
        out.append((iv.end, float(start_kwh) + total_wh / 1000))
    return out
