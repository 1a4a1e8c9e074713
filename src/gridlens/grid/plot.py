"""Pictures for the grid commands (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridlens.grid.placement import SearchResult

__all__ = ["plot_placements"]


def plot_placements(result: SearchResult, path: str | Path, title: str = "") -> Path:
    """Per-bus mean TVE of the best, median and worst placements (the seed's Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    places = result.placements
    picks = [("best", places[0]), ("median", places[len(places) // 2]), ("worst", places[-1])]
    names = list(result.bus_names)
    x = np.arange(len(names))
    many = len(names) > 60
    fig, ax = plt.subplots(figsize=(max(8.0, min(0.25 * len(names), 18.0)), 4.2))
    width = 0.27
    for k, (label, p) in enumerate(picks):
        vals = np.asarray(p.per_bus_tve_pct)
        lab = f"{label}: {'-'.join(p.buses)} (mean {p.mean_tve_pct:.4f} %)"
        if many:
            ax.plot(x, vals, lw=1.0, label=lab)
        else:
            ax.bar(x + (k - 1) * width, vals, width, label=lab)
        for b in p.buses:
            ax.axvline(names.index(b), color=f"C{k}", lw=0.6, ls=":", alpha=0.7)
    if not many:
        ax.set_xticks(x, names, fontsize=8)
    ax.set_xlabel("bus")
    ax.set_ylabel("mean TVE over scenarios [%]")
    ax.set_title(title or f"µPMU placements by {result.estimator} ({result.search})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
