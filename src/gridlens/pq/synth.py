"""Synthetic single-phase waveforms, including the seed paper's three test cases.

Waveforms are written as sums of sines on the fundamental phase angle θ(t)::

    v(t) = Σ_h √2·V_h·sin(h·θ(t) − φ_h) + v_dc + noise,    θ(t) = 2π(f·t + ½·r·t²)

with ``V_h`` the RMS amplitude of order ``h`` and ``φ_h`` the lag of that component in degrees
(positive = lagging). This is the model of the seed paper [1]_, whose amplitudes are
``(1, 220 V)``, ``(3, 150 V)``, ``(5, 100 V)`` and whose current components lag by
60°, 30° and 30°. Power-factor results do not depend on the √2 scaling.

References
----------
.. [1] "Fundamental power factor measurement under harmonic distortion using the DQ
   transform" (gridlens seed S1, ``../shared/seeds/001_067590a4dbd2b04c.txt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import check_param

__all__ = ["PAPER_CASES", "Harmonic", "PaperCase", "Waveform", "synthesize"]


@dataclass(frozen=True)
class Harmonic:
    """One harmonic component: order, RMS amplitude [V or A] and lag [degrees]."""

    order: int
    rms: float
    lag_deg: float = 0.0


@dataclass(frozen=True)
class Waveform:
    """A sampled single-phase voltage/current pair.

    Attributes
    ----------
    v : ndarray
        Voltage samples. [V]
    i : ndarray
        Current samples. [A]
    fs_hz : float
        Sampling rate. [Hz]
    source : str
        Where the samples came from (file name or a description).
    """

    v: NDArray[np.float64]
    i: NDArray[np.float64]
    fs_hz: float
    source: str = ""

    @property
    def duration_s(self) -> float:
        """Record length. [s]"""
        return len(self.v) / self.fs_hz


def _component_sum(theta: NDArray[np.float64], parts: Sequence[Harmonic]) -> NDArray[np.float64]:
    out = np.zeros_like(theta)
    for h in parts:
        out += np.sqrt(2.0) * h.rms * np.sin(h.order * theta - np.deg2rad(h.lag_deg))
    return out


def synthesize(
    v_parts: Sequence[Harmonic],
    i_parts: Sequence[Harmonic],
    *,
    f_hz: float = 60.0,
    fs_hz: float = 10_000.0,
    duration_s: float = 1.0,
    f_ramp_hz_per_s: float = 0.0,
    noise_rms_v: float = 0.0,
    noise_rms_a: float = 0.0,
    dc_v: float = 0.0,
    dc_a: float = 0.0,
    seed: int | None = 0,
) -> Waveform:
    """Generate a distorted voltage/current pair.

    Parameters
    ----------
    v_parts, i_parts : sequence of Harmonic
        Components of voltage [V rms] and current [A rms]; lags in degrees.
    f_hz : float
        Fundamental frequency at t = 0. [Hz]
    fs_hz : float
        Sampling rate. [Hz]
    duration_s : float
        Record length. [s]
    f_ramp_hz_per_s : float
        Linear frequency ramp. [Hz/s]
    noise_rms_v, noise_rms_a : float
        Standard deviation of added white Gaussian noise. [V], [A]
    dc_v, dc_a : float
        DC offsets. [V], [A]
    seed : int or None
        Seed of the noise generator.

    Returns
    -------
    Waveform
    """
    check_param(fs_hz > 0, "fs_hz", "synthesize", "a positive float", fs_hz)
    check_param(f_hz > 0, "f_hz", "synthesize", "a positive float", f_hz)
    check_param(duration_s > 0, "duration_s", "synthesize", "a positive float", duration_s)
    n = round(duration_s * fs_hz)
    t = np.arange(n) / fs_hz
    theta = 2.0 * np.pi * (f_hz * t + 0.5 * f_ramp_hz_per_s * t * t)
    v = _component_sum(theta, v_parts) + dc_v
    i = _component_sum(theta, i_parts) + dc_a
    if noise_rms_v or noise_rms_a:
        rng = np.random.default_rng(seed)
        v += rng.normal(0.0, noise_rms_v, n)
        i += rng.normal(0.0, noise_rms_a, n)
    desc = f"synthetic {f_hz:g} Hz, {duration_s:g} s at {fs_hz:g} Hz"
    return Waveform(v=v, i=i, fs_hz=float(fs_hz), source=desc)


@dataclass(frozen=True)
class PaperCase:
    """One test case of the seed paper with its published power factors [fraction]."""

    name: str
    v_parts: tuple[Harmonic, ...]
    i_parts: tuple[Harmonic, ...]
    published_power_triangle: float
    published_time_delay: float
    published_dq: float

    def waveform(
        self, *, f_hz: float = 60.0, cycles: int = 12, samples_per_cycle: int = 512
    ) -> Waveform:
        """Sample this case over ``cycles`` whole cycles."""
        fs = f_hz * samples_per_cycle
        return synthesize(self.v_parts, self.i_parts, f_hz=f_hz, fs_hz=fs, duration_s=cycles / f_hz)


_V1 = Harmonic(1, 220.0)
_I1 = Harmonic(1, 100.0, 60.0)
_I35 = (Harmonic(3, 50.0, 30.0), Harmonic(5, 30.0, 30.0))

PAPER_CASES: tuple[PaperCase, ...] = (
    PaperCase("no distortion", (_V1,), (_I1,), 0.5000, 0.5000, 0.5000),
    PaperCase("current distorted", (_V1,), (_I1, *_I35), 0.4319, 0.5000, 0.5000),
    PaperCase(
        "voltage and current distorted",
        (_V1, Harmonic(3, 150.0), Harmonic(5, 100.0)),
        (_I1, *_I35),
        0.6103,
        0.7671,
        0.5000,
    ),
)
"""The seed's Table (60 Hz; 220 V, 100 A lagging 60°; published PF in [fraction])."""
