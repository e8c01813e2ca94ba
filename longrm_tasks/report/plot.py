"""PNG plot: PairWise accuracy against context length, one line per run, chance at 50 %."""
from __future__ import annotations

import os
from typing import Sequence

from longrm_tasks.data.schema import LENGTH_BUCKETS
from longrm_tasks.report.layout import Run


def plot_length_curve(runs: Sequence[Run], path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    xs = list(range(len(LENGTH_BUCKETS)))
    for run in runs:
        counts = run.metrics.get("extra", {}).get("counts", {})
        # Empty buckets are gaps, not zeros: the reference's 0 there is "no data".
        ys = [100 * run.metrics[b] if counts.get(b, 1) else float("nan") for b in LENGTH_BUCKETS]
        ax.plot(xs, ys, marker="o", label=run.name)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance (50%)")
    ax.set_xticks(xs, LENGTH_BUCKETS)
    ax.set_ylim(0, 100)
    ax.set_xlabel("context length")
    ax.set_ylabel("PairWise accuracy (%)")
    ax.set_title("Long-RewardBench: PairWise accuracy vs context length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
