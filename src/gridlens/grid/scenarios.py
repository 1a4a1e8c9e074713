"""Operating scenarios and noisy measurements, built the way the seed paper (S2) builds them.

Scenario ``t`` of ``n`` hourly steps of a sunny day:

- PV output follows a bell: ``pv(t) = pv_peak · exp(-(t - t_mid)² / (2 σ²))`` with the peak at
  the middle step and ``σ = n / 6`` hours (so the first and last steps are ~1 % of the peak);
- a global load factor ``s(t) = 1 + load_rise · pv(t) / pv_peak`` rises by ``load_rise`` (10 %)
  at the PV peak (summer: load follows irradiance);
- each load bus gets its own factor ``1 + δ_b(t)``, ``δ ~ U(-jitter, jitter)`` (±0.02);
- load_b(t) = base_b · s(t) · (1 + δ_b(t)) for both P and Q (constant power factor).

Measurements (:func:`measure`) add independent Gaussian noise with the paper's σ: PMU voltage
magnitude 0.05 % (relative), PMU angle 0.05°, load P and Q 0.75 % relative, PV 0.5 % relative.
Noise is drawn once for a PMU at *every* bus so all placements of a study see the same draws
(common random numbers: placements are compared on equal terms). TVE is always measured against
the noise-free power-flow truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import check_param
from gridlens.grid.feeder import Feeder

__all__ = ["Measurements", "NoiseModel", "ScenarioSet", "measure", "paper_scenarios"]


@dataclass(frozen=True)
class NoiseModel:
    """Standard deviations of the measurement noise (the seed's values by default)."""

    pmu_mag_rel: float = 0.0005
    pmu_angle_deg: float = 0.05
    load_rel: float = 0.0075
    pv_rel: float = 0.005

    @property
    def pmu_angle_rad(self) -> float:
        return float(np.deg2rad(self.pmu_angle_deg))


@dataclass(frozen=True)
class ScenarioSet:
    """``S`` operating points: per-step PV output and every load's P and Q (kW, kvar)."""

    hours: NDArray[np.float64]  # (S,)
    pv_kw: NDArray[np.float64]  # (S, n_gen)
    load_p_kw: NDArray[np.float64]  # (S, n_load)
    load_q_kvar: NDArray[np.float64]  # (S, n_load)

    @property
    def n(self) -> int:
        return len(self.hours)


@dataclass(frozen=True)
class Measurements:
    """Noisy measurements of every scenario (PMU phasors available at every bus)."""

    pmu: NDArray[np.complex128]  # (S, n_bus) noisy phasors in pu
    load_p_kw: NDArray[np.float64]  # (S, n_load)
    load_q_kvar: NDArray[np.float64]  # (S, n_load)
    pv_kw: NDArray[np.float64]  # (S, n_gen)


def paper_scenarios(
    feeder: Feeder,
    n: int = 15,
    *,
    pv_peak_kw: float | None = None,
    load_rise: float = 0.10,
    jitter: float = 0.02,
    seed: int = 0,
) -> ScenarioSet:
    """``n`` hourly scenarios of the seed's sunny day for ``feeder`` (its loads are the base).

    ``pv_peak_kw`` defaults to each generator's own rating in the feeder (100 kW in the paper's
    study). ``n == 1`` gives the paper's single-scenario study: nominal loads, PV at its rating.
    """
    check_param(1 <= n <= 10_000, "n", "paper_scenarios", "an int in [1, 10000]", n)
    check_param(0 <= jitter < 1, "jitter", "paper_scenarios", "a number in [0, 1)", jitter)
    rng = np.random.default_rng(seed)
    base_p = np.array([ld.p_kw for ld in feeder.loads])
    base_q = np.array([ld.q_kvar for ld in feeder.loads])
    rating = np.array([g.p_kw for g in feeder.generators])
    if pv_peak_kw is not None:
        rating = np.full(len(feeder.generators), float(pv_peak_kw))
    hours = np.arange(n, dtype=float)
    if n == 1:
        bell = np.ones(1)
        s = np.ones(1)
        delta = np.zeros((1, len(base_p)))
    else:
        mid, sigma = (n - 1) / 2, n / 6
        bell = np.exp(-((hours - mid) ** 2) / (2 * sigma**2))
        s = 1 + load_rise * bell
        delta = rng.uniform(-jitter, jitter, size=(n, len(base_p)))
    factor = s[:, None] * (1 + delta)
    return ScenarioSet(
        hours=hours,
        pv_kw=bell[:, None] * rating[None, :],
        load_p_kw=factor * base_p[None, :],
        load_q_kvar=factor * base_q[None, :],
    )


def measure(
    truth: NDArray[np.complex128],
    scenarios: ScenarioSet,
    noise: NoiseModel | None = None,
    seed: int = 0,
) -> Measurements:
    """Noisy measurements of ``truth`` phasors (S, n_bus) and of the scenarios' loads and PV."""
    nm = noise or NoiseModel()
    rng = np.random.default_rng([seed, 0x5E2])
    shape = truth.shape
    mag = np.abs(truth) * (1 + rng.normal(0.0, nm.pmu_mag_rel, shape))
    ang = np.angle(truth) + rng.normal(0.0, nm.pmu_angle_rad, shape)
    lp = scenarios.load_p_kw * (1 + rng.normal(0.0, nm.load_rel, scenarios.load_p_kw.shape))
    lq = scenarios.load_q_kvar * (1 + rng.normal(0.0, nm.load_rel, scenarios.load_q_kvar.shape))
    pv = scenarios.pv_kw * (1 + rng.normal(0.0, nm.pv_rel, scenarios.pv_kw.shape))
    return Measurements(mag * np.exp(1j * ang), lp, lq, pv)
