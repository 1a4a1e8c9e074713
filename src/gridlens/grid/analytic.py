"""Analytic placement score from the WLS error covariance (A-optimal design).

Linearise the measurement model at each scenario's true operating point: the state is every
bus's voltage angle and magnitude, the measurements are the bus injections (loads and PV,
with the noise model's sigmas; load-free buses are zero-injection pseudo-measurements with a
1 W sigma) and, for each µPMU, its bus's angle and magnitude. With the Jacobian ``H`` and
``W = diag(1/σ²)`` the estimate's error covariance is ``C = (HᵀWH)⁻¹``. The predicted TVE of bus
``b`` is ``sqrt(π/4) · sqrt(C_|V|b / |V_b|² + C_θb)`` (the mean of a circular Gaussian error's
length), averaged over scenarios; the placement score is its mean over buses — a weighted trace of
``C`` (A-optimality). No power flow or estimation is run, so it scales to feeders where exhaustive
search explodes; greedy search uses rank-one covariance updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import ParameterError
from gridlens.grid.engines import SWITCH_OHM
from gridlens.grid.feeder import Feeder

__all__ = ["AnalyticScorer", "admittance_matrix"]

_S_BASE_VA = 1e6
_MAX_BUSES = 3000


def admittance_matrix(feeder: Feeder) -> NDArray[np.complex128]:
    """Bus admittance matrix in pu (1 MVA base, each bus's own kV base), dense."""
    f = feeder
    n = f.n_bus
    Y = np.zeros((n, n), dtype=complex)
    kv = f.kv_ll

    def add(i: int, j: int, y: complex, t: float = 1.0, ysh: complex = 0.0) -> None:
        Y[i, i] += t * t * y + ysh
        Y[j, j] += y + ysh
        Y[i, j] -= t * y
        Y[j, i] -= t * y

    for ln in f.lines:
        i, j = f.bus_index(ln.from_bus), f.bus_index(ln.to_bus)
        zb = (kv[i] * 1e3) ** 2 / _S_BASE_VA
        z = complex(ln.r_ohm, ln.x_ohm) / zb
        y = 1 / z if abs(z) > 1e-9 else 1e9
        b = 2 * np.pi * f.frequency_hz * ln.c_nf * 1e-9 * zb
        add(i, j, y, 1.0, 0.5j * b)
    for sw in f.switches:
        i, j = f.bus_index(sw.from_bus), f.bus_index(sw.to_bus)
        add(i, j, 1 / (complex(SWITCH_OHM, SWITCH_OHM) / ((kv[i] * 1e3) ** 2 / _S_BASE_VA)))
    for t in f.transformers:
        i, j = f.bus_index(t.from_bus), f.bus_index(t.to_bus)
        z_ohm = complex(t.r_pct, t.x_pct) / 100 * (t.kv_to * t.ratio * 1e3) ** 2 / (t.kva * 1e3)
        z = z_ohm / ((kv[j] * 1e3) ** 2 / _S_BASE_VA)
        y = 1 / z if abs(z) > 1e-9 else 1e9
        tap = t.ratio * kv[i] / t.kv_from if t.kv_from > 0 else t.ratio
        add(i, j, y, float(tap))
    for sh in f.shunts:
        k = f.bus_index(sh.bus)
        Y[k, k] += 1j * sh.q_kvar * 1e3 / _S_BASE_VA * (kv[k] / sh.kv_ll) ** 2
    return Y


class AnalyticScorer:
    """Predicted per-bus TVE of placements from the linearised WLS covariance."""

    name = "analytic"

    def __init__(self) -> None:
        self._cache: tuple[int, NDArray[np.float64], NDArray[np.float64]] | None = None

    def _info(self, study: object) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Information matrices without PMUs (S, 2n, 2n) and PMU weights (S, n, 2)."""
        from gridlens.grid.estimation import Study

        assert isinstance(study, Study)
        key = id(study)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        f, m, nm = study.feeder, study.meas, study.noise
        n = f.n_bus
        if n > _MAX_BUSES:
            raise ParameterError(
                f"the analytic score uses dense {2 * n}x{2 * n} matrices; feeder {f.name!r} has "
                f"{n} buses (limit {_MAX_BUSES}); use --estimator wls with --search greedy"
            )
        Y = admittance_matrix(f)
        src = f.bus_index(f.source_bus)
        load_bus = f.load_bus_indices()
        gen_bus = f.bus_indices(g.bus for g in f.generators)
        S = study.n_scenarios
        G0 = np.empty((S, 2 * n, 2 * n))
        wp = np.empty((S, n, 2))
        for s in range(S):
            V = study.truth[s]
            Vm = np.abs(V)
            cur = Y @ V
            dS_dth = 1j * np.diag(V) @ np.conj(np.diag(cur) - Y * V[None, :])
            dS_dvm = np.diag(V) @ np.conj(Y * (V / Vm)[None, :]) + np.diag(np.conj(cur) * V / Vm)
            Hs = np.hstack([dS_dth, dS_dvm])  # complex (n, 2n)
            var_p = np.full(n, 1e-12)  # zero injection: 1 W in pu of 1 MVA
            var_q = np.full(n, 1e-12)
            np.add.at(var_p, load_bus, (nm.load_rel * m.load_p_kw[s] * 1e3 / _S_BASE_VA) ** 2)
            np.add.at(var_q, load_bus, (nm.load_rel * m.load_q_kvar[s] * 1e3 / _S_BASE_VA) ** 2)
            if len(gen_bus):
                pv_var = (nm.pv_rel * np.maximum(m.pv_kw[s], 1.0) * 1e3 / _S_BASE_VA) ** 2
                np.add.at(var_p, gen_bus, pv_var)
                np.add.at(var_q, gen_bus, (nm.pv_rel * 1e3 / _S_BASE_VA) ** 2)
            keep = np.ones(n, dtype=bool)
            keep[src] = False  # the source injection is not measured
            H = np.vstack([Hs.real[keep], Hs.imag[keep]])
            w = np.concatenate([1 / var_p[keep], 1 / var_q[keep]])
            G0[s] = H.T @ (w[:, None] * H)
            wp[s, :, 0] = 1 / nm.pmu_angle_rad**2
            wp[s, :, 1] = 1 / (nm.pmu_mag_rel * Vm) ** 2
        self._cache = (key, G0, wp)
        return G0, wp

    def _predict(self, study: object, cov_diag: NDArray[np.float64]) -> NDArray[np.float64]:
        from gridlens.grid.estimation import Study

        assert isinstance(study, Study)
        n = study.feeder.n_bus
        vm2 = np.abs(study.truth) ** 2  # (S, n)
        var = cov_diag[..., :n] + cov_diag[..., n:] / vm2
        return np.asarray(np.sqrt(np.pi / 4) * np.sqrt(np.maximum(var, 0.0)))

    def per_bus_tve(
        self, study: object, placements: Sequence[tuple[int, ...]]
    ) -> NDArray[np.float64]:
        """Predicted TVE per placement and bus, averaged over scenarios: (P, n_bus)."""
        G0, wp = self._info(study)
        n = G0.shape[1] // 2
        out = np.empty((len(placements), n))
        for k, p in enumerate(placements):
            G = G0.copy()
            idx = np.asarray(p, dtype=int)
            G[:, idx, idx] += wp[:, idx, 0]
            G[:, n + idx, n + idx] += wp[:, idx, 1]
            try:
                C = np.linalg.inv(G)
            except np.linalg.LinAlgError:
                raise ParameterError(f"placement {p} leaves the feeder unobservable") from None
            diag = np.diagonal(C, axis1=1, axis2=2)
            out[k] = self._predict(study, diag).mean(axis=0)
        return out

    def extend(
        self, study: object, base: tuple[int, ...], candidates: Sequence[int]
    ) -> NDArray[np.float64]:
        """Predicted per-bus TVE of ``base + (c,)`` for every candidate c: (len(cand), n_bus).

        One inverse per scenario, then two rank-one updates per candidate (angle, magnitude).
        """
        G0, wp = self._info(study)
        S, n2, _ = G0.shape
        n = n2 // 2
        cand = np.asarray(candidates, dtype=int)
        out = np.zeros((len(cand), n))
        for s in range(S):
            G = G0[s].copy()
            idx = np.asarray(base, dtype=int)
            G[idx, idx] += wp[s, idx, 0]
            G[n + idx, n + idx] += wp[s, idx, 1]
            try:
                C = np.linalg.inv(G)
            except np.linalg.LinAlgError:
                raise ParameterError(f"placement {base} leaves the feeder unobservable") from None
            d = np.diag(C)[:, None]  # (2n, 1)
            # update 1: angle of candidate bus c (index c)
            w1 = wp[s, cand, 0]
            ci = C[:, cand]  # (2n, m)
            d1 = d - w1 * ci**2 / (1 + w1 * C[cand, cand])
            # column of magnitude index after update 1
            cj = C[:, n + cand] - ci * (w1 * C[cand, n + cand] / (1 + w1 * C[cand, cand]))
            cjj = cj[n + cand, np.arange(len(cand))]
            w2 = wp[s, cand, 1]
            d2 = d1 - w2 * cj**2 / (1 + w2 * cjj)
            vm2 = np.abs(study.truth[s]) ** 2  # type: ignore[attr-defined]
            var = d2[:n].T + d2[n:].T / vm2
            out += np.sqrt(np.pi / 4) * np.sqrt(np.maximum(var, 0.0))
        return np.asarray(out / S)
