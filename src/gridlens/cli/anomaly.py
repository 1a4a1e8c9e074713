"""``gridlens detect``: anomaly detection on consumption series."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from gridlens.errors import DataFormatError, ParameterError

MODEL_CHOICES = (
    "ensemble",
    "cnn-gru-ae",
    "hybrid",
    "lstm-ae",
    "usad",
    "iforest",
    "profile",
    "ecod",
    "knn",
)
DEFAULT_MODEL = "ensemble"
# MODEL_CHOICES and DEFAULT_MODEL copy gridlens.anomaly.detectors.MODELS and DEFAULT_MODEL;
# NEURAL and AUGMENTS copy gridlens.anomaly.bench.NEURAL and detectors.AUGMENTS (a test keeps
# them equal): importing the detectors here would load scikit-learn for every gridlens command
NEURAL = ("cnn-gru-ae", "lstm-ae", "usad")
AUGMENTS = ("mi-fgsm", "random", "copy")


def add_anomaly_commands(sub: Any, emit_json: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="find anomalies in a consumption series (CSV, Green Button, or a meter)",
        description="Fit a detector without labels on the first part of a series, set the "
        "threshold on the validation part, score every timestamp. FILE is a "
        "timestamp,value[,label] CSV or a Green Button XML file; with --db and --device the "
        "meter's hourly consumption from the gridlens store. With a label column the "
        "metrics on the test part are printed. Several FILEs are scored as a Dask job.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="CSV or Green Button XML")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"one of {', '.join(MODEL_CHOICES)} (default {DEFAULT_MODEL}: chosen with all its "
        "settings by leave-one-series-out evaluation; cnn-gru-ae is the seed's pipeline)",
    )
    p.add_argument("--train-fraction", type=float, default=0.6, help="default 0.6 (seed 6:2:2)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="default 0.2")
    p.add_argument(
        "--threshold-rule",
        choices=("val-quantile", "val-max", "val-best-f1", "contamination"),
        default="val-quantile",
        help="how the threshold is set from the validation part (default val-quantile)",
    )
    p.add_argument("--quantile", type=float, default=0.99, help="for val-quantile (0.99)")
    p.add_argument("--window", type=int, help="window [samples] (default: from the FFT periods)")
    p.add_argument("--epochs", type=int, help="training epochs of the neural models")
    p.add_argument(
        "--deseason",
        action="store_true",
        help="window the series minus its seasonal profile (median per phase of the "
        "longest period): a working day that looks like a Sunday stands out (hybrid: always)",
    )
    p.add_argument(
        "--augment-eps",
        type=float,
        help="neural models: retrain on the windows plus MI-FGSM hard normal copies within "
        "this budget (normalised units; the seed's best: 0.01)",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="with --augment-eps: the seed's MI-FGSM (default) or a control: random ±eps "
        "signs, or unchanged copies",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scores-out",
        help="write timestamp,value,score,is_anomaly CSV here: one row per input row, in "
        "input order, with the input's own timestamp text",
    )
    p.add_argument(
        "--include-imputed",
        action="store_true",
        help="with --scores-out: also write the grid points that were imputed (gaps) and "
        "add an imputed column (1 = value imputed)",
    )
    p.add_argument(
        "--tz",
        metavar="ZONE",
        help="CSV timestamps without an offset are local times in this IANA zone "
        "(e.g. Europe/Berlin): the hour repeated in autumn is read in order, the hour "
        "skipped in spring is no gap (default: UTC)",
    )
    p.add_argument(
        "--duplicates",
        choices=("first", "mean"),
        help="repeated timestamps: keep the first value or average them (default: an error "
        "naming the lines)",
    )
    p.add_argument("--plot", help="PNG of the series with scores and flagged points")
    p.add_argument("--db", help="gridlens store URL (with --device)")
    p.add_argument("--device", help="device name or id in the store")
    p.add_argument("--benchmark", action="store_true", help="run every model on GRIDLENS_DATA")
    p.add_argument("--out", help="with --benchmark: write the table into this Markdown file")
    p.add_argument("--quick", action="store_true", help="with --benchmark: fewer series/epochs")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="several FILEs on a Dask LocalCluster of N")
    g.add_argument("--scheduler", help="several FILEs on a Dask scheduler tcp://HOST:PORT")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=lambda a: _cmd_detect(a, emit_json))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"random_state": args.seed}
    if args.model == "ensemble":
        if args.window is not None or args.deseason:
            raise ParameterError(
                "--window and --deseason apply to one model, not the ensemble (its members "
                "use the periods' windows and windows of 32 samples); pass --model"
            )
    elif args.model != "profile":
        params["window"] = args.window
    elif args.window is not None:
        params["period"] = args.window
    if args.epochs is not None:
        if args.model not in NEURAL:
            raise ParameterError(f"--epochs applies to the neural models, not {args.model}")
        params["epochs"] = args.epochs
    if args.augment_eps is not None or args.augment is not None:
        if args.model not in NEURAL:
            raise ParameterError(f"--augment-eps applies to the neural models, not {args.model}")
        if args.augment_eps is None:
            raise ParameterError("--augment needs --augment-eps (the perturbation budget)")
        params["augment_eps"] = args.augment_eps
        if args.augment is not None:
            params["augment"] = args.augment
    if args.model in NEURAL:
        params["verbose"] = not args.json
    if args.deseason:
        if args.model == "profile":
            raise ParameterError("--deseason applies to the window models, not profile")
        params["deseason"] = True
    if args.model == "profile":
        params.pop("random_state")
    return params


def _store_series(db: str, device: str) -> Any:
    from gridlens.anomaly.data import from_arrays
    from gridlens.store.repo import Store
    from gridlens.store.series import consumption

    store = Store.open(db)
    try:
        dev = store.device_by_name(device)
        t, v = store.counter(dev.id)
    finally:
        store.close()
    starts, kwh = consumption(t, v, 3600.0)
    return from_arrays(starts, kwh, name=device)


def _cmd_detect(args: argparse.Namespace, emit_json: Any) -> int:
    if args.model not in MODEL_CHOICES:
        raise ParameterError(
            f"unknown model {args.model!r}; choose one of: {', '.join(MODEL_CHOICES)}"
        )
    if args.include_imputed and not args.scores_out:
        raise ParameterError("--include-imputed applies to --scores-out FILE")
    if args.benchmark:
        from gridlens.anomaly.bench import run_benchmark

        doc = run_benchmark(out=args.out, quick=args.quick, seed=args.seed)
        if args.json:
            emit_json(doc)
        return 0
    if args.db or args.device:
        if not (args.db and args.device):
            raise ParameterError("--db and --device go together")
        series = [_store_series(args.db, args.device)]
    else:
        if not args.files:
            raise ParameterError("give a FILE, --db URL --device NAME, or --benchmark")
        if len(args.files) > 1:
            return _fleet(args, emit_json)
        series = [_load(args.files[0], args)]
    from gridlens.anomaly.run import detect

    s = series[0]
    res = detect(
        s,
        args.model,
        train_fraction=args.train_fraction,
        val_fraction=args.val_fraction,
        threshold_rule=args.threshold_rule,
        q=args.quantile,
        **_params(args),
    )
    if args.scores_out:
        _write_scores(args.scores_out, res, include_imputed=args.include_imputed)
    if args.plot:
        from gridlens.anomaly.plot import plot_run

        plot_run(res, args.plot)
    doc = res.to_dict()
    if args.json:
        emit_json(doc)
        return 0
    _print_run(doc)
    return 0


def _load(path: str, args: argparse.Namespace) -> Any:
    """A file with the reading options; a repeat is worded with the CLI's flags."""
    from gridlens.anomaly.data import DuplicateTimestampError, load_file

    try:
        return load_file(path, duplicates=args.duplicates or "error", tz=args.tz)
    except DuplicateTimestampError as exc:
        raise DataFormatError(
            f"{exc.detail}; pass --duplicates first|mean to keep the first or average them"
            + ("" if args.tz else ", or --tz ZONE if the times are local and the clock went back")
        ) from None


def _write_scores(path: str, res: Any, *, include_imputed: bool = False) -> None:
    """One row per input row, in input order, with its own timestamp text; the imputed grid
    points (gaps) only with ``include_imputed``, which adds the ``imputed`` column."""
    s = res.series
    rows = s.rows
    tmp = Path(path).with_suffix(Path(path).suffix + ".part")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["timestamp", "value", "score", "is_anomaly"] + (["imputed"] if include_imputed else [])
        )

        def grid_row(k: int) -> list[str]:
            t = float(s.epoch_s[k])
            text = str(s.times[k]) if rows is None else rows.format_time(t)
            return [text, f"{s.values[k]:.12g}", f"{res.scores[k]:.6g}", str(int(res.flags[k]))]

        if rows is None:  # a series made from arrays: its grid, imputed points on request
            for k in range(len(s)):
                if include_imputed or not s.imputed[k]:
                    w.writerow(grid_row(k) + ([str(int(s.imputed[k]))] if include_imputed else []))
        else:
            seen = -1
            for text, v, k in zip(rows.text, rows.value, rows.slot.tolist(), strict=True):
                if include_imputed:
                    w.writerows([*grid_row(g), "1"] for g in range(seen + 1, k))
                seen = max(seen, k)
                missing = v != v  # NaN: the row had no value, the detector saw an imputed one
                value = f"{s.values[k] if missing else v:.12g}"
                row = [text, value, f"{res.scores[k]:.6g}", str(int(res.flags[k]))]
                if include_imputed:
                    w.writerow([*row, str(int(missing))])
                else:
                    w.writerow([text, "" if missing else value, *row[2:]])
    tmp.replace(path)


def _print_run(doc: dict[str, Any]) -> None:
    print(
        f"{doc['series']}: {doc['points']} points, step {doc['step_s']} s, {doc['imputed']} imputed"
    )
    per = ", ".join(p["text"] for p in doc["periods"]) or "none found"
    print(f"dominant periods (FFT of the differenced series): {per}")
    print(
        f"model {doc['model']}: trained on points 0..{doc['split']['train_end']} in "
        f"{doc['fit_seconds']:.1f} s; scored {doc['points']} points in "
        f"{doc['score_seconds']:.2f} s ({doc['points_per_second']:,} points/s)"
    )
    print(f"threshold {doc['threshold']:.4g} ({doc['threshold_rule']})")
    evs = doc["events"]
    print(f"{len(evs)} anomalous periods, {doc['flagged_points']} points flagged")
    for e in sorted(evs, key=lambda e: -e["score"])[:10]:
        print(f"  {e['start']} .. {e['end']}  score {e['score']:.3g}")
    m = doc["metrics_on_test_part"]
    if m:
        print(f"metrics on the test part (points {doc['split']['val_end']}..end):")
        print(
            f"  precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}"
            f"   (point-adjusted F1 {m['f1_point_adjusted']:.3f}, inflated by design)"
        )
        print(f"  AUC-ROC {m['auc_roc']:.3f}  AUC-PR {m['auc_pr']:.3f}  VUS-PR {m['vus_pr']:.3f}")
        fa = m.get("false_alarms_per_week")
        print(
            f"  events found {m['events_found']}/{m['n_events']}, false alarms "
            f"{m['false_alarms']}" + ("" if fa is None else f" ({fa:.2f} per week)")
        )


def _fleet(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.anomaly.fleet import score_files

    rows = score_files(
        args.files,
        args.model,
        params=_params(args) | {"verbose": False},
        train_fraction=args.train_fraction,
        val_fraction=args.val_fraction,
        threshold_rule=args.threshold_rule,
        q=args.quantile,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.json,
        read_options={"duplicates": args.duplicates or "error", "tz": args.tz},
    )
    if args.json:
        emit_json({"model": args.model, "series": rows})
        return 0
    print(f"{'series':<40} {'points':>8} {'events':>7} {'F1':>6} {'AUC-PR':>7}")
    for r in rows:
        m = r["metrics_on_test_part"] or {}
        f1 = f"{m['f1']:.3f}" if m else "-"
        ap = f"{m['auc_pr']:.3f}" if m else "-"
        print(f"{r['series'][:40]:<40} {r['points']:>8} {len(r['events']):>7} {f1:>6} {ap:>7}")
    print(f"{len(rows)} series scored", file=sys.stderr)
    return 0
