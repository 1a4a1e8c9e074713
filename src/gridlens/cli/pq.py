"""``gridlens pf`` and ``gridlens synth``: power factor of a voltage/current record, and
synthetic records to try it on. NumPy and ``gridlens.pq`` are imported when a command runs."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import Any

from gridlens.cli._common import EXIT_OK, emit_json, float_list, fraction, positive
from gridlens.errors import InputError

__all__ = ["add_pq_commands"]


def add_pq_commands(sub: Any) -> None:
    """Add ``pf`` and ``synth`` to the subcommand parsers ``sub``."""
    _add_pf(sub)
    _add_synth(sub)


# --------------------------------------------------------------------------- pf


def _add_pf(sub: Any) -> None:
    p = sub.add_parser(
        "pf",
        help="fundamental power factor (three methods), THD, frequency, capacitor steps",
        description="Analyse a voltage/current record: the seed paper's three power-factor "
        "methods, IEEE 1459 quantities per IEC 61000-4-30 window with frequency tracking, and "
        "optionally the capacitor steps to switch. Q > 0 means lagging (inductive).",
    )
    p.add_argument("file", nargs="?", help="CSV (t,v,i or v,i), .npz (v, i, fs) or COMTRADE .cfg")
    p.add_argument("--paper", action="store_true", help="reproduce the seed's 3x3 table")
    p.add_argument("--f0", type=positive, default=60.0, help="nominal frequency [Hz] (50 or 60)")
    p.add_argument("--fs", type=positive, help="sampling rate [Hz] if the file has no time")
    p.add_argument("--window-cycles", type=int, help="cycles per window (default 10@50, 12@60)")
    p.add_argument("--no-track", action="store_true", help="fixed nominal windows (no tracking)")
    p.add_argument("--v-channel", help="voltage column/channel name (default v / first in V)")
    p.add_argument("--i-channel", help="current column/channel name (default i / first in A)")
    p.add_argument("--target-pf", type=fraction, default=0.95, help="target PF (default 0.95)")
    p.add_argument("--steps-kvar", type=float_list, help="capacitor steps, e.g. 10,20,40 [kvar]")
    p.add_argument("--k-threshold", type=float, default=0.65, help="C/k response factor")
    p.add_argument("--cap-rated-v", type=positive, help="capacitors' rated voltage [V]")
    p.add_argument("--tariff-ref", type=fraction, default=0.90, help="reference PF (0.90)")
    p.add_argument("--tariff-rate", type=float, default=0.002, help="per 1%% PF (0.002=0.2%%)")
    p.add_argument("--tariff-floor", type=fraction, default=0.60, help="surcharge floor PF")
    p.add_argument("--tariff-cap", type=fraction, default=0.95, help="discount cap PF")
    p.add_argument("--demand-charge", type=float, help="monthly demand charge, to price the PF")
    p.add_argument("--per-window", action="store_true", help="include per-window arrays in JSON")
    p.add_argument("--plot", metavar="PNG", help="save waveforms + per-window PF to a PNG")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_pf)


def _cmd_pf(args: argparse.Namespace) -> int:
    from gridlens import pq

    if args.paper:
        return _cmd_pf_paper(args)
    if not args.file:
        raise InputError("give a FILE to analyse, or --paper")
    t0 = time.perf_counter()
    wf = pq.read_waveform(
        args.file, fs_hz=args.fs, v_channel=args.v_channel, i_channel=args.i_channel
    )
    if time.perf_counter() - t0 > 1.0:
        print(f"gridlens: read {len(wf.v)} samples from {args.file}", file=sys.stderr)
    rep = pq.analyze(
        wf.v,
        wf.i,
        wf.fs_hz,
        f0_hz=args.f0,
        window_cycles=args.window_cycles,
        track_frequency=not args.no_track,
    )
    a = rep.aggregate
    tariff = pq.TariffParams(
        reference_pf=args.tariff_ref,
        rate_per_pct=args.tariff_rate,
        floor_pf=args.tariff_floor,
        cap_pf=args.tariff_cap,
    )
    doc: dict[str, Any] = {
        "source": wf.source,
        "f_hz": a.f_hz,
        "f0_hz": rep.f0_hz,
        "tracked": rep.tracked,
        "fs_hz": wf.fs_hz,
        "samples": len(wf.v),
        "windows": rep.n_windows,
        "window_cycles": rep.window_cycles,
        "methods": {
            "power_triangle": {"pf": a.pf_power_triangle},
            "time_delay": {"pf": a.pf_time_delay, "q_var": a.q_time_delay_var},
            "dq": {"pf": a.pf1, "p1_w": a.p1_w, "q1_var": a.q1_var},
        },
        "thd_v": a.thd_v,
        "thd_i": a.thd_i,
        "displacement": rep.displacement,
        "pf_defined": rep.pf_defined,
        "window_pf1_min": _nan_extreme(rep.windows.pf1, min),
        "window_pf1_max": _nan_extreme(rep.windows.pf1, max),
        "window_f_hz_min": float(rep.windows.f_hz.min()),
        "window_f_hz_max": float(rep.windows.f_hz.max()),
        "ieee1459": {k: v for k, v in asdict(a).items() if k not in ("t_s",)},
    }
    if not rep.pf_defined:
        doc["note"] = NO_CURRENT_NOTE
    # a leading PF is not surcharged; with no current there is no PF to price
    adj_now: float | None = 0.0 if rep.displacement == "leading" else None
    if rep.displacement == "lagging":
        adj_now = pq.pf_adjustment(a.pf1, tariff)
    tariff_doc: dict[str, Any] = {**asdict(tariff), "adjustment_now": adj_now}
    if args.steps_kvar:
        plan = pq.recommend_steps(
            a.p1_w,
            a.q1_var,
            steps_kvar=args.steps_kvar,
            target_pf=args.target_pf,
            k_threshold=args.k_threshold,
            v1_rms_v=a.v1_rms_v if args.cap_rated_v else None,
            rated_v=args.cap_rated_v,
        )
        doc["capacitor"] = asdict(plan)
        tariff_doc["adjustment_after"] = (
            None
            if not rep.pf_defined
            else 0.0
            if plan.leading_after
            else pq.pf_adjustment(plan.pf_after, tariff)
        )
    if args.demand_charge is not None:
        for key in ("now", "after"):
            if tariff_doc.get(f"adjustment_{key}") is not None:
                tariff_doc[f"amount_{key}"] = tariff_doc[f"adjustment_{key}"] * args.demand_charge
    doc["tariff"] = tariff_doc
    if args.per_window:
        doc["per_window"] = asdict(rep.windows)
    if args.plot:
        from gridlens.pq.plot import plot_report

        plot_report(wf, rep, args.plot)
        doc["plot"] = args.plot
    if args.json:
        emit_json(doc)
    else:
        _print_pf(doc)
    return EXIT_OK


NO_CURRENT_NOTE = (
    "no current in the record: the power factor is undefined (a load switched off, or the"
    " wrong current channel?); voltage, THD_V and frequency are measured"
)


def _nan_extreme(x: Any, pick: Any) -> float | None:
    """``pick`` (min or max) of the finite values of ``x``; None when there are none."""
    finite = [float(v) for v in x.tolist() if v == v]
    return pick(finite) if finite else None


def _f(x: float | None, spec: str) -> str:
    """``x`` formatted by ``spec``, or ``undefined`` for None/NaN."""
    return "undefined" if x is None or x != x else format(x, spec)


def _print_pf(doc: dict[str, Any]) -> None:
    m = doc["methods"]
    ie = doc["ieee1459"]
    track = "tracked" if doc["tracked"] else "fixed nominal windows"
    print(f"{doc['source']}: {doc['samples']} samples at {doc['fs_hz']:g} Hz")
    print(
        f"frequency  {doc['f_hz']:.4f} Hz ({track}; windows {doc['window_f_hz_min']:.3f}"
        f"-{doc['window_f_hz_max']:.3f} Hz), {doc['windows']} windows x {doc['window_cycles']}"
        " cycles"
    )
    print(f"{'method':<24}{'PF':>9}")
    pt, td, dq = (_f(m[k]["pf"], ".4f") for k in ("power_triangle", "time_delay", "dq"))
    print(f"{'power triangle':<24}{pt:>9}   P/(V*I), harmonics included")
    print(f"{'time delay (T/4)':<24}{td:>9}   wrong if the voltage is distorted")
    lo, hi = _f(doc["window_pf1_min"], ".4f"), _f(doc["window_pf1_max"], ".4f")
    windows = f"; windows {lo}-{hi}" if doc["pf_defined"] else " (no current)"
    print(f"{'DQ (fundamental PF1)':<24}{dq:>9}   {doc['displacement']}{windows}")
    print(
        f"V1 {ie['v1_rms_v']:.2f} V   I1 {ie['i1_rms_a']:.3f} A   P1 {ie['p1_w'] / 1e3:.3f} kW"
        f"   Q1 {ie['q1_var'] / 1e3:.3f} kvar   S1 {ie['s1_va'] / 1e3:.3f} kVA"
    )
    print(
        f"V {ie['v_rms_v']:.2f} V   I {ie['i_rms_a']:.3f} A   P {ie['p_w'] / 1e3:.3f} kW"
        f"   S_N {ie['sn_va'] / 1e3:.3f} kVA   THD_V {_f(doc['thd_v'], '.1%')}"
        f"   THD_I {_f(doc['thd_i'], '.1%')}"
    )
    t = doc["tariff"]
    if "note" in doc:
        print(f"note: {doc['note']}")
    print(f"PF charge now: {_f(t['adjustment_now'], '+.2%')} of the demand charge", end="")
    print(f" ({t['amount_now']:+,.0f})" if "amount_now" in t else "")
    if "capacitor" in doc and not doc["pf_defined"]:
        print(f"capacitors: {doc['capacitor']['action']}")
    elif "capacitor" in doc:
        c = doc["capacitor"]
        steps = ", ".join(f"{s:g}" for s in c["switch_kvar"]) or "none"
        print(
            f"capacitors: {c['action']}; switch [{steps}] kvar = {c['q_comp_var'] / 1e3:.2f} kvar"
            f" (need {c['q_needed_var'] / 1e3:.2f}, dead band {c['threshold_var'] / 1e3:.2f})"
        )
        lead = "leading" if c["leading_after"] else "lagging"
        reached = "reached" if c["target_reached"] else "not reached: rest is inside the dead band"
        print(
            f"PF1 {_f(c['pf_before'], '.4f')} -> {_f(c['pf_after'], '.4f')} {lead}"
            f" (target {c['target_pf']:g} {reached});"
            f" PF charge after: {_f(t['adjustment_after'], '+.2%')}",
            end="",
        )
        print(f" ({t['amount_after']:+,.0f})" if "amount_after" in t else "")
    if "plot" in doc:
        print(f"plot: {doc['plot']}")


def _cmd_pf_paper(args: argparse.Namespace) -> int:
    from gridlens import pq

    cases: list[dict[str, Any]] = []
    for case in pq.PAPER_CASES:
        wf = case.waveform(f_hz=args.f0)
        rep = pq.analyze(wf.v, wf.i, wf.fs_hz, f0_hz=args.f0)
        a = rep.aggregate
        cases.append(
            {
                "name": case.name,
                "published": {
                    "power_triangle": case.published_power_triangle,
                    "time_delay": case.published_time_delay,
                    "dq": case.published_dq,
                },
                "reproduced": {
                    "power_triangle": a.pf_power_triangle,
                    "time_delay": a.pf_time_delay,
                    "dq": a.pf1,
                },
            }
        )
    if args.json:
        emit_json({"f0_hz": args.f0, "cases": cases})
        return EXIT_OK
    print("Seed S1 test cases: 220 V, 100 A lagging 60 deg; PF in % (published | gridlens)")
    print(f"{'case':<32}{'power triangle':>22}{'time delay':>22}{'DQ':>22}")
    for c in cases:
        cells = "".join(
            f"{c['published'][k]:>11.2%}{c['reproduced'][k]:>11.2%}"
            for k in ("power_triangle", "time_delay", "dq")
        )
        print(f"{c['name']:<32}{cells}")
    return EXIT_OK


# ------------------------------------------------------------------------ synth


def _harmonics(text: str) -> list[tuple[int, float, float]]:
    """'1:220,3:150@30' -> [(1, 220, 0), (3, 150, 30)] (order:rms@lag_deg)."""
    out = []
    for part in text.split(","):
        try:
            order_s, rest = part.split(":")
            rms_s, _, lag_s = rest.partition("@")
            out.append((int(order_s), float(rms_s), float(lag_s or 0.0)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected order:rms[@lag_deg],... e.g. 1:100@60,3:50@30; got {part!r}"
            ) from None
    return out


def _add_synth(sub: Any) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic distorted v/i record (CSV or .npz)",
        description="Generate v = sum sqrt2*V_h*sin(h*theta - lag_h) (+ noise, DC) and the same "
        "for i; components as order:rms@lag_deg.",
    )
    p.add_argument("out", help="output file (.csv or .npz)")
    p.add_argument("--f", type=positive, default=60.0, help="fundamental frequency [Hz]")
    p.add_argument("--fs", type=positive, default=10_000.0, help="sampling rate [Hz]")
    p.add_argument("--seconds", type=positive, default=1.0, help="duration [s]")
    p.add_argument("--ramp", type=float, default=0.0, help="frequency ramp [Hz/s]")
    p.add_argument("--v", type=_harmonics, default="1:220", help="voltage components")
    p.add_argument("--i", type=_harmonics, default="1:100@30", help="current components")
    p.add_argument("--noise-v", type=float, default=0.0, help="voltage noise RMS [V]")
    p.add_argument("--noise-i", type=float, default=0.0, help="current noise RMS [A]")
    p.add_argument("--dc-v", type=float, default=0.0, help="voltage DC offset [V]")
    p.add_argument("--dc-i", type=float, default=0.0, help="current DC offset [A]")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    import numpy as np

    from gridlens import pq

    wf = pq.synthesize(
        [pq.Harmonic(*h) for h in args.v],
        [pq.Harmonic(*h) for h in args.i],
        f_hz=args.f,
        fs_hz=args.fs,
        duration_s=args.seconds,
        f_ramp_hz_per_s=args.ramp,
        noise_rms_v=args.noise_v,
        noise_rms_a=args.noise_i,
        dc_v=args.dc_v,
        dc_a=args.dc_i,
        seed=args.seed,
    )
    if args.out.lower().endswith(".npz"):
        np.savez(args.out, v=wf.v, i=wf.i, fs=wf.fs_hz)
    elif args.out.lower().endswith(".csv"):
        pq.write_csv(wf, args.out)
    else:
        raise InputError(f"{args.out}: output must end in .csv or .npz")
    doc = {"out": args.out, "samples": len(wf.v), "fs_hz": wf.fs_hz, "f_hz": args.f}
    if args.json:
        emit_json(doc)
    else:
        print(f"wrote {len(wf.v)} samples ({wf.source}) to {args.out}")
    return EXIT_OK
