"""Read sampled voltage/current waveforms: CSV, NumPy ``.npz`` and COMTRADE.

- CSV with a header: ``t,v,i`` (seconds, volts, amps) or ``v,i`` plus ``fs_hz``. Column names
  are case-insensitive; other columns are ignored; pick other names with ``v_channel`` /
  ``i_channel``.
- ``.npz`` with arrays ``v``, ``i`` and a scalar ``fs``.
- COMTRADE (IEEE C37.111, ``.cfg`` + ``.dat``, ASCII or binary) through the ``comtrade``
  package; the first analog channel in V (kV) and the first in A (kA) are used unless named.

Every problem is reported as one :class:`~gridlens.errors.InputError` naming the file.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import DataFormatError, InputError, NotFoundError
from gridlens.pq.synth import Waveform

__all__ = ["read_waveform", "write_csv"]

Float = NDArray[np.float64]
_TIME_JITTER = 0.01  # allowed relative deviation of a time step from the median step
_UNIT_SCALE = {"v": 1.0, "kv": 1e3, "mv": 1e-3, "a": 1.0, "ka": 1e3, "ma": 1e-3}


def read_waveform(
    path: str | Path,
    *,
    fs_hz: float | None = None,
    v_channel: str | None = None,
    i_channel: str | None = None,
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

    Raises
    ------
    NotFoundError
        Missing file, column or channel.
    DataFormatError
        Unparseable content, non-finite values, non-uniform time stamps.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".csv", ".txt"):
        wf = _read_csv(p, fs_hz, v_channel or "v", i_channel or "i")
    elif suffix == ".npz":
        wf = _read_npz(p, fs_hz, v_channel or "v", i_channel or "i")
    elif suffix in (".cfg", ".cff"):
        wf = _read_comtrade(p, fs_hz, v_channel, i_channel)
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


def _read_csv(p: Path, fs_hz: float | None, v_name: str, i_name: str) -> Waveform:
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
            data = np.loadtxt(p, delimiter=",", skiprows=1, usecols=use, ndmin=2)
    except ValueError as exc:
        raise DataFormatError(f"{p}: {exc}") from None
    if data.shape[0] == 0:
        raise DataFormatError(f"{p}: header but no data rows")
    if has_t:
        fs = _fs_from_time(p, data[:, 2], fs_hz)
    elif fs_hz is None:
        raise InputError(f"{p}: no 't' column, so the sampling rate is unknown; pass --fs HZ")
    else:
        fs = float(fs_hz)
    return Waveform(v=data[:, 0].copy(), i=data[:, 1].copy(), fs_hz=fs, source=str(p))


def _read_npz(p: Path, fs_hz: float | None, v_name: str, i_name: str) -> Waveform:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{p}: not a readable .npz file ({exc})") from None
    for need in (v_name, i_name):
        if need not in arrays:
            raise NotFoundError(f"{p}: no array '{need}' (has {sorted(arrays)})")
    fs: float
    if "fs" in arrays:
        if arrays["fs"].size != 1:
            raise DataFormatError(f"{p}: 'fs' must be a scalar")
        fs = float(arrays["fs"].reshape(()))
        if fs_hz is not None and abs(fs - fs_hz) > _TIME_JITTER * fs_hz:
            raise InputError(f"{p}: --fs {fs_hz:g} Hz disagrees with the file's fs = {fs:g} Hz")
    elif fs_hz is not None:
        fs = float(fs_hz)
    else:
        raise NotFoundError(f"{p}: no scalar 'fs' (has {sorted(arrays)}); pass --fs HZ")
    try:
        v = arrays[v_name].astype(np.float64).ravel()
        i = arrays[i_name].astype(np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{p}: arrays are not numeric ({exc})") from None
    return Waveform(v=v, i=i, fs_hz=fs, source=str(p))


def _read_comtrade(
    p: Path, fs_hz: float | None, v_name: str | None, i_name: str | None
) -> Waveform:
    import comtrade

    rec = comtrade.Comtrade(ignore_warnings=True, use_numpy_arrays=True, use_double_precision=True)
    try:
        rec.load(str(p))
    except FileNotFoundError as exc:
        raise NotFoundError(f"{p}: COMTRADE data file missing ({exc.filename})") from None
    except Exception as exc:  # the reader raises many kinds on malformed files
        raise DataFormatError(f"{p}: not a readable COMTRADE record ({exc})") from None
    chans = rec.cfg.analog_channels
    names = [str(ch.name).strip() for ch in chans]
    units = [str(ch.uu).strip().lower() for ch in chans]

    def pick(name: str | None, unit: str) -> int:
        if name is not None:
            for k, n in enumerate(names):
                if n.lower() == name.lower():
                    return k
            raise NotFoundError(f"{p}: no analog channel '{name}' (has {names})")
        for k, u in enumerate(units):
            if u in (unit, "k" + unit, "m" + unit):
                return k
        raise NotFoundError(
            f"{p}: no analog channel in {unit.upper()} (channels {names} in {units});"
            " name one with --v-channel/--i-channel"
        )

    kv, ki = pick(v_name, "v"), pick(i_name, "a")
    v = np.asarray(rec.analog[kv], dtype=np.float64) * _UNIT_SCALE.get(units[kv], 1.0)
    i = np.asarray(rec.analog[ki], dtype=np.float64) * _UNIT_SCALE.get(units[ki], 1.0)
    rates = [float(r[0]) for r in rec.cfg.sample_rates if float(r[0]) > 0]
    if len(rates) > 1:
        raise DataFormatError(f"{p}: {len(rates)} sampling rates in one record are not supported")
    if rates:
        fs = rates[0]
        if fs_hz is not None and abs(fs - fs_hz) > _TIME_JITTER * fs_hz:
            raise InputError(f"{p}: --fs {fs_hz:g} Hz disagrees with the record's {fs:g} Hz")
    else:
        fs = _fs_from_time(p, np.asarray(rec.time, dtype=np.float64), fs_hz)
    return Waveform(v=v, i=i, fs_hz=fs, source=str(p))


def write_csv(wf: Waveform, path: str | Path, *, with_time: bool = True) -> None:
    """Write a waveform as CSV (``t,v,i`` or ``v,i``)."""
    n = len(wf.v)
    if with_time:
        data = np.column_stack([np.arange(n) / wf.fs_hz, wf.v, wf.i])
        np.savetxt(path, data, delimiter=",", header="t,v,i", comments="", fmt="%.9g")
    else:
        data = np.column_stack([wf.v, wf.i])
        np.savetxt(path, data, delimiter=",", header="v,i", comments="", fmt="%.9g")
