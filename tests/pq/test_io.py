"""Readers: CSV, .npz and COMTRADE, and their errors."""

from __future__ import annotations

import re

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


# ------------------------------------------------------------------ sizes in headers (issue 19)

_FMT = {"BINARY": "<i2", "BINARY32": "<i4", "FLOAT32": "<f4"}


def _cfg_text(ft: str, n: int, *, n_analog: int = 4, n_status: int = 18, fs: float = 5000.0) -> str:
    names = ["VA", "IA", "VB", "IB", "VC"][:n_analog]
    units = ["kV", "A", "V", "mA", "V"][:n_analog]
    lines = ["sub,rec,1999", f"{n_analog + n_status},{n_analog}A,{n_status}D"]
    lines += [
        f"{k + 1},{names[k]},A,,{units[k]},{0.01 * (k + 1)},{0.5 * k},0,-99999,99999,1,1,P"
        for k in range(n_analog)
    ]
    lines += [f"{n_analog + k + 1},S{k},,,0" for k in range(n_status)]
    lines += ["50", "1", f"{fs:g},{n}", "01/01/2024,00:00:00.000000", "01/01/2024,00:00:00.000000"]
    lines += [ft, "1"]
    return "\n".join(lines) + "\n"


def _dat_bytes(ft: str, raw: np.ndarray, n_status: int) -> bytes:
    """Rows of ``raw`` (samples x analog channels) in ``ft``, with status words."""
    n, n_analog = raw.shape
    words = -(-n_status // 16)
    if ft == "ASCII":
        status = ",".join(["0"] * n_status)
        sep = "," if n_status else ""
        return "".join(
            f"{k + 1},{200 * k}," + ",".join(f"{x:g}" for x in row) + sep + status + "\n"
            for k, row in enumerate(raw)
        ).encode()
    rec = np.dtype(
        [("n", "<u4"), ("t", "<u4"), ("a", _FMT[ft], (n_analog,)), ("s", "<u2", (words,))]
    )
    rows = np.zeros(n, dtype=rec)
    rows["n"] = np.arange(1, n + 1)
    rows["t"] = 200 * np.arange(n)
    rows["a"] = raw
    rows["s"] = 0x5A5A
    return rows.tobytes()


def _raw(n: int, ft: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    raw = rng.integers(-30000, 30000, size=(n, 4))
    return raw.astype(np.float32) if ft == "FLOAT32" else raw


@pytest.mark.parametrize("ft", ["ASCII", "BINARY", "BINARY32", "FLOAT32"])
def test_comtrade_formats_agree_with_the_comtrade_package(tmp_path, ft):  # type: ignore[no-untyped-def]
    """Every data format, with status channels and more analog channels than are used, reads
    as the `comtrade` package reads it (which gridlens used before issue 19)."""
    import comtrade

    n, n_status = 700, 18
    raw = _raw(n, ft)
    (tmp_path / "r.cfg").write_text(_cfg_text(ft, n, n_status=n_status))
    (tmp_path / "r.dat").write_bytes(_dat_bytes(ft, raw, n_status))
    wf = read_waveform(tmp_path / "r.cfg")
    ref = comtrade.Comtrade(ignore_warnings=True, use_numpy_arrays=True, use_double_precision=True)
    ref.load(str(tmp_path / "r.cfg"))
    np.testing.assert_allclose(wf.v, np.asarray(ref.analog[0]) * 1e3, rtol=1e-12)  # kV
    np.testing.assert_allclose(wf.i, np.asarray(ref.analog[1]), rtol=1e-12)
    assert wf.fs_hz == 5000.0 and len(wf.v) == n
    wf_b = read_waveform(tmp_path / "r.cfg", v_channel="VB", i_channel="IB")
    np.testing.assert_allclose(wf_b.i, np.asarray(ref.analog[3]) * 1e-3, rtol=1e-12)  # mA


@pytest.mark.parametrize("ft", ["ASCII", "BINARY"])
def test_cff_reads_like_the_cfg_dat_pair(tmp_path, ft):  # type: ignore[no-untyped-def]
    n = 300
    raw = _raw(n, ft)
    cfg, dat = _cfg_text(ft, n, n_status=2), _dat_bytes(ft, raw, 2)
    (tmp_path / "r.cfg").write_text(cfg)
    (tmp_path / "r.dat").write_bytes(dat)
    size = f": {len(dat)}" if ft != "ASCII" else ""
    (tmp_path / "r.cff").write_bytes(
        b"--- file type: CFG ---\n" + cfg.encode() + b"--- file type: INF ---\n"
        b"--- file type: HDR ---\n" + f"--- file type: DAT {ft}{size} ---\n".encode() + dat
    )
    a, b = read_waveform(tmp_path / "r.cfg"), read_waveform(tmp_path / "r.cff")
    np.testing.assert_array_equal(a.v, b.v)
    np.testing.assert_array_equal(a.i, b.i)


def test_comtrade_missing_values_are_reported(tmp_path):  # type: ignore[no-untyped-def]
    raw = _raw(200, "BINARY")
    raw[17, 0] = -32768  # C37.111-1999: the missing-value code
    (tmp_path / "r.cfg").write_text(_cfg_text("BINARY", 200, n_status=0))
    (tmp_path / "r.dat").write_bytes(_dat_bytes("BINARY", raw, 0))
    with pytest.raises(DataFormatError, match="1 missing or non-finite values in v"):
        read_waveform(tmp_path / "r.cfg")


ATTACKS = {
    # the reported pair: 5 ASCII rows, 2e8 announced (3.45 GB before issue 19)
    "ascii 2e8": ("ASCII", 200_000_000, 5, "more than the 30,000,000"),
    "ascii 2e7": ("ASCII", 20_000_000, 5, "holds at most"),
    "ascii a few more": ("ASCII", 60, 50, "holds 50 (lines)"),
    "binary 1e9": ("BINARY", 10**9, 5, "more than the 30,000,000"),
    "binary 2e7": ("BINARY", 20_000_000, 5, "holds 5 (60 bytes of 12-byte rows)"),
    "float32 one short": ("FLOAT32", 100, 99, "holds 99"),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_comtrade_announcing_more_samples_than_it_holds(tmp_path, name):  # type: ignore[no-untyped-def]
    """Finding 1: the sample count in the .cfg is checked against the data before anything
    is allocated. Before, the reader allocated every channel for the announced count (and
    padded the missing samples with zeros)."""
    import tracemalloc

    ft, announced, held, match = ATTACKS[name]
    (tmp_path / "r.cfg").write_text(_cfg_text(ft, announced, n_analog=2, n_status=0))
    (tmp_path / "r.dat").write_bytes(_dat_bytes(ft, _raw(held, ft)[:, :2], 0))
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=re.escape(match)):
            read_waveform(tmp_path / "r.cfg")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20


@pytest.mark.parametrize(
    "counts,match",
    [
        ("1000000002,1000000000A,2D", "announces 1000000000 analog"),
        ("2,2A", "channel counts"),
        ("2,2X,0D", "channel counts"),
    ],
)
def test_comtrade_cfg_counts_are_checked_against_its_lines(tmp_path, counts, match):  # type: ignore[no-untyped-def]
    text = _cfg_text("ASCII", 5, n_analog=2, n_status=0).replace("2,2A,0D", counts)
    (tmp_path / "r.cfg").write_text(text)
    (tmp_path / "r.dat").write_bytes(_dat_bytes("ASCII", _raw(5, "ASCII")[:, :2], 0))
    with pytest.raises(DataFormatError, match=match):
        read_waveform(tmp_path / "r.cfg")


def test_comtrade_rate_count_and_cfg_size_are_checked(tmp_path):  # type: ignore[no-untyped-def]
    text = _cfg_text("ASCII", 5, n_analog=2, n_status=0)
    (tmp_path / "r.dat").write_bytes(_dat_bytes("ASCII", _raw(5, "ASCII")[:, :2], 0))
    (tmp_path / "r.cfg").write_text(text.replace("\n50\n1\n", "\n50\n999999999\n"))
    with pytest.raises(DataFormatError, match="999999999 sampling rates"):
        read_waveform(tmp_path / "r.cfg")
    (tmp_path / "r.cfg").write_text(text + "x" * (1 << 21))
    with pytest.raises(DataFormatError, match="too large for a COMTRADE"):
        read_waveform(tmp_path / "r.cfg")


def _npz_with(tmp_path, arrays, extra=b""):  # type: ignore[no-untyped-def]
    import io
    import zipfile

    p = tmp_path / "w.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            if isinstance(arr, bytes):
                zf.writestr(name + ".npy", arr)
                continue
            b = io.BytesIO()
            np.save(b, np.asarray(arr), allow_pickle=True)
            zf.writestr(name + ".npy", b.getvalue())
    return p


def _npy_header(shape, descr="<f8"):  # type: ignore[no-untyped-def]
    import io

    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        b, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return b.getvalue()


def test_npz_reads_only_the_arrays_it_needs(tmp_path):  # type: ignore[no-untyped-def]
    """Finding 1: an unused member is never read (here one whose header announces 1e12
    values: reading it at all would fail)."""
    v = WF.v
    p = _npz_with(tmp_path, {"v": v, "i": WF.i, "fs": WF.fs_hz, "junk": _npy_header((10**12,))})
    wf = read_waveform(p)
    np.testing.assert_array_equal(wf.v, v)


@pytest.mark.parametrize(
    "member,match",
    [
        (_npy_header((10**9,)), "1,000,000,000 values, more than"),
        (_npy_header((1000,)) + bytes(80), "truncated"),
        (_npy_header((3,), "|O"), "not numeric"),
        (_npy_header((3,), "<c16") + bytes(48), "not numeric"),
        (b"\x93NUMPY\x09\x00junk", "not readable"),
    ],
)
def test_npz_member_headers_are_checked_before_reading(tmp_path, member, match):  # type: ignore[no-untyped-def]
    import tracemalloc

    p = _npz_with(tmp_path, {"v": member, "i": WF.i, "fs": WF.fs_hz})
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=match):
            read_waveform(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20


def test_every_reader_caps_the_samples(tmp_path, comtrade_writer):  # type: ignore[no-untyped-def]
    short = synthesize([Harmonic(1, 230.0)], [Harmonic(1, 5.0)], f_hz=50.0, fs_hz=1000.0,
                       duration_s=0.1)  # fmt: skip
    write_csv(short, tmp_path / "w.csv")
    np.savez(tmp_path / "w.npz", v=short.v, i=short.i, fs=short.fs_hz)
    cfg = comtrade_writer(short, tmp_path / "rec")
    for path in (tmp_path / "w.csv", tmp_path / "w.npz", cfg):
        assert len(read_waveform(path, max_samples=100).v) == 100
        with pytest.raises(DataFormatError, match="99"):
            read_waveform(path, max_samples=99)


def test_npz_with_zip_features_python_cannot_read_is_a_format_error(tmp_path):  # type: ignore[no-untyped-def]
    """Found by benchmarks/fuzz.py: a member flagged as compressed patched data made zipfile
    raise NotImplementedError (an internal error, exit 1). Encryption and broken deflate
    streams are the same kind of problem: a file we cannot read."""
    for flags, match in ((0x20, "patched"), (0x01, "encrypted|password")):
        p = tmp_path / f"f{flags}.npz"
        np.savez(p, v=WF.v, i=WF.i, fs=WF.fs_hz)
        raw = bytearray(p.read_bytes())
        central = raw.index(b"PK\x01\x02")  # the first member's central directory entry
        raw[central + 8] |= flags  # its general purpose flags
        p.write_bytes(bytes(raw))
        with pytest.raises(DataFormatError, match=match):
            read_waveform(p)
    p = tmp_path / "deflate.npz"
    np.savez_compressed(p, v=WF.v, i=WF.i, fs=WF.fs_hz)
    raw = bytearray(p.read_bytes())
    start = raw.index(b"v.npy") + 60
    raw[start : start + 40] = bytes(range(200, 240))  # garbage in v's deflate stream
    p.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError):
        read_waveform(p)


def test_npz_member_that_inflates_a_thousand_fold_is_refused_unread(tmp_path):  # type: ignore[no-untyped-def]
    """A deflated run of zeros announcing 80 MB per array in a ~80 kB upload would make a
    small request cost 160 MB plus the analysis: members that large must not inflate more
    than 100-fold (sampled data compresses a few-fold at most)."""
    import tracemalloc
    import zipfile

    p = tmp_path / "zeros.npz"
    n = 10_000_000
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("v", "i"):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                fh.write(_npy_header((n,)))
                for _ in range(n * 8 // 2**20):
                    fh.write(bytes(2**20))
                fh.write(bytes(n * 8 % 2**20))
        zf.writestr("fs.npy", _npy_header(()) + np.float64(5000.0).tobytes())
    assert p.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match="inflate"):
            read_waveform(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20
