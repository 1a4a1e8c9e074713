"""Hourly state estimation of a feeder from its meters' consumption and its µPMUs.

Each hour, every bus gets a load measurement (kW, kvar) with a σ:

- **a bus with meters**: the sum of its meters' energy that hour (kWh in an hour = mean kW),
  each times its mapping's ``scale`` (1 for a customer meter; the demo's meters stand for a
  whole bus load and carry the ratio of the bus's nominal load to the meter's mean), with
  σ = :data:`READ_REL` of the value. A meter with no reading that hour is replaced by a
  **pseudo-measurement from its own profile** (its mean consumption at that hour of the day
  over the window given) with the wider σ = :data:`PSEUDO_REL`;
- **a loaded bus without meters** (its nominal load from the feeder model): the nominal load
  times the feeder's typical shape that hour (the mean over the meters read that hour of
  their energy divided by their own mean), σ = :data:`UNMETERED_REL`; with no meter read at
  all that hour the nominal load itself, σ = :data:`BLIND_REL`;
- reactive power follows each bus's nominal power factor (the feeder's overall one for a bus
  that has none); generators are pseudo-measured at their rating with σ = 50 % of it;
- a bus without load or generator is a zero-injection bus (σ = 1 W);
- each µPMU gives its bus's voltage phasor (σ of the seed's noise model); without a µPMU at
  the source, the source voltage magnitude is a SCADA measurement (σ = 0.5 %).

power-grid-model's WLS (Newton-Raphson) estimates every bus voltage, all hours in one batch.
The uncertainty is the linearised WLS error covariance at the estimate, ``C = (HᵀWH)⁻¹``
(the same model as :mod:`gridlens.grid.analytic`): σ of |V| in pu and of the angle in
degrees for every bus and hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import InputError, ParameterError
from gridlens.grid.analytic import admittance_matrix
from gridlens.grid.engines import PgmNetwork
from gridlens.grid.feeder import Feeder, Load
from gridlens.grid.scenarios import NoiseModel

__all__ = [
    "BLIND_REL",
    "PSEUDO_REL",
    "READ_REL",
    "UNMETERED_REL",
    "BusLoads",
    "HourlyEstimate",
    "HourlySE",
    "MeterSeries",
    "bus_loads",
    "meter_profile",
    "virtual_pmus",
]

F64 = NDArray[np.float64]
C128 = NDArray[np.complex128]

#: σ of a bus load measured by its meters' readings (relative).
READ_REL = 0.03
#: σ of a meter's pseudo-measurement from its own profile (relative).
PSEUDO_REL = 0.30
#: σ of an unmetered bus's load from the feeder's typical shape (relative).
UNMETERED_REL = 0.30
#: σ of an unmetered bus's nominal load when no meter was read that hour (relative).
BLIND_REL = 0.50
#: Range of the typical shape that scales an unmetered bus's nominal load.
SHAPE_MIN, SHAPE_MAX = 0.2, 2.5
_MIN_SIGMA_KW = 0.01
_S_BASE_VA = 1e6
_SOURCE_REL = 0.005


@dataclass(frozen=True)
class MeterSeries:
    """One meter on a bus: its hourly energy (kWh, NaN where it has no reading) and scale."""

    bus: int
    kwh: F64
    scale: float = 1.0
    profile: F64 | None = None
    """Mean kWh by hour of day (24,), NaN where unknown; None: from ``kwh`` itself."""


@dataclass(frozen=True)
class BusLoads:
    """Load measurements of every bus and hour: (H, n_bus) kW and kvar with their σ."""

    p_kw: F64
    q_kvar: F64
    p_sigma: F64
    q_sigma: F64
    read: NDArray[np.int64]  # (H,) meters with a reading
    pseudo: NDArray[np.int64]  # (H,) meters replaced by their profile
    metered: NDArray[np.bool_]  # (n_bus,)


def meter_profile(hours: F64, kwh: F64) -> F64:
    """Mean energy by UTC hour of day (24,) from the hours with a reading (NaN: none)."""
    hod = ((np.asarray(hours) // 3600) % 24).astype(int)
    ok = np.isfinite(kwh)
    total = np.bincount(hod[ok], weights=kwh[ok], minlength=24)
    count = np.bincount(hod[ok], minlength=24)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nominal(feeder: Feeder) -> tuple[F64, F64]:
    p = np.zeros(feeder.n_bus)
    q = np.zeros(feeder.n_bus)
    for ld in feeder.loads:
        k = feeder.bus_index(ld.bus)
        p[k] += ld.p_kw
        q[k] += ld.q_kvar
    return p, q


def bus_loads(feeder: Feeder, hours: F64, meters: Sequence[MeterSeries]) -> BusLoads:
    """The load measurement of every bus in every hour (see the module docstring)."""
    hours = np.asarray(hours, dtype=float)
    H, n = len(hours), feeder.n_bus
    nom_p, nom_q = _nominal(feeder)
    total_p = float(nom_p.sum())
    tan_all = float(nom_q.sum()) / total_p if total_p > 0 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        tan = np.where(nom_p > 0, nom_q / np.where(nom_p > 0, nom_p, 1.0), tan_all)
    p = np.zeros((H, n))
    var = np.zeros((H, n))
    metered = np.zeros(n, dtype=bool)
    read = np.zeros(H, dtype=np.int64)
    pseudo = np.zeros(H, dtype=np.int64)
    shape_sum = np.zeros(H)
    shape_n = np.zeros(H)
    hod = ((hours // 3600) % 24).astype(int)
    for m in meters:
        if not 0 <= m.bus < n:
            raise ParameterError(f"meter bus index {m.bus} out of range 0..{n - 1}")
        kwh = np.asarray(m.kwh, dtype=float)
        if kwh.shape != (H,):
            raise ParameterError(f"a meter's kwh must have {H} hours, got {kwh.shape}")
        prof = meter_profile(hours, kwh) if m.profile is None else np.asarray(m.profile)
        have = np.isfinite(kwh) & (kwh >= 0)
        guess = prof[hod]
        mean = float(np.nanmean(prof)) if np.isfinite(prof).any() else np.nan
        if not np.isfinite(guess).all():  # no reading ever at this hour of day
            fallback = mean if np.isfinite(mean) else nom_p[m.bus] / max(m.scale, 1e-9)
            guess = np.where(np.isfinite(guess), guess, fallback)
        value = np.where(have, kwh, guess) * m.scale
        rel = np.where(have, READ_REL, PSEUDO_REL)
        p[:, m.bus] += value
        var[:, m.bus] += np.maximum(rel * np.abs(value), _MIN_SIGMA_KW) ** 2
        metered[m.bus] = True
        read += have
        pseudo += ~have
        if np.isfinite(mean) and mean > 0:
            shape_sum += np.where(have, kwh / mean, 0.0)
            shape_n += have
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.where(shape_n > 0, shape_sum / np.maximum(shape_n, 1), 1.0)
    # one household's kettle hour is no guess for a whole bus: keep the shape plausible
    shape = np.clip(shape, SHAPE_MIN, SHAPE_MAX)
    rel_un = np.where(shape_n > 0, UNMETERED_REL, BLIND_REL)
    rest = (~metered) & (nom_p > 0)
    p[:, rest] = shape[:, None] * nom_p[None, rest]
    var[:, rest] = np.maximum(rel_un[:, None] * p[:, rest], _MIN_SIGMA_KW) ** 2
    sig = np.sqrt(var)
    return BusLoads(
        p, p * tan[None, :], sig, sig * np.abs(tan)[None, :] + _MIN_SIGMA_KW, read, pseudo, metered
    )


@dataclass(frozen=True)
class HourlyEstimate:
    """Estimated bus voltages (H, n_bus): magnitude pu, angle degrees, and their σ."""

    vm_pu: F64
    va_deg: F64
    vm_sigma: F64
    va_sigma_deg: F64

    @property
    def phasors(self) -> C128:
        return np.asarray(self.vm_pu * np.exp(1j * np.deg2rad(self.va_deg)))


def _hours(loads: BusLoads, sel: slice) -> BusLoads:
    return BusLoads(
        loads.p_kw[sel],
        loads.q_kvar[sel],
        loads.p_sigma[sel],
        loads.q_sigma[sel],
        loads.read[sel],
        loads.pseudo[sel],
        loads.metered,
    )


class HourlySE:
    """WLS state estimation of ``feeder`` hour by hour (every hour of a call in one batch).

    Loads are aggregated per bus (one load per bus that has a nominal load or a meter), so a
    bus's measurement applies to its whole demand.
    """

    def __init__(
        self,
        feeder: Feeder,
        pmu_buses: Sequence[int] = (),
        metered_buses: Sequence[int] = (),
        noise: NoiseModel | None = None,
    ) -> None:
        from power_grid_model import (
            ComponentType,
            DatasetType,
            MeasuredTerminalType,
            PowerGridModel,
            initialize_array,
        )

        feeder.check_connected()
        n = feeder.n_bus
        self.noise = noise or NoiseModel()
        nom_p, nom_q = _nominal(feeder)
        loaded = (nom_p != 0) | (nom_q != 0)
        loaded[list(metered_buses)] = True
        self.load_bus = np.flatnonzero(loaded)
        names = feeder.bus_names
        loads = tuple(
            Load(f"bus:{names[k]}", names[k], float(nom_p[k]), float(nom_q[k]))
            for k in self.load_bus
        )
        from dataclasses import replace

        self.feeder = replace(feeder, loads=loads)
        self.pmu = tuple(sorted({int(b) for b in pmu_buses}))
        if self.pmu and (self.pmu[0] < 0 or self.pmu[-1] >= n):
            raise ParameterError(f"µPMU bus index out of range 0..{n - 1}: {self.pmu}")
        self.net = net = PgmNetwork(self.feeder)
        f = self.feeder
        self.src = f.bus_index(f.source_bus)
        data = dict(net.input_data)
        vbus = list(self.pmu) + ([self.src] if self.src not in self.pmu else [])
        self.vbus = np.asarray(vbus, dtype=int)
        vs = initialize_array(DatasetType.input, ComponentType.sym_voltage_sensor, len(vbus))
        vs["id"] = net.new_ids(len(vbus))
        vs["measured_object"] = self.vbus
        vs["u_sigma"] = f.kv_ll[self.vbus] * 1e3 * _SOURCE_REL
        vs["u_measured"] = f.kv_ll[self.vbus] * 1e3 * f.source_pu
        vs["u_angle_measured"] = np.nan
        gen_bus = {g.bus for g in f.generators}
        load_names = {ld.bus for ld in f.loads}
        zero = [
            k
            for k, b in enumerate(f.bus_names)
            if b not in load_names and b not in gen_bus and k != self.src
        ]
        nl, ng = len(f.loads), len(f.generators)
        ps = initialize_array(
            DatasetType.input, ComponentType.sym_power_sensor, nl + ng + len(zero)
        )
        ps["id"] = net.new_ids(len(ps))
        ps["measured_object"] = np.concatenate([net.load_ids, net.gen_ids, zero]).astype(int)
        ps["measured_terminal_type"][:nl] = MeasuredTerminalType.load
        ps["measured_terminal_type"][nl : nl + ng] = MeasuredTerminalType.generator
        ps["measured_terminal_type"][nl + ng :] = MeasuredTerminalType.node
        ps["p_measured"] = ps["q_measured"] = 0.0
        ps["p_sigma"] = ps["q_sigma"] = 1.0
        ps["power_sigma"] = np.nan
        data[ComponentType.sym_voltage_sensor] = vs
        data[ComponentType.sym_power_sensor] = ps
        self.vs_ids, self.ps_ids = vs["id"], ps["id"]
        self.nl, self.ng, self.nz = nl, ng, len(zero)
        self.gen_p = np.array([g.p_kw for g in f.generators])
        self.model = PowerGridModel(data, system_frequency=f.frequency_hz)
        self.Y = admittance_matrix(f)
        self.gen_idx = f.bus_indices(g.bus for g in f.generators)
        self.zero_idx = np.asarray(zero, dtype=int)

    def estimate(self, loads: BusLoads, pmu: C128 | None = None) -> HourlyEstimate:
        """Estimate every hour of ``loads``; ``pmu`` (H, len(pmu_buses)) phasors in pu
        (NaN: that µPMU gave nothing that hour)."""
        from power_grid_model import ComponentType, DatasetType
        from power_grid_model import initialize_array as init

        f, nm = self.feeder, self.noise
        H = loads.p_kw.shape[0]
        if H == 0:
            e = np.empty((0, f.n_bus))
            return HourlyEstimate(e, e, e, e)
        lb = self.load_bus
        z_p = np.concatenate(
            [loads.p_kw[:, lb], np.tile(self.gen_p * 0.5, (H, 1)), np.zeros((H, self.nz))], axis=1
        )
        z_q = np.concatenate([loads.q_kvar[:, lb], np.zeros((H, self.ng + self.nz))], axis=1)
        gen_sig = np.maximum(self.gen_p * 0.5, 1.0)
        s_p = np.concatenate(
            [loads.p_sigma[:, lb], np.tile(gen_sig, (H, 1)), np.full((H, self.nz), 1e-3)], axis=1
        )
        s_q = np.concatenate(
            [loads.q_sigma[:, lb], np.tile(gen_sig, (H, 1)), np.full((H, self.nz), 1e-3)], axis=1
        )
        pu = init(DatasetType.update, ComponentType.sym_power_sensor, (H, len(self.ps_ids)))
        pu["id"] = self.ps_ids
        pu["p_measured"], pu["q_measured"] = z_p * 1e3, z_q * 1e3
        pu["p_sigma"], pu["q_sigma"] = s_p * 1e3, s_q * 1e3
        nv = len(self.vbus)
        u_rated = f.kv_ll[self.vbus] * 1e3
        um = np.tile(u_rated * f.source_pu, (H, 1))
        ua = np.full((H, nv), np.nan)
        us = np.tile(u_rated * _SOURCE_REL, (H, 1))
        circ = float(np.sqrt((nm.pmu_mag_rel**2 + nm.pmu_angle_rad**2) / 2))
        have_pmu = np.zeros((H, nv), dtype=bool)
        if self.pmu:
            if pmu is None:
                pmu = np.full((H, len(self.pmu)), np.nan + 0j)
            if pmu.shape != (H, len(self.pmu)):
                raise ParameterError(f"pmu phasors must be ({H}, {len(self.pmu)}), got {pmu.shape}")
            ok = np.isfinite(pmu)
            k = len(self.pmu)
            have_pmu[:, :k] = ok
            um[:, :k] = np.where(ok, np.abs(pmu) * u_rated[:k], um[:, :k])
            ua[:, :k] = np.where(ok, np.angle(pmu), np.nan)
            us[:, :k] = np.where(ok, np.abs(pmu) * u_rated[:k] * circ, np.inf)
            if self.src in self.pmu:  # no SCADA fallback there: a lost µPMU is a magnitude
                j = self.pmu.index(self.src)
                um[:, j] = np.where(ok[:, j], um[:, j], u_rated[j] * f.source_pu)
                us[:, j] = np.where(ok[:, j], us[:, j], u_rated[j] * _SOURCE_REL)
        vu = init(DatasetType.update, ComponentType.sym_voltage_sensor, (H, nv))
        vu["id"] = self.vs_ids
        vu["u_measured"], vu["u_angle_measured"], vu["u_sigma"] = um, ua, us
        upd = {ComponentType.sym_power_sensor: pu, ComponentType.sym_voltage_sensor: vu}
        try:
            res = self._solve(upd)
        except InputError:
            if H == 1:
                raise
            return self._hour_by_hour(loads, pmu)
        nd = res[ComponentType.node]
        vm = np.asarray(nd["u_pu"], dtype=float)
        va = np.asarray(nd["u_angle"], dtype=float)
        sv, sa = self._sigma(vm, va, loads, have_pmu, us, u_rated)
        return HourlyEstimate(vm, np.rad2deg(va), sv, np.rad2deg(sa))

    def _hour_by_hour(self, loads: BusLoads, pmu: C128 | None) -> HourlyEstimate:
        """A batch failed (an hour whose measurements admit no solution): each hour alone;
        an hour that still fails is estimated again with every load measurement capped at
        :data:`SHAPE_MAX` times its bus's nominal load and the wide σ of a blind guess."""
        nom_p, _ = _nominal(self.feeder)
        parts = []
        for i in range(loads.p_kw.shape[0]):
            one = _hours(loads, slice(i, i + 1))
            ph = None if pmu is None else pmu[i : i + 1]
            try:
                parts.append(self.estimate(one, ph))
            except InputError:
                cap = np.where(nom_p > 0, SHAPE_MAX * nom_p, np.inf)[None, :]
                p = np.minimum(one.p_kw, cap)
                ratio = np.where(one.p_kw > 0, p / np.where(one.p_kw > 0, one.p_kw, 1), 1.0)
                sig = np.maximum(one.p_sigma, BLIND_REL * p)
                capped = BusLoads(
                    p,
                    one.q_kvar * ratio,
                    sig,
                    np.maximum(one.q_sigma * ratio, BLIND_REL * np.abs(one.q_kvar * ratio)),
                    one.read,
                    one.pseudo,
                    one.metered,
                )
                parts.append(self.estimate(capped, ph))
        return HourlyEstimate(
            *(
                np.concatenate([getattr(e, k) for e in parts])
                for k in ("vm_pu", "va_deg", "vm_sigma", "va_sigma_deg")
            )
        )

    def _solve(self, upd: dict[Any, Any]) -> Any:
        from power_grid_model import CalculationMethod, ComponentType

        f = self.feeder
        try:
            return self.model.calculate_state_estimation(
                symmetric=True,
                error_tolerance=1e-8,
                max_iterations=30,
                calculation_method=CalculationMethod.newton_raphson,
                update_data=upd,
                threading=-1,
                output_component_types={ComponentType.node: ["u_pu", "u_angle"]},
            )
        except Exception as exc:
            msgs = getattr(exc, "error_messages", None)
            text = (msgs[0] if msgs else str(exc) or type(exc).__name__).splitlines()[0]
            raise InputError(f"state estimation on {f.name!r} failed: {text}") from None

    def _sigma(
        self,
        vm: F64,
        va: F64,
        loads: BusLoads,
        have_pmu: NDArray[np.bool_],
        us: F64,
        u_rated: F64,
    ) -> tuple[F64, F64]:
        """σ of |V| (pu) and angle (rad) from the linearised covariance, per hour and bus."""
        f, nm = self.feeder, self.noise
        H, n = vm.shape
        Y = self.Y
        keep = np.ones(n, dtype=bool)
        keep[self.src] = False
        var_p = np.full((H, n), (1e-3 * 1e3 / _S_BASE_VA) ** 2)
        var_q = var_p.copy()
        lb = self.load_bus
        var_p[:, lb] = (loads.p_sigma[:, lb] * 1e3 / _S_BASE_VA) ** 2
        var_q[:, lb] = (loads.q_sigma[:, lb] * 1e3 / _S_BASE_VA) ** 2
        if len(self.gen_idx):
            gv = (np.maximum(self.gen_p * 0.5, 1.0) * 1e3 / _S_BASE_VA) ** 2
            for j, b in enumerate(self.gen_idx):
                var_p[:, b] += gv[j]
                var_q[:, b] += gv[j]
        ang_var = nm.pmu_angle_rad**2
        out_v = np.empty((H, n))
        out_a = np.empty((H, n))
        idx = np.arange(n)
        step = max(1, 4096 // max(n, 1))
        for a in range(0, H, step):
            V = vm[a : a + step] * np.exp(1j * va[a : a + step])
            T = len(V)
            Vm = np.abs(V)
            cur = V @ Y.T  # (T, n)
            A = np.conj(-Y[None] * V[:, None, :])
            A[:, idx, idx] += np.conj(cur)
            dth = 1j * V[:, :, None] * A
            dvm = V[:, :, None] * np.conj(Y[None] * (V / Vm)[:, None, :])
            dvm[:, idx, idx] += np.conj(cur) * V / Vm
            Hs = np.concatenate([dth, dvm], axis=2)[:, keep]  # (T, n-1, 2n)
            Hm = np.concatenate([Hs.real, Hs.imag], axis=1)
            w = np.concatenate([1 / var_p[a : a + T, keep], 1 / var_q[a : a + T, keep]], axis=1)
            G = np.einsum("tmi,tm,tmj->tij", Hm, w, Hm)
            hp = have_pmu[a : a + T]
            for j, b in enumerate(self.vbus):
                rel = us[a : a + T, j] / u_rated[j]
                wm = np.where(np.isfinite(rel), 1 / np.maximum(rel, 1e-9) ** 2, 0.0)
                G[:, n + b, n + b] += wm
                G[:, b, b] += np.where(hp[:, j], 1 / ang_var, 0.0)
            no_angle = ~hp.any(axis=1)
            G[no_angle, self.src, self.src] += 1e12  # the source angle is the reference
            try:
                C = np.linalg.inv(G)
            except np.linalg.LinAlgError:
                raise InputError(f"the measurements leave feeder {f.name!r} unobservable") from None
            d = np.maximum(np.diagonal(C, axis1=1, axis2=2), 0.0)
            out_a[a : a + T] = np.sqrt(d[:, :n])
            out_v[a : a + T] = np.sqrt(d[:, n:])
        return out_v, out_a

    def power_flow(self, p_kw: F64, q_kvar: F64) -> C128:
        """Bus phasors (H, n_bus) of the per-bus loads (H, n_bus): a simulated truth."""
        lb = self.load_bus
        gen = np.tile(np.array([g.p_kw for g in self.feeder.generators]), (len(p_kw), 1))
        ph, _ = self.net.power_flow(
            self.net.load_update(p_kw[:, lb], q_kvar[:, lb], gen if gen.size else None)
        )
        return np.asarray(ph)


def virtual_pmus(
    truth: C128, buses: Sequence[int], noise: NoiseModel | None = None, seed: int = 0
) -> C128:
    """µPMU phasors (H, len(buses)) sampled from the ``truth`` (H, n_bus) with the noise
    model's σ (magnitude relative, angle in degrees)."""
    nm = noise or NoiseModel()
    rng = np.random.default_rng([seed, 0x7E0])
    t = truth[:, list(buses)]
    mag = np.abs(t) * (1 + rng.normal(0.0, nm.pmu_mag_rel, t.shape))
    ang = np.angle(t) + rng.normal(0.0, nm.pmu_angle_rad, t.shape)
    return np.asarray(mag * np.exp(1j * ang))
