"""``gridlens detect --benchmark``: every model on every labelled series of GRIDLENS_DATA.

Protocol (the same for every model, in one run):

- the seed's split: the detector trains on the first 60 % without labels (UCR: on its
  own training prefix, given in the file name), the threshold is the 0.99 quantile of the
  validation part's scores (the next 20 %, no labels used), and every metric is computed
  on the 40 % after training (validation + test: the threshold rule never saw a label);
- AUC-PR, VUS-PR and AUC-ROC need at least one labelled point there: series without one
  are listed as such and left out of the means;
- the holiday study on the 1997 power demand: each model fits on the whole year
  (unsupervised) and flags the top 3 % of points; a day with 6 h flagged is an alarm.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gridlens.anomaly.data import Series, from_arrays, read_csv
from gridlens.anomaly.detectors import MODELS, make_detector
from gridlens.anomaly.run import detect
from gridlens.errors import GridlensError, NotFoundError, ParameterError

__all__ = [
    "GROUPS",
    "Case",
    "Selection",
    "holiday_study",
    "leave_one_out",
    "load_cases",
    "run_benchmark",
    "write_section",
]

F64 = npt.NDArray[np.float64]

NEURAL = ("cnn-gru-ae", "lstm-ae", "usad")


@dataclass(frozen=True)
class Case:
    """One labelled series of the benchmark."""

    dataset: str
    series: Series
    train_fraction: float = 0.6


def data_dir() -> Path:
    """``$GRIDLENS_DATA/anomaly`` (default ``../shared/data`` beside the repository)."""
    root = os.environ.get("GRIDLENS_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    p = base / "anomaly"
    if not p.is_dir():
        raise NotFoundError(f"no anomaly data at {p}: set GRIDLENS_DATA to the shared data folder")
    return p


def _nab_labels(s: Series, windows: list[list[str]]) -> Series:
    lab = np.zeros(s.values.size, dtype=np.int8)
    for a, b in windows:
        t0, t1 = np.datetime64(a[:19].replace(" ", "T")), np.datetime64(b[:19].replace(" ", "T"))
        lab[(s.times >= t0) & (s.times <= t1)] = 1
    return replace(s, labels=lab)


def load_cases(
    root: Path, *, quick: bool = False, aiops: bool = False, max_points: int | None = None
) -> list[Case]:
    """The labelled series: power demand, KPI, NAB (with anomalies), UCR.

    ``aiops=True`` adds the AIOps 2018 KPIs of ``kpi-aiops/`` to the ``kpi`` group (every
    4th with ``quick``), each cut to its first ``max_points`` points when that is given
    (they hold ~100,000 each; a cut keeps the start, never a part chosen by its labels).
    """
    cases: list[Case] = []
    pd_file = root / "power-demand-1997" / "power_demand_1997.csv"
    if pd_file.is_file():
        cases.append(Case("power-demand", read_csv(pd_file, name="power_demand_1997")))
    for f in sorted((root / "kpi").glob("*.csv")):
        cases.append(Case("kpi", read_csv(f, name=f.stem)))
    if aiops:
        files = sorted((root / "kpi-aiops").glob("*.csv"))
        for f in files[::4] if quick else files:
            s = read_csv(f, name="aiops-" + f.stem[:8])
            if max_points is not None and s.values.size > max_points:
                s = s.head(max_points)
            cases.append(Case("kpi", s))
    nab = root / "nab"
    lab_file = nab / "labels_windows.json"
    if lab_file.is_file():
        wins: dict[str, list[list[str]]] = json.loads(lab_file.read_text())
        keys = [k for k, w in sorted(wins.items()) if w]
        if quick:
            keys = keys[::4]
        for k in keys:
            s = read_csv(nab / k, name=k.split("/")[-1][:-4], duplicates="mean")
            cases.append(Case("nab", _nab_labels(s, wins[k])))
    for f in sorted((root / "ucr").glob("*_UCR_Anomaly_*.txt")):
        m = re.search(r"_(\d+)_(\d+)_(\d+)\.txt$", f.name)
        if not m:
            continue
        train_end, a, b = (int(g) for g in m.groups())
        v = np.loadtxt(f, dtype=np.float64).ravel()
        lab = np.zeros(v.size, dtype=np.int8)
        lab[a - 1 : b] = 1  # the archive numbers points from 1
        s = from_arrays(np.arange(v.size, dtype=np.float64), v, lab, name=f.stem, step_s=1)
        cases.append(Case("ucr", s, train_fraction=min(0.9, max(0.1, train_end / v.size))))
        if quick:
            break
    return cases


GROUPS = ("nab", "kpi", "ucr", "power-demand")
"""The dataset groups of :func:`load_cases`, as the results are reported."""


@dataclass(frozen=True)
class Selection:
    """Leave-one-out choice for one held-out series (or group)."""

    held_out: str
    chosen: str
    score: float


def leave_one_out(
    table: dict[str, dict[str, float]], *, groups: dict[str, str] | None = None
) -> list[Selection]:
    """Choose a config without the series it is scored on.

    ``table[config][series]`` is a score (higher = better; NaN = not scored, left out of
    every mean). For each series, the config with the highest mean score over the *other*
    series is chosen (ties: the first config in ``table``'s order), and its score on the
    held-out series is reported: the leave-one-series-out (LOSO) score.  With ``groups``
    (series -> group name) a whole group is held out at a time (leave-one-group-out): the
    config is chosen on the other groups and scored on each series of the held-out group.

    Returns one :class:`Selection` per scored series, in the order of the first config's
    series.
    """
    configs = list(table)
    if not configs:
        raise ParameterError("leave_one_out needs at least one config")
    series = [s for s in table[configs[0]]]
    m = np.array([[table[c].get(s, np.nan) for s in series] for c in configs], dtype=float)
    key = [groups[s] if groups is not None else s for s in series]
    out: list[Selection] = []
    for j, s in enumerate(series):
        if not np.isfinite(m[:, j]).any():
            continue
        others = np.array([key[i] != key[j] for i in range(len(series))])
        sub = m[:, others]
        ok = np.isfinite(sub)
        means = np.where(
            ok.any(axis=1),
            np.where(ok, sub, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1),
            -np.inf,
        )
        best = int(np.argmax(means))
        out.append(Selection(s, configs[best], float(m[best, j])))
    return out


BENCH_MODELS = (*MODELS, "cnn-gru-ae+deseason")
"""Every model, and the seed's pipeline on the deseasoned series (``+deseason``)."""

BASELINES = ("iforest", "ecod", "knn")
"""Third-party detectors on raw windows: not candidates for "best gridlens detector"."""


def _params(model: str, quick: bool, seed: int) -> tuple[str, dict[str, Any]]:
    """(detector name, constructor parameters) of a benchmark model spec ``name[+deseason]``."""
    name, _, variant = model.partition("+")
    if variant not in ("", "deseason"):
        raise ParameterError(f"benchmark model {model!r}: the only variant is '+deseason'")
    if name == "profile":
        return name, {}
    p: dict[str, Any] = {"random_state": seed}
    if variant == "deseason":
        p["deseason"] = True
    if name in NEURAL:
        p["epochs"] = 6 if quick else 15
    return name, p


def _one(case: Case, model: str, quick: bool, seed: int) -> dict[str, Any]:
    s = case.series
    name, params = _params(model, quick, seed)
    res = detect(
        s,
        name,
        train_fraction=case.train_fraction,
        val_fraction=min(0.2, 0.95 - case.train_fraction),
        threshold_rule="val-quantile",
        q=0.99,
        metrics_from="after-train",
        **params,
    )
    assert res.report is not None
    d = res.report.to_dict()
    return {
        "dataset": case.dataset,
        "series": s.name,
        "model": model,
        "points": s.values.size,
        "fit_s": round(res.fit_seconds, 2),
        "points_per_s": round(s.values.size / max(res.score_seconds, 1e-9)),
        **{k: d[k] for k in ("f1", "f1_point_adjusted", "auc_roc", "auc_pr", "vus_pr")},
        "events_found": d["events_found"],
        "n_events": d["n_events"],
        "false_alarms": d["false_alarms"],
    }


def holiday_study(
    s: Series,
    model: str,
    *,
    quick: bool = False,
    seed: int = 0,
    top: float = 0.03,
    day_fraction: float = 0.25,
) -> dict[str, Any]:
    """Holidays found and false alarms on a labelled daily-cycle series.

    The model fits on the whole series without labels and flags the top ``top`` of its
    points. The alarm unit is the day ("a day looks wrong"; days counted from the first
    point, which should be a midnight): a day raises an alarm when at
    least ``day_fraction`` of it (6 h) is flagged; an alarm on an unlabelled day is a false
    alarm. ``ranks`` are the labelled days' places when days are sorted by their mean
    score (1 = most anomalous), which needs no threshold.
    """
    assert s.labels is not None
    name, params = _params(model, quick, seed)
    det = make_detector(name, **params)
    det.fit(s.values)
    scores = det.score_samples(s.values)
    per_day = round(86400 / s.step_s)
    days = s.values.size // per_day
    thr = float(np.quantile(scores, 1.0 - top))
    by_day = scores[: days * per_day].reshape(days, per_day)
    flagged = (by_day >= thr).mean(axis=1)
    alarm = flagged >= day_fraction
    labelled = s.labels[: days * per_day].reshape(days, per_day).max(axis=1) == 1
    order = np.argsort(-by_day.mean(axis=1), kind="stable")
    ranks = (np.flatnonzero(labelled[order]) + 1).tolist()
    false_alarms = int((alarm & ~labelled).sum())
    months = days / (365.25 / 12)
    return {
        "model": model,
        "holidays": int(labelled.sum()),
        "found": int((alarm & labelled).sum()),
        "false_alarms": false_alarms,
        "false_alarms_per_month": round(false_alarms / months, 2),
        "ranks": ranks,
        "missed": [str(s.times[d * per_day])[:10] for d in np.flatnonzero(labelled & ~alarm)],
    }


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def _fmt(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def run_benchmark(
    *,
    out: str | None = None,
    quick: bool = False,
    seed: int = 0,
    models: tuple[str, ...] = BENCH_MODELS,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run every model on every case; print the tables; optionally write them to ``out``
    between ``<!-- anomaly-benchmark -->`` markers."""
    root = data_dir()
    cases = load_cases(root, quick=quick)
    rows: list[dict[str, Any]] = []
    total = len(cases) * len(models)
    k = 0
    t_start = time.perf_counter()
    for case in cases:
        for model in models:
            k += 1
            try:
                r = _one(case, model, quick, seed)
            except GridlensError as exc:
                r = {
                    "dataset": case.dataset,
                    "series": case.series.name,
                    "model": model,
                    "error": str(exc),
                }
            rows.append(r)
            el = time.perf_counter() - t_start
            log(
                f"[{k}/{total}] {case.dataset}/{case.series.name} {model}: "
                + (r["error"] if "error" in r else f"AUC-PR {_fmt(r['auc_pr'])}")
                + f"  ({el:.0f} s)"
            )
    holidays = []
    pd_case = next((c for c in cases if c.dataset == "power-demand"), None)
    if pd_case is not None:
        for model in models:
            log(f"holiday study: {model}")
            holidays.append(holiday_study(pd_case.series, model, quick=quick, seed=seed))
    md = _markdown(rows, holidays, models, quick)
    print(md)
    if out:
        write_section(Path(out), md)
    return {"rows": rows, "holidays": holidays, "markdown": md}


def _markdown(
    rows: list[dict[str, Any]],
    holidays: list[dict[str, Any]],
    models: tuple[str, ...],
    quick: bool,
) -> str:
    lines = ["<!-- anomaly-benchmark -->", ""]
    lines.append(
        f"Mode: {'quick (every 4th NAB series, 6 epochs)' if quick else 'full (15 epochs)'}; "
        "train on the first 60 % (UCR: its own prefix), threshold = 0.99 quantile of the "
        "validation scores, metrics on the 40 % after training. F1 is point-wise at that "
        "threshold; PA-F1 is point-adjusted (inflated by design, shown only for comparison)."
    )
    lines.append("")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lines.append("Mean per dataset (series with labelled points after training; n = series):")
    lines.append("")
    head = "| dataset | metric | " + " | ".join(models) + " |"
    lines += [head, "|" + "---|" * (2 + len(models))]
    for ds in datasets:
        for metric in ("auc_pr", "vus_pr", "auc_roc", "f1", "f1_point_adjusted"):
            cells = []
            for m in models:
                sel = [
                    r
                    for r in rows
                    if r["dataset"] == ds
                    and r["model"] == m
                    and "error" not in r
                    and r.get("auc_pr") is not None
                ]
                cells.append(_fmt(_mean(sel, metric)))
            n = len(
                {r["series"] for r in rows if r["dataset"] == ds and r.get("auc_pr") is not None}
            )
            lines.append(f"| {ds} (n={n}) | {metric} | " + " | ".join(cells) + " |")
    lines.append("")
    nab_kpi = [r for r in rows if r["dataset"] in ("nab", "kpi") and r.get("auc_pr") is not None]
    own = [m for m in models if m not in BASELINES]
    if nab_kpi and "iforest" in models and own:

        def mean_pr(m: str, ds: tuple[str, ...]) -> float:
            return _mean([r for r in nab_kpi if r["model"] == m and r["dataset"] in ds], "auc_pr")

        both = ("nab", "kpi")
        best = max(own, key=lambda m: mean_pr(m, both))
        ref = {ds: mean_pr("iforest", ds) for ds in (both, ("nab",), ("kpi",))}
        got = {ds: mean_pr(best, ds) for ds in ref}
        lines.append(
            f"Mean AUC-PR over the NAB + KPI series: best gridlens detector **{best}** "
            f"{got[both]:.3f} vs Isolation Forest on raw windows {ref[both]:.3f} "
            f"(difference {got[both] - ref[both]:+.3f}); NAB alone {got[('nab',)]:.3f} vs "
            f"{ref[('nab',)]:.3f} ({got[('nab',)] - ref[('nab',)]:+.3f}), KPI alone "
            f"{got[('kpi',)]:.3f} vs {ref[('kpi',)]:.3f} "
            f"({got[('kpi',)] - ref[('kpi',)]:+.3f}). Baselines ({', '.join(BASELINES)}) are "
            "not candidates for the best gridlens detector."
        )
        lines.append("")
    if holidays:
        lines.append(
            "Holiday study (1997 power demand, fit on the whole year without labels, "
            "top 3 % of points flagged; a day with at least 6 h flagged is an alarm; "
            "ranks = the holidays' places among the 365 days sorted by mean score):"
        )
        lines.append("")
        lines += [
            "| model | holidays found | false-alarm days | per month | holiday ranks | missed |",
            "|---|---|---|---|---|---|",
        ]
        for h in holidays:
            lines.append(
                f"| {h['model']} | {h['found']}/{h['holidays']} | {h['false_alarms']} "
                f"| {h['false_alarms_per_month']} | {' '.join(map(str, h['ranks']))} "
                f"| {', '.join(h['missed']) or '-'} |"
            )
        lines.append("")
    speed = {
        m: _mean([r for r in rows if r["model"] == m and "error" not in r], "points_per_s")
        for m in models
    }
    fit = {
        m: _mean([r for r in rows if r["model"] == m and "error" not in r], "fit_s") for m in models
    }
    lines.append("| model | mean fit [s] | mean scoring [points/s] |")
    lines.append("|---|---|---|")
    for m in models:
        lines.append(f"| {m} | {fit[m]:.1f} | {speed[m]:,.0f} |")
    lines.append("")
    lines.append("Per series (AUC-PR / VUS-PR):")
    lines.append("")
    lines += ["| dataset | series | " + " | ".join(models) + " |", "|" + "---|" * (2 + len(models))]
    for ds in datasets:
        names = list(dict.fromkeys(r["series"] for r in rows if r["dataset"] == ds))
        for nm in names:
            cells = []
            for m in models:
                r = next((r for r in rows if r["series"] == nm and r["model"] == m), None)
                if r is None or "error" in r:
                    cells.append("error")
                else:
                    cells.append(f"{_fmt(r['auc_pr'])} / {_fmt(r['vus_pr'])}")
            lines.append(f"| {ds} | {nm} | " + " | ".join(cells) + " |")
    lines += ["", "<!-- /anomaly-benchmark -->"]
    return "\n".join(lines)


def write_section(
    path: Path,
    md: str,
    *,
    marks: tuple[str, str] = ("<!-- anomaly-benchmark -->", "<!-- /anomaly-benchmark -->"),
    heading: str = "## Anomaly detection (`gridlens detect --benchmark`)",
) -> None:
    """Replace the text between ``marks`` in the Markdown file ``path`` (``md`` carries
    the marks itself), or append ``heading`` and ``md`` when the marks are absent; the file
    is replaced atomically and no other text of it changes."""
    text = path.read_text() if path.exists() else ""
    a, b = marks
    if a in text and b in text:
        text = text[: text.index(a)] + md + text[text.index(b) + len(b) :]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{md}\n"
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text)
    tmp.replace(path)
