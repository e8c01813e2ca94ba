"""What a report shows: paper Table 1 (configs, pair/rank summaries) and Table 2 (length), one `Run` per row.

Units are part of the layout: table cells are percentages with one decimal
(the paper's rounding); notes say counts as counts ("3 of 116") and rates as
"%" with the count they are a rate of; an empty cell (no item of that kind in
the run) is a dash, never 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from longrm_tasks.data.provenance import Provenance
from longrm_tasks.data.schema import CONFIGS, LENGTH_BUCKETS

TABLE1 = list(CONFIGS) + ["Same", "Diff", "PairWise Avg", "Rank2", "Rank3", "Rank4", "Rank Avg", "AVG"]
TABLE2 = list(LENGTH_BUCKETS) + ["Length Avg"]
# Each of these fits an 80-column terminal beside a 28-character run label; the same three tables are
# printed at every width (a wider terminal only gets more room for labels).
TERMINAL_TABLES = [
    ("Long-RewardBench by config (paper Table 1, PairWise accuracy %)", list(CONFIGS) + ["AVG"]),
    ("Long-RewardBench by format (paper Table 1, %)", TABLE1[len(CONFIGS):-1]),
    ("PairWise accuracy by context length (paper Table 2, %)", TABLE2),
]
EMPTY = "—"
NO_VERDICT = "unp."  # every presentation unparsed: the paper's rule would print 0.0, which reads as a result
JUDGE_KINDS = {"generative": "gen", "loglikelihood": "ll", "reward": "rm"}


@dataclass
class Run:
    """One evaluated model: a display name, its metrics dict (paper keys + ``extra``) and where it came from.

    ``model`` / ``judge`` (``gen`` | ``ll`` | ``rm``) make the short label;
    ``protocol`` and ``provenance`` (the data the run was computed on) decide
    whether it is comparable with other runs and with the paper; ``settings``
    holds the run's other recorded options (order, parser, max_length, ...);
    ``warnings`` what reading it noticed (duplicates, shared ids).
    """

    name: str
    metrics: dict
    source: str = ""
    model: str = ""
    judge: str = ""
    protocol: str | None = None
    provenance: Provenance | None = None
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def count(self, key: str) -> int | None:
        """Items/presentations behind a cell (None when the run does not say, e.g. lm-eval results alone)."""
        counts = self.metrics.get("extra", {}).get("counts", {})
        if key == "Length Avg":
            known = [counts[b] for b in LENGTH_BUCKETS if b in counts]
            return sum(known) if known else None
        value = counts.get(key)
        return value if isinstance(value, int) else None

    def value(self, key: str) -> float | None:
        """A metric as a fraction, or None when the cell is empty (no item of that kind) or absent."""
        if self.count(key) == 0:
            return None
        if key == "Length Avg":
            counts = self.metrics.get("extra", {}).get("counts", {})
            if counts and any(counts.get(b, 1) == 0 for b in LENGTH_BUCKETS):
                return None  # a mean over six buckets with some empty is not the paper's Length Avg
        value = self.metrics.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def no_verdict(self) -> bool:
        """Not one output parsed (a random model, a wrong chat template, a judge cut short)."""
        e = self.metrics.get("extra", {})
        return bool(e.get("presentations")) and e.get("unparsed_rate", 0) >= 1.0

    def cell(self, key: str) -> str:
        """A metric as the paper prints it (percent, one decimal); an empty cell as a dash."""
        value = self.value(key)
        if value is None:
            return EMPTY
        return NO_VERDICT if self.no_verdict else f"{100 * value:.1f}"


def _pct(part: float, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"


def notes(run: Run) -> list[str]:
    """What the paper's numbers do not show, in one line each; counts as counts, rates with their base."""
    e = run.metrics.get("extra", {})
    counts = e.get("counts", {})
    n = e.get("presentations")
    out = []
    if isinstance(n, int):
        unparsed = int(e.get("unparsed", 0))
        line = f"{n} judged presentations of {e.get('items', '?')} items"
        if n:
            line += f"; unparsed {unparsed} of {n} ({_pct(unparsed, n)})"
        out.append(line)
        if run.no_verdict:
            out.append(f"no verdict parsed: cells show '{NO_VERDICT}' (the paper's rule scores them 0)")
    counted = (("truncated", "prompts cut"), ("truncated_tokens", "tokens cut"), ("skipped", "skipped"),
               ("overlong", "over-long (scored wrong)"), ("short_budget", "short generation budget"),
               ("thinking_outputs", "outputs with thinking"))
    fitting = [f"{label} {int(e[key]):,}" for key, label in counted  # zeros shown only for the two always asked
               if isinstance(e.get(key), (int, float)) and (e[key] or key in ("truncated", "skipped"))]
    if fitting:
        out.append("counts: " + ", ".join(fitting))
    n_bon = counts.get("Rank Avg")
    if n_bon and not run.no_verdict:
        exact = e.get("bestofn_exact_match", {}).get("Rank Avg", 0)
        top1 = e.get("bestofn_top1", {}).get("Rank Avg", 0)
        out.append(f"Best-of-N over {n_bon} presentations: exact ranking {100 * exact:.1f}%, best answer first "
                   f"{100 * top1:.1f}%")
    n_pair = counts.get("PairWise Avg")
    if n_pair:
        parsed = round(n_pair * (1 - e.get("unparsed_rate_pairwise", 0)))
        if parsed:
            out.append(f"picked position A in {100 * e.get('position_a_rate', 0):.1f}% of {parsed} parsed pairs")
        elif not run.no_verdict:
            out.append(f"no PairWise verdict parsed ({n_pair} pairs): accuracy there is 0 by the paper's rule")
    both = e.get("both_orders")
    if isinstance(both, dict) and "consistent_accuracy" in both:
        pairs = both.get("pairs")
        line = f"both orders: consistent accuracy {100 * both['consistent_accuracy']:.1f}%"
        line += f" over {pairs} pairs" if pairs is not None else ""
        if "same_position_rate" in both:
            line += f"; same position in both orders {100 * both['same_position_rate']:.1f}%"
        out.append(line)
    return out
