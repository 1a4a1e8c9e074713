"""Windowed power-quality analysis with frequency tracking (IEEE 1459 quantities, three PF methods).

:func:`analyze` splits a record into IEC 61000-4-30 style windows of whole fundamental cycles
(10 cycles at 50 Hz, 12 at 60 Hz: about 200 ms) whose boundaries are the tracked zero crossings
of the voltage fundamental, so the windows stay synchronous however far the grid runs off
nominal. Inside each window it evaluates the seed paper's three methods [1]_ and the
IEEE 1459-2010 [2]_ single-phase quantities:

- the fundamental angle θ(t) advances 2π per tracked cycle (linear inside a cycle);
- the quarter-period delay is T/4 of the window's own mean period, so the DQ method and the
  time-delay method see the real T/4 off nominal. The DQ method's β terms are the α products
  averaged over the window delayed by T/4, which is the same integral, so no β signal is
  built. The time-delay method interpolates i(t − T/4) between samples (4-point Lagrange);
- every window mean is the exact integral of the linearly interpolated samples between the
  (fractional) crossing instants, divided by the window length, so windows need not start or
  end on a sample.

The vectorised per-sample work lives in :mod:`gridlens.pq._engine`, whose docstring gives
the method in full.

Aggregates are energy-based: P1, Q1, P and the time-delay Q are averaged over time (as a
billing meter integrates them) and RMS values are quadratic means; the aggregate power factors
follow from those.

References
----------
.. [1] gridlens seed S1 (``../shared/seeds/001_067590a4dbd2b04c.txt``).
.. [2] IEEE Std 1459-2010, §3.1 single-phase systems (V1, I1, P1, Q1, S1, PF1, S_N, THD).
.. [3] IEC 61000-4-30:2015, §4.4 measurement aggregation over 10/12-cycle intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gridlens.errors import DataFormatError, InputError, InsufficientDataError, check_param
from gridlens.pq._engine import window_integrals
from gridlens.pq.frequency import FrequencyTrack, estimate_frequency, nominal_track
from gridlens.pq.methods import dq_from_components

__all__ = ["PQReport", "Quantities", "analyze", "default_window_cycles"]

Float = NDArray[np.float64]
T = TypeVar("T", float, NDArray[np.float64])


@dataclass(frozen=True)
class Quantities(Generic[T]):
    """IEEE 1459 single-phase quantities, per window (arrays) or aggregated (floats).

    Power factors are fractions; ``*_pf`` of the three methods: ``pf_power_triangle``
    (P/(V·I), harmonics included), ``pf_time_delay`` (quarter-period delay Q) and ``pf1``
    (the DQ method: fundamental displacement power factor ``P1/√(P1²+Q1²)``).
    """

    t_s: T  #: window start [s]; for the aggregate, the record's first analysed instant
    duration_s: T  #: window length [s]
    f_hz: T  #: fundamental frequency [Hz]
    v1_rms_v: T  #: fundamental RMS voltage [V]
    i1_rms_a: T  #: fundamental RMS current [A]
    p1_w: T  #: fundamental active power [W]
    q1_var: T  #: fundamental reactive power, > 0 lagging [var]
    s1_va: T  #: fundamental apparent power V1·I1 [VA]
    pf1: T  #: fundamental (displacement) power factor by the DQ method [fraction]
    v_rms_v: T  #: RMS voltage, all components [V]
    i_rms_a: T  #: RMS current, all components [A]
    v_dc_v: T  #: DC offset of the voltage [V]
    i_dc_a: T  #: DC offset of the current [A]
    p_w: T  #: active power, all components [W]
    s_va: T  #: apparent power V·I [VA]
    sn_va: T  #: non-fundamental apparent power √(S² − S1²) [VA]
    thd_v: T  #: voltage distortion √(V_ac² − V1²)/V1, DC excluded [fraction]
    thd_i: T  #: current distortion [fraction]
    pf_power_triangle: T  #: P / (V·I) [fraction]
    q_time_delay_var: T  #: −mean(v(t)·i(t − T/4)), > 0 lagging [var]
    pf_time_delay: T  #: P / √(P² + Q_td²) [fraction]


@dataclass(frozen=True)
class PQReport:
    """Result of :func:`analyze`.

    Attributes
    ----------
    windows : Quantities[ndarray]
        One value per window.
    aggregate : Quantities[float]
        The whole analysed record.
    f0_hz : float
        Nominal frequency. [Hz]
    tracked : bool
        Whether windows follow the tracked frequency (else fixed nominal windows).
    window_cycles : int
        Cycles per window actually used.
    n_windows : int
    n_cycles : int
        Whole cycles analysed (= n_windows · window_cycles).
    fs_hz : float
        Sampling rate. [Hz]
    cycle_f_hz : ndarray
        Tracked frequency of every cycle in the record. [Hz]
    """

    windows: Quantities[Float]
    aggregate: Quantities[float]
    f0_hz: float
    tracked: bool
    window_cycles: int
    n_windows: int
    n_cycles: int
    fs_hz: float
    cycle_f_hz: Float

    @property
    def pf_defined(self) -> bool:
        """Whether the record has a fundamental power factor: False when there is no
        fundamental current (or voltage) at all, e.g. a load switched off or an empty current
        channel. Its power factors (and THD_I) are then NaN; voltage, frequency and the other
        quantities are still measured."""
        return bool(np.isfinite(self.aggregate.pf1))

    @property
    def displacement(self) -> str:
        """``"lagging"`` (inductive, Q1 ≥ 0), ``"leading"`` (capacitive) or ``"undefined"``
        (no power factor: see :attr:`pf_defined`)."""
        if not self.pf_defined:
            return "undefined"
        return "lagging" if self.aggregate.q1_var >= 0 else "leading"


def default_window_cycles(f0_hz: float) -> int:
    """IEC 61000-4-30 window: 10 cycles at 50 Hz, 12 at 60 Hz (round(0.2 s · f0))."""
    return max(1, round(0.2 * f0_hz))


def _finish(
    *,
    t_s: T,
    duration_s: T,
    f_hz: T,
    p1: T,
    q1: T,
    v1: T,
    i1: T,
    vrms: T,
    irms: T,
    vdc: T,
    idc: T,
    p: T,
    qtd: T,
) -> Quantities[T]:
    """Derive every quantity from the independent ones (shared by windows and aggregate).

    A ratio whose denominator is zero (a power factor or THD_I with no current, THD_V with no
    voltage) is NaN: undefined, not an error. Scalars are computed as NumPy floats, so that
    0/0 gives NaN as it does in the per-window arrays, and returned as Python floats.
    """
    if isinstance(p1, float):
        q = _finish(
            **{
                k: np.asarray([x], dtype=np.float64)
                for k, x in dict(
                    t_s=t_s, duration_s=duration_s, f_hz=f_hz, p1=p1, q1=q1, v1=v1, i1=i1,
                    vrms=vrms, irms=irms, vdc=vdc, idc=idc, p=p, qtd=qtd,
                ).items()
            }
        )  # fmt: skip
        return Quantities(**{f.name: float(getattr(q, f.name)[0]) for f in fields(Quantities)})
    with np.errstate(invalid="ignore", divide="ignore"):
        s1 = v1 * i1
        s = vrms * irms
        vac2 = np.maximum(vrms * vrms - vdc * vdc, 0.0)
        iac2 = np.maximum(irms * irms - idc * idc, 0.0)
        return Quantities(
            t_s=t_s,
            duration_s=duration_s,
            f_hz=f_hz,
            v1_rms_v=v1,
            i1_rms_a=i1,
            p1_w=p1,
            q1_var=q1,
            s1_va=s1,
            pf1=p1 / np.hypot(p1, q1),
            v_rms_v=vrms,
            i_rms_a=irms,
            v_dc_v=vdc,
            i_dc_a=idc,
            p_w=p,
            s_va=s,
            sn_va=np.sqrt(np.maximum(s * s - s1 * s1, 0.0)),
            thd_v=np.sqrt(np.maximum(vac2 - v1 * v1, 0.0)) / v1,
            thd_i=np.sqrt(np.maximum(iac2 - i1 * i1, 0.0)) / i1,
            pf_power_triangle=p / s,
            q_time_delay_var=qtd,
            pf_time_delay=p / np.hypot(p, qtd),
        )


def _validate(v: ArrayLike, i: ArrayLike, fs_hz: float) -> tuple[Float, Float]:
    try:
        va = np.asarray(v, dtype=np.float64)
        ia = np.asarray(i, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"samples are not numeric: {exc}") from None
    if va.ndim != 1 or ia.ndim != 1:
        raise InputError(f"v and i must be 1-D sample arrays, got shapes {va.shape} and {ia.shape}")
    if len(va) != len(ia):
        raise InputError(f"v and i lengths differ: {len(va)} vs {len(ia)} samples")
    for name, x in (("v", va), ("i", ia)):
        if np.isfinite(np.sum(x)):  # NaN and ±inf propagate into the sum: the fast check
            continue
        bad = ~np.isfinite(x)
        if bad.any():
            raise DataFormatError(
                f"{int(bad.sum())} non-finite samples in {name} (first at sample"
                f" {int(np.flatnonzero(bad)[0])}); fill or cut the gap first"
            )
    check_param(
        bool(np.isfinite(fs_hz)) and fs_hz > 0, "fs_hz", "analyze", "a positive float", fs_hz
    )
    return va, ia


def analyze(
    v: ArrayLike,
    i: ArrayLike,
    fs_hz: float,
    *,
    f0_hz: float = 60.0,
    window_cycles: int | None = None,
    track_frequency: bool = True,
) -> PQReport:
    """Analyse a single-phase voltage/current record window by window.

    Parameters
    ----------
    v : array_like
        Voltage samples. [V]
    i : array_like
        Current samples, same length; positive into the load. [A]
    fs_hz : float
        Sampling rate; at least 16 samples per nominal cycle. [Hz]
    f0_hz : float, default 60
        Nominal frequency. [Hz]
    window_cycles : int, optional
        Cycles per window; default 10 at 50 Hz, 12 at 60 Hz. A record with fewer whole cycles
        than this (but at least 2) is analysed as one window of all its cycles.
    track_frequency : bool, default True
        Follow the measured frequency. False uses fixed windows at exactly ``f0_hz`` -- the
        plain fixed-window approach, kept for comparison; it drifts off nominal.

    Returns
    -------
    PQReport
        With no current at all (a switched-off load, an empty channel) the power factors and
        THD_I are NaN, ``displacement`` is ``"undefined"`` and ``pf_defined`` is False: a power
        factor needs current, but the voltage, its distortion and the frequency are still
        measured. A window without current has NaN power factors of its own.

    Raises
    ------
    InputError
        Mismatched lengths, non-finite samples, bad parameters.
    InsufficientDataError
        Fewer than two whole fundamental cycles.
    """
    va, ia = _validate(v, i, fs_hz)
    check_param(f0_hz > 0, "f0_hz", "analyze", "a positive float", f0_hz)
    n_win_cyc = default_window_cycles(f0_hz) if window_cycles is None else window_cycles
    check_param(
        isinstance(n_win_cyc, int) and 1 <= n_win_cyc <= 6000,
        "window_cycles",
        "analyze",
        "an int in [1, 6000]",
        window_cycles,
    )
    check_param(
        fs_hz >= 16 * f0_hz, "fs_hz", "analyze", f"at least 16·f0 = {16 * f0_hz:g} Hz", fs_hz
    )
    n = len(va)
    if n < 2 * fs_hz / f0_hz:
        raise InsufficientDataError(
            f"record holds {n / fs_hz * f0_hz:.2f} nominal cycles; need at least 2"
        )
    track: FrequencyTrack = (
        estimate_frequency(va, fs_hz, f0_hz=f0_hz)
        if track_frequency
        else nominal_track(n, fs_hz, f0_hz)
    )
    c = track.crossings
    # the last window ends two samples before the record ends (interpolation); the first
    # starts once its quarter-period delayed copy, and the interpolation taps of the delayed
    # current, lie inside the record
    s_last = int(np.searchsorted(c, n - 3.0, side="right")) - 1
    s0 = int(np.searchsorted(c, 3.0))
    while True:
        n_cyc_avail = s_last - s0
        if n_cyc_avail < 2:
            raise InsufficientDataError("fewer than 2 whole fundamental cycles in the record")
        n_win_cyc = min(n_win_cyc, n_cyc_avail)
        if c[s0] - (c[s0 + n_win_cyc] - c[s0]) / (4.0 * n_win_cyc) >= 3.0:
            break
        s0 += 1
    n_win = n_cyc_avail // n_win_cyc
    edge_idx = s0 + n_win_cyc * np.arange(n_win + 1)
    edges = c[edge_idx]
    length = np.diff(edges)
    integ = window_integrals(va, ia, c, edge_idx)
    vdc, idc, v2, i2, vi = integ.plain / length
    # x_d = x_α·cos θ + x_β·sin θ, x_q = −x_α·sin θ + x_β·cos θ with x_β(t) = x(t − T/4):
    # the β terms are the α products over the quarter-period delayed window (see _engine)
    v_cos, v_sin, i_cos, i_sin = (integ.dq + integ.dq_delayed) / length
    vd, vq, id_, iq = v_cos, -v_sin, i_cos, -i_sin
    vib = integ.time_delay / length
    dq = dq_from_components(vd, vq, id_, iq)
    dur = (edges[1:] - edges[:-1]) / fs_hz
    windows: Quantities[Float] = _finish(
        t_s=edges[:-1] / fs_hz,
        duration_s=dur,
        f_hz=n_win_cyc / dur,
        p1=dq.p1_w,
        q1=dq.q1_var,
        v1=dq.v1_rms_v,
        i1=dq.i1_rms_a,
        vrms=np.sqrt(v2),
        irms=np.sqrt(i2),
        vdc=vdc,
        idc=idc,
        p=vi,
        qtd=-vib,
    )
    total = float(dur.sum())

    def wmean(x: Float) -> float:
        return float(np.dot(x, dur) / total)

    def qmean(x: Float) -> float:
        return float(np.sqrt(np.dot(x * x, dur) / total))

    aggregate: Quantities[float] = _finish(
        t_s=float(edges[0] / fs_hz),
        duration_s=total,
        f_hz=n_win * n_win_cyc / total,
        p1=wmean(windows.p1_w),
        q1=wmean(windows.q1_var),
        v1=qmean(windows.v1_rms_v),
        i1=qmean(windows.i1_rms_a),
        vrms=qmean(windows.v_rms_v),
        irms=qmean(windows.i_rms_a),
        vdc=wmean(windows.v_dc_v),
        idc=wmean(windows.i_dc_a),
        p=wmean(windows.p_w),
        qtd=wmean(windows.q_time_delay_var),
    )
    return PQReport(
        windows=windows,
        aggregate=aggregate,
        f0_hz=float(f0_hz),
        tracked=track_frequency,
        window_cycles=n_win_cyc,
        n_windows=n_win,
        n_cycles=n_win * n_win_cyc,
        fs_hz=float(fs_hz),
        cycle_f_hz=track.cycle_f_hz,
    )


def quantity_names() -> tuple[str, ...]:
    """Field names of :class:`Quantities`, in order."""
    return tuple(f.name for f in fields(Quantities))
