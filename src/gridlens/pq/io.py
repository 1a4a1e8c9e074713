"""Read sampled voltage/current waveforms: CSV, NumPy ``.npz`` and COMTRADE.

- CSV with a header: ``t,v,i`` (seconds, volts, amps) or ``v,i`` plus ``fs_hz``. Column names
  are case-insensitive; other columns are ignored; pick other names with ``v_channel`` /
  ``i_channel``.
- ``.npz`` with arrays ``v``, ``i`` and a scalar ``fs``.
- COMTRADE (IEEE C37.111, ``.cfg`` + ``.dat`` or ``.cff``, ASCII or binary): the ``.cfg`` is
  parsed by the ``comtrade`` package, the data by :mod:`gridlens.pq._comtrade`; the first
  analog channel in V (kV) and the first in A (kA) are used unless named.

Every problem is reported as one :class:`~gridlens.errors.InputError` naming the file. No
reader trusts a size written in the file: see :func:`read_waveform`.
"""

from __future__ import annotations

import lzma
import math
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import DataFormatError, InputError, NotFoundError
from gridlens.pq._comtrade import read_comtrade
from gridlens.pq.synth import Waveform

__all__ = ["MAX_SAMPLES", "read_waveform", "write_csv"]

MAX_SAMPLES = 30_000_000
"""Most samples per channel :func:`read_waveform` reads (50 min at 10 kHz, 480 MB of float64
for v and i together)."""

Float = NDArray[np.float64]
# an .npz member may inflate this much (sampled data compresses a few-fold at most; a deflated
# run of zeros 1000-fold), unless it is this small
_MAX_INFLATION = 100
_INFLATION_FREE_BYTES = 64 << 20
# what zipfile and its decompressors raise on a damaged or unusual archive: unsupported
# features (NotImplementedError), encryption (RuntimeError), bad deflate/bz2/lzma streams
_ZIP_ERRORS = (
    OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError,
    zlib.error, lzma.LZMAError,
)  # fmt: skip
_TIME_JITTER = 0.01  # allowed relative deviation of a time step from the median step


def read_waveform(
    path: str | Path,
    *,
    fs_hz: float | None = None,
    v_channel: str | None = None,
    i_channel: str | None = None,
    max_samples: int = MAX_SAMPLES,
) -> Waveform:
    """Read a voltage/current record from a CSV, ``.npz`` or COMTRADE ``.cfg`` file.

    Parameters
    ----------
    path : str or Path
        The file. COMTRADE: the ``.cfg`` (its ``.dat`` beside it).
    fs_hz : float, optional
        Sampling rate [Hz]; required for CSV files without a ``t`` column, otherwise it must
        agree with the file.
    v_channel, i_channel : str, optional
        Column/channel names of voltage and current (default ``v``/``i``, or the first analog
        channel in volts/amps for COMTRADE).
    max_samples : int, default MAX_SAMPLES
        Most samples per channel read; a longer record is refused before it is loaded. A
        server can pass less.

    Raises
    ------
    NotFoundError
        Missing file, column or channel.
    DataFormatError
        Unparseable content, non-finite values, non-uniform time stamps, a header that
        announces more data than the file holds, more than ``max_samples`` samples.

    Memory stays proportional to the data really present (at most ``max_samples``): sizes
    announced by a COMTRADE ``.cfg`` or an ``.npy`` header are checked against the file
    before anything is allocated, and only the needed ``.npz`` arrays are read.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".csv", ".txt"):
        wf = _read_csv(p, fs_hz, v_channel or "v", i_channel or "i", max_samples)
    elif suffix == ".npz":
        wf = _read_npz(p, fs_hz, v_channel or "v", i_channel or "i", max_samples)
    elif suffix in (".cfg", ".cff"):
        wf = _read_comtrade(p, fs_hz, v_channel, i_channel, max_samples)
    else:
        raise DataFormatError(
            f"{p}: unknown file type '{p.suffix}'; use .csv, .npz or COMTRADE .cfg"
        )
    for name, x in (("v", wf.v), ("i", wf.i)):
        bad = ~np.isfinite(x)
        if bad.any():
            raise DataFormatError(
                f"{p}: {int(bad.sum())} missing or non-finite values in {name}"
                f" (first at sample {int(np.flatnonzero(bad)[0])})"
            )
    if len(wf.v) != len(wf.i):
        raise DataFormatError(f"{p}: v has {len(wf.v)} samples but i has {len(wf.i)}")
    return wf


def _fs_from_time(p: Path, t: Float, fs_hz: float | None) -> float:
    if len(t) < 2:
        raise DataFormatError(f"{p}: fewer than 2 samples")
    dt = np.diff(t)
    step = float(np.median(dt))
    if not step > 0:
        raise DataFormatError(f"{p}: time stamps do not increase")
    dev = np.abs(dt - step) > _TIME_JITTER * step
    if dev.any():
        k = int(np.flatnonzero(dev)[0])
        raise DataFormatError(
            f"{p}: time stamps are not uniformly spaced (step {dt[k]:.6g} s at row {k + 2},"
            f" typical {step:.6g} s); resample first"
        )
    fs = float((len(t) - 1) / (t[-1] - t[0]))
    if fs_hz is not None and abs(fs - fs_hz) > _TIME_JITTER * fs_hz:
        raise InputError(f"{p}: --fs {fs_hz:g} Hz disagrees with the time column ({fs:.6g} Hz)")
    return fs


def _read_csv(p: Path, fs_hz: float | None, v_name: str, i_name: str, max_samples: int) -> Waveform:
    try:
        with p.open(encoding="utf-8-sig") as fh:
            header = fh.readline()
    except UnicodeDecodeError:
        raise DataFormatError(
            f"{p}: not a text CSV (it is not UTF-8); expected a header such as 't,v,i'"
        ) from None
    cols = [c.strip().lower() for c in header.strip().split(",")]
    if not header.strip():
        raise DataFormatError(f"{p}: empty file; expected a header such as 't,v,i'")
    want = {"v": v_name.lower(), "i": i_name.lower()}
    missing = [n for n in want.values() if n not in cols]
    if missing:
        raise NotFoundError(
            f"{p}: no column {', '.join(repr(m) for m in missing)} in header {cols};"
            " expected 't,v,i' or 'v,i' (or name them with --v-channel/--i-channel)"
        )
    use = [cols.index(want["v"]), cols.index(want["i"])]
    has_t = "t" in cols
    if has_t:
        use.append(cols.index("t"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            data = np.loadtxt(
                p, delimiter=",", skiprows=1, usecols=use, ndmin=2, max_rows=max_samples + 1
            )
    except ValueError as exc:
        raise DataFormatError(f"{p}: {exc}") from None
    if data.shape[0] == 0:
        raise DataFormatError(f"{p}: header but no data rows")
    if data.shape[0] > max_samples:
        raise DataFormatError(
            f"{p}: more than {max_samples:,} rows, more than are read at once; cut the record"
            " into shorter ones"
        )
    if has_t:
        fs = _fs_from_time(p, data[:, 2], fs_hz)
    elif fs_hz is None:
        raise InputError(f"{p}: no 't' column, so the sampling rate is unknown; pass --fs HZ")
    else:
        fs = float(fs_hz)
    return Waveform(v=data[:, 0].copy(), i=data[:, 1].copy(), fs_hz=fs, source=str(p))


def _read_npz(p: Path, fs_hz: float | None, v_name: str, i_name: str, max_samples: int) -> Waveform:
    try:
        zf = zipfile.ZipFile(p)
    except _ZIP_ERRORS as exc:
        raise DataFormatError(f"{p}: not a readable .npz file ({exc})") from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        for need in (v_name, i_name):
            if need not in members:
                raise NotFoundError(f"{p}: no array '{need}' (has {sorted(members)})")
        fs: float
        if "fs" in members:
            fs_arr = _npz_member(p, zf, members["fs"], "fs", 1)
            if fs_arr.size != 1:
                raise DataFormatError(f"{p}: 'fs' must be a scalar")
            fs = float(fs_arr.reshape(()))
            if fs_hz is not None and abs(fs - fs_hz) > _TIME_JITTER * fs_hz:
                raise InputError(f"{p}: --fs {fs_hz:g} Hz disagrees with the file's fs = {fs:g} Hz")
        elif fs_hz is not None:
            fs = float(fs_hz)
        else:
            raise NotFoundError(f"{p}: no scalar 'fs' (has {sorted(members)}); pass --fs HZ")
        v = _npz_member(p, zf, members[v_name], v_name, max_samples).astype(np.float64).ravel()
        i = _npz_member(p, zf, members[i_name], i_name, max_samples).astype(np.float64).ravel()
    return Waveform(v=v, i=i, fs_hz=fs, source=str(p))


def _npz_member(p: Path, zf: zipfile.ZipFile, member: str, name: str, max_size: int) -> Float:
    """One array of an .npz, its header checked before its data is read: numeric, at most
    ``max_size`` elements, and no more bytes read than the header announces (the zip's own
    size fields are not trusted: a small deflated member can claim or inflate to gigabytes)."""
    try:
        with zf.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            if dtype.hasobject or dtype.kind not in "biuf":
                raise DataFormatError(f"{p}: array '{name}' is not numeric (dtype {dtype})")
            count = math.prod(shape)
            if count > max_size:
                raise DataFormatError(
                    f"{p}: array '{name}' has {count:,} values, more than the {max_size:,}"
                    " read at once; cut the record into shorter ones"
                )
            nbytes = count * dtype.itemsize
            info = zf.getinfo(member)
            if nbytes > _INFLATION_FREE_BYTES and nbytes > _MAX_INFLATION * info.compress_size:
                raise DataFormatError(
                    f"{p}: array '{name}' would inflate from {info.compress_size:,} to"
                    f" {nbytes:,} bytes, more than {_MAX_INFLATION}-fold: not plausible sampled"
                    " data (save records with numpy.savez, uncompressed)"
                )
            data = fh.read(nbytes)
    except DataFormatError:
        raise
    except _ZIP_ERRORS as exc:
        raise DataFormatError(f"{p}: array '{name}' is not readable ({exc})") from None
    if len(data) < nbytes:
        raise DataFormatError(
            f"{p}: array '{name}' is truncated ({len(data):,} of {nbytes:,} bytes)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count)
    out: Float = arr.reshape(shape, order="F" if fortran else "C")
    return out


def _read_comtrade(
    p: Path, fs_hz: float | None, v_name: str | None, i_name: str | None, max_samples: int
) -> Waveform:
    rec = read_comtrade(p, v_name, i_name, max_samples=max_samples)
    if rec.fs_hz is not None:
        fs = rec.fs_hz
        if fs_hz is not None and abs(fs - fs_hz) > _TIME_JITTER * fs_hz:
            raise InputError(f"{p}: --fs {fs_hz:g} Hz disagrees with the record's {fs:g} Hz")
    else:
        assert rec.t_s is not None
        fs = _fs_from_time(p, rec.t_s, fs_hz)
    return Waveform(v=rec.v, i=rec.i, fs_hz=fs, source=str(p))


def write_csv(wf: Waveform, path: str | Path, *, with_time: bool = True) -> None:
    """Write a waveform as CSV (``t,v,i`` or ``v,i``)."""
    n = len(wf.v)
    if with_time:
        data = np.column_stack([np.arange(n) / wf.fs_hz, wf.v, wf.i])
        np.savetxt(path, data, delimiter=",", header="t,v,i", comments="", fmt="%.9g")
    else:
        data = np.column_stack([wf.v, wf.i])
        np.savetxt(path, data, delimiter=",", header="v,i", comments="", fmt="%.9g")
