"""The benchmark's metrics as lm-eval metric aggregations.

lm-eval aggregates each metric of a task from the list of per-document values
``process_results`` returned; a group can only average its children's numbers.
The paper's metrics are not averages of averages (micro ``AVG`` over all items,
PairWise-only per-length cells, both-orders consistency needs a pair's two
documents together), so every document returns the same compact record for
every metric — enough to rebuild a `Judged` row — and each metric's
aggregation runs the core's `compute_metrics` over all records and picks its
cell. The group YAMLs then run the whole benchmark as one task, so the group's
size-weighted "mean" of a single child is exactly that child's value.

`METRICS` is the single list the task YAML generator (``task_yamls/_generate.py``)
writes into every task's ``metric_list``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from longrm_tasks.data.schema import BON_SUBTYPES, CONFIGS, LENGTH_BUCKETS
from longrm_tasks.metrics import Judged, compute_metrics


def record(doc: dict, predicted: list[int] | None) -> list:
    """A document's per-metric value: what `Judged` needs, compact (it is logged once per metric)."""
    return [doc["config"], doc["id"], doc["tasktype"], doc["subtype"], doc["length"], list(doc["order"]),
            predicted, int(doc["truncated_tokens"]), bool(doc["skipped"])]


def judged(rec: Sequence) -> Judged:
    config, item_id, tasktype, subtype, length, true_ranks, predicted, truncated, skipped = rec
    return Judged(config=config, item_id=str(item_id), tasktype=tasktype, subtype=str(subtype), length=length,
                  true_ranks=list(true_ranks), predicted=None if predicted is None else list(predicted),
                  truncated_tokens=int(truncated), skipped=bool(skipped))


@dataclass(frozen=True)
class Metric:
    name: str  # as lm-eval shows it (paper names; ours prefixed "extra/")
    function: str  # attribute of this module used as the YAML's aggregation
    pick: Callable[[dict], float]
    applies: str  # "all" | "pairwise" | "bestofn": which slices report it
    higher_is_better: bool | None = True  # None: neither (a rate to compare with chance)


def _cell(*path: str) -> Callable[[dict], float]:
    def pick(metrics: dict) -> float:
        value = metrics
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return math.nan  # e.g. both-orders figures in a run without `order: both`
            value = value[key]
        return float(value)

    return pick


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _paper_metrics() -> list[Metric]:
    out = [Metric("AVG", "avg", _cell("AVG"), "all")]
    out += [Metric(c, f"config_{_slug(c)}", _cell(c), "pairwise") for c in CONFIGS]
    out += [Metric("Same", "same", _cell("Same"), "pairwise"), Metric("Diff", "diff", _cell("Diff"), "pairwise"),
            Metric("PairWise Avg", "pairwise_avg", _cell("PairWise Avg"), "pairwise")]
    out += [Metric(b, f"length_{b}", _cell(b), "pairwise") for b in LENGTH_BUCKETS]
    out += [Metric("Length Avg", "length_avg", _cell("Length Avg"), "pairwise")]
    out += [Metric(f"Rank{s}", f"rank{s}", _cell(f"Rank{s}"), "bestofn") for s in BON_SUBTYPES]
    out += [Metric("Rank Avg", "rank_avg", _cell("Rank Avg"), "bestofn")]
    return out


def _extra_metrics() -> list[Metric]:
    extra = lambda *p: _cell("extra", *p)  # noqa: E731
    return [
        Metric("extra/unparsed_rate", "extra_unparsed_rate", extra("unparsed_rate"), "all", False),
        Metric("extra/truncated", "extra_truncated", extra("truncated"), "all", False),
        Metric("extra/truncated_tokens", "extra_truncated_tokens", extra("truncated_tokens"), "all", False),
        Metric("extra/skipped", "extra_skipped", extra("skipped"), "all", False),
        Metric("extra/bestofn_exact_match", "extra_bestofn_exact_match",
               extra("bestofn_exact_match", "Rank Avg"), "bestofn"),
        Metric("extra/bestofn_top1", "extra_bestofn_top1", extra("bestofn_top1", "Rank Avg"), "bestofn"),
        Metric("extra/position_a_rate", "extra_position_a_rate", extra("position_a_rate"), "pairwise", None),
        Metric("extra/consistent_accuracy", "extra_consistent_accuracy",
               extra("both_orders", "consistent_accuracy"), "pairwise"),
    ]


METRICS: list[Metric] = _paper_metrics() + _extra_metrics()


def metrics_for(records: Sequence[Sequence]) -> dict:
    """The core's full metrics dict (paper keys + ``extra``) from per-document records."""
    return compute_metrics([judged(r) for r in records])


def _aggregation(metric: Metric) -> Callable[[list], float]:
    def aggregate(records: list) -> float:
        return metric.pick(metrics_for(records))

    aggregate.__name__ = aggregate.__qualname__ = metric.function
    aggregate.__doc__ = f"lm-eval aggregation: the benchmark's {metric.name!r} over a task's documents."
    return aggregate


# One module-level function per metric, so YAMLs can name them with `!function`.
globals().update({m.function: _aggregation(m) for m in METRICS})
