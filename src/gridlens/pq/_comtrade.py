"""COMTRADE records (IEEE C37.111-1999/2013: ``.cfg`` + ``.dat``, or one ``.cff``) with bounded
memory.

Until issue 19 the ``comtrade`` package read records here. It allocates every channel for the
sample count the ``.cfg`` announces before it reads a byte of data (a 229-byte pair announcing
2e8 samples cost 3.45 GB), one list slot per announced channel ("1000000000A" in a 50-byte
``.cfg``), and importing it imports pandas (0.9 s). This module parses the few ``.cfg`` fields
gridlens uses, checking each count against the lines present, checks the announced sample
count against the size of the data (a binary row has a fixed size; an ASCII row is a line),
and decodes only the time stamps (when needed) and the two channels used:

- binary (``BINARY``, ``BINARY32``, ``FLOAT32``): a memory map viewed as one record per row;
- ``ASCII``: ``numpy.loadtxt`` on the needed columns, stopping after the announced rows.

Memory is then O(samples) for the two channels, whatever the number of channels.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import DataFormatError, NotFoundError

__all__ = ["MAX_CFG_BYTES", "ComtradeData", "read_comtrade"]

MAX_CFG_BYTES = 1 << 20
"""Largest ``.cfg`` (or ``.cff`` header part) read [bytes]: about 10 000 channel lines."""

_CHUNK = 1 << 20
_UNIT_SCALE = {"v": 1.0, "kv": 1e3, "mv": 1e-3, "a": 1.0, "ka": 1e3, "ma": 1e-3}
_BINARY = {"BINARY": "<i2", "BINARY32": "<i4", "FLOAT32": "<f4"}
_MISSING = {"ASCII": 99999.0, "BINARY": -32768.0, "BINARY32": -2147483648.0}
_CFF_HEADER = re.compile(
    rb"^\s*---\s*file type:\s*([a-z]+)\s*([a-z0-9]*)\s*(?::\s*(\d+))?\s*---\s*$", re.I
)
_COUNT = re.compile(r"^\s*(\d+)\s*([AD])\s*$", re.I)

Float = NDArray[np.float64]


@dataclass(frozen=True)
class ComtradeData:
    """The two channels of a COMTRADE record that gridlens uses.

    Attributes
    ----------
    v, i : ndarray
        Voltage [V] and current [A] samples (NaN where the record marks a value missing).
    fs_hz : float or None
        The ``.cfg``'s sampling rate [Hz]; None when it has none (time stamps instead).
    t_s : ndarray or None
        Time stamps [s] when ``fs_hz`` is None.
    """

    v: Float
    i: Float
    fs_hz: float | None
    t_s: Float | None


@dataclass(frozen=True)
class _Dat:
    """Where the data lies: ``length`` bytes of ``path`` from ``offset``."""

    path: Path
    offset: int
    length: int


def read_comtrade(
    p: Path, v_name: str | None, i_name: str | None, *, max_samples: int
) -> ComtradeData:
    """Read the voltage and current channels of the COMTRADE record ``p`` (``.cfg``/``.cff``).

    Raises
    ------
    NotFoundError
        The ``.dat`` or a named channel is missing.
    DataFormatError
        Anything malformed, or a ``.cfg`` announcing more samples than its data holds, or more
        than ``max_samples``.
    """
    if p.suffix.lower() == ".cff":
        cfg_text, dat = _split_cff(p)
    else:
        cfg_text, dat = _cfg_and_dat(p)
    cfg = _parse_cfg(p, cfg_text)
    fmt, n_analog, n_status = cfg.ft, len(cfg.analog), cfg.n_status
    positive = [r for r, _ in cfg.rates if r > 0]
    if len(positive) > 1:
        raise DataFormatError(
            f"{p}: {len(positive)} sampling rates in one record are not supported"
        )
    n = cfg.rates[-1][1]
    if n < 1:
        raise DataFormatError(f"{p}: the .cfg announces {n} samples")
    if n > max_samples:
        raise DataFormatError(
            f"{p}: the .cfg announces {n:,} samples per channel, more than the {max_samples:,}"
            " read at once; cut the record into shorter ones"
        )
    names = [ch.name for ch in cfg.analog]
    units = [ch.unit.lower() for ch in cfg.analog]
    kv, ki = _pick(p, names, units, v_name, "v"), _pick(p, names, units, i_name, "a")
    need_time = not positive
    if fmt in _BINARY:
        ts, raw_v, raw_i = _read_binary(p, dat, fmt, n, n_analog, n_status, kv, ki, need_time)
    elif fmt == "ASCII":
        ts, raw_v, raw_i = _read_ascii(p, dat, n, n_analog, n_status, kv, ki, need_time)
    else:
        raise DataFormatError(
            f"{p}: unknown data file type {fmt!r} in the .cfg; expected ASCII, BINARY, BINARY32"
            " or FLOAT32"
        )
    # C37.111-1999 and later mark a missing value; 1991 has no such code
    missing = None if cfg.rev_year == "1991" else _MISSING.get(fmt)
    chans = cfg.analog
    v = _scale(raw_v, chans[kv].a, chans[kv].b, missing) * _UNIT_SCALE.get(units[kv], 1.0)
    i = _scale(raw_i, chans[ki].a, chans[ki].b, missing) * _UNIT_SCALE.get(units[ki], 1.0)
    t_s = None if ts is None else ts * cfg.time_base_s * cfg.timemult
    return ComtradeData(v=v, i=i, fs_hz=positive[0] if positive else None, t_s=t_s)


# ------------------------------------------------------------------------------------ files


def _cfg_and_dat(p: Path) -> tuple[str, _Dat]:
    size = p.stat().st_size
    if size > MAX_CFG_BYTES:
        raise DataFormatError(
            f"{p}: {size:,} bytes is too large for a COMTRADE .cfg (at most {MAX_CFG_BYTES:,})"
        )
    text = p.read_bytes().decode("utf-8", errors="replace")
    same_case = "DAT" if p.suffix[1:].isupper() else "dat"
    candidates = [p.with_suffix("." + same_case), p.with_suffix("." + same_case.swapcase())]
    dat = next((c for c in candidates if c.is_file()), None)
    if dat is None:
        raise NotFoundError(f"{p}: COMTRADE data file missing ({candidates[0].name})")
    return text, _Dat(dat, 0, dat.stat().st_size)


def _split_cff(p: Path) -> tuple[str, _Dat]:
    """The CFG section's text and where the DAT section lies in a combined ``.cff`` file."""
    size = p.stat().st_size
    section: bytes | None = None
    cfg: list[bytes] = []
    read = 0
    with p.open("rb") as fh:
        while True:
            line = fh.readline(MAX_CFG_BYTES)
            if not line:
                raise DataFormatError(f"{p}: no '--- file type: DAT ... ---' section")
            read += len(line)
            m = _CFF_HEADER.match(line.rstrip(b"\r\n"))
            if m:
                section = m.group(1).upper()
                if section == b"DAT":
                    offset = fh.tell()
                    length = size - offset
                    if m.group(3):
                        length = min(length, int(m.group(3)))
                    break
            elif section == b"CFG":
                cfg.append(line)
            if read > MAX_CFG_BYTES:
                raise DataFormatError(
                    f"{p}: more than {MAX_CFG_BYTES:,} bytes before the DAT section"
                )
    if not cfg:
        raise DataFormatError(f"{p}: no '--- file type: CFG ---' section")
    return b"".join(cfg).decode("utf-8", errors="replace"), _Dat(p, offset, length)


# -------------------------------------------------------------------------------------- cfg


@dataclass(frozen=True)
class _Channel:
    name: str
    unit: str
    a: float
    b: float


@dataclass(frozen=True)
class _Cfg:
    """What gridlens needs of a ``.cfg``."""

    rev_year: str
    analog: list[_Channel]
    n_status: int
    rates: list[tuple[float, int]]  # (samp [Hz], endsamp)
    time_base_s: float  # 1e-6, or 1e-9 when a header time stamp has nanoseconds
    ft: str
    timemult: float


def _parse_cfg(p: Path, text: str) -> _Cfg:
    """Parse the fields gridlens uses, checking every count against the lines present."""
    lines = text.splitlines()
    at = 0

    def line(what: str) -> str:
        nonlocal at
        if at >= len(lines):
            raise DataFormatError(f"{p}: the .cfg ends before its {what} (line {at + 1})")
        at += 1
        return lines[at - 1]

    def bad(what: str, got: str) -> DataFormatError:
        return DataFormatError(f"{p}: line {at} of the .cfg should be {what}; got {got[:60]!r}")

    first = line("station line").split(",")
    rev = first[2].strip() if len(first) >= 3 else "1991"
    counts = line("channel counts").split(",")
    m = [_COUNT.match(f) for f in counts[1:3]]
    if len(counts) != 3 or not (m[0] and m[1]) or m[0].group(2).upper() != "A":
        raise bad("the channel counts, e.g. '4,3A,1D'", ",".join(counts))
    n_analog, n_status = int(m[0].group(1)), int(m[1].group(1))
    if 2 + n_analog + n_status + 3 > len(lines):
        raise DataFormatError(
            f"{p}: the .cfg announces {n_analog} analog and {n_status} status channels but has"
            f" only {len(lines)} lines"
        )
    if n_analog < 1:
        raise NotFoundError(f"{p}: the record has no analog channels")
    analog = []
    for _ in range(n_analog):
        f = [x.strip() for x in line("analog channel line").split(",")]
        try:
            analog.append(_Channel(f[1], f[4], float(f[5]), float(f[6] or 0.0)))
        except (IndexError, ValueError):
            raise bad("an analog channel (n,name,ph,ccbm,uu,a,b,...)", ",".join(f)) from None
    at += n_status
    line("line frequency")
    text_n = line("number of sampling rates")
    try:
        n_rates = int(text_n.strip())
    except ValueError:
        raise bad("the number of sampling rates", text_n) from None
    if not 0 <= n_rates <= len(lines) - at:
        raise DataFormatError(
            f"{p}: the .cfg announces {n_rates} sampling rates but has {len(lines) - at} lines"
            " after the count"
        )
    rates = []
    for _ in range(max(n_rates, 1)):
        r = line("sampling rate").split(",")
        try:
            rates.append((float(r[0]), int(r[1])))
        except (IndexError, ValueError):
            raise bad("a sampling rate 'samp,endsamp'", ",".join(r)) from None
    stamps = [line("first time stamp"), line("trigger time stamp")]
    nano = any(len(ts.split(".")[-1].strip()) > 6 for ts in stamps if "." in ts)
    ft = line("data file type").strip().upper()
    timemult = 1.0
    if rev != "1991" and at < len(lines) and lines[at].strip():
        try:
            timemult = float(lines[at])
        except ValueError:
            raise bad("the time stamp multiplier", lines[at]) from None
    if not (math.isfinite(timemult) and timemult > 0):
        raise DataFormatError(f"{p}: time stamp multiplier {timemult} is not positive")
    return _Cfg(rev, analog, n_status, rates, 1e-9 if nano else 1e-6, ft, timemult)


def _pick(p: Path, names: list[str], units: list[str], name: str | None, unit: str) -> int:
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


# -------------------------------------------------------------------------------------- dat


def _truncated(p: Path, dat: _Dat, n: int, held: str, what: str) -> DataFormatError:
    return DataFormatError(
        f"{p}: the .cfg announces {n:,} samples but {dat.path.name} holds {held} ({what});"
        " the data file is truncated or belongs to another .cfg"
    )


def _read_binary(
    p: Path,
    dat: _Dat,
    fmt: str,
    n: int,
    n_analog: int,
    n_status: int,
    kv: int,
    ki: int,
    need_time: bool,
) -> tuple[Float | None, Float, Float]:
    width = np.dtype(_BINARY[fmt]).itemsize
    row = 8 + n_analog * width + 2 * math.ceil(n_status / 16)
    held = dat.length // row
    if held < n:
        raise _truncated(p, dat, n, f"{held:,}", f"{dat.length:,} bytes of {row}-byte rows")
    rec = np.dtype(
        {
            "names": ["t", "v", "i"],
            "formats": ["<u4", _BINARY[fmt], _BINARY[fmt]],
            "offsets": [4, 8 + kv * width, 8 + ki * width],
            "itemsize": row,
        }
    )
    mm = np.memmap(dat.path, dtype=np.uint8, mode="r", offset=dat.offset, shape=(n * row,))
    try:
        rows = np.frombuffer(mm, dtype=rec, count=n)
        ts = rows["t"].astype(np.float64) if need_time else None
        return ts, rows["v"].astype(np.float64), rows["i"].astype(np.float64)
    finally:
        del mm


def _count_lines(dat: _Dat, stop: int) -> int:
    """Lines in the data (a last line without a newline counts), counting up to ``stop``."""
    lines, last = 0, b"\n"
    with dat.path.open("rb") as fh:
        fh.seek(dat.offset)
        left = dat.length
        while left > 0 and lines < stop:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _read_ascii(
    p: Path,
    dat: _Dat,
    n: int,
    n_analog: int,
    n_status: int,
    kv: int,
    ki: int,
    need_time: bool,
) -> tuple[Float | None, Float, Float]:
    # a row is at least one character and a separator per field
    min_row = 2 * (2 + n_analog + n_status)
    if dat.length < n * min_row:
        at_most = f"at most {dat.length // min_row:,}"
        raise _truncated(p, dat, n, at_most, f"{dat.length:,} bytes, at least {min_row} a row")
    held = _count_lines(dat, n)
    if held < n:
        raise _truncated(p, dat, n, f"{held:,}", "lines")
    cols = (2 + kv, 2 + ki, 1) if need_time else (2 + kv, 2 + ki)
    with dat.path.open("rb") as raw:
        raw.seek(dat.offset)
        text = io.TextIOWrapper(raw, encoding="latin-1", newline=None)
        try:
            data = np.loadtxt(
                text, delimiter=",", usecols=cols, max_rows=n, ndmin=2, dtype=np.float64
            )
        except ValueError as exc:
            raise DataFormatError(f"{p}: unreadable row in {dat.path.name} ({exc})") from None
        finally:
            text.detach()
    if data.shape[0] < n:
        raise _truncated(p, dat, n, f"{data.shape[0]:,}", "data rows")
    return (data[:, 2].copy() if need_time else None), data[:, 0].copy(), data[:, 1].copy()


def _scale(raw: Float, a: float, b: float, missing: float | None) -> Float:
    out: Float = a * raw + b
    if missing is not None:
        out[raw == missing] = np.nan
    return out
