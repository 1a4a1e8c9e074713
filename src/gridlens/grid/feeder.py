"""Balanced (positive-sequence) feeder model shared by every engine and estimator.

A :class:`Feeder` is plain data: buses with their line-to-line base voltage, series branches
(lines in ohms, two-winding transformers, closed switches), constant-power loads and
generators, and shunt capacitors, fed from one stiff source. The OpenDSS and
power-grid-model engines (:mod:`gridlens.grid.engines`) both solve exactly this data, so
their answers can be compared element for element.

Units: kV line-to-line, kW / kvar three-phase totals, ohms per phase, nF per phase.
Loads are positive when they consume; generators positive when they inject.

``ieee15()`` is the IEEE 15-bus radial feeder of Das, Kothari & Kalam (1995), written from the
published line and load table (MATPOWER ``case15da``: impedances in ohms, 11 kV).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from gridlens.errors import InputError, NotFoundError, ParameterError, check_param

__all__ = [
    "Bus",
    "Feeder",
    "Generator",
    "Line",
    "Load",
    "Shunt",
    "Switch",
    "Transformer",
    "feeder_from_dict",
    "feeder_to_dict",
    "ieee15",
]


@dataclass(frozen=True)
class Bus:
    name: str
    kv_ll: float


@dataclass(frozen=True)
class Line:
    name: str
    from_bus: str
    to_bus: str
    r_ohm: float
    x_ohm: float
    c_nf: float = 0.0  # total shunt capacitance per phase


@dataclass(frozen=True)
class Transformer:
    """Two-winding wye-wye equivalent; ``ratio`` = off-nominal tap on the to side (1 = nominal)."""

    name: str
    from_bus: str
    to_bus: str
    kv_from: float
    kv_to: float
    kva: float
    r_pct: float
    x_pct: float
    ratio: float = 1.0


@dataclass(frozen=True)
class Switch:
    name: str
    from_bus: str
    to_bus: str


@dataclass(frozen=True)
class Load:
    name: str
    bus: str
    p_kw: float
    q_kvar: float


@dataclass(frozen=True)
class Generator:
    """Constant-power injection (the seed's PV: unity power factor, voltage independent)."""

    name: str
    bus: str
    p_kw: float
    q_kvar: float = 0.0


@dataclass(frozen=True)
class Shunt:
    """Shunt capacitor: ``q_kvar`` > 0 supplies reactive power at rated voltage ``kv_ll``."""

    name: str
    bus: str
    q_kvar: float
    kv_ll: float


@dataclass(frozen=True)
class Feeder:
    """A balanced feeder. Build one with :func:`ieee15` or :func:`gridlens.grid.load_dss`."""

    name: str
    buses: tuple[Bus, ...]
    source_bus: str
    lines: tuple[Line, ...] = ()
    transformers: tuple[Transformer, ...] = ()
    switches: tuple[Switch, ...] = ()
    loads: tuple[Load, ...] = ()
    generators: tuple[Generator, ...] = ()
    shunts: tuple[Shunt, ...] = ()
    source_pu: float = 1.0
    frequency_hz: float = 60.0
    notes: tuple[str, ...] = field(default=(), compare=False)
    coords: tuple[tuple[str, float, float], ...] = field(default=(), compare=False)
    """Bus positions from the .dss ``Buscoords`` (bus, x, y); empty when it has none."""

    def __post_init__(self) -> None:
        names = [b.name for b in self.buses]
        if len(set(names)) != len(names):
            raise ParameterError(f"feeder {self.name!r} has duplicate bus names")
        known = set(names)
        ends: Iterable[str] = (
            [self.source_bus]
            + [e for br in self.branches for e in (br.from_bus, br.to_bus)]
            + [ld.bus for ld in self.loads]
            + [gen.bus for gen in self.generators]
            + [sh.bus for sh in self.shunts]
        )
        for b in ends:
            if b not in known:
                raise NotFoundError(f"feeder {self.name!r} refers to unknown bus {b!r}")

    def check_connected(self) -> None:
        """Raise :class:`InputError` if some buses are not connected to the source."""
        n = self.n_bus
        adj: list[list[int]] = [[] for _ in range(n)]
        for br in self.branches:
            a, b = self.bus_index(br.from_bus), self.bus_index(br.to_bus)
            adj[a].append(b)
            adj[b].append(a)
        seen = np.zeros(n, dtype=bool)
        stack = [self.bus_index(self.source_bus)]
        seen[stack[0]] = True
        while stack:
            for nb in adj[stack.pop()]:
                if not seen[nb]:
                    seen[nb] = True
                    stack.append(nb)
        if not seen.all():
            lost = [self.bus_names[k] for k in np.flatnonzero(~seen)[:5]]
            raise InputError(
                f"{int((~seen).sum())} bus(es) of feeder {self.name!r} are not connected to the "
                f"source ({', '.join(lost)}{' ...' if (~seen).sum() > 5 else ''}): their state "
                "is unobservable"
            )

    # -- lookup ------------------------------------------------------------------------------
    @property
    def branches(self) -> tuple[Line | Transformer | Switch, ...]:
        return (*self.lines, *self.transformers, *self.switches)

    @cached_property
    def bus_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.buses)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: k for k, n in enumerate(self.bus_names)}

    @property
    def n_bus(self) -> int:
        return len(self.buses)

    def bus_index(self, name: str | int) -> int:
        """Index of bus ``name``; raises :class:`NotFoundError` with the valid range."""
        key = str(name)
        try:
            return self._index[key]
        except KeyError:
            shown = ", ".join(self.bus_names[:8]) + (" ..." if self.n_bus > 8 else "")
            raise NotFoundError(
                f"unknown bus {key!r} in feeder {self.name!r} ({self.n_bus} buses: {shown})"
            ) from None

    def bus_indices(self, names: Iterable[str | int]) -> NDArray[np.intp]:
        return np.array([self.bus_index(n) for n in names], dtype=np.intp)

    @cached_property
    def kv_ll(self) -> NDArray[np.float64]:
        return np.array([b.kv_ll for b in self.buses])

    # -- derived feeders ---------------------------------------------------------------------
    def with_pv(self, bus: str | int, p_kw: float, name: str = "pv") -> Feeder:
        """A copy with a unity-PF generator of ``p_kw`` at ``bus`` (replacing one of that name)."""
        self.bus_index(bus)
        check_param(p_kw >= 0, "p_kw", "Feeder.with_pv", "a non-negative number", p_kw)
        gens = tuple(g for g in self.generators if g.name != name)
        return replace(self, generators=(*gens, Generator(name, str(bus), float(p_kw))))

    def with_loads(self, p_kw: Sequence[float], q_kvar: Sequence[float]) -> Feeder:
        """A copy with every load's P and Q replaced (same order as ``loads``)."""
        if len(p_kw) != len(self.loads) or len(q_kvar) != len(self.loads):
            raise ParameterError(
                f"with_loads needs {len(self.loads)} P and Q values, got {len(p_kw)}/{len(q_kvar)}"
            )
        loads = tuple(
            replace(ld, p_kw=float(p), q_kvar=float(q))
            for ld, p, q in zip(self.loads, p_kw, q_kvar, strict=True)
        )
        return replace(self, loads=loads)

    @property
    def total_load_kw(self) -> float:
        return float(sum(ld.p_kw for ld in self.loads))

    @property
    def total_load_kvar(self) -> float:
        return float(sum(ld.q_kvar for ld in self.loads))

    def load_bus_indices(self) -> NDArray[np.intp]:
        return self.bus_indices(ld.bus for ld in self.loads)


# Das, Kothari & Kalam (1995) as published in MATPOWER case15da: (from, to, R ohm, X ohm).
_IEEE15_LINES: tuple[tuple[int, int, float, float], ...] = (
    (1, 2, 1.35309, 1.32349),
    (2, 3, 1.17024, 1.14464),
    (3, 4, 0.84111, 0.82271),
    (4, 5, 1.52348, 1.0276),
    (2, 9, 2.01317, 1.3579),
    (9, 10, 1.68671, 1.1377),
    (2, 6, 2.55727, 1.7249),
    (6, 7, 1.0882, 0.734),
    (6, 8, 1.25143, 0.8441),
    (3, 11, 1.79553, 1.2111),
    (11, 12, 2.44845, 1.6515),
    (12, 13, 2.01317, 1.3579),
    (4, 14, 2.23081, 1.5047),
    (4, 15, 1.19702, 0.8074),
)
# (bus, kW, kvar): every load at PF 0.7 lagging.
_IEEE15_LOADS: tuple[tuple[int, float, float], ...] = (
    (2, 44.1, 44.9910),
    (3, 70.0, 71.4143),
    (4, 140.0, 142.8286),
    (5, 44.1, 44.9910),
    (6, 140.0, 142.8286),
    (7, 140.0, 142.8286),
    (8, 70.0, 71.4143),
    (9, 70.0, 71.4143),
    (10, 44.1, 44.9910),
    (11, 140.0, 142.8286),
    (12, 70.0, 71.4143),
    (13, 44.1, 44.9910),
    (14, 70.0, 71.4143),
    (15, 140.0, 142.8286),
)


def ieee15(pv_bus: str | int | None = None, pv_kw: float = 0.0) -> Feeder:
    """The IEEE 15-bus feeder (11 kV, 14 lines, 1226.4 kW / 1251.2 kvar), optionally with PV.

    >>> f = ieee15(pv_bus=14, pv_kw=100)
    >>> f.n_bus, round(f.total_load_kw, 1), f.generators[0].bus
    (15, 1226.4, '14')
    """
    feeder = Feeder(
        name="ieee15",
        buses=tuple(Bus(str(k), 11.0) for k in range(1, 16)),
        source_bus="1",
        lines=tuple(Line(f"L{a}_{b}", str(a), str(b), r, x) for a, b, r, x in _IEEE15_LINES),
        loads=tuple(Load(f"LD{b}", str(b), p, q) for b, p, q in _IEEE15_LOADS),
        frequency_hz=50.0,
    )
    if pv_bus is not None:
        feeder = feeder.with_pv(pv_bus, pv_kw)
    return feeder


_PARTS: dict[str, type] = {
    "buses": Bus,
    "lines": Line,
    "transformers": Transformer,
    "switches": Switch,
    "loads": Load,
    "generators": Generator,
    "shunts": Shunt,
}


def feeder_to_dict(feeder: Feeder) -> dict[str, object]:
    """A JSON-ready document of ``feeder`` (what :func:`feeder_from_dict` reads back)."""
    from dataclasses import asdict

    doc = asdict(feeder)
    for key in _PARTS:
        doc[key] = list(doc[key])
    doc["notes"] = list(feeder.notes)
    doc["coords"] = [list(c) for c in feeder.coords]
    return doc


def feeder_from_dict(doc: dict[str, object]) -> Feeder:
    """The :class:`Feeder` of a :func:`feeder_to_dict` document."""
    kw: dict[str, object] = {}
    for key, value in doc.items():
        cls = _PARTS.get(key)
        if cls is not None:
            assert isinstance(value, list | tuple)
            kw[key] = tuple(cls(**item) for item in value)
        elif key in ("notes", "coords"):
            assert isinstance(value, list | tuple)
            kw[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kw[key] = value
    return Feeder(**kw)  # type: ignore[arg-type]
