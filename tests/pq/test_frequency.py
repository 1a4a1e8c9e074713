"""Frequency tracker: decimation kernel, sine-interpolated crossings, alias rejection."""

from __future__ import annotations

import numpy as np
import pytest

from gridlens.pq import Harmonic, estimate_frequency, synthesize
from gridlens.pq.frequency import _decimate


def crossing_errors(c, f_hz, fs_hz):  # type: ignore[no-untyped-def]
    """Tracked minus true upward crossings of sin(2π f t), in samples."""
    return c - np.round(c * f_hz / fs_hz) * fs_hz / f_hz


@pytest.mark.parametrize("dec", [2, 5, 12])
def test_decimation_has_unit_gain_and_the_stated_delay(dec):  # type: ignore[no-untyped-def]
    x = 3.0 + 0.25 * np.arange(10_000, dtype=np.float64)  # a ramp: any symmetric kernel keeps it
    y, delay = _decimate(x, dec)
    np.testing.assert_allclose(y, 3.0 + 0.25 * (np.arange(len(y)) * dec + delay), rtol=1e-12)


@pytest.mark.parametrize("f_hz", [59.5, 60.0, 60.37])
def test_pure_tone_crossings_are_exact(f_hz):  # type: ignore[no-untyped-def]
    wf = synthesize([Harmonic(1, 230.0)], [Harmonic(1, 1.0)], f_hz=f_hz, fs_hz=10_000.0)
    track = estimate_frequency(wf.v, wf.fs_hz, f0_hz=60.0)
    assert np.max(np.abs(crossing_errors(track.crossings, f_hz, wf.fs_hz))[3:-3]) < 2e-3
    assert track.f_hz == pytest.approx(f_hz, abs=1e-4)


@pytest.mark.parametrize("f_hz", [59.7, 60.3])
def test_harmonics_near_the_decimated_rate_do_not_alias(f_hz):  # type: ignore[no-untyped-def]
    """31st and 33rd harmonics fold onto the fundamental at 32 samples per cycle unless the
    decimation filter removes them (a plain boxcar left 0.02 samples of crossing jitter)."""
    v = [Harmonic(1, 230.0), Harmonic(5, 10.0), Harmonic(31, 7.0, 20.0), Harmonic(33, 7.0, 70.0)]
    wf = synthesize(v, [Harmonic(1, 1.0)], f_hz=f_hz, fs_hz=10_000.0, duration_s=5.0)
    c = estimate_frequency(wf.v, wf.fs_hz, f0_hz=60.0).crossings
    assert np.std(crossing_errors(c, f_hz, wf.fs_hz)[5:-5]) < 3e-3
    f_window = 12 * wf.fs_hz / np.diff(c[::12])
    assert np.max(np.abs(f_window - f_hz)) < 5e-4


@pytest.mark.parametrize("samples_per_cycle", [16.0, 20.5, 32.0, 47.3, 63.9])
@pytest.mark.parametrize("n", [11, 60, 5_000, 300_000])
def test_bandpass_equals_scipy_sosfiltfilt(samples_per_cycle, n):  # type: ignore[no-untyped-def]
    """The NumPy band-pass (kept so that `gridlens pf` need not import scipy.signal) is scipy's
    butter(1, [0.5 f0, 2 f0], 'bandpass') run by sosfiltfilt, over the whole range of decimated
    rates the tracker uses (16-64 samples per cycle), from the shortest input to many blocks."""
    from scipy import signal

    from gridlens.pq.frequency import _BAND, _butter_bandpass, _filtfilt

    f0 = 60.0
    fs = samples_per_cycle * f0
    rng = np.random.default_rng(n)
    t = np.arange(n) / fs
    x = 230.0 * np.sin(2 * np.pi * 59.8 * t + 0.3) + rng.normal(0.0, 5.0, n) + 17.0
    sos = signal.butter(1, [_BAND[0] * f0, _BAND[1] * f0], btype="bandpass", fs=fs, output="sos")
    b, a = _butter_bandpass(_BAND[0] * f0, _BAND[1] * f0, fs)
    np.testing.assert_allclose(np.concatenate([b, a]), sos[0], rtol=0, atol=1e-14)
    want = signal.sosfiltfilt(sos, x)
    np.testing.assert_allclose(_filtfilt(b, a, x), want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_long_records_track_the_same_with_scipys_filter(monkeypatch):  # type: ignore[no-untyped-def]
    """Records of _SCIPY_FROM decimated samples or more use scipy.signal.sosfiltfilt (4x
    faster than the NumPy recursion once SciPy is loaded); both give the same crossings."""
    from gridlens.pq import frequency

    wf = synthesize([Harmonic(1, 230.0), Harmonic(5, 15.0, 10.0)], [Harmonic(1, 1.0)],
                    f_hz=59.9, fs_hz=6000.0, duration_s=20.0, noise_rms_v=0.5)  # fmt: skip
    monkeypatch.setattr(frequency, "_SCIPY_FROM", 1)
    with_scipy = estimate_frequency(wf.v, wf.fs_hz, f0_hz=60.0).crossings
    monkeypatch.setattr(frequency, "_SCIPY_FROM", 10**12)
    with_numpy = estimate_frequency(wf.v, wf.fs_hz, f0_hz=60.0).crossings
    np.testing.assert_allclose(with_numpy, with_scipy, rtol=0, atol=1e-9)
