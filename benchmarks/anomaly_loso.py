"""Leave-one-series-out (LOSO) choice of the anomaly detector and all its settings.

Protocol (issue 17, requirement 1: never tune on the series being scored):

- series: ``gridlens.anomaly.bench.load_cases(aiops=True)``: the 1997 power demand, the two
  Donut KPIs and the 15 AIOps 2018 KPIs (group ``kpi``, each AIOps KPI cut to its first
  ``--max-points`` points), every NAB series with a labelled window, the four UCR series;
- each run is one ``gridlens.anomaly.run.detect`` call: fit on the first 60 % without
  labels (UCR: its own training prefix), score every point; AUC-PR (average precision)
  and VUS-PR (Paparrizos et al. 2022, max buffer = the median event length) on the 40 %
  after training; a series without a labelled point there is left out; a run that raises
  (too short for the window ...) scores 0;
- candidate configs: each model's own small grid (:data:`GRIDS`) and ensembles of
  ``profile``, ``knn``, ``iforest``, ``hybrid``, ``spike`` (every subset of >= 2, scaled by
  their training tail or rank, combined by mean or max). Ensemble scores are computed
  from the members' cached scores exactly as :class:`~gridlens.anomaly.detectors.Ensemble`
  does, with the training part's scores of the full-series run (the detector scores the
  training slice alone; ``--verify`` re-runs the chosen ensemble for real);
- LOSO: for each series, the config with the best mean AUC-PR over the *other* series is
  chosen and scored on it; the mean of those scores is the LOSO AUC-PR. The same for each
  model's grid alone, and for everything (the default). Leave-one-group-out (LOGO): the
  config is chosen on the other dataset groups only (a harsher test: a new kind of data);
- the shipped default is the config with the best mean over all series;
- ``--neural``: the neural models at their fixed default settings (no choice, so their
  mean is their held-out score) on a subset (:func:`neural_subset`).

Usage::

    GRIDLENS_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/anomaly_loso.py \\
        [--quick] [--max-points 40000] [--neural] [--verify] [--json benchmarks/anomaly_loso.json]

Progress goes to stderr, the tables to stdout. ``--quick`` (< 2 min): every 4th NAB
series, one UCR series, 4 AIOps KPIs cut to 8,000 points, a smaller grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from gridlens.anomaly.bench import GROUPS, Case, data_dir, leave_one_out, load_cases
from gridlens.anomaly.detectors import (
    COMBINES,
    SCALINGS,
    Detector,
    Ensemble,
    SpikeDetector,
    _Scaler,
    make_detector,
)
from gridlens.anomaly.evaluate import vus_pr
from gridlens.anomaly.run import detect
from gridlens.errors import GridlensError

F64 = np.ndarray

# model -> list of parameter sets (the model's own default first)
GRIDS: dict[str, list[dict[str, Any]]] = {
    "profile": [{}],
    "iforest": [
        {},
        {"deseason": True},
        {"window": 32},
        {"window": 32, "deseason": True},
    ],
    "ecod": [{}, {"deseason": True}, {"window": 32}],
    "knn": [
        {},
        {"deseason": True},
        {"window": 32},
        {"window": 32, "deseason": True},
    ],
    "hybrid": [
        {},
        {"n_neighbors": 5},
        {"window": 32},
        {"n_neighbors": 5, "window": 32},
    ],
    "spike": [{"spike_width": 2}, {"spike_width": 1}, {"spike_width": 5}],
}
QUICK_GRIDS: dict[str, list[dict[str, Any]]] = {
    "profile": [{}],
    "iforest": [{}],
    "ecod": [{}],
    "knn": [{}, {"window": 32}],
    "hybrid": [{}, {"window": 32}],
    "spike": [{"spike_width": 2}],
}
POOL = ("profile", "knn", "iforest", "hybrid", "spike")
"""Round 1's ensemble members, each at its default settings (the first entry of its grid)."""
POOL2 = ("profile", "knn", "iforest", "hybrid", "spike", "knn@32", "hybrid@32")
"""Round 2 (designed after round 1 had shown ``hybrid window=32`` best on KPI and UCR and
the ensembles best on NAB): the same members plus the window-32 knn and hybrid; subsets of
2 to 4 members, combined by their mean only (``max`` was never on top in round 1)."""
MEMBER_CONFIG = {
    **{m: m for m in POOL},
    "spike": "spike spike_width=2",
    "knn@32": "knn window=32",
    "hybrid@32": "hybrid window=32",
}
NEURAL = ("cnn-gru-ae", "lstm-ae", "usad")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cname(model: str, params: dict[str, Any]) -> str:
    return model + "".join(f" {k}={v}" for k, v in sorted(params.items()))


def build(model: str, params: dict[str, Any]) -> Detector:
    if model == "spike":
        return SpikeDetector(**params)
    if model == "ensemble":
        return Ensemble(**params)
    if model == "profile":
        return make_detector(model, **params)
    return make_detector(model, random_state=0, **params)


def ensemble_grid(quick: bool) -> list[dict[str, Any]]:
    """Round 1: every subset of >= 2 of :data:`POOL`, both scalings, both combines."""
    out = []
    sizes = (2, 3, 5) if quick else range(2, len(POOL) + 1)
    for k in sizes:
        for members in itertools.combinations(POOL, k):
            for scaling in SCALINGS:
                for combine in COMBINES:
                    if quick and combine == "max":
                        continue
                    out.append({"members": members, "scaling": scaling, "combine": combine})
    return out


def ensemble_grid2(quick: bool) -> list[dict[str, Any]]:
    """Round 2: subsets of 2-4 of :data:`POOL2` not in round 1, both scalings, mean."""
    out = []
    pool = ("knn", "hybrid", "knn@32", "hybrid@32") if quick else POOL2
    for k in (2, 3, 4):
        for members in itertools.combinations(pool, k):
            if all(m in POOL for m in members):
                continue
            for scaling in SCALINGS:
                out.append({"members": members, "scaling": scaling, "combine": "mean"})
    return out


def ename(p: dict[str, Any]) -> str:
    return cname("ensemble", {**p, "members": "+".join(p["members"])})


def case_key(c: Case) -> str:
    return f"{c.dataset}/{c.series.name}"


class Study:
    def __init__(self, cases: list[Case]) -> None:
        self.cases = cases
        self.scores: dict[tuple[str, str], np.ndarray | None] = {}
        self.auc: dict[str, dict[str, float]] = {}
        self.vus: dict[tuple[str, str], float] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, list[str]] = {}
        self.run_s: dict[str, float] = {}
        for c in cases:
            s = c.series
            n = s.values.size
            train_end = round(n * c.train_fraction)
            assert s.labels is not None
            y = s.labels[train_end:].astype(bool)
            self.meta[case_key(c)] = {
                "group": c.dataset,
                "n": n,
                "train_end": train_end,
                "labels": y,
                "has": bool(y.any()),
            }

    def labelled(self) -> list[str]:
        return [k for k, m in self.meta.items() if m["has"]]

    def run(self, name: str, model: str, params: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        self.auc[name] = {}
        for c in self.cases:
            k = case_key(c)
            m = self.meta[k]
            if not m["has"]:
                continue
            try:
                r = detect(
                    c.series,
                    build(model, params),
                    train_fraction=c.train_fraction,
                    val_fraction=min(0.2, 0.95 - c.train_fraction),
                    metrics_from="after-train",
                )
            except GridlensError as exc:
                self.scores[(name, k)] = None
                self.auc[name][k] = 0.0
                self.errors.setdefault(name, []).append(f"{k}: {exc}")
                continue
            assert r.train_end == m["train_end"]
            self.scores[(name, k)] = r.scores
            self.auc[name][k] = _ap(r.scores[m["train_end"] :], m["labels"])
        self.run_s[name] = time.perf_counter() - t0

    def combine(self, name: str, members: Sequence[str], scaling: str, combine: str) -> None:
        """Ensemble scores from the members' cached runs, as Ensemble computes them."""
        self.auc[name] = {}
        for k in self.labelled():
            te = self.meta[k]["train_end"]
            parts = []
            for mem in members:
                s = self.scores.get((mem, k))
                if s is None:
                    continue  # Ensemble leaves out a member that cannot fit
                parts.append(_Scaler(s[:te], scaling, 0.99)(s))
            if not parts:
                self.scores[(name, k)] = None
                self.auc[name][k] = 0.0
                continue
            p = np.vstack(parts)
            s = p.mean(axis=0) if combine == "mean" else p.max(axis=0)
            self.scores[(name, k)] = s
            self.auc[name][k] = _ap(s[te:], self.meta[k]["labels"])

    def vus_of(self, name: str, k: str) -> float:
        if (name, k) not in self.vus:
            s = self.scores.get((name, k))
            m = self.meta[k]
            self.vus[(name, k)] = 0.0 if s is None else vus_pr(s[m["train_end"] :], m["labels"])
        return self.vus[(name, k)]


def _ap(s: np.ndarray, y: np.ndarray) -> float:
    return float(average_precision_score(y, s))


def stats(v: Sequence[float]) -> dict[str, float]:
    a = np.asarray([x for x in v if math.isfinite(x)], dtype=float)
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "q25": math.nan, "q75": math.nan, "n": 0}
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else math.nan,
        "q25": float(np.quantile(a, 0.25)),
        "q75": float(np.quantile(a, 0.75)),
        "n": int(a.size),
    }


def summarise(st: Study, configs: list[str], label: str) -> dict[str, Any]:
    """LOSO and LOGO over ``configs``; the config chosen on all series."""
    keys = st.labelled()
    table = {c: {k: st.auc[c][k] for k in keys} for c in configs}
    groups = {k: st.meta[k]["group"] for k in keys}
    loso = leave_one_out(table)
    logo = leave_one_out(table, groups=groups)
    means = {c: float(np.mean([table[c][k] for k in keys])) for c in configs}
    chosen = max(configs, key=lambda c: (means[c], -configs.index(c)))
    loso_vus = [st.vus_of(s.chosen, s.held_out) for s in loso]
    out: dict[str, Any] = {
        "label": label,
        "n_configs": len(configs),
        "chosen_on_all": chosen,
        "in_sample_auc_pr": means[chosen],
        "loso_auc_pr": stats([s.score for s in loso]),
        "loso_vus_pr": stats(loso_vus),
        "logo_auc_pr": stats([s.score for s in logo]),
        "loso_choices": {c: sum(1 for s in loso if s.chosen == c) for c in configs},
        "per_group": {},
        "per_series": {
            s.held_out: {
                "chosen": s.chosen,
                "auc_pr": s.score,
                "vus_pr": v,
            }
            for s, v in zip(loso, loso_vus, strict=True)
        },
    }
    for g in GROUPS:
        sel = [(s, v) for s, v in zip(loso, loso_vus, strict=True) if groups[s.held_out] == g]
        lg = [s.score for s in logo if groups[s.held_out] == g]
        out["per_group"][g] = {
            "loso_auc_pr": stats([s.score for s, _ in sel]),
            "loso_vus_pr": stats([v for _, v in sel]),
            "logo_auc_pr": stats(lg),
        }
    return out


def fixed(st: Study, config: str, keys: list[str] | None = None) -> dict[str, Any]:
    """A config with nothing chosen: its plain means (held out by construction)."""
    keys = keys or st.labelled()
    groups = {k: st.meta[k]["group"] for k in keys}
    auc = [st.auc[config][k] for k in keys]
    vus = [st.vus_of(config, k) for k in keys]
    return {
        "config": config,
        "auc_pr": stats(auc),
        "vus_pr": stats(vus),
        "per_group": {
            g: {
                "auc_pr": stats([a for a, k in zip(auc, keys, strict=True) if groups[k] == g]),
                "vus_pr": stats([v for v, k in zip(vus, keys, strict=True) if groups[k] == g]),
            }
            for g in GROUPS
        },
    }


def neural_subset(cases: list[Case]) -> list[Case]:
    """Power demand, the Donut KPIs, every 4th AIOps KPI, every 4th NAB series, UCR."""
    nab = [c for c in cases if c.dataset == "nab"]
    aiops = [c for c in cases if c.series.name.startswith("aiops-")]
    picked = {id(c) for c in nab[::4] + aiops[::4]}
    return [
        c
        for c in cases
        if c.dataset in ("power-demand", "ucr")
        or (c.dataset == "kpi" and not c.series.name.startswith("aiops-"))
        or id(c) in picked
    ]


def _f(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _ms(d: dict[str, float]) -> str:
    return f"{_f(d['mean'])} ± {_f(d['std'])} [{_f(d['q25'])}–{_f(d['q75'])}]"


def markdown(res: dict[str, Any]) -> str:
    lines = []
    lines.append(
        "| model | configs | chosen on all series | in-sample AUC-PR | **LOSO AUC-PR** "
        "mean ± std [IQR] | LOSO VUS-PR mean ± std [IQR] | LOGO AUC-PR |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for s in res["families"]:
        lines.append(
            f"| {s['label']} | {s['n_configs']} | `{s['chosen_on_all']}` | "
            f"{_f(s['in_sample_auc_pr'])} | {_ms(s['loso_auc_pr'])} | {_ms(s['loso_vus_pr'])} | "
            f"{_f(s['logo_auc_pr']['mean'])} |"
        )
    lines.append("")
    lines.append("LOSO mean AUC-PR / VUS-PR per group (n series):")
    lines.append("")
    lines.append("| model | " + " | ".join(GROUPS) + " |")
    lines.append("|---|" + "---|" * len(GROUPS))
    for s in res["families"]:
        cells = []
        for g in GROUPS:
            pg = s["per_group"][g]
            cells.append(
                f"{_f(pg['loso_auc_pr']['mean'])} / {_f(pg['loso_vus_pr']['mean'])} "
                f"(n={pg['loso_auc_pr']['n']})"
            )
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("LOGO (config chosen on the other groups only) mean AUC-PR per group:")
    lines.append("")
    lines.append("| model | " + " | ".join(GROUPS) + " |")
    lines.append("|---|" + "---|" * len(GROUPS))
    for s in res["families"]:
        cells = [_f(s["per_group"][g]["logo_auc_pr"]["mean"]) for g in GROUPS]
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Each model at its own default settings (nothing chosen, so these are held-out means "
        "too): AUC-PR and VUS-PR mean ± std [IQR], then AUC-PR / VUS-PR per group:"
    )
    lines.append("")
    lines.append("| model | AUC-PR | VUS-PR | " + " | ".join(GROUPS) + " |")
    lines.append("|---|---|---|" + "---|" * len(GROUPS))
    for f in res["fixed_defaults"]:
        pg = f["per_group"]
        cells = [f"{_f(pg[g]['auc_pr']['mean'])} / {_f(pg[g]['vus_pr']['mean'])}" for g in GROUPS]
        lines.append(
            f"| `{f['config']}` | {_ms(f['auc_pr'])} | {_ms(f['vus_pr'])} | "
            + " | ".join(cells)
            + " |"
        )
    if res.get("neural"):
        nn = res["neural"]
        lines.append("")
        lines.append(
            f"Fixed default settings on the neural subset ({nn['n_series']} series: "
            f"{nn['subset']}); nothing chosen, so these are held-out means:"
        )
        lines.append("")
        lines.append(
            "| model | AUC-PR mean ± std [IQR] | VUS-PR mean ± std [IQR] | "
            + " | ".join(GROUPS)
            + " |"
        )
        lines.append("|---|---|---|" + "---|" * len(GROUPS))
        for f in nn["rows"]:
            pg = f["per_group"]
            cells = [
                f"{_f(pg[g]['auc_pr']['mean'])} / {_f(pg[g]['vus_pr']['mean'])}" for g in GROUPS
            ]
            lines.append(
                f"| `{f['config']}` | {_ms(f['auc_pr'])} | {_ms(f['vus_pr'])} | "
                + " | ".join(cells)
                + " |"
            )
    if res.get("verify"):
        v = res["verify"]
        lines.append("")
        lines.append(
            f"Shipped default re-run for real (`{v['config']}`, every series): AUC-PR "
            f"{_ms(v['auc_pr'])}, VUS-PR {_ms(v['vus_pr'])}; offline emulation "
            f"{_f(v['emulated_auc_pr'])}."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-points", type=int, default=40_000)
    ap.add_argument("--neural", action="store_true", help="also the neural models (slow)")
    ap.add_argument("--epochs", type=int, help="neural epochs (default: the models' own, 10)")
    ap.add_argument("--verify", action="store_true", help="re-run the chosen default for real")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--render", metavar="JSON", help="print the tables of a saved run and stop")
    args = ap.parse_args(argv)
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return 0
    t_start = time.perf_counter()
    max_points = 8000 if args.quick else args.max_points
    cases = load_cases(data_dir(), quick=args.quick, aiops=True, max_points=max_points)
    st = Study(cases)
    log(f"{len(cases)} series, {len(st.labelled())} with a labelled point after training")
    grids = QUICK_GRIDS if args.quick else GRIDS
    fam_configs: dict[str, list[str]] = {}
    for model, grid in grids.items():
        for params in grid:
            name = cname(model, params)
            fam_configs.setdefault(model, []).append(name)
            st.run(name, model, params)
            mean = np.mean([st.auc[name][k] for k in st.labelled()])
            el = time.perf_counter() - t_start
            log(f"{name}: mean AUC-PR {mean:.3f}  ({st.run_s[name]:.0f} s; {el:.0f} s)")
    defaults = {m: cname(m, GRIDS[m][0]) for m in POOL}
    specs = {}
    for fam, grid_fn in (("ensemble", ensemble_grid), ("ensemble round 2", ensemble_grid2)):
        ens = []
        for p in grid_fn(args.quick):
            name = ename(p)
            st.combine(name, [MEMBER_CONFIG[m] for m in p["members"]], p["scaling"], p["combine"])
            ens.append(name)
            specs[name] = p
        fam_configs[fam] = ens
        log(f"{fam}: {len(ens)} ensembles combined ({time.perf_counter() - t_start:.0f} s)")
    families = [summarise(st, cs, m) for m, cs in fam_configs.items()]
    round1 = [c for m, cs in fam_configs.items() if m != "ensemble round 2" for c in cs]
    families.append(summarise(st, round1, "all of round 1"))
    everything = [c for cs in fam_configs.values() for c in cs]
    families.append(summarise(st, everything, "all, rounds 1+2 (the default)"))
    res: dict[str, Any] = {
        "protocol": {
            "quick": args.quick,
            "max_points_aiops": max_points,
            "series": len(st.labelled()),
            "per_group": {
                g: sum(1 for k in st.labelled() if st.meta[k]["group"] == g) for g in GROUPS
            },
            "grids": {m: [cname(m, p) for p in g] for m, g in grids.items()},
        },
        "families": families,
        "fixed_defaults": [fixed(st, fam_configs[m][0]) for m in grids],
        "errors": st.errors,
        "auc_pr": st.auc,
    }
    chosen = families[-1]["chosen_on_all"]
    log(f"default: {chosen} ({time.perf_counter() - t_start:.0f} s)")
    if args.verify and chosen.startswith("ensemble"):
        st.run("verify", "ensemble", specs[chosen])
        v = fixed(st, "verify")
        v["config"] = chosen
        v["emulated_auc_pr"] = float(np.mean([st.auc[chosen][k] for k in st.labelled()]))
        res["verify"] = v
        log(f"verify: {_ms(v['auc_pr'])}")
    if args.neural:
        sub = neural_subset(cases)
        keys = [case_key(c) for c in sub if st.meta[case_key(c)]["has"]]
        sub_st = Study(sub)
        rows = []
        for m in NEURAL:
            nparams: dict[str, Any] = {"threads": 1}
            if args.epochs:
                nparams["epochs"] = args.epochs
            sub_st.run(m, m, nparams)
            log(f"{m}: {sub_st.run_s[m]:.0f} s")
            rows.append(fixed(sub_st, m, keys))
        for m in POOL:
            rows.append(fixed(st, defaults[m], keys))
        rows.append(fixed(st, chosen, keys))
        res["neural"] = {
            "n_series": len(keys),
            "subset": "power demand, 2 Donut KPIs, every 4th AIOps KPI and NAB series, UCR",
            "epochs": args.epochs or "default",
            "rows": rows,
            "errors": sub_st.errors,
        }
    res["seconds"] = time.perf_counter() - t_start
    md = markdown(res)
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(_rounded(_pruned(res)), default=_json) + "\n")
    log(f"done in {res['seconds']:.0f} s")
    return 0


def _pruned(res: dict[str, Any]) -> dict[str, Any]:
    """Per-series AUC-PR of every single model's config and of the 20 best ensembles only."""
    auc = res["auc_pr"]
    ens = sorted(
        (c for c in auc if c.startswith("ensemble")),
        key=lambda c: -float(np.mean(list(auc[c].values()))),
    )
    keep = [c for c in auc if not c.startswith("ensemble")] + ens[:20]
    return {
        **res,
        "auc_pr": {c: auc[c] for c in keep},
        "auc_pr_kept": "single models, 20 best ensembles",
    }


def _rounded(o: Any) -> Any:
    """Floats to 4 decimals (the JSON stays small)."""
    if isinstance(o, float):
        return round(o, 4) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _rounded(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_rounded(v) for v in o]
    return o


def _json(o: object) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


if __name__ == "__main__":
    raise SystemExit(main())
