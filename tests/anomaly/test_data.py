"""Anomaly data in: CSV/LEAD/KPI/Green Button readers, regular grid, KNN imputation, errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from gridlens.anomaly.data import (
    Series,
    from_arrays,
    read_csv,
    read_greenbutton,
    read_kpi,
    read_lead,
    regularize,
    write_kpi,
    write_lead,
)
from gridlens.errors import (
    DataFormatError,
    InsufficientDataError,
    NotFoundError,
    ParameterError,
)
from gridlens.greenbutton import Interval, write_greenbutton

T0 = 1_577_836_800  # 2020-01-01T00:00:00Z [s]


def csv_text(*lines: str) -> io.StringIO:
    return io.StringIO("\n".join(lines) + "\n")


def iso(t_s: float | np.integer) -> str:
    return datetime.fromtimestamp(float(t_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def daily(n_days: int, step_s: int, *, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """A daily load shape [kW] with a weekday/weekend difference and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_days * 86400 // step_s) * step_s
    hour = (t % 86400) / 3600
    shape = 1.0 + 0.8 * np.exp(-(((hour - 9) / 2.5) ** 2)) + 1.2 * np.exp(-(((hour - 19) / 2) ** 2))
    weekend = ((t // 86400) % 7 >= 5) * 0.3
    return shape - weekend + noise * rng.standard_normal(t.size)


# --------------------------------------------------------------------------- read_csv


def test_regular_csv() -> None:
    s = read_csv(csv_text("timestamp,value", *(f"{iso(T0 + 900 * i)},{i}.5" for i in range(8))))
    assert isinstance(s, Series)
    assert (len(s), s.step_s, s.n_rows, s.n_imputed) == (8, 900, 8, 0)
    assert s.times.dtype == np.dtype("datetime64[s]")
    assert s.times[0] == np.datetime64("2020-01-01T00:00:00")
    np.testing.assert_array_equal(s.values, np.arange(8) + 0.5)
    np.testing.assert_array_equal(s.epoch_s, T0 + 900.0 * np.arange(8))
    assert s.labels is None
    assert s.name == "series"
    assert s.head(3).values.tolist() == [0.5, 1.5, 2.5]


def test_file_name_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "site_a.csv"
    path.write_text(
        "Timestamp, Value ,label\n" + "".join(f"{T0 + 60 * i},{i},{i % 2}\n" for i in range(4))
    )
    s = read_csv(path)
    assert s.name == "site_a" and s.step_s == 60
    assert s.labels is not None and s.labels.dtype == np.int8
    assert s.labels.tolist() == [0, 1, 0, 1]
    assert read_csv(str(path), name="x").name == "x"


def test_iso_and_epoch_agree() -> None:
    t = T0 + 300 * np.arange(6)
    a = read_csv(csv_text("timestamp,value", *(f"{iso(x)},{x % 7}" for x in t)))
    b = read_csv(csv_text("timestamp,value", *(f"{x},{x % 7}" for x in t)))
    c = read_csv(csv_text("timestamp,value", *(f"{x}.0,{x % 7}" for x in t)))
    d = read_csv(csv_text("timestamp,value", *(f"{iso(x).replace('T', ' ')},{x % 7}" for x in t)))
    for other in (b, c, d):
        np.testing.assert_array_equal(a.times, other.times)
        np.testing.assert_array_equal(a.values, other.values)


def test_timezone_aware_converted_to_utc() -> None:
    # Europe/Amsterdam across the 2020 spring DST switch: local 02:00-03:00 does not exist
    s = read_csv(
        csv_text(
            "timestamp,value",
            "2020-03-29T01:30:00+01:00,1",
            "2020-03-29T01:45:00+01:00,2",
            "2020-03-29T03:00:00+02:00,3",
            "2020-03-29T01:15:00Z,4",
        )
    )
    assert s.step_s == 900 and s.n_imputed == 0
    assert s.times.tolist()[0] == datetime(2020, 3, 29, 0, 30)
    assert s.times[-1] == np.datetime64("2020-03-29T01:15:00")


def test_jittered_timestamps_binned_onto_grid() -> None:
    rng = np.random.default_rng(1)
    n = 200
    t = T0 + 900 * np.arange(n) + rng.uniform(0, 60, n)
    v = np.sin(np.arange(n) / 10)
    s = regularize(t, v)
    assert s.step_s == 900 and len(s) == n and s.n_imputed == 0
    np.testing.assert_array_equal(s.epoch_s, T0 + 900.0 * np.arange(n))
    np.testing.assert_allclose(s.values, v)
    # the same through a CSV with readings at 00:00:07, 00:15:02, ...
    lines = [f"{iso(round(x))},{y}" for x, y in zip(t, v, strict=True)]
    assert read_csv(csv_text("timestamp,value", *lines)).step_s == 900


def test_several_points_per_slot_are_averaged() -> None:
    t = T0 + 300 * np.arange(12)  # 5-minute points onto a 15-minute grid
    s = regularize(t, np.arange(12.0), [0, 0, 1] + [0] * 9, step_s=900)
    assert len(s) == 4 and s.n_rows == 12
    np.testing.assert_array_equal(s.values, [1.0, 4.0, 7.0, 10.0])
    assert s.labels is not None and s.labels.tolist() == [1, 0, 0, 0]


def test_step_is_mode_of_differences_despite_gaps() -> None:
    t = T0 + 3600 * np.r_[0:10, 15:20, 40:50]
    s = from_arrays(t, np.ones(t.size))
    assert s.step_s == 3600 and len(s) == 50 and s.n_imputed == 25
    np.testing.assert_allclose(s.values, 1.0)


def test_datetime_inputs() -> None:
    aware = [
        datetime(2020, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))) + timedelta(hours=i)
        for i in range(3)
    ]
    a = regularize(aware, [1, 2, 3])
    b = regularize(
        np.datetime64("2020-01-01T00:00") + np.arange(3) * np.timedelta64(1, "h"), [1, 2, 3]
    )
    np.testing.assert_array_equal(a.times, b.times)
    assert a.epoch_s[0] == T0 and a.step_s == 3600


# --------------------------------------------------------------------------- imputation


def test_knn_imputation_beats_naive_fills() -> None:
    step = 900
    truth = daily(28, step)
    rng = np.random.default_rng(2)
    miss = rng.random(truth.size) < 0.08
    miss[10 * 96 + 30 : 10 * 96 + 54] = True  # a 6-hour outage through the morning peak
    values = np.where(miss, np.nan, truth)
    s = from_arrays(T0 + step * np.arange(truth.size), values, step_s=step)
    assert s.n_imputed == miss.sum()
    np.testing.assert_array_equal(s.imputed, miss)
    np.testing.assert_array_equal(s.values[~miss], truth[~miss])
    assert not np.isnan(s.values).any()
    err_knn = np.sqrt(np.mean((s.values[miss] - truth[miss]) ** 2))
    err_mean = np.sqrt(np.mean((np.nanmean(values) - truth[miss]) ** 2))
    idx = np.arange(truth.size)
    linear = np.interp(idx[miss], idx[~miss], truth[~miss])
    run = slice(10 * 96 + 30, 10 * 96 + 54)
    err_run_knn = np.sqrt(np.mean((s.values[run] - truth[run]) ** 2))
    err_run_lin = np.sqrt(
        np.mean((np.interp(idx[run], idx[~miss], truth[~miss]) - truth[run]) ** 2)
    )
    assert err_knn < 0.3 * err_mean
    assert err_knn < 0.25  # noise 0.05, weekend offset 0.3 [kW]
    assert err_run_knn < 0.5 * err_run_lin
    assert linear.size == miss.sum()


def test_nan_runs_in_csv_are_imputed() -> None:
    rows = [
        f"{T0 + 3600 * i},{'' if 30 <= i < 40 else ('NaN' if i == 50 else (i % 24))}"
        for i in range(96)
    ]
    s = read_csv(csv_text("timestamp,value", *rows))
    assert s.n_rows == 96 and len(s) == 96 and s.n_imputed == 11
    assert s.step_s == 3600
    # hourly data: days are rows of 24; the value is the hour of day in every day
    np.testing.assert_allclose(s.values, np.arange(96) % 24)


def test_short_series_falls_back_to_interpolation() -> None:
    v = np.arange(20.0)
    v[[0, 5, 6, 19]] = np.nan  # less than one day of 15-minute data
    s = from_arrays(T0 + 900 * np.arange(20), v)
    np.testing.assert_allclose(s.values, [1, 1, 2, 3, 4, 5, 6, 7, *range(8, 19), 18])
    assert s.n_imputed == 4


def test_slot_missing_in_every_day_is_interpolated() -> None:
    v = np.tile(np.arange(24.0), 3)
    v[np.arange(72) % 24 == 12] = np.nan
    s = from_arrays(T0 + 3600 * np.arange(72), v)
    np.testing.assert_allclose(s.values, np.tile(np.arange(24.0), 3))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("lines", "error", "needles"),
    [
        (
            [
                "timestamp,value",
                "2020-01-01T00:00:00,1",
                "2020-01-01T00:15:00,2",
                "2020-01-01T00:10:00,3",
            ],
            DataFormatError,
            ["line 4", "2020-01-01T00:10:00", "2020-01-01T00:15:00", "line 3", "earlier"],
        ),
        (
            [
                "timestamp,value",
                "2020-01-01T00:00:00,1",
                "2020-01-01T00:15:00,2",
                "2020-01-01T00:15:00,3",
            ],
            DataFormatError,
            ["line 4", "repeats", "2020-01-01T00:15:00"],
        ),
        (
            ["timestamp,value,label", f"{T0},1,0", f"{T0 + 60},2,0", f"{T0 + 120},3"],
            DataFormatError,
            ["line 4", "truncated"],
        ),
        (["timestamp,value", f"{T0},", f"{T0 + 60},nan"], DataFormatError, ["no numeric values"]),
        (
            ["timestamp,value,label", f"{T0},1,0", f"{T0 + 60},2,2"],
            DataFormatError,
            ["line 3", "'2'", "0 or 1"],
        ),
        (
            ["timestamp,value", f"{T0},1", f"{T0 + 60},1.2.3"],
            DataFormatError,
            ["line 3", "'1.2.3'", "number"],
        ),
        (["timestamp,value", f"{T0},1", f"{T0 + 60},inf"], DataFormatError, ["line 3", "finite"]),
        (
            ["timestamp,value", f"{T0},1", "yesterday,2"],
            DataFormatError,
            ["line 3", "'yesterday'", "timestamp"],
        ),
        (["time,value", f"{T0},1"], DataFormatError, ["timestamp", "header"]),
        (["timestamp,value", f"{T0},1,2"], DataFormatError, ["line 2", "3 fields"]),
        (["timestamp,value"], InsufficientDataError, ["0 point"]),
        (["timestamp,value", f"{T0},1"], InsufficientDataError, ["1 point"]),
    ],
)
def test_bad_csv(lines: list[str], error: type[Exception], needles: list[str]) -> None:
    with pytest.raises(error) as info:
        read_csv(csv_text(*lines))
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.csv is empty"):
        read_csv(tmp_path / "empty.csv")
    with pytest.raises(NotFoundError):
        read_csv(tmp_path / "nope.csv")


def test_regularize_errors() -> None:
    with pytest.raises(InsufficientDataError):
        regularize([T0], [1.0])
    with pytest.raises(ParameterError, match="as long as times"):
        regularize([T0, T0 + 60], [1.0])
    with pytest.raises(ParameterError, match="'step_s' parameter of regularize"):
        regularize([T0, T0 + 60], [1.0, 2.0], step_s=0)
    with pytest.raises(DataFormatError, match="point 3: label 5"):
        regularize([T0, T0 + 60, T0 + 120], [1.0, 2.0, 3.0], [0, 1, 5])
    with pytest.raises(DataFormatError, match=r"point 2: timestamp .* is earlier than .* point 1"):
        regularize([T0 + 60, T0], [1.0, 2.0])
    with pytest.raises(DataFormatError, match="no numeric values"):
        from_arrays([T0, T0 + 60], [np.nan, np.nan])


# --------------------------------------------------------------------------- resample


def test_resample_mean_and_sum() -> None:
    n = 16
    t = T0 + 1800 + 900 * np.arange(n)  # starts at 00:30: the first hour is partial
    v = np.arange(n, dtype=float)
    v[5] = np.nan
    lab = np.zeros(n, dtype=int)
    lab[9] = 1
    s = from_arrays(t, v, lab)
    mean, total = s.resample(3600), s.resample(3600, how="sum")
    assert mean.step_s == 3600 and len(mean) == 5
    assert mean.times[0] == np.datetime64("2020-01-01T00:00:00")
    np.testing.assert_allclose(mean.values[[0, 2, 4]], [0.5, 7.5, 14.5])
    np.testing.assert_allclose(total.values[[0, 2, 4]], [1.0, 30.0, 29.0])
    assert total.values.sum() == pytest.approx(s.values.sum())
    assert mean.labels is not None and mean.labels.tolist() == [0, 0, 1, 0, 0]
    assert mean.imputed.tolist() == [False, True, False, False, False]
    assert s.resample(900).values.tolist() == s.values.tolist()


@pytest.mark.parametrize(
    ("step", "how"), [(1000, "mean"), (600, "mean"), (0, "sum"), (3600, "median")]
)
def test_resample_errors(step: int, how: str) -> None:
    s = from_arrays(T0 + 900 * np.arange(8), np.ones(8))
    with pytest.raises(ParameterError, match=r"parameter of Series\.resample"):
        s.resample(step, how=how)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- multi-series formats


def labelled(name: str, n: int, step: int, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    v = 50 + 10 * rng.standard_normal(n)
    v[rng.random(n) < 0.05] = np.nan
    v[0] = v[-1] = 1.0  # keep the ends, which KPI files cannot carry as missing
    lab = ((rng.random(n) < 0.03) & ~np.isnan(v)).astype(int)  # a missing point has no label
    return from_arrays(T0 + 86400 * seed + step * np.arange(n), v, lab, name=name)


def assert_same(a: Series, b: Series) -> None:
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.imputed, b.imputed)
    assert a.labels is not None and b.labels is not None
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.step_s == b.step_s


def test_lead_round_trip(tmp_path: Path) -> None:
    series = {
        bid: labelled(bid, 24 * 10, 3600, seed)
        for seed, bid in enumerate(["107", "118", "1353"], 1)
    }
    path = tmp_path / "train.csv"
    write_lead(path, series)
    text = path.read_text().splitlines()
    assert text[0] == "building_id,timestamp,meter_reading,anomaly"
    assert text[1].startswith("107,2020-01-02 00:00:00,")
    back = read_lead(path)
    assert list(back) == ["107", "118", "1353"]
    for bid, s in series.items():
        assert back[bid].name == bid and back[bid].n_imputed == s.n_imputed > 0
        assert_same(s, back[bid])


def test_lead_interleaved_rows_and_errors() -> None:
    rows = [f"{b},2016-01-01 {h:02d}:00:00,{h * b},{int(h == 3)}" for h in range(6) for b in (1, 2)]
    back = read_lead(csv_text("building_id,timestamp,meter_reading,anomaly", *rows))
    assert back["2"].values.tolist() == [0, 2, 4, 6, 8, 10]
    assert back["1"].labels is not None and back["1"].labels.tolist() == [0, 0, 0, 1, 0, 0]
    rows[6], rows[8] = rows[8], rows[6]  # building 1: 03:00 before 04:00 swapped
    with pytest.raises(
        DataFormatError,
        match=r"building_id 1\) line 10: timestamp 2016-01-01 03:00:00 is earlier .* line 8",
    ):
        read_lead(csv_text("building_id,timestamp,meter_reading,anomaly", *rows))
    with pytest.raises(DataFormatError, match="anomaly"):
        read_lead(csv_text("building_id,timestamp,meter_reading", "1,2016-01-01 00:00:00,1"))


def test_kpi_round_trip(tmp_path: Path) -> None:
    kpis = ["02e99bd4f6cfb33f", "046ec29ddf80d62e", "9bd90500bfd11edb"]
    series = {k: labelled(k, 1500, 60, seed) for seed, k in enumerate(kpis, 1)}
    path = tmp_path / "phase2_train.csv"
    write_kpi(path, series)
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,value,label,KPI ID"
    assert len(lines) == 1 + sum(len(s) - s.n_imputed for s in series.values())
    back = read_kpi(path)
    assert list(back) == kpis
    for k, s in series.items():
        assert back[k].n_rows == len(s) - s.n_imputed
        assert_same(s, back[k])


# --------------------------------------------------------------------------- Green Button


def test_greenbutton_generated() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ivs = [Interval(start + timedelta(minutes=15 * i), 900, 250.0 + i) for i in range(8) if i != 3]
    s = read_greenbutton(write_greenbutton(ivs, title="Meter 7"))
    assert s.name == "Meter 7" and s.step_s == 900 and len(s) == 8 and s.n_imputed == 1
    assert s.times[0] == np.datetime64("2024-01-01T00:00:00")
    assert s.values[0] == pytest.approx(0.25)  # kWh
    with pytest.raises(ParameterError, match="'which' parameter"):
        read_greenbutton(write_greenbutton(ivs), which=1)


@pytest.fixture(scope="module")
def greenbutton_file(anomaly_data: Path) -> Path:
    files = sorted((anomaly_data.parent / "greenbutton").glob("*.xml"))
    if not files:
        pytest.skip("no Green Button file under GRIDLENS_DATA/greenbutton")
    return files[0]


@pytest.mark.data
def test_greenbutton_real_file(greenbutton_file: Path) -> None:
    s = read_greenbutton(greenbutton_file)
    assert (len(s), s.step_s, s.n_imputed, s.n_rows) == (1340, 900, 0, 1340)
    assert s.values.sum() == pytest.approx(1391.666, abs=1e-6)  # kWh
    assert s.times[0] == np.datetime64("2012-03-01T05:00:00")  # interval start, UTC
    assert s.resample(3600, how="sum").values.sum() == pytest.approx(1391.666, abs=1e-6)


# --------------------------------------------------------------------------- real data sets


@pytest.mark.data
def test_power_demand_1997(anomaly_data: Path) -> None:
    s = read_csv(anomaly_data / "power-demand-1997" / "power_demand_1997.csv")
    assert (len(s), s.step_s, s.n_imputed) == (35040, 900, 0)
    assert s.times[0] == np.datetime64("1997-01-01T00:00:00")
    assert s.labels is not None and int(s.labels.sum()) == 9 * 96  # nine holidays
    daily_labels = s.labels.reshape(365, 96)
    assert (daily_labels.min(axis=1) == daily_labels.max(axis=1)).all()  # whole days


@pytest.mark.data
def test_kpi_cpu4(anomaly_data: Path) -> None:
    s = read_csv(anomaly_data / "kpi" / "cpu4.csv")
    assert (len(s), s.step_s, s.n_imputed, s.name) == (17568, 300, 0, "cpu4")
    assert s.labels is not None and int(s.labels.sum()) == 209
    assert s.epoch_s[0] == 1469376000
