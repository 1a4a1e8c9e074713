"""State estimators behind one interface: bus voltage phasors from PMUs plus SCADA loads/PV.

Every estimator has ``estimate(study, placements) -> phasors`` with shape
``(len(placements), S, n_bus)``: one estimate per placement and scenario of the study. A placement
is a tuple of bus indices carrying a µPMU (voltage magnitude and angle).

- ``wls``: exact weighted least squares, power-grid-model's Newton-Raphson state estimation
  (its iterative-linear estimator when stiff branches make the Newton gain matrix singular,
  e.g. on the 8500-node feeder).
  PMUs are voltage-phasor sensors, loads and PV are power sensors, load-free buses get a
  zero-injection sensor. Sigmas are the noise model's own: power sensors ``load_rel·|P|`` and
  ``load_rel·|Q|``, PV ``pv_rel·P``; power-grid-model takes one circular sigma per phasor, so a
  PMU gets ``|V|·sqrt((σ_mag² + σ_angle²)/2)``. Every placement and scenario of a search is one
  batch: sensors outside a placement get an infinite sigma, which power-grid-model treats exactly
  as an absent sensor.
- ``pso``, ``de``, ``ga``: the seed paper's formulation. The state ``x`` is every load's P and Q and
  the PV output; ``h(x)`` is a power flow (a black box); the cost is
  ``J = Σ w (z - h(x))²`` with weights PMU 1000, load 1, PV 0.1 on dimensionless residuals:
  |V| in pu, angle in rad, loads and PV relative to their SCADA value. Search bounds are ±20 %
  of the SCADA values. PSO (20 particles, 40 iterations, w 0.7, c1 = c2 = 1.4) and the GA run
  all swarms of a search (placement × scenario) side by side so every iteration is one batch of
  power flows in power-grid-model; ``engine="opendss"`` evaluates one particle at a time through
  OpenDSS instead (the paper's setup, kept for comparison). DE is SciPy's
  ``differential_evolution`` with vectorised population evaluation.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import InputError, ParameterError, check_param
from gridlens.grid.engines import PgmNetwork, feeder_to_dss, positive_sequence_voltages
from gridlens.grid.feeder import Feeder
from gridlens.grid.scenarios import Measurements, NoiseModel, ScenarioSet, measure, paper_scenarios

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "GAEstimator",
    "HeuristicEstimator",
    "PSOEstimator",
    "Study",
    "WLSEstimator",
    "Weights",
    "make_estimator",
    "tve",
]

Placement = tuple[int, ...]
Complex2D = NDArray[np.complex128]
_CACHE_LOCK = threading.RLock()


@dataclass(frozen=True)
class Weights:
    """The seed's WLS weights for the heuristic estimators."""

    pmu: float = 1000.0
    load: float = 1.0
    pv: float = 0.1


@dataclass
class Study:
    """A feeder, its scenarios, the noise-free truth and one draw of noisy measurements."""

    feeder: Feeder
    scenarios: ScenarioSet
    truth: Complex2D  # (S, n_bus)
    meas: Measurements
    noise: NoiseModel = field(default_factory=NoiseModel)
    weights: Weights = field(default_factory=Weights)
    seed: int = 0

    @classmethod
    def build(
        cls,
        feeder: Feeder,
        n_scenarios: int = 15,
        *,
        seed: int = 0,
        noise: NoiseModel | None = None,
        weights: Weights | None = None,
    ) -> Study:
        feeder.check_connected()
        scen = paper_scenarios(feeder, n_scenarios, seed=seed)
        net = PgmNetwork(feeder)
        truth, _ = net.power_flow(net.load_update(scen.load_p_kw, scen.load_q_kvar, scen.pv_kw))
        nm = noise or NoiseModel()
        study = cls(
            feeder, scen, truth, measure(truth, scen, nm, seed), nm, weights or Weights(), seed
        )
        study.engine_cache["network"] = net
        return study

    # Engine handles (C objects) live outside the dataclass fields: they are never pickled or
    # tokenised (Dask), and each process rebuilds its own on first use.
    @property
    def engine_cache(self) -> dict[str, Any]:
        with _CACHE_LOCK:
            cache: dict[str, Any] | None = self.__dict__.get("_engine_cache")
            if cache is None:
                cache = {}
                self.__dict__["_engine_cache"] = cache
            return cache

    @property
    def network(self) -> PgmNetwork:
        with _CACHE_LOCK:
            net = self.engine_cache.get("network")
            if net is None:
                net = self.engine_cache["network"] = PgmNetwork(self.feeder)
        assert isinstance(net, PgmNetwork)
        return net

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_engine_cache"}

    @property
    def n_scenarios(self) -> int:
        return self.scenarios.n

    def check_placement(self, placement: Sequence[int]) -> Placement:
        n = self.feeder.n_bus
        p = tuple(sorted({int(b) for b in placement}))
        if not p:
            raise InputError("a placement needs at least one µPMU (its angle is the reference)")
        if p[0] < 0 or p[-1] >= n:
            raise InputError(f"bus index out of range 0..{n - 1}: {placement}")
        return p


def tve(est: Complex2D, truth: Complex2D) -> NDArray[np.float64]:
    """Total vector error |V_est - V_true| / |V_true| per bus (same shape as ``est``)."""
    return np.asarray(np.abs(est - truth) / np.abs(truth), dtype=float)


class Estimator(Protocol):
    name: str

    def estimate(self, study: Study, placements: Sequence[Placement]) -> Complex2D: ...


# -------------------------------------------------------------------------------- exact WLS
class _SEModel:
    """power-grid-model network with a voltage sensor at every bus and all power sensors.

    :attr:`model` is one ``PowerGridModel`` per thread (one must not calculate in two
    threads at once; the placement search runs chunks on Dask threads).
    """

    def __init__(self, study: Study) -> None:
        from power_grid_model import (
            ComponentType,
            DatasetType,
            MeasuredTerminalType,
            PowerGridModel,
            initialize_array,
        )

        f, net = study.feeder, PgmNetwork(study.feeder)
        n = f.n_bus
        data = dict(net.input_data)
        vs = initialize_array(DatasetType.input, ComponentType.sym_voltage_sensor, n)
        vs["id"] = net.new_ids(n)
        vs["measured_object"] = np.arange(n)
        vs["u_sigma"] = np.inf
        vs["u_measured"] = f.kv_ll * 1e3
        vs["u_angle_measured"] = 0.0
        load_buses = {ld.bus for ld in f.loads} | {g.bus for g in f.generators} | {f.source_bus}
        zero = [k for k, b in enumerate(f.bus_names) if b not in load_buses]
        nl, ng, nz = len(f.loads), len(f.generators), len(zero)
        ps = initialize_array(DatasetType.input, ComponentType.sym_power_sensor, nl + ng + nz)
        ps["id"] = net.new_ids(nl + ng + nz)
        ps["measured_object"] = np.concatenate([net.load_ids, net.gen_ids, zero]).astype(int)
        ps["measured_terminal_type"][:nl] = MeasuredTerminalType.load
        ps["measured_terminal_type"][nl : nl + ng] = MeasuredTerminalType.generator
        ps["measured_terminal_type"][nl + ng :] = MeasuredTerminalType.node
        ps["p_measured"] = ps["q_measured"] = 0.0
        ps["p_sigma"] = ps["q_sigma"] = 1.0  # zero-injection: 1 W / 1 var
        ps["power_sigma"] = np.nan
        data[ComponentType.sym_voltage_sensor] = vs
        data[ComponentType.sym_power_sensor] = ps
        self.vs_ids, self.ps_ids = vs["id"], ps["id"]
        self.nl, self.ng, self.nz = nl, ng, nz
        self.u_rated = f.kv_ll * 1e3
        self._data, self._frequency = data, f.frequency_hz
        self._local = threading.local()
        self._local.model = PowerGridModel(data, system_frequency=f.frequency_hz)

    @property
    def model(self) -> Any:
        model = getattr(self._local, "model", None)
        if model is None:
            from power_grid_model import PowerGridModel

            model = self._local.model = PowerGridModel(self._data, system_frequency=self._frequency)
        return model


class WLSEstimator:
    """Exact WLS (power-grid-model Newton-Raphson state estimation)."""

    name = "wls"

    def __init__(self, max_batch: int = 4096, threads: int = 0) -> None:
        self.max_batch = max_batch
        self.threads = threads
        self.method_used = ""

    def estimate(self, study: Study, placements: Sequence[Placement]) -> Complex2D:
        from power_grid_model import ComponentType, DatasetType
        from power_grid_model import initialize_array as init

        with _CACHE_LOCK:  # one _SEModel per study, even when Dask threads ask at once
            se: _SEModel | None = study.engine_cache.get("se")
            if se is None:
                se = study.engine_cache["se"] = _SEModel(study)
        m, nm = study.meas, study.noise
        S, n = m.pmu.shape
        places = [study.check_placement(p) for p in placements]
        # per-scenario power-sensor values and sigmas (identical for every placement)
        z_p = np.concatenate([m.load_p_kw, m.pv_kw, np.zeros((S, se.nz))], axis=1) * 1e3
        z_q = np.concatenate([m.load_q_kvar, np.zeros((S, se.ng + se.nz))], axis=1) * 1e3
        sig_p = np.concatenate(
            [
                np.maximum(nm.load_rel * np.abs(m.load_p_kw) * 1e3, 1.0),
                np.maximum(nm.pv_rel * np.abs(m.pv_kw) * 1e3, nm.pv_rel * 1e3),
                np.ones((S, se.nz)),
            ],
            axis=1,
        )
        sig_q = np.concatenate(
            [
                np.maximum(nm.load_rel * np.abs(m.load_q_kvar) * 1e3, 1.0),
                np.full((S, se.ng), nm.pv_rel * 1e3),
                np.ones((S, se.nz)),
            ],
            axis=1,
        )
        circ = float(np.sqrt((nm.pmu_mag_rel**2 + nm.pmu_angle_rad**2) / 2))
        u_meas = np.abs(m.pmu) * se.u_rated
        u_sig_all = u_meas * circ
        out = np.empty((len(places), S, n), dtype=complex)
        per = max(1, self.max_batch // S)
        for c0 in range(0, len(places), per):
            chunk = places[c0 : c0 + per]
            B = len(chunk) * S
            vu = init(DatasetType.update, ComponentType.sym_voltage_sensor, (B, n))
            vu["id"] = se.vs_ids
            vu["u_measured"] = np.tile(u_meas, (len(chunk), 1))
            vu["u_angle_measured"] = np.tile(np.angle(m.pmu), (len(chunk), 1))
            sig = np.full((len(chunk), S, n), np.inf)
            for k, p in enumerate(chunk):
                sig[k][:, list(p)] = u_sig_all[:, list(p)]
            vu["u_sigma"] = sig.reshape(B, n)
            pu = init(DatasetType.update, ComponentType.sym_power_sensor, (B, len(se.ps_ids)))
            pu["id"] = se.ps_ids
            pu["p_measured"] = np.tile(z_p, (len(chunk), 1))
            pu["q_measured"] = np.tile(z_q, (len(chunk), 1))
            pu["p_sigma"] = np.tile(sig_p, (len(chunk), 1))
            pu["q_sigma"] = np.tile(sig_q, (len(chunk), 1))
            upd = {ComponentType.sym_voltage_sensor: vu, ComponentType.sym_power_sensor: pu}
            res = self._solve(se, upd, study.feeder)
            nd = res[ComponentType.node]
            out[c0 : c0 + len(chunk)] = (nd["u_pu"] * np.exp(1j * nd["u_angle"])).reshape(
                len(chunk), S, n
            )
        return out

    def _solve(self, se: _SEModel, upd: dict[Any, Any], feeder: Feeder) -> Any:
        """Newton-Raphson SE; on a singular gain matrix, power-grid-model's iterative linear SE."""
        from power_grid_model import CalculationMethod, ComponentType

        methods = [CalculationMethod.newton_raphson, CalculationMethod.iterative_linear]
        for k, method in enumerate(methods):
            try:
                res = se.model.calculate_state_estimation(
                    symmetric=True,
                    error_tolerance=1e-9 if k == 0 else 1e-8,
                    max_iterations=30 if k == 0 else 100,
                    calculation_method=method,
                    update_data=upd,
                    threading=self.threads,
                    output_component_types={ComponentType.node: ["u_pu", "u_angle"]},
                )
                self.method_used = method.name
                return res
            except Exception as exc:
                msgs = " ".join(getattr(exc, "error_messages", None) or [str(exc)])
                if k == 0 and "singular" in msgs.lower():
                    continue  # stiff branches: NR's gain matrix is singular, retry
                raise _se_error(exc, feeder) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _se_error(exc: Exception, feeder: Feeder) -> Exception:
    name = type(exc).__name__
    msgs = getattr(exc, "error_messages", None)
    text = (msgs[0] if msgs else str(exc) or name).splitlines()[0]
    if "Observ" in name or "observ" in text:
        return InputError(
            f"the sensor set is not observable on feeder {feeder.name!r}: {text}; "
            "add µPMUs or measured loads"
        )
    if "Iteration" in name or "converge" in text.lower():
        from gridlens.errors import ConvergenceError

        return ConvergenceError(f"state estimation on {feeder.name!r} did not converge: {text}")
    return InputError(f"state estimation on {feeder.name!r} failed: {text}")


# --------------------------------------------------------------------- heuristic estimators
class _Problem:
    """The seed's WLS cost for a set of swarms, one per (placement, scenario) pair."""

    def __init__(self, study: Study, places: Sequence[Placement], engine: str) -> None:
        f, m = study.feeder, study.meas
        S = study.n_scenarios
        self.study, self.engine = study, engine
        self.nl, self.ng = len(f.loads), len(f.generators)
        self.dim = 2 * self.nl + self.ng
        # swarm g = placement k, scenario s  (g = k * S + s)
        self.scen = np.tile(np.arange(S), len(places))
        self.mask = np.zeros((len(places) * S, f.n_bus), dtype=bool)
        for k, p in enumerate(places):
            self.mask[k * S : (k + 1) * S, list(p)] = True
        self.z = np.concatenate([m.load_p_kw, m.load_q_kvar, m.pv_kw], axis=1)[self.scen]
        scale = np.abs(self.z)
        pv_floor = max(1.0, float(np.abs(m.pv_kw).max(initial=0.0)) * 0.01)
        scale[:, 2 * self.nl :] = np.maximum(scale[:, 2 * self.nl :], pv_floor)
        self.scale = np.maximum(scale, 1e-9)
        w = study.weights
        self.w = np.concatenate([np.full(2 * self.nl, w.load), np.full(self.ng, w.pv)])
        self.w_pmu = w.pmu
        self.zv = m.pmu[self.scen]  # (G, n_bus)
        lo = self.z - 0.2 * np.abs(self.z)
        hi = self.z + 0.2 * np.abs(self.z)
        self.lo, self.hi = np.minimum(lo, hi), np.maximum(lo, hi)
        self._dss: Any = None
        self.n_power_flows = 0

    def phasors(self, x: NDArray[np.float64]) -> Complex2D:
        """Power flow of states ``x`` (G, N, D) -> bus phasors (G, N, n_bus)."""
        G, N, D = x.shape
        flat = x.reshape(G * N, D)
        self.n_power_flows += G * N
        if self.engine == "pgm":
            net = self.study.network
            out = np.empty((G * N, self.study.feeder.n_bus), dtype=complex)
            step = 20_000
            for a in range(0, G * N, step):
                b = flat[a : a + step]
                ph, _ = net.power_flow(
                    net.load_update(
                        b[:, : self.nl],
                        b[:, self.nl : 2 * self.nl],
                        b[:, 2 * self.nl :] if self.ng else None,
                    ),
                    threads=0,
                )
                out[a : a + step] = ph
            return out.reshape(G, N, -1)
        return self._opendss(flat).reshape(G, N, -1)

    def _opendss(self, flat: NDArray[np.float64]) -> Complex2D:
        from gridlens.grid.engines import DSS_LOCK

        with DSS_LOCK:  # OpenDSS's one circuit: one chunk at a time
            return self._opendss_locked(flat)

    def _opendss_locked(self, flat: NDArray[np.float64]) -> Complex2D:
        import opendssdirect as dss

        from gridlens.grid.engines import dss_compile

        f = self.study.feeder
        # every load and generator is set below, so the same feeder's circuit is reused
        dss_compile(dss, feeder_to_dss(f), reuse=True)
        if self._dss is None:
            names = [str(n).lower() for n in dss.Circuit.AllBusNames()]
            self._dss = [names.index(b.lower()) for b in f.bus_names]
        out = np.empty((len(flat), f.n_bus), dtype=complex)
        load_names = [ld.name for ld in f.loads]
        gen_names = [g.name for g in f.generators]
        for r, x in enumerate(flat):
            for k, nm in enumerate(load_names):
                dss.Loads.Name(nm)
                dss.Loads.kW(float(x[k]))
                dss.Loads.kvar(float(x[self.nl + k]))
            for k, nm in enumerate(gen_names):
                dss.Generators.Name(nm)
                dss.Generators.kW(float(x[2 * self.nl + k]))
            dss.Solution.Solve()
            _, v = positive_sequence_voltages(dss)
            out[r] = v[self._dss]
        return out

    def cost(
        self, x: NDArray[np.float64], ph: Complex2D, swarm: int | None = None
    ) -> NDArray[np.float64]:
        """J for states ``x`` (G, N, D) with their phasors ``ph`` (G, N, n_bus).

        With ``swarm`` = g, ``x`` and ``ph`` hold one swarm's particles (1, N, ...).
        """
        sel = slice(None) if swarm is None else slice(swarm, swarm + 1)
        r = (x - self.z[sel, None, :]) / self.scale[sel, None, :]
        j = (self.w * r * r).sum(axis=-1)
        zv = self.zv[sel, None, :]
        dm = np.abs(ph) - np.abs(zv)
        da = np.angle(ph * np.conj(zv))
        jp = ((dm * dm + da * da) * self.mask[sel, None, :]).sum(axis=-1)
        return np.asarray(j + self.w_pmu * jp)

    def evaluate(self, x: NDArray[np.float64]) -> tuple[NDArray[np.float64], Complex2D]:
        ph = self.phasors(x)
        return self.cost(x, ph), ph


@dataclass
class HeuristicEstimator:
    """Common driver of the heuristic minimisers (see the module docstring)."""

    name: str = "pso"
    particles: int = 20
    iterations: int = 40
    engine: str = "pgm"
    seed: int = 0
    progress: bool = False
    last_power_flows: int = 0

    def _run(self, prob: _Problem, rng: np.random.Generator) -> Complex2D:
        raise NotImplementedError

    def estimate(self, study: Study, placements: Sequence[Placement]) -> Complex2D:
        check_param(
            self.engine in ("pgm", "opendss"),
            "engine",
            self.name,
            "'pgm' or 'opendss'",
            self.engine,
        )
        places = [study.check_placement(p) for p in placements]
        prob = _Problem(study, places, self.engine)
        rng = np.random.default_rng([self.seed, study.seed])
        best = self._run(prob, rng)
        self.last_power_flows = prob.n_power_flows
        return best.reshape(len(places), study.n_scenarios, -1)

    def _tick(self, it: int) -> None:
        if self.progress:
            sys.stderr.write(f"\r{self.name}: iteration {it + 1}/{self.iterations}")
            if it + 1 == self.iterations:
                sys.stderr.write("\n")
            sys.stderr.flush()


@dataclass
class PSOEstimator(HeuristicEstimator):
    """The seed's WLS-PSO: w 0.7, c1 = c2 = 1.4, 20 particles, 40 iterations, ±20 % bounds."""

    name: str = "pso"
    w: float = 0.7
    c1: float = 1.4
    c2: float = 1.4

    def _run(self, prob: _Problem, rng: np.random.Generator) -> Complex2D:
        G, N, D = len(prob.z), self.particles, prob.dim
        lo, hi = prob.lo[:, None, :], prob.hi[:, None, :]
        x = lo + (hi - lo) * rng.random((G, N, D))
        v = np.zeros_like(x)
        cost, ph = prob.evaluate(x)
        pbest, pcost, pph = x.copy(), cost.copy(), ph.copy()
        gi = np.argmin(pcost, axis=1)
        rows = np.arange(G)
        for it in range(self.iterations):
            gbest = pbest[rows, gi][:, None, :]
            r1, r2 = rng.random((G, N, D)), rng.random((G, N, D))
            v = self.w * v + self.c1 * r1 * (pbest - x) + self.c2 * r2 * (gbest - x)
            x = np.clip(x + v, lo, hi)
            cost, ph = prob.evaluate(x)
            better = cost < pcost
            pbest[better], pcost[better], pph[better] = x[better], cost[better], ph[better]
            gi = np.argmin(pcost, axis=1)
            self._tick(it)
        return np.asarray(pph[rows, gi])


@dataclass
class GAEstimator(HeuristicEstimator):
    """Real-coded GA: binary tournaments, blend crossover, Gaussian mutation, one elite."""

    name: str = "ga"
    crossover: float = 0.9
    mutation_sigma: float = 0.1  # of the search range

    def _run(self, prob: _Problem, rng: np.random.Generator) -> Complex2D:
        G, N, D = len(prob.z), self.particles, prob.dim
        lo, hi = prob.lo[:, None, :], prob.hi[:, None, :]
        pop = lo + (hi - lo) * rng.random((G, N, D))
        cost, ph = prob.evaluate(pop)
        rows = np.arange(G)[:, None]
        for it in range(self.iterations):
            elite = np.argmin(cost, axis=1)
            a, b = rng.integers(0, N, (2, G, N)), rng.integers(0, N, (2, G, N))
            pa = np.where(cost[rows, a[0]] < cost[rows, a[1]], a[0], a[1])
            pb = np.where(cost[rows, b[0]] < cost[rows, b[1]], b[0], b[1])
            alpha = rng.uniform(-0.25, 1.25, (G, N, D))  # BLX-0.25
            child = pop[rows, pa] + alpha * (pop[rows, pb] - pop[rows, pa])
            keep = rng.random((G, N, 1)) >= self.crossover
            child = np.where(keep, pop[rows, pa], child)
            mut = rng.random((G, N, D)) < 1.0 / D
            child = child + mut * rng.normal(0.0, self.mutation_sigma, (G, N, D)) * (hi - lo)
            child = np.clip(child, lo, hi)
            child[:, 0] = pop[np.arange(G), elite]  # elitism
            ccost, cph = prob.evaluate(child)
            pop, cost, ph = child, ccost, cph
            self._tick(it)
        return np.asarray(ph[np.arange(G), np.argmin(cost, axis=1)])


@dataclass
class DEEstimator(HeuristicEstimator):
    """SciPy's differential evolution on the same cost, population evaluated as one batch."""

    name: str = "de"

    def _run(self, prob: _Problem, rng: np.random.Generator) -> Complex2D:
        from scipy.optimize import differential_evolution

        G = len(prob.z)
        out = np.empty((G, prob.study.feeder.n_bus), dtype=complex)
        popsize = max(1, int(np.ceil(self.particles / prob.dim)))
        for g in range(G):
            sub = _SubProblem(prob, g)
            res = differential_evolution(
                sub,
                list(zip(prob.lo[g], prob.hi[g], strict=True)),
                maxiter=self.iterations,
                popsize=popsize,
                tol=0.0,
                mutation=(0.5, 1.0),
                recombination=0.7,
                seed=int(rng.integers(2**31)),
                polish=False,
                init="latinhypercube",
                updating="deferred",
                vectorized=True,
            )
            out[g] = prob.phasors(res.x[None, None, :])[0, 0]
            if self.progress:
                sys.stderr.write(f"\rde: swarm {g + 1}/{G}")
        if self.progress:
            sys.stderr.write("\n")
        return out


class _SubProblem:
    """One swarm of a :class:`_Problem` as SciPy's vectorised objective ``f(x (D, M)) -> (M,)``."""

    def __init__(self, prob: _Problem, g: int) -> None:
        self.prob, self.g = prob, g

    def __call__(self, xt: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.asarray(xt).T[None, :, :]
        return np.asarray(self.prob.cost(x, self.prob.phasors(x), self.g)[0])


ESTIMATORS: dict[str, Callable[..., Estimator]] = {
    "wls": WLSEstimator,
    "pso": PSOEstimator,
    "de": DEEstimator,
    "ga": GAEstimator,
}


def make_estimator(name: str, **kwargs: Any) -> Estimator:
    """An estimator by name: 'wls', 'pso', 'de' or 'ga'."""
    try:
        factory = ESTIMATORS[name]
    except KeyError:
        raise ParameterError(
            f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}"
        ) from None
    if name == "wls":
        kwargs = {k: v for k, v in kwargs.items() if k in ("max_batch", "threads")}
    return factory(**kwargs)
