"""Load any OpenDSS feeder into a balanced :class:`~gridlens.grid.feeder.Feeder`.

OpenDSS compiles and solves the file first (so regulators settle their taps), then each element
is reduced to its balanced positive-sequence equivalent. What an unbalanced feeder is reduced to:

- **Buses**: every OpenDSS bus; ``kv_ll = √3 · kVBase`` from OpenDSS's voltage bases.
- **Lines**: the positive-sequence impedance of the phase impedance matrix,
  ``z1 = mean(diag) − mean(off-diagonal)`` (the self impedance for a single-phase line),
  times the
  length; single- and two-phase sections are scaled by ``3 / phases`` so a balanced equivalent of
  their load sees the same per-unit voltage drop. Switch lines become :class:`Switch`.
- **Transformers and regulators**: one two-winding wye-wye equivalent per bus pair (parallel
  single-phase units, e.g. a bank of three regulators, are merged: kVA summed, taps averaged);
  the solved tap ratio is kept. A centre-tapped (three-winding) service transformer uses its
  first two windings. Reactance is floored at 0.1 % (``MIN_X_PCT``): near-ideal regulators make
  power-grid-model's state estimator singular.
- **Loads, PV, generators**: total kW/kvar per element as constant power, whatever their phase
  connection or load model; **capacitors**: their total kvar as a shunt.
- Series reactors become lines. Elements that do not fit (shunt reactors, storage, ...) are
  counted in ``Feeder.notes``.

The reduction keeps topology, impedances and total demand; it does not represent phase
imbalance, so on unbalanced feeders its voltages differ from OpenDSS's unbalanced solution
(``reduction_error`` reports the largest |V| difference: 0.030 pu on the IEEE 13-bus, 0.019 pu on
the 123-bus; 0.17 pu on the delta-connected 37-bus with its open-delta regulators, where the
reduction is NOT adequate).

The IEEE feeders shipped with OpenDSS redirect to ``../IEEELineCodes.DSS``. When that file is
missing next to the feeder, the copy that ships with gridlens (``grid/data``, BSD-3, EPRI) is used.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gridlens.errors import ConvergenceError, DataFormatError, NotFoundError
from gridlens.grid.feeder import Bus, Feeder, Generator, Line, Load, Shunt, Switch, Transformer

__all__ = ["compile_dss", "load_dss", "reduction_error"]

_LINECODES = "IEEELineCodes.DSS"
# Regulators are near-ideal (X of 0.001-0.01 %): power-grid-model's state estimator is singular
# with so stiff a branch, so transformer reactance is floored at 0.1 % (a few 1e-5 pu of voltage).
MIN_X_PCT = 0.1
# Lines shorter than this (jumpers of micro-ohms) become closed switches (1 mΩ lines) for the
# same reason.
MIN_LINE_OHM = 1e-3


def _bus(name: str) -> str:
    return name.split(".")[0].lower()


def _missing_parent_linecodes(path: Path) -> bool:
    """True when a file in the feeder's folder redirects to a missing ../IEEELineCodes.DSS."""
    stub = path.parent / _LINECODES
    if not stub.exists():
        for p in path.parent.iterdir():
            if p.name.lower() == _LINECODES.lower():
                stub = p
                break
        else:
            return False
    text = stub.read_text(errors="replace")
    m = re.search(r"redirect\s+(\S+)", text, re.IGNORECASE)
    return bool(m) and not (stub.parent / m.group(1)).exists()  # type: ignore[union-attr]


def compile_dss(path: str | Path) -> Any:
    """Compile and solve ``path`` in OpenDSS; returns the ``opendssdirect`` module.

    Hold :data:`gridlens.grid.engines.DSS_LOCK` while using it (OpenDSS is one engine per
    process); :func:`load_dss` and :func:`reduction_error` do.
    """
    import opendssdirect as dss

    from gridlens.grid.engines import DSS_LOCK, dss_changed

    with DSS_LOCK:
        dss_changed()
        return _compile_dss(dss, path)


def _compile_dss(dss: Any, path: str | Path) -> Any:
    src = Path(path).resolve()
    if not src.is_file():
        raise NotFoundError(f"no such OpenDSS file: {path}")
    work: Path | None = None
    target = src
    if _missing_parent_linecodes(src):
        # mirror the feeder folder one level down and put the shipped line codes above it
        work = Path(tempfile.mkdtemp(prefix="gridlens-dss-"))
        mirror = work / src.parent.name
        mirror.mkdir()
        for p in src.parent.iterdir():
            os.symlink(p, mirror / p.name)
        data = resources.files("gridlens.grid") / "data" / _LINECODES
        (work / _LINECODES).write_text(data.read_text())
        target = mirror / src.name
    cwd = os.getcwd()
    try:
        dss.Text.Command("Clear")
        dss.Text.Command(f'Compile "{target}"')
        dss.Text.Command("Set ControlMode=STATIC")
        dss.Text.Command("Set MaxIterations=100")
        dss.Text.Command("Set MaxControlIter=100")
        dss.Solution.Solve()
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFormatError(f"OpenDSS could not compile {src.name}: {msg}") from None
    finally:
        os.chdir(cwd)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    if dss.Circuit.NumBuses() == 0:
        raise DataFormatError(f"{src.name} defines no circuit")
    if not dss.Solution.Converged():
        raise ConvergenceError(f"OpenDSS power flow of {src.name} did not converge")
    return dss


def _z1(mat: list[float], n: int) -> float:
    m = np.asarray(mat, dtype=float).reshape(n, n)
    if n == 1:
        return float(m[0, 0])
    off = (m.sum() - np.trace(m)) / (n * n - n)
    return float(np.trace(m) / n - off)


def load_dss(path: str | Path) -> Feeder:
    """A balanced :class:`Feeder` from an OpenDSS file (see the module docstring)."""
    from gridlens.grid.engines import DSS_LOCK

    with DSS_LOCK:
        return _load_dss(path)


def _load_dss(path: str | Path) -> Feeder:
    dss = compile_dss(path)
    src = Path(path)
    names = [str(n).lower() for n in dss.Circuit.AllBusNames()]
    kv: dict[str, float] = {}
    for n in names:
        dss.Circuit.SetActiveBus(n)
        kv[n] = float(dss.Bus.kVBase()) * math.sqrt(3)
    notes: list[str] = []
    skipped: dict[str, int] = defaultdict(int)

    lines: list[Line] = []
    switches: list[Switch] = []
    i = dss.Lines.First()
    while i:
        name = str(dss.Lines.Name())
        a, b = _bus(dss.Lines.Bus1()), _bus(dss.Lines.Bus2())
        if a != b and dss.CktElement.Enabled():
            nph = int(dss.Lines.Phases())
            if dss.Lines.IsSwitch():
                switches.append(Switch(name, a, b))
            else:
                length = float(dss.Lines.Length())
                scale = 3.0 / nph
                r = _z1(dss.Lines.RMatrix(), nph) * length * scale
                x = _z1(dss.Lines.XMatrix(), nph) * length * scale
                c = _z1(dss.Lines.CMatrix(), nph) * length / scale
                if math.hypot(r, x) < MIN_LINE_OHM:  # jumpers: a closed switch
                    switches.append(Switch(name, a, b))
                else:
                    lines.append(Line(name, a, b, r, x, max(c, 0.0)))
        i = dss.Lines.Next()
    i = dss.Reactors.First()
    while i:  # series reactors (two distinct buses) are series impedances
        a, b = _bus(dss.Reactors.Bus1()), _bus(dss.Reactors.Bus2() or dss.Reactors.Bus1())
        if a != b and dss.CktElement.Enabled():
            r, x = float(dss.Reactors.R()), float(dss.Reactors.X())
            if math.hypot(r, x) < 1e-9:
                switches.append(Switch(str(dss.Reactors.Name()), a, b))
            else:
                lines.append(Line(str(dss.Reactors.Name()), a, b, r, x))
        else:
            skipped["shunt Reactor"] += 1
        i = dss.Reactors.Next()

    groups: dict[tuple[str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    i = dss.Transformers.First()
    while i:
        if dss.CktElement.Enabled():
            buses = [_bus(b) for b in dss.CktElement.BusNames()]
            if len(buses) >= 2 and buses[0] != buses[1]:
                dss.Transformers.Wdg(1)
                kva = float(dss.Transformers.kVA())
                r1, t1 = float(dss.Transformers.R()), float(dss.Transformers.Tap())
                dss.Transformers.Wdg(2)
                r2, t2 = float(dss.Transformers.R()), float(dss.Transformers.Tap())
                xhl = float(dss.Transformers.Xhl())
                groups[(buses[0], buses[1])].append((kva, r1 + r2, xhl, t2 / t1))
        i = dss.Transformers.Next()
    transformers = [
        Transformer(
            f"T_{a}_{b}",
            a,
            b,
            kv[a],
            kv[b],
            sum(g[0] for g in grp),
            float(np.mean([g[1] for g in grp])),
            max(float(np.mean([g[2] for g in grp])), MIN_X_PCT),
            float(np.mean([g[3] for g in grp])),
        )
        for (a, b), grp in groups.items()
    ]

    loads: list[Load] = []
    i = dss.Loads.First()
    while i:
        if dss.CktElement.Enabled():
            loads.append(
                Load(
                    str(dss.Loads.Name()),
                    _bus(dss.CktElement.BusNames()[0]),
                    float(dss.Loads.kW()),
                    float(dss.Loads.kvar()),
                )
            )
        i = dss.Loads.Next()
    gens: list[Generator] = []
    i = dss.Generators.First()
    while i:
        if dss.CktElement.Enabled():
            gens.append(
                Generator(
                    str(dss.Generators.Name()),
                    _bus(dss.CktElement.BusNames()[0]),
                    float(dss.Generators.kW()),
                    float(dss.Generators.kvar()),
                )
            )
        i = dss.Generators.Next()
    i = dss.PVsystems.First()
    while i:
        if dss.CktElement.Enabled():
            gens.append(
                Generator(
                    str(dss.PVsystems.Name()),
                    _bus(dss.CktElement.BusNames()[0]),
                    float(dss.PVsystems.Pmpp()),
                )
            )
        i = dss.PVsystems.Next()
    shunts: list[Shunt] = []
    i = dss.Capacitors.First()
    while i:
        if dss.CktElement.Enabled():
            bus = _bus(dss.CktElement.BusNames()[0])
            nph = int(dss.CktElement.NumPhases())
            kvr = float(dss.Capacitors.kV())
            kv_ll = kvr * math.sqrt(3) if nph == 1 else kvr
            shunts.append(
                Shunt(str(dss.Capacitors.Name()), bus, float(dss.Capacitors.kvar()), kv_ll)
            )
        i = dss.Capacitors.Next()
    for el in dss.Circuit.AllElementNames():
        cls = str(el).split(".")[0]
        if cls in ("Storage", "VCCS", "Fault", "GICLine", "IndMach012", "UPFC"):
            skipped[cls] += 1
    for cls, k in sorted(skipped.items()):
        notes.append(f"{k} {cls} element(s) not represented")
    coords: list[tuple[str, float, float]] = []
    for n in names:
        dss.Circuit.SetActiveBus(n)
        if dss.Bus.Coorddefined():
            coords.append((n, float(dss.Bus.X()), float(dss.Bus.Y())))
    dss.Vsources.First()
    source = _bus(dss.CktElement.BusNames()[0])
    source_pu = float(dss.Vsources.PU())
    notes.append(
        "balanced positive-sequence reduction of an OpenDSS model: phase imbalance is not "
        "represented; all loads are constant power"
    )
    return Feeder(
        name=src.stem,
        buses=tuple(Bus(n, kv[n]) for n in names),
        source_bus=source,
        lines=tuple(lines),
        transformers=tuple(transformers),
        switches=tuple(switches),
        loads=tuple(loads),
        generators=tuple(gens),
        shunts=tuple(shunts),
        source_pu=source_pu,
        frequency_hz=float(dss.Solution.Frequency()),
        notes=tuple(notes),
        coords=tuple(coords),
    )


def reduction_error(path: str | Path, feeder: Feeder | None = None) -> float:
    """Largest |V| difference (pu) between the balanced reduction's power flow and the
    positive-sequence voltages of OpenDSS's own (unbalanced) solution of ``path``."""
    from gridlens.grid.engines import DSS_LOCK, positive_sequence_voltages, solve_power_flow

    f = feeder or load_dss(path)
    reduced = solve_power_flow(f, "pgm")
    with DSS_LOCK:
        dss = compile_dss(path)
        names, v = positive_sequence_voltages(dss)
    look = {n.lower(): k for k, n in enumerate(names)}
    full = np.abs(v[[look[b] for b in f.bus_names]])
    return float(np.nanmax(np.abs(full - reduced.v_pu)))
