"""``gridlens detect FILE --scores-out OUT`` writes a file the user can join to the input.

One row per input row, in input order, with the input's own timestamp text; imputed grid
points only with ``--include-imputed`` (flagged in an ``imputed`` column); local-time
exports across clock changes with ``--tz``; repeated timestamps an error naming the lines
unless ``--duplicates first|mean``.  Small CSVs written here, a profile model (no training).
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gridlens.anomaly.data import DuplicateTimestampError, from_arrays, read_csv
from gridlens.cli import main
from gridlens.errors import DataFormatError, ParameterError

BERLIN = ZoneInfo("Europe/Berlin")
QUARTER = timedelta(minutes=15)


def value(k: int) -> float:
    """A daily 15-minute load shape, rounded so the CSV text is exact."""
    return round(50 + 20 * math.sin(2 * math.pi * k / 96) + (k * 7919 % 13) / 10, 1)


def write(path: Path, stamps: list[str], values: list[str] | None = None) -> Path:
    vals = values if values is not None else [f"{value(k):g}" for k in range(len(stamps))]
    path.write_text(
        "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(stamps, vals, strict=True))
    )
    return path


def utc_stamps(n: int, start: str = "2024-01-01 00:00") -> list[str]:
    t0 = datetime.fromisoformat(start)
    return [(t0 + k * QUARTER).strftime("%Y-%m-%d %H:%M") for k in range(n)]


def local_stamps(start_utc: datetime, n: int) -> list[str]:
    """What a Berlin logger exports: 15-minute instants written as local wall time."""
    return [
        (start_utc + k * QUARTER).astimezone(BERLIN).strftime("%Y-%m-%d %H:%M") for k in range(n)
    ]


def detect(path: Path, out: Path, *extra: str) -> int:
    args = ["detect", str(path), "--model", "profile", "--window", "96"]
    return main([*args, "--scores-out", str(out), *extra])


def read_out(out: Path) -> list[dict[str, str]]:
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- rows kept


def test_every_input_row_comes_back_once_in_order_with_its_own_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamps = utc_stamps(4 * 96)
    stamps[5] = "2024-01-01 01:14"  # off the 15-minute grid (was 01:15)
    del stamps[40:44]  # 10:00-10:45 missing: a gap of four grid points
    values = [f"{value(k):g}" for k in range(len(stamps))]
    values[100] = ""  # a row without a value
    f = write(tmp_path / "load.csv", stamps, values)
    out = tmp_path / "scores.csv"
    assert detect(f, out) == 0
    # imputed: the gap, the empty value, and 01:15 (the 01:14 row is binned at 01:00)
    assert "6 imputed" in capsys.readouterr().out
    rows = read_out(out)
    assert list(rows[0]) == ["timestamp", "value", "score", "is_anomaly"]
    assert [r["timestamp"] for r in rows] == stamps  # 01:14 stays 01:14, no 10:00-10:45
    assert [r["value"] for r in rows] == values  # the empty value stays empty
    assert all(np.isfinite(float(r["score"])) and r["is_anomaly"] in "01" for r in rows)


def test_include_imputed_adds_the_gap_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamps = utc_stamps(4 * 96)
    del stamps[40:44]
    values = [f"{value(k):g}" for k in range(len(stamps))]
    values[100] = ""
    f = write(tmp_path / "load.csv", stamps, values)
    out = tmp_path / "scores.csv"
    assert detect(f, out, "--include-imputed") == 0
    rows = read_out(out)
    assert list(rows[0]) == ["timestamp", "value", "score", "is_anomaly", "imputed"]
    assert len(rows) == len(stamps) + 4
    gap = [f"2024-01-01 10:{m:02d}:00" for m in (0, 15, 30, 45)]  # grid times, file's style
    assert [r["timestamp"] for r in rows] == [*stamps[:40], *gap, *stamps[40:]]
    flagged = [i for i, r in enumerate(rows) if r["imputed"] == "1"]
    assert flagged == [40, 41, 42, 43, 104]  # the gap, then the row without a value
    assert rows[104]["timestamp"] == stamps[100] and rows[104]["value"] != ""
    assert all(r["value"] != "" for r in rows)
    assert "Traceback" not in capsys.readouterr().err


def test_include_imputed_needs_scores_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path / "load.csv", utc_stamps(4 * 96))
    assert main(["detect", str(f), "--model", "profile", "--include-imputed"]) == 2
    assert "--scores-out" in capsys.readouterr().err


def test_epoch_second_input_keeps_its_text(tmp_path: Path) -> None:
    stamps = [str(1_700_000_100 + 900 * k) for k in range(4 * 96)]
    gone = stamps.pop(10)
    f = write(tmp_path / "kpi.csv", stamps)
    out = tmp_path / "scores.csv"
    assert detect(f, out, "--include-imputed") == 0
    rows = read_out(out)
    assert [r["timestamp"] for r in rows if r["imputed"] == "0"] == stamps
    assert [r["timestamp"] for r in rows if r["imputed"] == "1"] == [gone]


# --------------------------------------------------------------------------- clock changes


def test_dst_fall_back_day_reads_in_order_with_tz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2024-10-27 in Berlin: 03:00 CEST becomes 02:00 CET, so 02:00-02:45 appear twice
    stamps = local_stamps(datetime(2024, 10, 24, 22, tzinfo=UTC), 4 * 96)
    first = stamps.index("2024-10-27 02:00")
    assert stamps[first + 4 : first + 8] == stamps[first : first + 4]
    f = write(tmp_path / "berlin.csv", stamps)
    out = tmp_path / "scores.csv"

    assert detect(f, out) == 2  # no zone: the repeated hour is refused, naming the lines
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for k in range(4):  # CSV line = row index + 2
        assert (
            f"line {first + 4 + k + 2} repeats {stamps[first + k]} of line {first + k + 2}" in err
        )
    assert "--duplicates first|mean" in err and "--tz ZONE" in err

    assert detect(f, out, "--tz", "Europe/Berlin", "--include-imputed") == 0
    assert "0 imputed" in capsys.readouterr().out
    rows = read_out(out)
    assert [r["timestamp"] for r in rows] == stamps  # the repeated hour kept, in order
    assert {r["imputed"] for r in rows} == {"0"}
    s = read_csv(f, tz="Europe/Berlin")
    assert len(s) == len(stamps) and s.n_imputed == 0
    assert s.times[first + 4] - s.times[first] == np.timedelta64(3600, "s")


def test_dst_spring_forward_day_has_no_gap_with_tz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2024-03-31 in Berlin: 02:00 CET becomes 03:00 CEST, 02:00-02:45 never happen
    stamps = local_stamps(datetime(2024, 3, 28, 23, tzinfo=UTC), 4 * 96)
    i = stamps.index("2024-03-31 01:45")
    assert stamps[i + 1] == "2024-03-31 03:00"
    f = write(tmp_path / "berlin.csv", stamps)
    out = tmp_path / "scores.csv"
    assert detect(f, out, "--tz", "Europe/Berlin", "--include-imputed") == 0
    assert "0 imputed" in capsys.readouterr().out
    rows = read_out(out)
    assert [r["timestamp"] for r in rows] == stamps and {r["imputed"] for r in rows} == {"0"}
    # read as UTC the skipped hour is a gap of four points, written in the file's style
    assert detect(f, out, "--include-imputed") == 0
    assert "4 imputed" in capsys.readouterr().out
    added = [r["timestamp"] for r in read_out(out) if r["imputed"] == "1"]
    assert added == [f"2024-03-31 02:{m:02d}:00" for m in (0, 15, 30, 45)]


def test_tz_imputed_points_are_written_in_local_time_with_offset(tmp_path: Path) -> None:
    stamps = local_stamps(datetime(2024, 10, 24, 22, tzinfo=UTC), 4 * 96)
    gone = stamps.index("2024-10-27 02:15")
    del stamps[gone + 4]  # the second 02:15 (CET)
    f = write(tmp_path / "berlin.csv", stamps)
    out = tmp_path / "scores.csv"
    assert detect(f, out, "--tz", "Europe/Berlin", "--include-imputed") == 0
    rows = read_out(out)
    assert [r["timestamp"] for r in rows if r["imputed"] == "1"] == ["2024-10-27 02:15:00+01:00"]
    assert [r["timestamp"] for r in rows if r["imputed"] == "0"] == stamps


def test_tz_refuses_a_local_time_the_clock_skips_and_an_unknown_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamps = local_stamps(datetime(2024, 3, 28, 23, tzinfo=UTC), 4 * 96)
    i = stamps.index("2024-03-31 03:00")
    stamps.insert(i, "2024-03-31 02:30")
    f = write(tmp_path / "berlin.csv", stamps)
    assert detect(f, tmp_path / "o.csv", "--tz", "Europe/Berlin") == 2
    err = capsys.readouterr().err
    assert f"line {i + 2}: local time 2024-03-31 02:30 does not exist in Europe/Berlin" in err
    assert detect(f, tmp_path / "o.csv", "--tz", "Europe/Berln") == 2
    err = capsys.readouterr().err
    assert "'tz'" in err and "Europe/Berln" in err and "Traceback" not in err
    with pytest.raises(ParameterError, match="IANA time zone"):
        read_csv(f, tz="Mars/Olympus")


# --------------------------------------------------------------------------- duplicates


def test_repeated_timestamps_are_an_error_naming_the_lines_or_kept_by_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamps = utc_stamps(4 * 96)
    stamps.insert(11, stamps[10])  # 02:30 twice: lines 12 and 13
    values = [f"{value(k):g}" for k in range(len(stamps))]
    values[10], values[11] = "10", "30"
    f = write(tmp_path / "dup.csv", stamps, values)
    out = tmp_path / "scores.csv"
    assert detect(f, out) == 2
    err = capsys.readouterr().err.strip()
    assert "1 repeated timestamp(s): line 13 repeats 2024-01-01 02:30 of line 12" in err
    assert "--duplicates first|mean" in err and len(err.splitlines()) == 1
    assert not out.exists()
    for how, kept in (("first", 10.0), ("mean", 20.0)):
        assert detect(f, out, "--duplicates", how) == 0
        rows = read_out(out)
        assert [r["timestamp"] for r in rows] == stamps  # both rows, each with its value
        assert [r["value"] for r in rows[10:12]] == ["10", "30"]
        assert rows[10]["score"] == rows[11]["score"]  # one grid point, one score
        assert read_csv(f, duplicates=how).values[10] == kept  # type: ignore[arg-type]
    capsys.readouterr()


def test_duplicates_mean_accepts_a_repeated_local_hour_without_tz(tmp_path: Path) -> None:
    stamps = local_stamps(datetime(2024, 10, 24, 22, tzinfo=UTC), 4 * 96)
    f = write(tmp_path / "berlin.csv", stamps)
    out = tmp_path / "scores.csv"
    assert detect(f, out, "--duplicates", "mean") == 0
    assert [r["timestamp"] for r in read_out(out)] == stamps


def test_library_errors_name_every_repeat_and_the_options(tmp_path: Path) -> None:
    t = np.array([0, 900, 900, 1800, 1800, 2700] + [2700 + 900 * k for k in range(1, 30)])
    with pytest.raises(DuplicateTimestampError, match=r"duplicates='first' or 'mean'") as err:
        from_arrays(t, np.sin(t / 5000.0))
    assert err.value.repeats == [(3, 2), (5, 4)]
    assert isinstance(err.value, DataFormatError)
    with pytest.raises(ParameterError, match="'duplicates' parameter"):
        read_csv(write(tmp_path / "x.csv", utc_stamps(10)), duplicates="x")  # type: ignore[arg-type]


def test_a_step_back_to_a_new_time_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamps = utc_stamps(4 * 96)
    stamps[20], stamps[21] = stamps[21], stamps[20]
    f = write(tmp_path / "swap.csv", stamps)
    assert detect(f, tmp_path / "o.csv", "--duplicates", "mean") == 2
    err = capsys.readouterr().err
    assert f"line 23: timestamp {stamps[21]} is earlier than {stamps[20]} of line 22" in err
