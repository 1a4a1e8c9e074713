"""The seed paper's three power-factor methods on records of whole fundamental cycles.

These are the reference forms of the methods [1]_, vectorised over leading axes: pass
``(..., n)`` arrays holding an integer number of cycles of a known period and get ``(...)``
results. They assume a periodic record (a quarter-period delay wraps around), which is exact
for whole cycles. For measured data of unknown or drifting frequency use
:func:`gridlens.pq.analyze`, which tracks the frequency and windows on cycle boundaries.

Sign convention (IEEE 1459 [2]_): reactive power Q > 0 when the current lags the voltage
(inductive load), Q < 0 when it leads (capacitive).

References
----------
.. [1] gridlens seed S1, "Fundamental power factor measurement under harmonic distortion
   using the DQ transform" (``../shared/seeds/001_067590a4dbd2b04c.txt``).
.. [2] IEEE Std 1459-2010, Definitions for the Measurement of Electric Power Quantities
   Under Sinusoidal, Nonsinusoidal, Balanced, or Unbalanced Conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gridlens.errors import InputError, check_param

__all__ = [
    "DQResult",
    "dq_fundamental",
    "power_triangle_pf",
    "quarter_period_delay",
    "time_delay_pf",
]

Float = NDArray[np.float64]


def _pair(v: ArrayLike, i: ArrayLike) -> tuple[Float, Float]:
    va = np.asarray(v, dtype=np.float64)
    ia = np.asarray(i, dtype=np.float64)
    if va.shape != ia.shape:
        raise InputError(f"voltage and current shapes differ: {va.shape} vs {ia.shape}")
    if va.ndim == 0 or va.shape[-1] < 4:
        raise InputError("need at least 4 samples along the last axis")
    return va, ia


def quarter_period_delay(x: ArrayLike, samples_per_cycle: float) -> Float:
    """Delay a periodic record by a quarter of the fundamental period: ``x(t − T/4)``.

    The delay is applied in the frequency domain, so it is exact for records that hold whole
    cycles, whatever the (fractional) number of samples per cycle.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Samples of whole fundamental cycles.
    samples_per_cycle : float
        Samples in one fundamental period, ``fs / f``.
    """
    xa = np.asarray(x, dtype=np.float64)
    n = xa.shape[-1]
    spectrum = np.fft.rfft(xa, axis=-1)
    k = np.arange(spectrum.shape[-1])
    shift = np.exp(-2j * np.pi * k * (samples_per_cycle / 4.0) / n)
    out: Float = np.fft.irfft(spectrum * shift, n=n, axis=-1)
    return out


def power_triangle_pf(v: ArrayLike, i: ArrayLike) -> Float:
    """True power factor P / (Vrms · Irms), all harmonics included (method 1 of [1]_).

    Parameters
    ----------
    v, i : array_like, shape (..., n)
        Voltage [V] and current [A] over whole cycles.

    Returns
    -------
    ndarray, shape (...)
        Power factor. [fraction]
    """
    va, ia = _pair(v, i)
    p = np.mean(va * ia, axis=-1)
    s = np.sqrt(np.mean(va * va, axis=-1) * np.mean(ia * ia, axis=-1))
    out: Float = p / s
    return out


def time_delay_pf(v: ArrayLike, i: ArrayLike, samples_per_cycle: float) -> Float:
    """Power factor from the quarter-period time-delay reactive power (method 2 of [1]_).

    ``Q = −mean(v(t) · i(t − T/4))`` (signed so that Q > 0 lags), ``PF = P / √(P² + Q²)``.
    Exact for an undistorted voltage; a T/4 delay shifts harmonic h by h·90°, so a distorted
    voltage gives a wrong answer (76.71 % instead of 50 % in the seed's third case).

    Parameters
    ----------
    v, i : array_like, shape (..., n)
        Voltage [V] and current [A] over whole cycles.
    samples_per_cycle : float
        Samples per fundamental period, ``fs / f``.
    """
    va, ia = _pair(v, i)
    check_param(
        samples_per_cycle >= 4,
        "samples_per_cycle",
        "time_delay_pf",
        "a float >= 4",
        samples_per_cycle,
    )
    p = np.mean(va * ia, axis=-1)
    q = -np.mean(va * quarter_period_delay(ia, samples_per_cycle), axis=-1)
    out: Float = p / np.hypot(p, q)
    return out


@dataclass(frozen=True)
class DQResult:
    """Fundamental quantities from the DQ method.

    Attributes
    ----------
    p1_w : ndarray
        Fundamental active power. [W]
    q1_var : ndarray
        Fundamental reactive power, > 0 lagging. [var]
    pf : ndarray
        Fundamental (displacement) power factor ``P1 / √(P1² + Q1²)``. [fraction]
    v1_rms_v, i1_rms_a : ndarray
        Fundamental RMS voltage [V] and current [A].
    """

    p1_w: Float
    q1_var: Float
    pf: Float
    v1_rms_v: Float
    i1_rms_a: Float


def dq_from_components(vd: Float, vq: Float, id_: Float, iq: Float) -> DQResult:
    """Fundamental P1, Q1, PF1 from cycle-averaged d/q components (peak values) [1]_.

    ``P1 = (Vd·Id + Vq·Iq)/2``, ``Q1 = (Vq·Id − Vd·Iq)/2``.
    """
    p1 = (vd * id_ + vq * iq) / 2.0
    q1 = (vq * id_ - vd * iq) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        pf = p1 / np.hypot(p1, q1)
    return DQResult(
        p1_w=p1,
        q1_var=q1,
        pf=pf,
        v1_rms_v=np.hypot(vd, vq) / np.sqrt(2.0),
        i1_rms_a=np.hypot(id_, iq) / np.sqrt(2.0),
    )


def dq_fundamental(v: ArrayLike, i: ArrayLike, samples_per_cycle: float) -> DQResult:
    """Fundamental power by the DQ transform (method 3 of [1]_, the paper's proposal).

    A single-phase signal x gives the αβ pair ``x_α = x(t)``, ``x_β = x(t − T/4)``; the pair is
    rotated at the fundamental angle θ = 2π·k/samples_per_cycle::

        x_d =  x_α·cos θ + x_β·sin θ
        x_q = −x_α·sin θ + x_β·cos θ

    and x_d, x_q are averaged **separately** over the whole cycles, which removes every harmonic
    (h ≥ 2 rotates at (h ± 1)·ω). Averaging the instantaneous p and q instead is wrong (the
    paper's 76.71 %).

    Parameters
    ----------
    v, i : array_like, shape (..., n)
        Voltage [V] and current [A] over whole cycles.
    samples_per_cycle : float
        Samples per fundamental period, ``fs / f``.

    Returns
    -------
    DQResult
    """
    va, ia = _pair(v, i)
    check_param(
        samples_per_cycle >= 4,
        "samples_per_cycle",
        "dq_fundamental",
        "a float >= 4",
        samples_per_cycle,
    )
    theta = 2.0 * np.pi * np.arange(va.shape[-1]) / samples_per_cycle
    c, s = np.cos(theta), np.sin(theta)

    def dq(x: Float) -> tuple[Float, Float]:
        xb = quarter_period_delay(x, samples_per_cycle)
        return np.mean(x * c + xb * s, axis=-1), np.mean(-x * s + xb * c, axis=-1)

    vd, vq = dq(va)
    id_, iq = dq(ia)
    return dq_from_components(vd, vq, id_, iq)
