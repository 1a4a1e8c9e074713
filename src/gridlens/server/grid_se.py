"""Feeders and their hourly estimates, between the store and :mod:`gridlens.grid`.

- :func:`compile_files` turns uploaded .dss files into a balanced model (OpenDSS runs once,
  in a private folder, under a lock; the model is stored, so OpenDSS never runs again);
- :func:`refresh` brings a feeder's hourly estimates up to date, cheaply and correctly:

  1. readings that arrived since the last refresh are found by id (``readings.id >
     feeders.readings_seen``, a primary-key range): for each meter, every hour between the
     accepted reading before its earliest new reading and the one after its latest (the
     hours whose interpolated consumption the new readings change) is dropped;
  2. every hour with no estimate, from the first reading of the feeder's meters (at most
     :data:`MAX_HOURS` back) to the last complete hour, is estimated, all in one batch.

  A late reading therefore re-estimates exactly the hours it changes; a change of the
  meters or µPMUs drops every estimate of the feeder. The Grid page and
  ``GET /api/v1/feeders/{id}/estimates`` refresh before they answer; ``gridlens feeder
  estimate`` does it from the command line.
- the demo's **simulated truth** (``feeders.simulation``): each bus's true load is its
  driving meter's hourly energy times a factor (the bus's nominal load over the meter's mean)
  times ``1 + ε`` (ε ~ N(0, jitter), drawn per bus and hour from a fixed seed; ε = 0 where
  the meter itself is on the bus). Its power flow is the truth of the TVE, and the virtual
  µPMUs sample it.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from gridlens.errors import DataFormatError, NotFoundError, ParameterError
from gridlens.grid.feeder import Feeder, feeder_from_dict, feeder_to_dict, ieee15
from gridlens.store.feeders import FeederMeter, FeederRow
from gridlens.store.models import Reading
from gridlens.store.queries import counter_window
from gridlens.store.repo import Store

__all__ = [
    "BUILTINS",
    "MAX_HOURS",
    "compile_files",
    "estimates_doc",
    "feeder_doc",
    "load_model",
    "refresh",
]

HOUR = 3600.0
#: Most hours a feeder keeps estimated back from its last complete hour (~ 2 months).
MAX_HOURS = 24 * 62
#: A meter counts as read in an hour when the accepted readings around it are at most this
#: far apart; a longer gap makes the hour a pseudo-measurement from the meter's profile.
MAX_GAP_S = 3 * HOUR
PROFILE_DAYS = 14
#: Hours estimated in one batch (a week).
CHUNK_HOURS = 24 * 7
#: A refresh on request stops starting new batches after this long [s].
REFRESH_BUDGET_S = 5.0
BUILTINS = {"ieee15": ieee15}
#: Longest an upload's compile may take (the child limits its CPU time to the same) [s].
COMPILE_TIMEOUT_S = 120
_REFRESH_LOCK = threading.Lock()
_MAX_FILES = 20
_MAX_FILE_BYTES = 8 * 1024 * 1024
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,100}$")
# commands that write files, show windows or leave the upload's folder
_FORBIDDEN = re.compile(
    r"^\s*(export|save|show|plot|fileedit|cd|set\s+datapath|set\s+editor|system|"
    r"_|visualize|dump)\b",
    re.IGNORECASE | re.MULTILINE,
)
_REF = re.compile(
    r"(?:\bredirect|\bcompile|\bbuscoords|\bfile\s*=|\bmult\s*=\s*\(\s*file\s*=)"
    r"\s*\(?\s*[\"']?([^\s\"')]+)",
    re.IGNORECASE,
)
_SAFE_REF = re.compile(r"^(\.\./)?[A-Za-z0-9][A-Za-z0-9 ._-]*$")

_models: dict[tuple[int, float], Feeder] = {}


# ---------------------------------------------------------------------------- models


def builtin_model(name: str) -> dict[str, Any]:
    try:
        factory = BUILTINS[name]
    except KeyError:
        raise NotFoundError(
            f"no built-in feeder {name!r}; built-in: {', '.join(BUILTINS)}"
        ) from None
    return feeder_to_dict(factory())


def compile_files(files: dict[str, str], main: str | None = None) -> tuple[dict[str, Any], str]:
    """The balanced model of uploaded .dss files and the main file's name.

    ``main`` defaults to the one file that others do not redirect to (or the only one).
    Raises :class:`DataFormatError` with OpenDSS's message when it cannot compile them.
    """
    if not files:
        raise ParameterError("no .dss file given")
    if len(files) > _MAX_FILES:
        raise ParameterError(f"at most {_MAX_FILES} files, got {len(files)}")
    for name, text in files.items():
        if not _FILE_NAME.match(name):
            raise ParameterError(f"file name {name[:80]!r} must be a plain file name")
        if len(text.encode()) > _MAX_FILE_BYTES:
            raise ParameterError(f"{name} is over {_MAX_FILE_BYTES // 2**20} MB")
        if "\x00" in text:
            raise DataFormatError(f"{name} is not a text file")
        bad = _FORBIDDEN.search(text)
        if bad:
            raise DataFormatError(
                f"{name}: the command {bad.group(1)!r} is not allowed in an uploaded feeder"
            )
        for line in text.splitlines():
            code = line.split("!")[0].split("//")[0]
            for ref in _REF.findall(code):
                if not _SAFE_REF.match(ref.replace("\\", "/")):
                    raise DataFormatError(
                        f"{name}: {code.strip()[:80]!r} refers outside the uploaded files"
                    )
    if main is None:
        mains = [n for n in files if n.lower().endswith(".dss")]
        refs = " ".join(files.values()).lower()
        roots = [n for n in mains if n.lower() not in refs] or mains
        circuits = [n for n in roots if "new circuit" in files[n].lower()]
        if len(circuits) != 1:
            raise ParameterError(
                "say which file is the main one (the one with 'New Circuit'): "
                + ", ".join(sorted(files))
            )
        main = circuits[0]
    if main not in files:
        raise ParameterError(f"main file {main!r} is not among the uploaded files")
    work = Path(tempfile.mkdtemp(prefix="gridlens-upload-"))
    try:
        sub = work / "feeder"
        sub.mkdir()
        for name, text in files.items():
            (sub / name).write_text(text)
        model = _compile_in_child(sub / main, main, str(sub) + "/")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model, main


def _compile_in_child(path: Path, main: str, folder: str) -> dict[str, Any]:
    """The model of ``path`` from ``python -m gridlens.grid.dss_child`` (its own process,
    which limits its CPU time and memory; a crash in OpenDSS stays there)."""
    import json
    import subprocess
    import sys

    try:
        run = subprocess.run(
            [sys.executable, "-m", "gridlens.grid.dss_child", str(path)],
            capture_output=True,
            timeout=COMPILE_TIMEOUT_S + 10,
            cwd=path.parent,
        )
    except subprocess.TimeoutExpired:
        raise DataFormatError(
            f"OpenDSS took over {COMPILE_TIMEOUT_S} s on {main}: not loaded"
        ) from None
    if run.returncode != 0:
        lines = run.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit code {run.returncode}"
        if run.returncode < 0:
            why = f"OpenDSS stopped (signal {-run.returncode})"
        raise DataFormatError(f"{main}: {why.replace(folder, '')}")
    model: dict[str, Any] = json.loads(run.stdout)
    return model


def load_model(row: FeederRow) -> Feeder:
    """The :class:`Feeder` of a stored row (cached per process by id and update time)."""
    key = (row.id, row.created_at)
    f = _models.get(key)
    if f is None:
        f = feeder_from_dict(row.model)
        if len(_models) > 32:
            _models.clear()
        _models[key] = f
    return f


# ---------------------------------------------------------------------------- documents


def feeder_doc(store: Store, row: FeederRow) -> dict[str, Any]:
    """``GET /api/v1/feeders/{id}``: buses with their meters and position, lines, µPMUs."""
    from gridlens.grid.layout import bus_layout

    f = load_model(row)
    pos, layout = bus_layout(f)
    on_bus: dict[str, list[dict[str, Any]]] = {}
    for m, name in store.feeder_meters(row.id):
        on_bus.setdefault(m.bus, []).append(
            {"device_id": m.device_id, "name": name, "scale": m.scale}
        )
    nom: dict[str, list[float]] = {}
    for ld in f.loads:
        v = nom.setdefault(ld.bus, [0.0, 0.0])
        v[0] += ld.p_kw
        v[1] += ld.q_kvar
    buses = [
        {
            "name": b.name,
            "kv": b.kv_ll,
            "x": float(pos[k, 0]),
            "y": float(pos[k, 1]),
            "load_kw": nom.get(b.name, [0.0, 0.0])[0],
            "load_kvar": nom.get(b.name, [0.0, 0.0])[1],
            "meters": on_bus.get(b.name, []),
            "pmu": b.name in row.pmus,
        }
        for k, b in enumerate(f.buses)
    ]
    lines = [
        {"name": br.name, "from": br.from_bus, "to": br.to_bus, "kind": type(br).__name__.lower()}
        for br in f.branches
    ]
    try:
        from gridlens.grid.engines import solve_power_flow

        pf: list[float | None] | None = [_num(v, 5) for v in solve_power_flow(f, "pgm").v_pu]
    except Exception:  # a model without a solution still draws
        pf = None
    return {
        "id": row.id,
        "name": row.name,
        "source": row.source,
        "source_bus": f.source_bus,
        "power_flow_vm_pu": pf,
        "layout": layout,
        "buses": buses,
        "lines": lines,
        "pmus": list(row.pmus),
        "simulated_truth": row.simulation is not None,
        "notes": list(f.notes),
        "files": sorted(row.files or {}),
        "created_at": row.created_at,
    }


def _num(v: float, digits: int = 6) -> float | None:
    return round(float(v), digits) if math.isfinite(v) else None


def estimates_doc(store: Store, row: FeederRow, since: float, until: float) -> dict[str, Any]:
    """The estimated hours in ``[since, until)``: each with its buses' values."""
    from gridlens.store.timeutil import iso

    f = load_model(row)
    names = f.bus_names
    hours = store.feeder_hours(row.id, since, until)
    out = []
    for h in hours:
        buses = []
        for k, name in enumerate(names):
            d: dict[str, Any] = {
                "name": name,
                "vm_pu": _num(h.vm[k]),
                "va_deg": _num(h.va[k], 4),
                "vm_sigma_pu": _num(h.vm_sigma[k], 7),
                "va_sigma_deg": _num(h.va_sigma[k], 5),
            }
            if h.tve is not None:
                d["tve_pct"] = _num(h.tve[k], 5)
            buses.append(d)
        item: dict[str, Any] = {
            "hour": iso(h.hour),
            "meters_read": h.meters_read,
            "meters_pseudo": h.meters_pseudo,
            "buses": buses,
        }
        if h.tve is not None:
            item["mean_tve_pct"] = _num(float(np.mean(h.tve)), 5)
        out.append(item)
    return {"feeder_id": row.id, "hours": out}


# ---------------------------------------------------------------------------- refresh


def _hourly_kwh(t: np.ndarray, v: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Energy per hour of a counter; NaN where the readings around the hour are far apart."""
    from gridlens.store.series import consumption

    out = np.full(len(hours), np.nan)
    if len(t) < 2 or len(hours) == 0:
        return out
    starts, energy = consumption(t, v, HOUR, since=float(hours[0]), until=float(hours[-1] + HOUR))
    idx = np.searchsorted(starts, hours)
    ok = (idx < len(starts)) & (starts[np.minimum(idx, len(starts) - 1)] == hours)
    out[ok] = energy[idx[ok]]
    prev = np.searchsorted(t, hours, side="right") - 1
    nxt = np.searchsorted(t, hours + HOUR, side="left")
    inside = (prev >= 0) & (nxt < len(t))
    gap = np.where(inside, t[np.minimum(nxt, len(t) - 1)] - t[np.maximum(prev, 0)], np.inf)
    out[gap > MAX_GAP_S] = np.nan
    out[out < 0] = np.nan
    return out


def _span(store: Store, device_ids: list[int]) -> tuple[float, float] | None:
    if not device_ids:
        return None
    with store.session() as s:
        lo, hi = s.execute(
            select(func.min(Reading.captured_at), func.max(Reading.captured_at)).where(
                Reading.device_id.in_(device_ids), Reading.status == "ok"
            )
        ).one()
    return None if lo is None else (float(lo), float(hi))


def _dirty_hours(store: Store, row: FeederRow, device_ids: list[int]) -> tuple[set[float], int]:
    """Hours changed by readings newer than the watermark, and the new watermark."""
    with store.session() as s:
        top = s.scalar(select(func.max(Reading.id))) or 0
        if not device_ids or row.readings_seen <= 0:
            return set(), int(top)
        rows = s.execute(
            select(Reading.device_id, func.min(Reading.captured_at), func.max(Reading.captured_at))
            .where(
                Reading.id > row.readings_seen, Reading.id <= top, Reading.device_id.in_(device_ids)
            )
            .group_by(Reading.device_id)
        ).all()
        dirty: set[float] = set()
        for dev, lo, hi in rows:
            base = select(Reading.captured_at).where(
                Reading.device_id == dev, Reading.status == "ok"
            )
            before = s.scalar(
                base.where(Reading.captured_at < lo).order_by(Reading.captured_at.desc()).limit(1)
            )
            after = s.scalar(
                base.where(Reading.captured_at > hi).order_by(Reading.captured_at).limit(1)
            )
            a = math.floor(float(before if before is not None else lo) / HOUR)
            b = math.floor(float(after if after is not None else hi) / HOUR)
            dirty.update(float(h * HOUR) for h in range(a, min(b, a + MAX_HOURS) + 1))
    return dirty, int(top)


def refresh(
    store: Store, ref: int | str, *, now: float | None = None, budget_s: float = REFRESH_BUDGET_S
) -> dict[str, Any]:
    """Estimate the hours of feeder ``ref`` that have none or whose readings changed (the
    newest first; after ``budget_s`` the rest waits for the next refresh)."""
    with _REFRESH_LOCK:
        return _refresh(store, ref, time.time() if now is None else now, budget_s)


def _refresh(store: Store, ref: int | str, now: float, budget_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    row = store.feeder(ref)
    meters = [m for m, _ in store.feeder_meters(row.id)]
    device_ids = sorted({m.device_id for m in meters})
    dirty, top = _dirty_hours(store, row, device_ids)
    if dirty:
        store.drop_hours(row.id, sorted(dirty))
    span = _span(store, device_ids)
    if span is None and row.simulation is not None:  # the simulated buses' meters
        sim_ids = {int(v["device_id"]) for v in (row.simulation.get("buses") or {}).values()}
        span = _span(store, sorted(sim_ids))
    if span is None and row.simulation is None:
        store.save_hours(row.id, [], top)
        return {"estimated": 0, "dirty": 0, "seconds": time.perf_counter() - t0}
    last_read = span[1] if span is not None else now
    end = math.floor(min(last_read, now) / HOUR) * HOUR  # hours that are over
    first = math.floor(span[0] / HOUR) * HOUR if span is not None else end - 24 * HOUR
    first = max(first, end - MAX_HOURS * HOUR)
    all_hours = np.arange(first, end, HOUR)
    have = store.estimated_hours(row.id, first, end)
    todo = np.array([h for h in all_hours if h not in have])
    if len(todo) == 0:
        store.save_hours(row.id, [], top)
        return {"estimated": 0, "dirty": len(dirty), "seconds": time.perf_counter() - t0}
    done = 0
    complete = True
    for b in range(len(todo), 0, -CHUNK_HOURS):  # newest first, a week at a time
        part = todo[max(0, b - CHUNK_HOURS) : b]
        rows = estimate_hours(store, row, meters, part)
        store.save_hours(row.id, rows, None)
        done += len(rows)
        if b - CHUNK_HOURS > 0 and time.perf_counter() - t0 > budget_s:
            complete = False  # the older hours come with the next refresh
            break
    # the watermark moves only when every hour up to it is estimated: a refresh cut short
    # keeps finding the readings it has not taken into account yet
    store.save_hours(row.id, [], top if complete else None)
    return {
        "estimated": done,
        "dirty": len(dirty),
        "seconds": time.perf_counter() - t0,
        "complete": complete,
    }


def estimate_hours(
    store: Store, row: FeederRow, meters: list[FeederMeter], todo: np.ndarray
) -> list[dict[str, Any]]:
    """The estimate rows of the hours ``todo`` (sorted epoch seconds of hour starts)."""
    from gridlens.grid.hourly import HourlySE, MeterSeries, bus_loads, meter_profile

    f = load_model(row)
    lo = float(todo[0]) - PROFILE_DAYS * 86400
    hi = float(todo[-1]) + HOUR
    window = np.arange(lo, hi, HOUR)
    pos = np.searchsorted(window, todo)
    series: list[MeterSeries] = []
    kwh_by_dev: dict[int, np.ndarray] = {}
    for m in meters:
        try:
            bus = f.bus_index(m.bus)
        except NotFoundError:
            continue  # the bus left the model (never: models do not change)
        t, v = counter_window(store, m.device_id, lo, hi)
        kwh = _hourly_kwh(t, v, window)
        kwh_by_dev[m.device_id] = kwh
        prof = meter_profile(window, kwh)
        series.append(MeterSeries(bus, kwh[pos], m.scale, prof))
    pmus = [f.bus_index(b) for b in row.pmus if b in f.bus_names]
    se = HourlySE(f, pmus, [s.bus for s in series])
    loads = bus_loads(f, todo, series)
    truth = None
    pmu = None
    if row.simulation is not None:
        truth = _simulated_truth(store, row, se, f, todo, window, pos, kwh_by_dev)
        if pmus:
            from gridlens.grid.hourly import virtual_pmus

            pmu = np.vstack(
                [
                    virtual_pmus(truth[i : i + 1], se.pmu, seed=int(h // HOUR))
                    for i, h in enumerate(todo)
                ]
            )
    est = se.estimate(loads, pmu)
    tve = None
    if truth is not None:
        tve = np.abs(est.phasors - truth) / np.abs(truth) * 100
    now = time.time()
    out = []
    for i, h in enumerate(todo):
        out.append(
            {
                "hour": float(h),
                "computed_at": now,
                "vm": [round(float(x), 7) for x in est.vm_pu[i]],
                "va": [round(float(x), 5) for x in est.va_deg[i]],
                "vm_sigma": [round(float(x), 8) for x in est.vm_sigma[i]],
                "va_sigma": [round(float(x), 6) for x in est.va_sigma_deg[i]],
                "tve": None if tve is None else [round(float(x), 6) for x in tve[i]],
                "meters_read": int(loads.read[i]),
                "meters_pseudo": int(loads.pseudo[i]),
            }
        )
    return out


def _simulated_truth(
    store: Store,
    row: FeederRow,
    se: Any,
    f: Feeder,
    todo: np.ndarray,
    window: np.ndarray,
    pos: np.ndarray,
    kwh_by_dev: dict[int, np.ndarray],
) -> np.ndarray:
    from gridlens.grid.hourly import meter_profile

    sim = row.simulation or {}
    jitter = float(sim.get("jitter", 0.05))
    seed = int(sim.get("seed", 0))
    H, n = len(todo), f.n_bus
    p = np.zeros((H, n))
    nom_p = np.zeros(n)
    nom_q = np.zeros(n)
    for ld in f.loads:
        k = f.bus_index(ld.bus)
        nom_p[k] += ld.p_kw
        nom_q[k] += ld.q_kvar
    hod = ((window // HOUR) % 24).astype(int)
    for bus, spec in (sim.get("buses") or {}).items():
        if bus not in f.bus_names:
            continue
        k = f.bus_index(bus)
        dev = int(spec["device_id"])
        kwh = kwh_by_dev.get(dev)
        if kwh is None:
            t, v = counter_window(store, dev, float(window[0]), float(window[-1] + HOUR))
            kwh = kwh_by_dev[dev] = _hourly_kwh(t, v, window)
        prof = meter_profile(window, kwh)
        fill = np.where(
            np.isfinite(prof[hod]), prof[hod], np.nanmean(prof) if np.isfinite(prof).any() else 0.0
        )
        shape = np.where(np.isfinite(kwh), kwh, fill)[pos]
        p[:, k] = shape * float(spec["factor"])
        if not spec.get("metered", False):
            eps = np.array(
                [np.random.default_rng([seed, int(h // HOUR), k]).normal(0.0, jitter) for h in todo]
            )
            p[:, k] *= np.maximum(1 + eps, 0.0)
    tan = np.where(nom_p > 0, nom_q / np.where(nom_p > 0, nom_p, 1.0), 0.0)
    truth: np.ndarray = se.power_flow(p, p * tan[None, :])
    return truth
