"""Pictures of a detection run: the series with flagged points, labels and the score."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gridlens.anomaly.run import RunResult

__all__ = ["plot_run"]


def plot_run(res: RunResult, path: str) -> None:
    """Write a PNG: top, the series (flagged points red, labelled spans shaded); bottom, the
    score with the threshold, and the train/validation/test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res.series
    t = s.times
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(12, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    ax1.plot(t, s.values, lw=0.6, color="#1f4e79", label=s.name)
    if s.labels is not None and s.labels.any():
        lab = s.labels.astype(bool)
        lo, hi = float(np.min(s.values)), float(np.max(s.values))
        ax1.fill_between(t, lo, hi, where=lab, color="#ffbf00", alpha=0.3, label="labelled")
    fl = res.flags.astype(bool)
    ax1.scatter(t[fl], s.values[fl], s=4, color="#c00000", label="flagged", zorder=3)
    if s.imputed.any():
        ax1.scatter(
            t[s.imputed], s.values[s.imputed], s=3, color="#7f7f7f", label="imputed", zorder=2
        )
    ax1.set_ylabel("value")
    ax1.legend(loc="upper right", fontsize=8, ncol=4)
    ax1.set_title(f"{s.name}: {res.model}, {len(res.events)} anomalous periods")
    ax2.plot(t, res.scores, lw=0.6, color="#404040")
    ax2.axhline(res.threshold, color="#c00000", lw=0.8, ls="--", label="threshold")
    for k, name in ((res.train_end, "train | validation"), (res.val_end, "validation | test")):
        if 0 < k < t.size:
            for ax in (ax1, ax2):
                ax.axvline(t[k], color="#2e7d32", lw=0.8, ls=":")
            ax2.text(t[k], ax2.get_ylim()[1], f" {name}", fontsize=7, va="top", color="#2e7d32")
    ax2.set_ylabel("score (higher = more anomalous)")
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
