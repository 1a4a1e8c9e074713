"""Green Button (ESPI) import/export: the real sample file, round trips, counters, bad input."""

from __future__ import annotations

import ast
import itertools
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import gridlens.greenbutton as gb
from gridlens.errors import DataFormatError, NotFoundError, ParameterError
from gridlens.greenbutton import (
    Interval,
    UsageSeries,
    counter_to_intervals,
    intervals_to_counter,
    parse_greenbutton,
    write_greenbutton,
)

DATA_ROOT = Path(
    os.environ.get("GRIDLENS_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)
SAMPLE = DATA_ROOT / "greenbutton" / "test_usage_data.xml"
ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def raw() -> bytes:
    if not SAMPLE.is_file():
        pytest.skip(f"Green Button sample not found at {SAMPLE} (set GRIDLENS_DATA)")
    return SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def sample(raw: bytes) -> UsageSeries:
    series = parse_greenbutton(SAMPLE)
    assert len(series) == 1
    return series[0]


@pytest.fixture(scope="module")
def regex_readings(raw: bytes) -> list[tuple[int, int, int, int]]:
    """(start, duration, value, cost) of every IntervalReading, read with regexes only."""
    text = raw.decode("utf-8")
    blocks = re.findall(r"<IntervalReading>(.*?)</IntervalReading>", text, re.S)
    out = []
    for b in blocks:
        start = re.search(r"<timePeriod>.*?<start>(\d+)</start>", b, re.S)
        duration = re.search(r"<timePeriod>.*?<duration>(\d+)</duration>", b, re.S)
        value = re.search(r"<value>(-?\d+)</value>", b)
        cost = re.search(r"<cost>(-?\d+)</cost>", b)
        assert start and duration and value and cost
        out.append((int(start[1]), int(duration[1]), int(value[1]), int(cost[1])))
    return out


# --------------------------------------------------------------------------- real file


@pytest.mark.data
def test_sample_facts_match_an_independent_regex_reading(
    sample: UsageSeries, regex_readings: list[tuple[int, int, int, int]]
) -> None:
    # measured once by hand from the XML: 14 blocks, 1340 readings (the DST day has 92)
    assert len(regex_readings) == 1340
    assert sum(r[2] for r in regex_readings) == 1_391_666  # Wh
    assert sum(r[3] for r in regex_readings) == 14_999_132  # 1/100000 USD
    assert len(sample.intervals) == len(regex_readings)
    for iv, (start, duration, value, cost) in zip(sample.intervals, regex_readings, strict=True):
        assert iv.start == datetime.fromtimestamp(start, UTC)
        assert iv.duration_s == duration == 900
        assert iv.value == value
        assert iv.cost == pytest.approx(cost / 100_000)
    assert sample.unit == "Wh"
    assert sample.tz_offset_s == -18000
    assert sample.title == "Front Electric Meter / Fifteen Minute Electricity Consumption"
    first, second, last = sample.intervals[0], sample.intervals[1], sample.intervals[-1]
    assert first.start == utc(2012, 3, 1, 5, 0)  # local midnight EST
    assert (first.value, first.quality, first.cost) == (282, 8, pytest.approx(0.00974))
    assert (second.value, second.quality) == (323, 7)
    assert (last.value, last.quality, last.end) == (940, None, utc(2012, 3, 15, 4, 0))
    # 3/11/2012 (DST starts): the block runs 05:00 → 04:00 UTC next day, 23 h = 92 readings
    dst_day = [
        iv for iv in sample.intervals if utc(2012, 3, 11, 5) <= iv.start < utc(2012, 3, 12, 4)
    ]
    assert len(dst_day) == 92
    # contiguous: no gaps, no overlaps
    assert all(a.end == b.start for a, b in itertools.pairwise(sample.intervals))


@pytest.mark.data
def test_sample_to_kwh_and_counter(sample: UsageSeries) -> None:
    kwh = sample.to_kwh()
    assert kwh[0] == (utc(2012, 3, 1, 5, 15), 0.282)
    assert sum(e for _, e in kwh) == pytest.approx(1391.666, abs=1e-9)
    counter = intervals_to_counter(sample.intervals, start_kwh=5000.0)
    assert counter[0] == (utc(2012, 3, 1, 5), 5000.0)
    assert counter[-1] == (utc(2012, 3, 15, 4), pytest.approx(6391.666, abs=1e-9))
    # and back: 15-minute intervals from the counter are the original values
    times, values = zip(*counter, strict=True)
    back = counter_to_intervals(times, values, interval_s=900)
    assert [(iv.start, iv.value) for iv in back] == [
        (iv.start, iv.value) for iv in sample.intervals
    ]


@pytest.mark.data
def test_sample_round_trip(sample: UsageSeries) -> None:
    xml = write_greenbutton(
        sample.intervals, title=sample.title, unit=sample.unit, tz_offset_s=sample.tz_offset_s
    )
    assert parse_greenbutton(xml) == [sample]
    root = ET.fromstring(xml)
    kinds = [e.find(f"{ATOM}content")[0].tag.removeprefix(ESPI) for e in root.iter(f"{ATOM}entry")]
    assert kinds[:4] == ["UsagePoint", "LocalTimeParameters", "MeterReading", "ReadingType"]
    assert kinds[4:] == ["IntervalBlock"] * 14  # one per local (EST) day, 1..14 March
    assert b"<powerOfTenMultiplier>0</powerOfTenMultiplier>" in xml  # integer Wh stay short
    assert b"<cost>974</cost>" in xml and b"<quality>8</quality>" in xml


# --------------------------------------------------------------------------- writing


def test_written_feed_links_like_espi() -> None:
    ivs = [Interval(utc(2024, 1, 1) + timedelta(hours=h), 3600, 100.0 + h) for h in range(30)]
    xml = write_greenbutton(ivs, title="Flat 3", usage_point_id="up-7", tz_offset_s=3600)
    root = ET.fromstring(xml)
    assert root.tag == f"{ATOM}feed"
    entries = {
        e.find(f"{ATOM}content")[0].tag.removeprefix(ESPI) + str(i): e
        for i, e in enumerate(root.iter(f"{ATOM}entry"))
    }
    links = {
        k: [(ln.get("rel"), ln.get("href")) for ln in e.findall(f"{ATOM}link")]
        for k, e in entries.items()
    }
    point = "/espi/1_1/resource/RetailCustomer/1/UsagePoint/up-7"
    assert links["UsagePoint0"] == [
        ("self", point),
        ("up", "/espi/1_1/resource/RetailCustomer/1/UsagePoint"),
        ("related", f"{point}/MeterReading"),
        ("related", "/espi/1_1/resource/LocalTimeParameters/1"),
    ]
    assert ("related", f"{point}/MeterReading/1/IntervalBlock") in links["MeterReading2"]
    assert ("related", "/espi/1_1/resource/ReadingType/1") in links["MeterReading2"]
    assert ("self", "/espi/1_1/resource/ReadingType/1") in links["ReadingType3"]
    assert ("up", f"{point}/MeterReading/1/IntervalBlock") in links["IntervalBlock4"]
    # local midnight at UTC+1 is 23:00 UTC: the first block has 23 readings, the second 7
    blocks = [e for k, e in entries.items() if k.startswith("IntervalBlock")]
    counts = [len(list(b.iter(f"{ESPI}IntervalReading"))) for b in blocks]
    assert counts == [23, 7]
    assert write_greenbutton(ivs, title="Flat 3", usage_point_id="up-7", tz_offset_s=3600) == xml
    [series] = parse_greenbutton(xml.decode())  # XML given as str
    assert series == UsageSeries("Flat 3", "Wh", tuple(ivs), 3600)


def test_fractional_values_get_the_shortest_multiplier() -> None:
    t0 = utc(2024, 6, 1)
    cases = {(1.5, 2.25, -3.0): -2, (0.001, 7.0): -3, (12.5, 3.0): -1, (5.0, 6.0): 0}
    for values, mult in cases.items():
        ivs = [Interval(t0 + timedelta(hours=i), 3600, v) for i, v in enumerate(values)]
        xml = write_greenbutton(ivs)
        assert f"<powerOfTenMultiplier>{mult}</powerOfTenMultiplier>".encode() in xml
        assert [iv.value for iv in parse_greenbutton(xml)[0].intervals] == list(values)
    # below 1 mWh is rounded, nothing beyond that is lost
    ivs = [Interval(t0, 900, 1.23456, quality=0, cost=0.123456789)]
    [back] = parse_greenbutton(write_greenbutton(ivs, unit="uom99", tz_offset_s=None))
    assert back.unit == "uom99" and back.tz_offset_s is None
    assert back.intervals[0].value == 1.235
    assert back.intervals[0].cost == 0.12346
    assert back.intervals[0].quality == 0


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"intervals": [1.0]}, "intervals"),
        ({"unit": "kWh"}, "unit"),
        ({"tz_offset_s": 99999}, "tz_offset_s"),
        ({"usage_point_id": "a/b"}, "usage_point_id"),
        ({"title": "bell\x07"}, "title"),
    ],
)
def test_write_rejects_bad_arguments(kwargs: dict[str, object], word: str) -> None:
    args: dict[str, object] = {"intervals": [Interval(utc(2024, 1, 1), 60, 1.0)], **kwargs}
    with pytest.raises(ParameterError, match=word):
        write_greenbutton(**args)  # type: ignore[arg-type]


def test_too_few_readings_to_export_is_said_in_the_users_words() -> None:
    """Finding 12 (issue 19): exporting a meter whose readings span no whole interval said
    "The 'intervals' parameter of write_greenbutton must be a non-empty sequence", naming
    an internal parameter. The export path (counter_to_intervals -> write_greenbutton) now
    says what is missing in the user's terms, as an InputError (HTTP 4xx, CLI exit 2)."""
    from gridlens.errors import InputError, InsufficientDataError

    for times, values in (
        ([], []),
        ([utc(2024, 1, 1, 10, 5)], [1.0]),
        ([utc(2024, 1, 1, 10, 5), utc(2024, 1, 1, 10, 55)], [1.0, 1.2]),  # no whole hour
    ):
        intervals = counter_to_intervals(times, values, 3600)
        with pytest.raises(InsufficientDataError) as err:
            write_greenbutton(intervals, title="kitchen")
        msg = str(err.value)
        assert isinstance(err.value, InputError)
        assert "'intervals'" not in msg and "write_greenbutton" not in msg, msg
        assert "parameter" not in msg and "Interval" not in msg
        assert "no complete interval" in msg and "readings" in msg
    with pytest.raises(InsufficientDataError) as err:
        intervals_to_counter([])
    assert "intervals_to_counter" not in str(err.value) and "parameter" not in str(err.value)


def test_write_rejects_overlaps_and_subsecond_starts() -> None:
    a = Interval(utc(2024, 1, 1), 3600, 1.0)
    b = Interval(utc(2024, 1, 1, 0, 30), 3600, 1.0)
    with pytest.raises(ParameterError, match="overlap"):
        write_greenbutton([a, b])
    with pytest.raises(ParameterError, match="whole seconds"):
        write_greenbutton([Interval(utc(2024, 1, 1) + timedelta(microseconds=5), 60, 1.0)])


def test_interval_validates_and_normalises_to_utc() -> None:
    local = datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    iv = Interval(local, 60, 1.0)
    assert iv.start.tzinfo is UTC and iv.start == utc(2024, 1, 1)
    with pytest.raises(ParameterError, match="timezone-aware"):
        Interval(datetime(2024, 1, 1), 60, 1.0)
    with pytest.raises(ParameterError, match="duration_s"):
        Interval(utc(2024, 1, 1), 0, 1.0)


def test_to_kwh_refuses_non_energy_units() -> None:
    series = UsageSeries("x", "W", (Interval(utc(2024, 1, 1), 60, 5.0),))
    with pytest.raises(ParameterError, match="energy unit"):
        series.to_kwh()
    therm = UsageSeries("gas", "therm", (Interval(utc(2024, 1, 1), 3600, 2.0),))
    assert therm.to_kwh()[0][1] == pytest.approx(2 * 29.3001, rel=1e-5)


# --------------------------------------------------------------------------- counters


def test_counter_to_intervals_known_answer() -> None:
    times = [
        utc(2024, 5, 1, 0, 30),
        utc(2024, 5, 1, 1, 30),
        utc(2024, 5, 1, 3),
        utc(2024, 5, 1, 3, 20),
    ]
    kwh = [100.0, 101.0, 104.0, 104.1]
    got = counter_to_intervals(times, kwh)
    # 00:00-01:00 starts before the first reading and 03:00-04:00 ends after the last: left out.
    # 01:00-02:00 straddles the 01:30 reading: 0.5 kWh of the first pair + 1.0 of the second.
    # 02:00-03:00 holds 2/3 of the second pair's 3.0 kWh.
    assert [(iv.start, iv.duration_s, iv.value) for iv in got] == [
        (utc(2024, 5, 1, 1), 3600, 1500.0),
        (utc(2024, 5, 1, 2), 3600, 2000.0),
    ]
    assert counter_to_intervals(times[:2], kwh[:2]) == []  # no whole hour is covered
    assert counter_to_intervals([], []) == []


def test_intervals_to_counter_is_the_inverse() -> None:
    ivs = [Interval(utc(2024, 5, 1, h), 3600, wh) for h, wh in enumerate([250.0, 0.0, 1250.5])]
    counter = intervals_to_counter(ivs, start_kwh=10.0)
    assert counter == [
        (utc(2024, 5, 1, 0), 10.0),
        (utc(2024, 5, 1, 1), 10.25),
        (utc(2024, 5, 1, 2), 10.25),
        (utc(2024, 5, 1, 3), 11.5005),
    ]
    times, values = zip(*counter, strict=True)
    back = counter_to_intervals(times, values)
    assert [(iv.start, iv.value) for iv in back] == [(iv.start, iv.value) for iv in ivs]


def test_counter_errors_name_the_problem() -> None:
    t = [utc(2024, 5, 1, h) for h in range(3)]
    with pytest.raises(DataFormatError, match=r"decreases at 2024-05-01T02:00:00\+00:00"):
        counter_to_intervals(t, [5.0, 6.0, 5.5])
    with pytest.raises(DataFormatError, match="must increase"):
        counter_to_intervals([t[0], t[2], t[1]], [1.0, 2.0, 3.0])
    with pytest.raises(DataFormatError, match="not a number"):
        counter_to_intervals(t, [1.0, float("nan"), 3.0])
    with pytest.raises(ParameterError, match="values_kwh"):
        counter_to_intervals(t, [1.0, 2.0])
    with pytest.raises(ParameterError, match="interval_s"):
        counter_to_intervals(t, [1.0, 2.0, 3.0], interval_s=0)
    with pytest.raises(ParameterError, match="timezone-aware"):
        counter_to_intervals([datetime(2024, 1, 1), datetime(2024, 1, 2)], [1.0, 2.0])
    gap = [Interval(utc(2024, 5, 1, 0), 3600, 1.0), Interval(utc(2024, 5, 1, 2), 3600, 1.0)]
    with pytest.raises(ParameterError, match="gap from 2024-05-01T01:00"):
        intervals_to_counter(gap)


# --------------------------------------------------------------------------- bad input


def small_feed() -> bytes:
    ivs = [Interval(utc(2024, 1, 1, h), 3600, 10.0 * h, cost=0.01) for h in range(4)]
    return write_greenbutton(ivs)


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE feed [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&c;</title></feed>"""


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x: x[: len(x) // 2], "not well-formed XML"),
        (lambda x: b"timestamp,kWh\n2024-01-01,3\n", "not well-formed XML"),
        (lambda x: b"", "not well-formed XML"),
        (lambda x: b"<html><body>hi</body></html>", "root element is <html>"),
        (
            lambda x: b'<feed xmlns="http://www.w3.org/2005/Atom"><entry/></feed>',
            "no MeterReading or IntervalBlock",
        ),
        (lambda x: BOMB, "DOCTYPE"),
        (
            lambda x: BOMB.replace(b'<?xml version="1.0"?>', b"").decode().encode("utf-16"),
            "DOCTYPE",
        ),
        (
            lambda x: x.replace(b"<value>10</value>", b"<value>ten</value>"),
            r"IntervalReading 2 of IntervalBlock 1 has a value that is not a number: 'ten'",
        ),
        (
            lambda x: x.replace(b"<start>1704070800</start>", b""),
            "IntervalReading 2 of IntervalBlock 1 has no timePeriod/start",
        ),
        (lambda x: x.replace(b"<uom>72</uom>", b""), "ReadingType entry 1 .* has no uom"),
        (lambda x: x.replace(b"<cost>1000</cost>", b"<cost>1e999</cost>"), "cost that is not"),
        (
            lambda x: x.replace(b"<start>1704070800</start>", b"<start>1704067200</start>"),
            "two different IntervalReadings starting at 2024-01-01T00:00:00",
        ),
    ],
)
def test_bad_documents_raise_one_clear_line(mutate: Callable[[bytes], bytes], message: str) -> None:
    bad = mutate(small_feed())
    with pytest.raises(DataFormatError, match=message) as info:
        parse_greenbutton(bad)
    assert "\n" not in str(info.value)


@pytest.mark.data
def test_bad_real_file_variants(raw: bytes, tmp_path: Path) -> None:
    half = tmp_path / "half.xml"
    half.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"half\.xml is not well-formed XML \(truncated"):
        parse_greenbutton(half)
    bad = raw.replace(b"<value>323</value>", b"<value>3,23</value>")
    with pytest.raises(DataFormatError, match="IntervalReading 2 of IntervalBlock 1 has a value"):
        parse_greenbutton(bad)


def test_missing_file_and_bad_source(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        parse_greenbutton(tmp_path / "nope.xml")
    with pytest.raises(NotFoundError):
        parse_greenbutton(str(tmp_path / "nope.xml"))
    with pytest.raises(ParameterError, match="directory"):
        parse_greenbutton(tmp_path)
    with pytest.raises(ParameterError, match="source"):
        parse_greenbutton(42)  # type: ignore[arg-type]


def test_science_module_imports_no_store_or_server() -> None:
    tree = ast.parse(Path(gb.__file__).read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    gridlens = {n for n in names if n.startswith("gridlens")}
    assert gridlens == {"gridlens.errors"}
