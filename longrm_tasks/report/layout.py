"""Which columns a report shows: paper Table 1 (configs, pair/rank summaries) and Table 2 (length)."""
from __future__ import annotations

from dataclasses import dataclass

from longrm_tasks.data.schema import CONFIGS, LENGTH_BUCKETS

TABLE1 = list(CONFIGS) + ["Same", "Diff", "PairWise Avg", "Rank2", "Rank3", "Rank4", "Rank Avg", "AVG"]
TABLE2 = list(LENGTH_BUCKETS) + ["Length Avg"]
# A terminal is often 80 columns wide: Table 1 is printed in two halves there.
TERMINAL_TABLES = [
    ("Long-RewardBench by config (paper Table 1, PairWise accuracy %)", list(CONFIGS) + ["AVG"]),
    ("Long-RewardBench by format (paper Table 1, %)", TABLE1[len(CONFIGS):]),
    ("PairWise accuracy by context length (paper Table 2, %)", TABLE2),
]
EMPTY = "—"


@dataclass
class Run:
    """One evaluated model: a display name and its metrics dict (paper keys + ``extra``)."""

    name: str
    metrics: dict
    source: str = ""

    def cell(self, key: str) -> str:
        """A metric as the paper prints it (percent, one decimal); empty groups as a dash."""
        counts = self.metrics.get("extra", {}).get("counts", {})
        if key == "Length Avg":
            empty = all(counts.get(b, 1) == 0 for b in LENGTH_BUCKETS)
        else:
            empty = counts.get(key, 1) == 0
        value = self.metrics.get(key)
        if empty or value is None:
            return EMPTY
        return f"{100 * value:.1f}"


def notes(run: Run) -> list[str]:
    """What the paper's numbers do not show, in one line each."""
    e = run.metrics.get("extra", {})
    out = [f"{e.get('presentations', 0)} judged presentations of {e.get('items', 0)} items; "
           f"unparsed {e.get('unparsed', 0)} ({100 * e.get('unparsed_rate', 0):.1f}%); "
           f"truncated {e.get('truncated', 0)}; skipped {e.get('skipped', 0)}"]
    exact = e.get("bestofn_exact_match", {})
    if e.get("counts", {}).get("Rank Avg"):
        out.append(f"Best-of-N exact match {100 * exact.get('Rank Avg', 0):.1f}%, "
                   f"top-1 {100 * e.get('bestofn_top1', {}).get('Rank Avg', 0):.1f}%")
    if e.get("counts", {}).get("PairWise Avg"):
        out.append(f"picked position A in {100 * e.get('position_a_rate', 0):.1f}% of parsed pairs")
    both = e.get("both_orders")
    if both:
        out.append(f"both orders: consistent accuracy {100 * both['consistent_accuracy']:.1f}% over "
                   f"{both['pairs']} pairs; same position in both orders {100 * both['same_position_rate']:.1f}%")
    return out
