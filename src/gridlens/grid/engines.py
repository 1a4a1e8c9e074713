"""Power flow through two real engines on the same :class:`~gridlens.grid.feeder.Feeder`.

- ``opendss``: the feeder is written as an OpenDSS script (three-phase balanced elements, a stiff
  Vsource, constant-power loads with ``Vminpu`` lowered to 0.7 so no load silently turns into a
  constant impedance) and solved by OpenDSS through ``opendssdirect.py``; the tolerance is set to
  1e-10 so the two engines can be compared to 1e-6 pu. Bus voltages are positive-sequence.
- ``pgm``: the same feeder as a power-grid-model symmetric network, solved by Newton-Raphson.
  :class:`PgmNetwork` keeps the model and its id maps so the estimators can run batches of
  power flows (one per particle/scenario) and state estimations in one call.

Both return a :class:`PowerFlowResult`: |V| in pu of each bus's base, angle in degrees relative
to the source, and the total series losses.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import ConvergenceError, DataFormatError, ParameterError
from gridlens.grid.feeder import Feeder, Generator, Load

__all__ = [
    "DSS_LOCK",
    "ENGINES",
    "PgmNetwork",
    "PowerFlowResult",
    "dss_compile",
    "feeder_to_dss",
    "solve_power_flow",
]

Engine = Literal["opendss", "pgm"]
ENGINES: tuple[str, ...] = ("opendss", "pgm")

#: OpenDSS is one engine per process (a global circuit), not safe to drive from two threads
#: at once: every use in gridlens holds this lock (the server runs OpenDSS only in children).
DSS_LOCK = threading.RLock()
_dss_holds = [""]  # the script OpenDSS's circuit was compiled from ("" = changed since)

_SOURCE_SK_VA = 1e15  # stiff source in both engines (MVAsc = 1e9)
_SOURCE_RX = 0.1
SWITCH_OHM = 1e-3  # a closed switch: 1 mΩ + j1 mΩ in both engines


@dataclass(frozen=True)
class PowerFlowResult:
    buses: tuple[str, ...]
    v_pu: NDArray[np.float64]
    angle_deg: NDArray[np.float64]
    losses_kw: float
    losses_kvar: float
    engine: str

    @property
    def phasors(self) -> NDArray[np.complex128]:
        return np.asarray(self.v_pu * np.exp(1j * np.deg2rad(self.angle_deg)), dtype=complex)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "buses": [
                {"bus": b, "v_pu": float(v), "angle_deg": float(a)}
                for b, v, a in zip(self.buses, self.v_pu, self.angle_deg, strict=True)
            ],
            "losses_kw": self.losses_kw,
            "losses_kvar": self.losses_kvar,
        }


def solve_power_flow(feeder: Feeder, engine: str = "pgm") -> PowerFlowResult:
    """Solve ``feeder`` with ``engine`` ('opendss' or 'pgm')."""
    feeder.check_connected()
    if engine == "pgm":
        return PgmNetwork(feeder).power_flow_result()
    if engine == "opendss":
        return _solve_opendss(feeder)
    raise ParameterError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


# -------------------------------------------------------------------------------- OpenDSS
def _dss_name(name: str) -> str:
    return name.replace(" ", "_").replace(".", "_")


def feeder_to_dss(feeder: Feeder) -> str:
    """OpenDSS script of the balanced feeder (three-phase elements, ohms, kW)."""
    f = feeder
    src_kv = f.kv_ll[f.bus_index(f.source_bus)]
    mva = _SOURCE_SK_VA / 1e6
    out = [
        "Clear",
        f"Set DefaultBaseFrequency={f.frequency_hz:g}",
        f"New Circuit.{_dss_name(f.name)} bus1={f.source_bus} basekv={src_kv:.10g} "
        f"pu={f.source_pu:.10g} phases=3 MVAsc3={mva:g} MVAsc1={mva:g} "
        f"x1r1={1 / _SOURCE_RX:g} x0r0={1 / _SOURCE_RX:g}",
    ]
    for ln in f.lines:
        out.append(
            f"New Line.{_dss_name(ln.name)} bus1={ln.from_bus} bus2={ln.to_bus} phases=3 "
            f"r1={ln.r_ohm:.12g} x1={ln.x_ohm:.12g} r0={ln.r_ohm:.12g} x0={ln.x_ohm:.12g} "
            f"c1={ln.c_nf:.12g} c0={ln.c_nf:.12g} length=1 units=none"
        )
    for sw in f.switches:
        out.append(
            f"New Line.{_dss_name(sw.name)} bus1={sw.from_bus} bus2={sw.to_bus} phases=3 "
            f"r1={SWITCH_OHM} x1={SWITCH_OHM} r0={SWITCH_OHM} x0={SWITCH_OHM} c1=0 c0=0 "
            "length=1 units=none"
        )
    for t in f.transformers:
        out.append(
            f"New Transformer.{_dss_name(t.name)} phases=3 windings=2 "
            f"buses=({t.from_bus}, {t.to_bus}) conns=(wye, wye) "
            f"kvs=({t.kv_from:.10g}, {t.kv_to * t.ratio:.10g}) kvas=({t.kva:g}, {t.kva:g}) "
            f"XHL={t.x_pct:.10g} %Rs=({t.r_pct / 2:.10g}, {t.r_pct / 2:.10g}) "
            "%imag=0 %noloadloss=0"
        )
    kv = dict(zip(f.bus_names, f.kv_ll, strict=True))
    for ld in f.loads:
        out.append(
            f"New Load.{_dss_name(ld.name)} bus1={ld.bus} phases=3 kV={kv[ld.bus]:.10g} "
            f"kW={ld.p_kw:.12g} kvar={ld.q_kvar:.12g} model=1 Vminpu=0.7 Vmaxpu=1.3"
        )
    for g in f.generators:
        out.append(
            f"New Generator.{_dss_name(g.name)} bus1={g.bus} phases=3 kV={kv[g.bus]:.10g} "
            f"kW={g.p_kw:.12g} kvar={g.q_kvar:.12g} model=1 Vminpu=0.7 Vmaxpu=1.3"
        )
    for sh in f.shunts:
        out.append(
            f"New Capacitor.{_dss_name(sh.name)} bus1={sh.bus} phases=3 kvar={sh.q_kvar:.10g} "
            f"kv={sh.kv_ll:.10g}"
        )
    bases = sorted({round(float(v), 6) for v in f.kv_ll})
    out += [
        f"Set VoltageBases=[{', '.join(f'{b:g}' for b in bases)}]",
        "CalcVoltageBases",
        "Set ControlMode=OFF",
        "Set Tolerance=1e-10",
        "Set MaxIterations=100",
    ]
    return "\n".join(out) + "\n"


def _dss_run(dss: Any, script: str) -> None:
    for line in script.splitlines():
        if not line.strip():
            continue
        try:
            dss.Text.Command(line)
        except Exception as exc:  # opendssdirect raises its own DSSException
            raise DataFormatError(f"OpenDSS rejected {line.split()[0:2]}: {exc}") from None


def dss_compile(dss: Any, script: str, *, reuse: bool = False) -> None:
    """Compile ``script`` into OpenDSS's circuit (hold :data:`DSS_LOCK`). With ``reuse``,
    a circuit compiled from the same script and only re-solved since is kept; the caller
    then sets every value it changes."""
    if reuse and _dss_holds[0] == script:
        return
    _dss_holds[0] = ""
    _dss_run(dss, script)
    if reuse:
        _dss_holds[0] = script


def dss_changed() -> None:
    """OpenDSS's circuit was replaced outside :func:`dss_compile` (hold :data:`DSS_LOCK`)."""
    _dss_holds[0] = ""


def positive_sequence_voltages(dss: Any) -> tuple[list[str], NDArray[np.complex128]]:
    """Positive-sequence voltage (pu of each bus's line-to-neutral base) of every bus.

    Single- and two-phase buses report the mean of their phase voltages rotated to phase a.
    """
    names = [str(n) for n in dss.Circuit.AllBusNames()]
    volts = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
    node_v = volts[0::2] + 1j * volts[1::2]
    node_names = [str(n) for n in dss.Circuit.AllNodeNames()]
    a = np.exp(2j * np.pi / 3)
    rot = {1: 1.0, 2: a, 3: a * a}  # rotate phase b and c phasors onto phase a
    acc: dict[str, list[complex]] = {n.lower(): [] for n in names}
    for nn, v in zip(node_names, node_v, strict=True):
        bus, _, ph = nn.rpartition(".")
        p = int(ph)
        if p in rot:
            acc[bus.lower()].append(complex(v * rot[p]))
    out = np.empty(len(names), dtype=complex)
    for k, n in enumerate(names):
        dss.Circuit.SetActiveBus(n)
        base = float(dss.Bus.kVBase()) * 1e3
        vals = acc[n.lower()]
        out[k] = (sum(vals) / len(vals)) / base if vals and base > 0 else np.nan
    return names, out


def _solve_opendss(feeder: Feeder) -> PowerFlowResult:
    import opendssdirect as dss

    with DSS_LOCK:
        dss_compile(dss, feeder_to_dss(feeder))
        dss.Solution.Solve()
        if not dss.Solution.Converged():
            raise ConvergenceError(f"OpenDSS power flow of {feeder.name!r} did not converge")
        names, v = positive_sequence_voltages(dss)
        losses = dss.Circuit.Losses()
    lookup = {n.lower(): k for k, n in enumerate(names)}
    idx = [lookup[b.lower()] for b in feeder.bus_names]
    phasor = v[idx]
    if np.nanmin(np.abs(phasor)) < 0.7:  # loads fell back to constant impedance: no PQ solution
        raise ConvergenceError(
            f"OpenDSS power flow of {feeder.name!r} has no constant-power solution "
            f"(|V| falls to {np.nanmin(np.abs(phasor)):.2f} pu): the feeder is overloaded"
        )
    # Vsource impedance is part of the circuit losses; it is ~1e-9 of the feeder's.
    return PowerFlowResult(
        feeder.bus_names,
        np.abs(phasor),
        np.rad2deg(np.angle(phasor)),
        float(losses[0]) / 1e3,
        float(losses[1]) / 1e3,
        "opendss",
    )


# -------------------------------------------------------------------------- power-grid-model
class PgmNetwork:
    """A feeder as a power-grid-model network, kept for batch power flow and estimation.

    Ids: nodes 0..n-1 in feeder bus order, then lines (closed switches as 1 mΩ lines),
    transformers, the source, loads, generators, shunts, and sensors added by the estimators.

    A ``PowerGridModel`` must not calculate in two threads at once (its C++ model keeps
    state between calls: two Dask threads sharing one corrupted the heap and killed the
    process), so :attr:`model` is one model per thread.
    """

    def __init__(self, feeder: Feeder) -> None:
        from power_grid_model import (
            ComponentType,
            DatasetType,
            LoadGenType,
            WindingType,
            initialize_array,
        )

        self.feeder = f = feeder
        n = f.n_bus
        self._next = n
        node = initialize_array(DatasetType.input, ComponentType.node, n)
        node["id"] = np.arange(n)
        node["u_rated"] = f.kv_ll * 1e3
        data: dict[Any, Any] = {ComponentType.node: node}

        ids = self.new_ids
        # closed switches are short lines (power-grid-model's ideal links make the state
        # estimator's gain matrix singular)
        segs = [(x.from_bus, x.to_bus, x.r_ohm, x.x_ohm, x.c_nf) for x in f.lines] + [
            (x.from_bus, x.to_bus, SWITCH_OHM, SWITCH_OHM, 0.0) for x in f.switches
        ]
        if segs:
            ln = initialize_array(DatasetType.input, ComponentType.line, len(segs))
            ln["id"] = ids(len(segs))
            ln["from_node"] = f.bus_indices(x[0] for x in segs)
            ln["to_node"] = f.bus_indices(x[1] for x in segs)
            ln["from_status"] = ln["to_status"] = 1
            ln["r1"] = ln["r0"] = [x[2] for x in segs]
            ln["x1"] = ln["x0"] = [x[3] for x in segs]
            ln["c1"] = ln["c0"] = [x[4] * 1e-9 for x in segs]
            ln["tan1"] = ln["tan0"] = 0.0
            data[ComponentType.line] = ln
        if f.transformers:
            ts = f.transformers
            tr = initialize_array(DatasetType.input, ComponentType.transformer, len(ts))
            tr["id"] = ids(len(ts))
            tr["from_node"] = f.bus_indices(x.from_bus for x in ts)
            tr["to_node"] = f.bus_indices(x.to_bus for x in ts)
            tr["from_status"] = tr["to_status"] = 1
            tr["u1"] = [x.kv_from * 1e3 for x in ts]
            tr["u2"] = [x.kv_to * x.ratio * 1e3 for x in ts]
            tr["sn"] = [x.kva * 1e3 for x in ts]
            tr["uk"] = [max(math.hypot(x.r_pct, x.x_pct), 1e-6) / 100 for x in ts]
            tr["pk"] = [x.r_pct / 100 * x.kva * 1e3 for x in ts]
            tr["i0"] = tr["p0"] = 0.0
            tr["winding_from"] = tr["winding_to"] = WindingType.wye_n
            tr["clock"] = 0
            tr["tap_side"] = 0
            tr["tap_pos"] = tr["tap_min"] = tr["tap_max"] = tr["tap_nom"] = 0
            tr["tap_size"] = 0.0
            data[ComponentType.transformer] = tr
        src = initialize_array(DatasetType.input, ComponentType.source, 1)
        src["id"] = ids(1)
        src["node"] = f.bus_index(f.source_bus)
        src["status"] = 1
        src["u_ref"] = f.source_pu
        src["u_ref_angle"] = 0.0
        src["sk"] = _SOURCE_SK_VA
        src["rx_ratio"] = _SOURCE_RX
        data[ComponentType.source] = src
        self.source_id = int(src["id"][0])

        def appliances(ct: Any, items: tuple[Load, ...] | tuple[Generator, ...]) -> Any:
            arr = initialize_array(DatasetType.input, ct, len(items))
            arr["id"] = ids(len(items))
            arr["node"] = f.bus_indices(x.bus for x in items)
            arr["status"] = 1
            arr["type"] = LoadGenType.const_power
            arr["p_specified"] = [x.p_kw * 1e3 for x in items]
            arr["q_specified"] = [x.q_kvar * 1e3 for x in items]
            data[ct] = arr
            return arr["id"].copy()

        self.load_ids = appliances(ComponentType.sym_load, f.loads)
        self.gen_ids = appliances(ComponentType.sym_gen, f.generators)
        if f.shunts:
            sh = initialize_array(DatasetType.input, ComponentType.shunt, len(f.shunts))
            sh["id"] = ids(len(f.shunts))
            sh["node"] = f.bus_indices(x.bus for x in f.shunts)
            sh["status"] = 1
            sh["g1"] = sh["g0"] = 0.0
            # Q = B * U^2 at rated voltage  -> B in siemens (positive = capacitive)
            sh["b1"] = sh["b0"] = [x.q_kvar * 1e3 / (x.kv_ll * 1e3) ** 2 for x in f.shunts]
            data[ComponentType.shunt] = sh
        self.input_data = data
        self._local = threading.local()

    def new_ids(self, k: int) -> NDArray[np.int64]:
        out = np.arange(self._next, self._next + k, dtype=np.int64)
        self._next += k
        return out

    @property
    def model(self) -> Any:
        """This thread's ``PowerGridModel`` of :attr:`input_data` (made on first use)."""
        model = getattr(self._local, "model", None)
        if model is None:
            from power_grid_model import PowerGridModel

            try:
                model = PowerGridModel(self.input_data, system_frequency=self.feeder.frequency_hz)
            except Exception as exc:
                raise DataFormatError(
                    f"power-grid-model rejected feeder {self.feeder.name!r}: {exc}"
                ) from None
            self._local.model = model
        return model

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def load_update(
        self,
        p_kw: NDArray[np.float64],
        q_kvar: NDArray[np.float64],
        gen_kw: NDArray[np.float64] | None = None,
    ) -> dict[Any, Any]:
        """Batch update: ``p_kw``/``q_kvar`` shaped (batch, n_load), ``gen_kw`` (batch, n_gen)."""
        from power_grid_model import ComponentType, DatasetType, initialize_array

        p = np.atleast_2d(p_kw)
        q = np.atleast_2d(q_kvar)
        upd = initialize_array(DatasetType.update, ComponentType.sym_load, p.shape)
        upd["id"] = self.load_ids
        upd["p_specified"] = p * 1e3
        upd["q_specified"] = q * 1e3
        out: dict[Any, Any] = {ComponentType.sym_load: upd}
        if gen_kw is not None and len(self.gen_ids):
            g = np.atleast_2d(gen_kw)
            gu = initialize_array(DatasetType.update, ComponentType.sym_gen, g.shape)
            gu["id"] = self.gen_ids
            gu["p_specified"] = g * 1e3
            out[ComponentType.sym_gen] = gu
        return out

    def power_flow(
        self, update: dict[Any, Any] | None = None, threads: int = -1
    ) -> tuple[NDArray[np.complex128], NDArray[np.float64]]:
        """Bus phasors (pu) and series losses (W, var as complex) for one or a batch of states."""
        from power_grid_model import CalculationMethod, ComponentType

        out_types: dict[Any, Any] = {ComponentType.node: ["u_pu", "u_angle"]}
        for ct in (ComponentType.line, ComponentType.transformer):
            if ct in self.input_data:
                out_types[ct] = ["p_from", "p_to", "q_from", "q_to"]
        try:
            res = self.model.calculate_power_flow(
                symmetric=True,
                error_tolerance=1e-8,
                max_iterations=50,
                calculation_method=CalculationMethod.newton_raphson,
                update_data=update,
                threading=threads,
                output_component_types=out_types,
            )
        except Exception as exc:
            name = type(exc).__name__
            if "Iteration" in name or "converge" in str(exc).lower():
                raise ConvergenceError(
                    f"power-grid-model power flow of {self.feeder.name!r} did not converge"
                ) from None
            raise DataFormatError(f"power-grid-model power flow failed: {exc}") from None
        nd = res[ComponentType.node]
        phasor = nd["u_pu"] * np.exp(1j * nd["u_angle"])
        loss = np.zeros(phasor.shape[:-1], dtype=complex)
        for ct in out_types:
            if ct is ComponentType.node:
                continue
            r = res[ct]
            loss = loss + (r["p_from"] + r["p_to"]).sum(axis=-1)
            loss = loss + 1j * (r["q_from"] + r["q_to"]).sum(axis=-1)
        return phasor, np.asarray(loss)

    def power_flow_result(self) -> PowerFlowResult:
        phasor, loss = self.power_flow()
        return PowerFlowResult(
            self.feeder.bus_names,
            np.abs(phasor),
            np.rad2deg(np.angle(phasor)),
            float(loss.real) / 1e3,
            float(loss.imag) / 1e3,
            "pgm",
        )
