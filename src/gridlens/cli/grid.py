"""``gridlens powerflow``, ``gridlens place`` and ``gridlens feeder ...``: the feeder
subcommands of the CLI."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from gridlens.errors import InputError, NotFoundError

PUBLISHED = {
    "best": {"buses": [1, 2, 9], "mean_tve_pct": 0.22},
    "worst": {"buses": [1, 5, 7], "mean_tve_pct": 0.302},
    "improvement_pct": 27.3,
    "single_scenario_tve_pct": "0.1-0.2 at most buses",
}


def load_feeder(spec: str, pv_bus: str | None, pv_kw: float | None) -> Any:
    """``ieee15`` or a path to an OpenDSS ``.dss`` file, with an optional PV."""
    from gridlens.grid import ieee15
    from gridlens.grid.dssio import load_dss

    if spec.lower() == "ieee15":
        feeder = ieee15()
        if pv_bus is None and pv_kw is None:
            pv_bus, pv_kw = "14", 0.0
    else:
        path = Path(spec)
        if not path.exists():
            raise NotFoundError(f"no feeder named {spec!r}: use ieee15 or the path of a .dss file")
        feeder = load_dss(path)
    if pv_kw is not None and pv_bus is None:
        raise InputError("--pv-kw needs --pv-bus")
    if pv_bus is not None:
        feeder = feeder.with_pv(pv_bus, pv_kw if pv_kw is not None else 0.0)
    return feeder


def add_grid_commands(sub: Any, emit_json: Any) -> None:
    add_feeder_commands(sub, emit_json)
    p = sub.add_parser(
        "powerflow",
        help="power flow of a feeder through OpenDSS or power-grid-model",
        description="Power flow of the IEEE 15-bus feeder or any OpenDSS .dss feeder "
        "(reduced to a balanced positive-sequence network).",
    )
    p.add_argument("--feeder", default="ieee15", help="ieee15 or PATH.dss (default ieee15)")
    p.add_argument("--engine", choices=("opendss", "pgm"), default="pgm")
    p.add_argument("--pv-bus", help="bus of a unity-PF PV generator")
    p.add_argument("--pv-kw", type=float, help="PV output in kW")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=lambda a: _cmd_powerflow(a, emit_json))

    q = sub.add_parser(
        "place",
        help="µPMU placement with the lowest total vector error",
        description="Search µPMU placements by mean TVE of the estimated bus voltage phasors "
        "over the seed's scenarios (exact WLS, the paper's PSO, DE, GA, or the analytic "
        "covariance score).",
    )
    q.add_argument("--feeder", default="ieee15", help="ieee15 or PATH.dss")
    q.add_argument("--pmus", type=int, default=3, help="number of µPMUs K (default 3)")
    q.add_argument("--fixed", default="", help="comma-separated buses that always get a µPMU")
    q.add_argument("--scenarios", type=int, default=15, help="hourly scenarios (default 15)")
    q.add_argument("--estimator", choices=("wls", "pso", "de", "ga", "analytic"), default="wls")
    q.add_argument("--search", choices=("exhaustive", "greedy"), default="exhaustive")
    q.add_argument(
        "--engine",
        choices=("pgm", "opendss"),
        default="pgm",
        help="power-flow engine of pso/de/ga (pgm batches the particles)",
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--pv-bus", help="PV bus (ieee15 default: 14)")
    q.add_argument("--pv-kw", type=float, help="PV peak in kW (ieee15 default: 100)")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="run on a Dask LocalCluster of N processes")
    g.add_argument("--scheduler", help="run on a remote Dask scheduler, tcp://HOST:PORT")
    q.add_argument("--top", type=int, default=10, help="placements to show (default 10)")
    q.add_argument("--paper", action="store_true", help="run the seed paper's study end to end")
    q.add_argument("--plot", help="PNG of per-bus TVE for best/median/worst placements")
    q.add_argument("--json", action="store_true", help="print one JSON document")
    q.set_defaults(func=lambda a: _cmd_place(a, emit_json))


def _cmd_powerflow(args: argparse.Namespace, emit_json: Any) -> int:
    import numpy as np

    from gridlens.grid import solve_power_flow

    feeder = load_feeder(args.feeder, args.pv_bus, args.pv_kw)
    res = solve_power_flow(feeder, args.engine)
    doc = res.to_dict()
    doc["feeder"] = feeder.name
    k = int(np.argmin(res.v_pu))
    doc["min_v"] = {"bus": res.buses[k], "v_pu": float(res.v_pu[k])}
    if args.json:
        emit_json(doc)
        return 0
    print(f"feeder {feeder.name} ({feeder.n_bus} buses), engine {res.engine}")
    for note in feeder.notes:
        print(f"  note: {note}")
    if feeder.n_bus <= 60:
        print(f"{'bus':>10} {'|V| pu':>9} {'angle °':>9}")
        for b, v, a in zip(res.buses, res.v_pu, res.angle_deg, strict=True):
            print(f"{b:>10} {v:9.5f} {a:9.4f}")
    print(f"min |V| {res.v_pu[k]:.5f} pu at bus {res.buses[k]}")
    print(f"losses {res.losses_kw:.3f} kW / {res.losses_kvar:.3f} kvar")
    return 0


def _study(args: argparse.Namespace) -> Any:
    from gridlens.grid.estimation import Study

    pv_bus, pv_kw = args.pv_bus, args.pv_kw
    if args.feeder.lower() == "ieee15":
        pv_bus = pv_bus or "14"
        pv_kw = 100.0 if pv_kw is None else pv_kw
    feeder = load_feeder(args.feeder, pv_bus, pv_kw)
    return Study.build(feeder, args.scenarios, seed=args.seed)


def _fixed(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _cmd_place(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.grid.placement import search

    if args.paper:
        return _cmd_place_paper(args, emit_json)
    study = _study(args)
    opts: dict[str, Any] = {}
    if args.estimator in ("pso", "de", "ga"):
        opts = {"engine": args.engine, "seed": args.seed}
    res = search(
        study,
        args.pmus,
        estimator=args.estimator,
        fixed=_fixed(args.fixed),
        method=args.search,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.json or sys.stderr.isatty(),
        estimator_options=opts,
    )
    if args.plot:
        from gridlens.grid.plot import plot_placements

        plot_placements(res, args.plot, f"{study.feeder.name}: K={args.pmus}, {args.estimator}")
    if args.json:
        doc = res.to_dict()
        doc.update(feeder=study.feeder.name, scenarios=study.n_scenarios, seed=args.seed)
        emit_json(doc)
        return 0
    print(
        f"feeder {study.feeder.name}: {res.evaluated} placements of K={args.pmus} scored by "
        f"{res.estimator} ({res.search}) over {study.n_scenarios} scenarios in "
        f"{res.elapsed_s:.2f} s"
    )
    print(f"{'rank':>4}  {'buses':<24} {'mean TVE %':>11} {'max TVE %':>10}")
    for r, p in enumerate(res.placements[: args.top], 1):
        print(f"{r:>4}  {'-'.join(p.buses):<24} {p.mean_tve_pct:11.4f} {p.max_tve_pct:10.4f}")
    if len(res.placements) > args.top:
        w = res.placements[-1]
        print(
            f"{'...':>4}\n{len(res.placements):>4}  {'-'.join(w.buses):<24} "
            f"{w.mean_tve_pct:11.4f} {w.max_tve_pct:10.4f}"
        )
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _rank(res: Any, buses: list[str]) -> tuple[int, float]:
    for k, p in enumerate(res.placements):
        if list(p.buses) == buses:
            return k + 1, p.mean_tve_pct
    raise LookupError(buses)


def _cmd_place_paper(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.grid import ieee15
    from gridlens.grid.estimation import Study, make_estimator, tve
    from gridlens.grid.placement import search

    feeder = ieee15(pv_bus=14, pv_kw=100)
    progress = not args.json or sys.stderr.isatty()
    # 1. the single-scenario comparison (Fig. 3-4): nominal loads, PV 100 kW, PMUs at 1-2-9
    single = Study.build(feeder, 1, seed=args.seed)
    place = tuple(int(b) - 1 for b in ("1", "2", "9"))
    one: dict[str, Any] = {}
    for name in ("pso", "de", "ga", "wls"):
        est = make_estimator(name, seed=args.seed) if name != "wls" else make_estimator("wls")
        t0 = time.perf_counter()
        t = tve(est.estimate(single, [place]), single.truth[None])[0, 0] * 100
        one[name] = {
            "mean_tve_pct": float(t.mean()),
            "max_tve_pct": float(t.max()),
            "per_bus_tve_pct": t.tolist(),
            "elapsed_s": time.perf_counter() - t0,
        }
    # 2. the placement study: K = 3, bus 1 fixed, 15 scenarios, every combination
    study = Study.build(feeder, args.scenarios, seed=args.seed)
    runs: dict[str, Any] = {}
    for name in ("pso", "wls"):
        res = search(
            study,
            3,
            estimator=name,
            fixed=["1"],
            progress=progress,
            workers=args.workers,
            scheduler=args.scheduler,
            estimator_options={"seed": args.seed} if name != "wls" else None,
        )
        r129, t129 = _rank(res, ["1", "2", "9"])
        r157, t157 = _rank(res, ["1", "5", "7"])
        best, worst = res.placements[0], res.placements[-1]
        runs[name] = {
            "best": best.to_dict(),
            "worst": worst.to_dict(),
            "improvement_pct": 100 * (1 - best.mean_tve_pct / worst.mean_tve_pct),
            "rank_1_2_9": r129,
            "tve_1_2_9_pct": t129,
            "rank_1_5_7": r157,
            "tve_1_5_7_pct": t157,
            "placements": len(res.placements),
            "elapsed_s": res.elapsed_s,
        }
        if args.plot and name == "wls":
            from gridlens.grid.plot import plot_placements

            plot_placements(res, args.plot, "IEEE 15-bus, K=3, bus 1 fixed: exact WLS")
    analytic = search(study, 3, estimator="analytic", fixed=["1"])
    a_best, a_worst = analytic.placements[0], analytic.placements[-1]
    a_gain = 100 * (1 - a_best.mean_tve_pct / a_worst.mean_tve_pct)
    runs["analytic"] = {
        "best": a_best.to_dict(),
        "worst": a_worst.to_dict(),
        "improvement_pct": a_gain,
        "rank_1_2_9": _rank(analytic, ["1", "2", "9"])[0],
        "rank_1_5_7": _rank(analytic, ["1", "5", "7"])[0],
        "elapsed_s": analytic.elapsed_s,
    }
    verdict = (
        f"Exact WLS reaches a mean TVE of {runs['wls']['best']['mean_tve_pct']:.3f}-"
        f"{runs['wls']['worst']['mean_tve_pct']:.3f} % over all 91 placements, far below the "
        "paper's 0.22 %: with every load measured to 0.75 %, three µPMUs pin the phasors to a few "
        "hundredths of a percent. The WLS error covariance predicts only a "
        f"{a_gain:.1f} % difference between the best and the worst placement; the spreads seen "
        f"here ({runs['wls']['improvement_pct']:.0f} % for WLS, "
        f"{runs['pso']['improvement_pct']:.0f} % for PSO) therefore come mostly from the one noise "
        "draw and, for PSO, from optimiser noise, and the rankings change with --seed. The paper's "
        "ranking (1-2-9 best, 1-5-7 worst, 27.3 % apart) is not reproduced and is best read the "
        "same way. The PSO here evaluates its particles in power-grid-model batches and, like the "
        "paper's, holds the source voltage at exactly 1.0 pu (the truth), a prior the WLS "
        "estimator does not get."
    )
    doc = {
        "published": PUBLISHED,
        "single_scenario": {"pmus": [1, 2, 9], "estimators": one},
        "placement": runs,
        "scenarios": study.n_scenarios,
        "seed": args.seed,
        "verdict": verdict,
    }
    if args.json:
        emit_json(doc)
        return 0
    print("IEEE 15-bus, PV 100 kW at bus 14, µPMU fixed at bus 1 (seed paper S2)")
    print("\nsingle scenario, µPMUs at 1-2-9: mean / max TVE over buses [%]")
    print("  published: TVE 0.1-0.2 % at most buses (PSO, DE, GA)")
    for name, d in one.items():
        print(f"  {name:<4} {d['mean_tve_pct']:8.4f} {d['max_tve_pct']:8.4f}")
    print(f"\nplacement study: K=3, 91 placements, {study.n_scenarios} scenarios (Φ = mean TVE %)")
    print(
        f"{'':14}{'best':>16} {'Φ best':>8} {'worst':>10} {'Φ worst':>8} {'gain %':>7}"
        f" {'1-2-9 rank':>11} {'1-5-7 rank':>11}"
    )
    print(
        f"{'published':14}{'1-2-9':>16} {0.22:8.3f} {'1-5-7':>10} {0.302:8.3f} {27.3:7.1f}"
        f" {'1':>11} {'91':>11}"
    )
    for name, d in runs.items():
        if name == "analytic":
            continue
        b = "-".join(str(x) for x in d["best"]["buses"])
        w = "-".join(str(x) for x in d["worst"]["buses"])
        print(
            f"{name + ' (gridlens)':14}{b:>16} {d['best']['mean_tve_pct']:8.4f} {w:>10} "
            f"{d['worst']['mean_tve_pct']:8.4f} {d['improvement_pct']:7.1f}"
            f" {d['rank_1_2_9']:>11} {d['rank_1_5_7']:>11}"
        )
    print(
        f"analytic covariance: best {'-'.join(a_best.buses)} {a_best.mean_tve_pct:.4f} %, "
        f"worst {'-'.join(a_worst.buses)} {a_worst.mean_tve_pct:.4f} % ({a_gain:.1f} % apart)"
    )
    print("\n" + verdict)
    return 0


# ------------------------------------------------------------------ feeders in the store

_REF = re.compile(
    r"(?:\bredirect|\bcompile|\bbuscoords|\bfile\s*=)\s*\(?\s*[\"']?([^\s\"')]+)", re.IGNORECASE
)


def dss_files(path: Path) -> dict[str, str]:
    """The .dss file at ``path`` and the files of its folder it refers to (Redirect,
    Compile, Buscoords, ``file=``), recursively, by name."""
    if not path.is_file():
        raise NotFoundError(f"no such file: {path}")
    folder = path.parent
    out: dict[str, str] = {}
    todo = [path.name]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        p = folder / name
        if not p.is_file():
            continue
        text = p.read_text(errors="replace")
        out[name] = text
        for line in text.splitlines():
            code = line.split("!")[0].split("//")[0]
            for ref in _REF.findall(code):
                ref = ref.replace("\\", "/")
                if "/" not in ref and ref not in out:
                    todo.append(ref)
    return out


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def add_feeder_commands(sub: Any, emit_json: Any) -> None:
    from gridlens.cli.server import _db

    fp = sub.add_parser(
        "feeder",
        help="feeders in the store: add, list, remove, estimate",
        description="Feeders the server estimates hour by hour from the meters on their "
        "buses (`gridlens device set NAME --feeder F --bus B`) and their µPMUs.",
    )
    fs = fp.add_subparsers(dest="feeder_command", metavar="{add,list,remove,estimate}")
    fp.set_defaults(func=lambda _: _usage(fp))
    a = fs.add_parser(
        "add",
        help="add a built-in feeder or an OpenDSS one",
        description="Add a feeder: --builtin ieee15, or --dss PATH.dss (with the files it "
        "redirects to from its folder). OpenDSS compiles it once; the balanced model is stored.",
    )
    a.add_argument("name")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--builtin", choices=("ieee15",))
    src.add_argument("--dss", type=Path, metavar="PATH.dss")
    a.add_argument("--pmus", default="", help="comma-separated µPMU buses, e.g. 1,2,9")
    _db(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=lambda x: _cmd_feeder_add(x, emit_json))
    ls = fs.add_parser("list", help="the feeders")
    _db(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=lambda x: _cmd_feeder_list(x, emit_json))
    rm = fs.add_parser("remove", help="remove a feeder (devices and readings stay)")
    rm.add_argument("feeder", metavar="NAME_OR_ID")
    _db(rm)
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=lambda x: _cmd_feeder_remove(x, emit_json))
    es = fs.add_parser(
        "estimate",
        help="bring the hourly estimates up to date and print the latest hour",
        description="Estimate every hour of the feeder that has no estimate or whose "
        "readings changed, then print the latest hour's lowest voltages.",
    )
    es.add_argument("feeder", metavar="NAME_OR_ID")
    _db(es)
    es.add_argument("--json", action="store_true")
    es.set_defaults(func=lambda x: _cmd_feeder_estimate(x, emit_json))


def _cmd_feeder_add(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.cli.server import _open_store, _whoami
    from gridlens.grid.feeder import feeder_from_dict
    from gridlens.server import grid_se
    from gridlens.store.feeders import feeder_summary
    from gridlens.store.repo import check_name

    check_name(args.name, "feeder")
    if args.builtin:
        model, source, files = grid_se.builtin_model(args.builtin), f"builtin:{args.builtin}", None
    else:
        files = dss_files(args.dss)
        model, main = grid_se.compile_files(files, args.dss.name)
        source = f"dss:{main}"
    f = feeder_from_dict(model)
    pmus = [f.bus_names[f.bus_index(b)] for b in _fixed(args.pmus)]
    with _open_store(args.db) as store:
        row = store.add_feeder(
            args.name, source, model, actor=f"cli:{_whoami()}", files=files, pmus=pmus
        )
        doc = feeder_summary(row)
    if args.json:
        emit_json(doc)
    else:
        print(
            f"feeder {doc['id']} ({doc['name']}): {doc['buses']} buses, {doc['lines']} "
            f"branches, µPMUs {','.join(pmus) or '-'}"
        )
    return 0


def _cmd_feeder_list(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.cli.server import _open_store

    with _open_store(args.db) as store:
        rows = store.feeders()
    if args.json:
        emit_json({"feeders": rows})
        return 0
    print(f"{'id':>3}  {'name':<20} {'source':<24} {'buses':>5} {'meters':>6}  µPMUs")
    for r in rows:
        print(
            f"{r['id']:>3}  {r['name']:<20} {r['source']:<24} {r['buses']:>5} "
            f"{r['meters']:>6}  {','.join(r['pmus']) or '-'}"
        )
    return 0


def _cmd_feeder_remove(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.cli.server import _open_store, _whoami

    with _open_store(args.db) as store:
        row = store.remove_feeder(args.feeder, actor=f"cli:{_whoami()}")
    if args.json:
        emit_json({"removed": row.id, "name": row.name})
    else:
        print(f"feeder {row.id} ({row.name}) removed")
    return 0


def _cmd_feeder_estimate(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.cli.server import _open_store
    from gridlens.server import grid_se

    with _open_store(args.db) as store:
        row = store.feeder(args.feeder)
        stats = grid_se.refresh(store, row.id)
        latest = store.latest_hour(row.id)
        doc: dict[str, Any] = {"feeder": row.name, **stats, "latest": None}
        if latest is not None:
            hours = grid_se.estimates_doc(store, row, latest, latest + 3600)["hours"]
            doc["latest"] = hours[0] if hours else None
    if args.json:
        emit_json(doc)
        return 0
    print(
        f"feeder {row.name}: {stats['estimated']} hour(s) estimated, {stats['dirty']} "
        f"re-estimated after late readings, in {stats['seconds']:.2f} s"
    )
    last = doc["latest"]
    if last is None:
        print("no estimated hour yet: put meters on its buses (gridlens device set ...)")
        return 0
    tve = f", mean TVE {last['mean_tve_pct']:.3f} %" if "mean_tve_pct" in last else ""
    print(
        f"latest hour {last['hour']}: {last['meters_read']} meter(s) read, "
        f"{last['meters_pseudo']} pseudo{tve}"
    )
    low = sorted(last["buses"], key=lambda b: b["vm_pu"])[:5]
    print("lowest voltages:  bus  |V| pu  ± σ")
    for b in low:
        print(f"  {b['name']:>14}  {b['vm_pu']:.4f}  ± {b['vm_sigma_pu']:.4f}")
    return 0


def set_device_bus(
    store: Any, device_id: int, feeder: str, bus: str, actor: str, scale: float = 1.0
) -> dict[str, Any]:
    """``gridlens device set NAME --feeder F --bus B``: put the device on the bus ("-" for
    ``--feeder``: take it off its feeder)."""
    from gridlens.server import grid_se

    if feeder == "-":
        store.place_meter(device_id, None, None, actor=actor)
        return {"feeder": None, "bus": None}
    row = store.feeder(feeder)
    f = grid_se.load_model(row)
    b = str(bus).strip()
    name = b if b in f.bus_names else f.bus_names[f.bus_index(b.lower())]
    store.place_meter(device_id, row.id, name, actor=actor, scale=scale)
    return {"feeder": row.name, "bus": name, "scale": scale}
