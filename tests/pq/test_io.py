"""Readers: CSV, .npz and COMTRADE, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from gridlens.errors import DataFormatError, InputError, NotFoundError
from gridlens.pq import Harmonic, analyze, read_waveform, synthesize, write_csv

WF = synthesize(
    [Harmonic(1, 230.0), Harmonic(5, 20.0)],
    [Harmonic(1, 40.0, 30.0), Harmonic(3, 8.0)],
    f_hz=50.2, fs_hz=5000.0, duration_s=0.4,
)  # fmt: skip


def test_csv_with_time(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "w.csv"
    write_csv(WF, p)
    wf = read_waveform(p)
    assert wf.fs_hz == pytest.approx(5000.0, rel=1e-6)
    np.testing.assert_allclose(wf.v, WF.v, rtol=1e-8, atol=1e-6)
    a = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=50.0).aggregate
    assert a.pf1 == pytest.approx(np.cos(np.pi / 6), abs=1e-4)


def test_csv_without_time_needs_fs(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "w.csv"
    write_csv(WF, p, with_time=False)
    with pytest.raises(InputError, match="--fs"):
        read_waveform(p)
    assert read_waveform(p, fs_hz=5000.0).fs_hz == 5000.0


def test_npz(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "w.npz"
    np.savez(p, v=WF.v, i=WF.i, fs=WF.fs_hz)
    wf = read_waveform(p)
    assert wf.fs_hz == 5000.0 and len(wf.v) == len(WF.v)


def test_comtrade(tmp_path, comtrade_writer):  # type: ignore[no-untyped-def]
    cfg = comtrade_writer(WF, tmp_path / "rec")
    wf = read_waveform(cfg)
    assert wf.fs_hz == pytest.approx(5000.0)
    np.testing.assert_allclose(wf.v, WF.v, atol=0.006)
    np.testing.assert_allclose(wf.i, WF.i, atol=0.0006)
    a = analyze(wf.v, wf.i, wf.fs_hz, f0_hz=50.0).aggregate
    assert a.pf1 == pytest.approx(np.cos(np.pi / 6), abs=1e-4)
    assert a.f_hz == pytest.approx(50.2, abs=2e-3)


def test_comtrade_named_and_unknown_channels(tmp_path, comtrade_writer):  # type: ignore[no-untyped-def]
    cfg = comtrade_writer(WF, tmp_path / "rec", v_name="U_L1", i_name="I_L1")
    assert len(read_waveform(cfg, v_channel="u_l1", i_channel="I_L1").v) == len(WF.v)
    with pytest.raises(NotFoundError, match="no analog channel 'VB'"):
        read_waveform(cfg, v_channel="VB")


def test_comtrade_missing_dat(tmp_path, comtrade_writer):  # type: ignore[no-untyped-def]
    cfg = comtrade_writer(WF, tmp_path / "rec")
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(InputError):
        read_waveform(cfg)


BAD_CSV = {
    "non-numeric": ("t,v,i\n0,1,2\n0.001,abc,2\n", DataFormatError, "abc"),
    "nan run": ("t,v,i\n0,1,2\n0.001,nan,2\n0.002,nan,2\n", DataFormatError, "2 missing"),
    "truncated": ("t,v,i\n0,1,2\n0.001,1\n", DataFormatError, "column"),
    "unknown columns": ("t,u,j\n0,1,2\n", NotFoundError, "no column"),
    "empty": ("", DataFormatError, "empty"),
    "header only": ("t,v,i\n", DataFormatError, "no data"),
    "non-uniform": ("t,v,i\n0,1,2\n0.001,1,2\n0.005,1,2\n", DataFormatError, "uniform"),
}


@pytest.mark.parametrize("name", BAD_CSV)
def test_bad_csv(tmp_path, name):  # type: ignore[no-untyped-def]
    text, err, match = BAD_CSV[name]
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(err, match=match):
        read_waveform(p)


def test_missing_file_and_unknown_type(tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError):
        read_waveform(tmp_path / "nope.csv")
    p = tmp_path / "w.xlsx"
    p.write_text("x")
    with pytest.raises(DataFormatError, match="unknown file type"):
        read_waveform(p)


def test_npz_mismatched_lengths_and_missing_arrays(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "w.npz"
    np.savez(p, v=np.ones(10), i=np.ones(9), fs=1000.0)
    with pytest.raises(DataFormatError, match="samples"):
        read_waveform(p)
    np.savez(p, v=np.ones(10), fs=1000.0)
    with pytest.raises(NotFoundError, match="'i'"):
        read_waveform(p)
    p2 = tmp_path / "corrupt.npz"
    p2.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFormatError):
        read_waveform(p2)
