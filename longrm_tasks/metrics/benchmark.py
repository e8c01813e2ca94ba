"""Per-item results -> the benchmark's metrics (paper names) plus ours under ``extra``.

Reference metrics (LCM-Lab/Long-RM evaluator, reproduced exactly): per-item
rank-match ratio; accuracy per config and per length bucket over PairWise
items; Same / Diff by PairWise subtype; Rank2-4 by BestOfN subtype; averages
are micro-averages (``AVG`` over every item); an empty group scores 0, as in
the reference. ``Length Avg`` is paper Table 2's plain mean of the six buckets.

Ours (``extra``) fix what the reference hides: unparsed outputs, truncation,
skipped items, exact-match / top-1 for Best-of-N (partial credit makes chance
50/33/25 %), per-length Best-of-N, and under the ``both`` order scheme the
position-consistent accuracy and the rate of picking position A. Every value
is a fraction in [0, 1], unrounded; ``extra.counts`` gives each cell's size.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from longrm_tasks.data.schema import BON_SUBTYPES, CONFIGS, LENGTH_BUCKETS
from longrm_tasks.verdicts.parsing import rank_match


@dataclass
class Judged:
    """One shown presentation of one item, judged."""

    config: str
    item_id: str
    tasktype: str
    subtype: str
    length: str
    true_ranks: list[int]  # the order: true rank of each shown position
    predicted: list[int] | None  # None = unparsed
    truncated_tokens: int = 0
    skipped: bool = False  # over-long and skipped by policy: counted, not scored
    protocol: str | None = None  # the prompt protocol that produced the verdict (None: not recorded)
    overlong: bool = False  # beyond the model's context (paper protocol): scored wrong, counted
    short_budget: bool = False  # generated with less than the generation budget (context nearly full)
    thinking: bool = False  # the output contains a thinking block
    score: float = field(init=False)

    def __post_init__(self):
        self.subtype = str(self.subtype)
        self.score = rank_match(self.true_ranks, self.predicted)

    @property
    def exact(self) -> bool:
        return self.predicted is not None and list(self.predicted) == list(self.true_ranks)

    @property
    def top1(self) -> bool:
        if not self.predicted or 0 not in self.predicted:
            return False
        best = self.predicted.index(0)  # a reference-parsed chain may name more positions than shown
        return best < len(self.true_ranks) and self.true_ranks[best] == 0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / max(len(values), 1)  # the reference's empty group -> 0


def _cells(rows: Sequence[Judged], key, names: Iterable[str], value) -> tuple[dict, dict]:
    groups = defaultdict(list)
    for r in rows:
        groups[key(r)].append(value(r))
    return ({n: _mean(groups.get(n, [])) for n in names}, {n: len(groups.get(n, [])) for n in names})


def compute_metrics(rows: Iterable[Judged], configs: Sequence[str] = CONFIGS, parser: str | None = None,
                    orders: str | None = None) -> dict:
    all_rows = list(rows)
    rows = [r for r in all_rows if not r.skipped]
    present = list(configs) + sorted({r.config for r in rows} - set(configs))
    pair = [r for r in rows if r.tasktype == "PairWise"]
    bon = [r for r in rows if r.tasktype == "BestOfN"]
    score = lambda r: r.score  # noqa: E731

    out: dict = {}
    counts: dict = {}
    v, c = _cells(pair, lambda r: r.config, present, score)
    out.update(v), counts.update(c)
    v, c = _cells(pair, lambda r: "Same" if r.subtype == "same" else "Diff", ("Same", "Diff"), score)
    out.update(v), counts.update(c)
    out["PairWise Avg"], counts["PairWise Avg"] = _mean([r.score for r in pair]), len(pair)
    v, c = _cells(bon, lambda r: f"Rank{r.subtype}", [f"Rank{s}" for s in BON_SUBTYPES], score)
    out.update(v), counts.update(c)
    out["Rank Avg"], counts["Rank Avg"] = _mean([r.score for r in bon]), len(bon)
    v, c = _cells(pair, lambda r: r.length, LENGTH_BUCKETS, score)
    out.update(v), counts.update(c)
    out["AVG"], counts["AVG"] = _mean([r.score for r in rows]), len(rows)
    out["Length Avg"] = sum(out[b] for b in LENGTH_BUCKETS) / len(LENGTH_BUCKETS)
    out["extra"] = _extra(all_rows, rows, pair, bon, counts, parser, orders)
    return out


def _extra(all_rows, rows, pair, bon, counts, parser, orders) -> dict:
    unparsed = [r for r in rows if r.predicted is None and not r.overlong]  # over-long: never generated
    bon_keys = [f"Rank{s}" for s in BON_SUBTYPES]
    exact, _ = _cells(bon, lambda r: f"Rank{r.subtype}", bon_keys, lambda r: float(r.exact))
    top1, _ = _cells(bon, lambda r: f"Rank{r.subtype}", bon_keys, lambda r: float(r.top1))
    exact["Rank Avg"] = _mean([float(r.exact) for r in bon])
    top1["Rank Avg"] = _mean([float(r.top1) for r in bon])
    bon_len, bon_len_n = _cells(bon, lambda r: r.length, LENGTH_BUCKETS, lambda r: r.score)
    parsed_pairs = [r for r in pair if r.predicted is not None]
    extra = {
        "parser": parser,
        "orders": orders,
        "items": len({(r.config, r.item_id) for r in rows}),
        "presentations": len(rows),
        "unparsed": len(unparsed),
        "unparsed_rate": len(unparsed) / max(len(rows), 1),
        "unparsed_rate_pairwise": sum(r.predicted is None for r in pair) / max(len(pair), 1),
        "unparsed_rate_bestofn": sum(r.predicted is None for r in bon) / max(len(bon), 1),
        "truncated": sum(r.truncated_tokens > 0 for r in all_rows),
        "truncated_tokens": sum(r.truncated_tokens for r in all_rows),
        "skipped": sum(r.skipped for r in all_rows),
        "overlong": sum(r.overlong for r in all_rows),
        "short_budget": sum(r.short_budget for r in all_rows),
        "thinking_outputs": sum(r.thinking for r in all_rows),
        "bestofn_exact_match": exact,
        "bestofn_top1": top1,
        "bestofn_by_length": bon_len,
        "position_a_rate": sum(r.predicted[0] == 0 for r in parsed_pairs) / max(len(parsed_pairs), 1),
        "counts": dict(counts, **{f"BestOfN {b}": n for b, n in bon_len_n.items()}),
    }
    by_item = defaultdict(list)
    for r in pair:
        by_item[(r.config, r.item_id)].append(r)
    multi = [group for group in by_item.values() if len(group) > 1]
    if multi:
        # consistent_accuracy: a pair counts only if right in every order shown; same_position_rate:
        # the judge named the same position whatever was shown there (the verdict followed position).
        extra["both_orders"] = {
            "pairs": len(multi),
            "consistent_accuracy": _mean([float(all(r.score == 1.0 for r in g)) for g in multi]),
            "same_position_rate": _mean([float(len({tuple(r.predicted or ()) for r in g}) == 1
                                      and all(r.predicted is not None for r in g)) for g in multi]),
        }
    return extra
