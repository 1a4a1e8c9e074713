"""Pictures of a power-quality analysis: waveforms, per-window power factor and frequency."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridlens.pq.analysis import PQReport
from gridlens.pq.synth import Waveform

__all__ = ["plot_report"]


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if np.isfinite(x) else "undefined"


def plot_report(wf: Waveform, report: PQReport, path: str | Path) -> None:
    """Save a three-panel PNG: first cycles of v and i, PF per window (three methods),
    frequency per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_w, ax_pf, ax_f) = plt.subplots(3, 1, figsize=(10, 9), constrained_layout=True)
    n_show = min(len(wf.v), round(3 * wf.fs_hz / report.aggregate.f_hz))
    t_ms = np.arange(n_show) / wf.fs_hz * 1e3
    ax_w.plot(t_ms, wf.v[:n_show], color="tab:blue", label="v")
    ax_w.set_xlabel("time [ms]")
    ax_w.set_ylabel("voltage [V]", color="tab:blue")
    ax_i = ax_w.twinx()
    ax_i.plot(t_ms, wf.i[:n_show], color="tab:red", label="i")
    ax_i.set_ylabel("current [A]", color="tab:red")
    a = report.aggregate
    ax_w.set_title(
        f"{wf.source}: f = {a.f_hz:.3f} Hz, THD_V = {_fmt(a.thd_v, '.1%')},"
        f" THD_I = {_fmt(a.thd_i, '.1%')}"
    )

    w = report.windows
    t = w.t_s + w.duration_s / 2
    ax_pf.plot(t, w.pf1, "o-", ms=3, label=f"DQ (fundamental): {_fmt(a.pf1, '.4f')}")
    ax_pf.plot(t, w.pf_time_delay, "s-", ms=3, label=f"time delay: {_fmt(a.pf_time_delay, '.4f')}")
    ax_pf.plot(
        t,
        w.pf_power_triangle,
        "^-",
        ms=3,
        label=f"power triangle: {_fmt(a.pf_power_triangle, '.4f')}",
    )
    if not report.pf_defined:
        ax_pf.text(0.5, 0.5, "power factor undefined: no current", transform=ax_pf.transAxes,
                   ha="center", va="center")  # fmt: skip
    ax_pf.set_ylabel("power factor")
    ax_pf.set_xlabel("time [s]")
    ax_pf.legend(loc="best")
    ax_pf.set_title(f"per window ({report.window_cycles} cycles, {report.n_windows} windows)")
    ax_pf.grid(alpha=0.3)

    ax_f.plot(t, w.f_hz, ".-", label="per window")
    ax_f.axhline(report.f0_hz, color="gray", ls="--", label=f"nominal {report.f0_hz:g} Hz")
    ax_f.set_ylabel("frequency [Hz]")
    ax_f.set_xlabel("time [s]")
    ax_f.legend(loc="best")
    ax_f.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
