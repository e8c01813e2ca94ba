"""Plot: PairWise accuracy against context length, one line per run, with n and a 95 % interval per point.

A point holds a handful of pairs on small runs (1-7 on the bundled sample),
so a swing from 14 % to 67 % can be noise: each point shows its number of
PairWise presentations and a Wilson score interval (the usual interval for a
proportion; it stays inside [0, 100] and is honest at n = 1). A run whose
outputs were all unparsed has no accuracy to draw: it is listed as such, not
drawn as 0 %. Empty buckets are gaps.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from longrm_tasks.data.schema import LENGTH_BUCKETS
from longrm_tasks.report.layout import Run

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (fractions in [0, 1]); (nan, nan) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def all_unparsed(run: Run) -> bool:
    """No PairWise verdict was read at all (a random model, a wrong chat template, a judge cut short)."""
    e = run.metrics.get("extra", {})
    n_pair = e.get("counts", {}).get("PairWise Avg")
    return bool(n_pair) and e.get("unparsed_rate_pairwise", 0) >= 1.0


def length_points(run: Run) -> list[tuple[int, float, int | None, tuple[float, float] | None]]:
    """(bucket index, accuracy %, n, 95 % interval in %) for each non-empty bucket of a run."""
    points = []
    for i, bucket in enumerate(LENGTH_BUCKETS):
        value, n = run.value(bucket), run.count(bucket)
        if value is None:
            continue
        interval = None
        if n:
            lo, hi = wilson_interval(value * n, n)
            interval = (100 * lo, 100 * hi)
        points.append((i, 100 * value, n, interval))
    return points


def plot_length_curve(runs: Sequence[Run], path: str | os.PathLike) -> None:
    """Write the plot of every run, overlaid; the format follows the suffix (.png, .pdf, .svg)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt
    import matplotlib.transforms  # noqa: F401  (blended x-data / y-axes positions for the n rows)

    drawn = [r for r in runs if not all_unparsed(r) and length_points(r)]
    missing = [r for r in runs if r not in drawn]
    # A fixed axes size; savefig's tight box then grows the picture to hold the n rows and the legend below.
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=130)
    xs = list(range(len(LENGTH_BUCKETS)))
    ax.axhline(50, color="0.45", linestyle="--", linewidth=1, zorder=1)
    ax.text(-0.45, 51, "chance (50%)", color="0.35", fontsize=8, ha="left", va="bottom")
    # n per bucket: under the tick label when every drawn run has the same n there, else beside each point.
    per_bucket = [{n for r in drawn for i, _, n, _ in length_points(r) if i == b} for b in xs]
    shared_n = all(len(ns) <= 1 for ns in per_bucket) and any(ns - {None} for ns in per_bucket)
    spread = 0.22 if len(drawn) > 1 else 0.0
    under = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y in axes
    rows_below = 0 if shared_n else len(drawn)  # dodge runs sideways so their intervals do not hide each other
    for k, run in enumerate(drawn):
        shift = (k - (len(drawn) - 1) / 2) * (spread / max(len(drawn) - 1, 1))
        points = length_points(run)
        px = [i + shift for i, *_ in points]
        py = [v for _, v, _, _ in points]
        unparsed = run.metrics.get("extra", {}).get("unparsed_rate_pairwise")
        label = run.name + (f"  ({100 * unparsed:.0f}% unparsed)" if unparsed else "")
        line, = ax.plot(px, py, marker="o", markersize=5, linewidth=1.6, label=label, zorder=3)
        for x, (_, v, n, interval) in zip(px, points):
            if interval:
                ax.errorbar(x, v, yerr=[[v - interval[0]], [interval[1] - v]], color=line.get_color(),
                            capsize=3, linewidth=1, alpha=0.55, zorder=2)
            if n is not None and not shared_n:  # one row of n per run under the axis, in the run's colour
                ax.text(x - shift, -0.12 - 0.05 * k, str(n), transform=under, fontsize=7.5, color=line.get_color(),
                        ha="center", va="top")
        if not shared_n:
            ax.text(-0.5, -0.12 - 0.05 * k, "n ", transform=under, fontsize=7.5, color=line.get_color(),
                    ha="right", va="top")
    for run in missing:
        e = run.metrics.get("extra", {})
        why = (f"no verdict parsed ({e.get('unparsed', '?')} of {e.get('presentations', '?')} outputs unparsed)"
               if all_unparsed(run) else "no PairWise item")
        ax.plot([], [], linestyle="none", marker="x", color="0.5", label=f"{run.name}: {why}, not plotted")
    if not drawn:
        ax.text(0.5, 0.72, "no accuracy to plot: see the list below", transform=ax.transAxes, ha="center",
                fontsize=11, color="0.3")
    if shared_n:
        ticks = [f"{b}\nn={next(iter(ns))}" if ns and None not in ns else b
                 for b, ns in zip(LENGTH_BUCKETS, per_bucket)]
    else:
        ticks = list(LENGTH_BUCKETS)
    ax.set_xticks(xs, ticks)
    ax.set_xlim(-0.5, len(xs) - 0.5)  # every marker, 4k and 128k included, inside the axes
    ax.set_ylim(-4, 104)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("context length bucket")
    if rows_below:
        ax.xaxis.set_label_coords(0.5, -0.12 - 0.05 * rows_below - 0.01)
    ax.set_ylabel("PairWise accuracy (%)")
    ax.set_title("Long-RewardBench: PairWise accuracy vs context length", fontsize=11, pad=16)
    ax.text(0.0, 1.01, "bars: 95% Wilson interval  ·  n: PairWise presentations per point", transform=ax.transAxes,
            fontsize=7.5, color="0.35", va="bottom")
    ax.grid(alpha=0.25)
    # Below the axes: long run names never squeeze the plot itself.
    ax.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(0.0, -0.19 - 0.05 * rows_below), frameon=False, ncol=1)
    from longrm_tasks.atomic import atomic_write

    fmt = Path(path).suffix.lower().lstrip(".") or "png"
    try:  # atomically, like every output: a kill mid-write never leaves half a picture
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format=fmt, bbox_inches="tight")  # legend and n rows sit below the axes
    finally:
        plt.close(fig)
