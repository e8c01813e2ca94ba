"""The benchmark's metrics as lm-eval metric aggregations.

lm-eval aggregates each metric of a task from the list of per-document values
``process_results`` returned; a group can only average its children's numbers.
The paper's metrics are not averages of averages (micro ``AVG`` over all items,
PairWise-only per-length cells, both-orders consistency needs a pair's two
documents together), so every document returns the same `record`
(`longrm_tasks.requests.presentation`: enough to rebuild a `Judged` row) for every
metric, and each metric's aggregation picks its cell from the core's
`compute_metrics` over all records — computed once per record list and shared
by the ~30 aggregations of a task (`metrics_for` caches by content). The group
YAMLs run the whole benchmark as one task, so the group's size-weighted "mean"
of a single child is exactly that child's value.

`METRICS` is the single list the task YAML generator (``task_yamls/_generate.py``)
writes into every task's ``metric_list``; each names one of the plain functions
at the end of this module as its aggregation.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

from longrm_tasks.data.schema import BON_SUBTYPES, CONFIGS, LENGTH_BUCKETS
from longrm_tasks.metrics.benchmark import compute_metrics
from longrm_tasks.requests.presentation import judged, record  # noqa: F401  (the record codec, re-exported)


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
        Metric("extra/overlong", "extra_overlong", extra("overlong"), "all", False),
        Metric("extra/short_budget", "extra_short_budget", extra("short_budget"), "all", False),
        Metric("extra/thinking_outputs", "extra_thinking_outputs", extra("thinking_outputs"), "all", False),
        Metric("extra/bestofn_exact_match", "extra_bestofn_exact_match",
               extra("bestofn_exact_match", "Rank Avg"), "bestofn"),
        Metric("extra/bestofn_top1", "extra_bestofn_top1", extra("bestofn_top1", "Rank Avg"), "bestofn"),
        Metric("extra/position_a_rate", "extra_position_a_rate", extra("position_a_rate"), "pairwise", None),
        Metric("extra/consistent_accuracy", "extra_consistent_accuracy",
               extra("both_orders", "consistent_accuracy"), "pairwise"),
    ]


METRICS: list[Metric] = _paper_metrics() + _extra_metrics()


_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()
_CACHE_SIZE = 4  # a run aggregates one task at a time; a few entries cover filters and groups


def _freeze(value):
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def metrics_for(records: Sequence) -> dict:
    """The core's full metrics dict (paper keys + ``extra``) from per-document records.

    lm-eval hands each metric's aggregation its own list of the same records;
    the content key makes the ~30 aggregations of a task share one computation.
    """
    key = tuple(_freeze(r) for r in records)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = compute_metrics([judged(r) for r in records])
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _pick(function: str, records: Sequence) -> float:
    return _BY_FUNCTION[function].pick(metrics_for(records))


_BY_FUNCTION = {m.function: m for m in METRICS}


# The aggregations the task YAMLs name (`!function longrm_tasks.adapters.lm_eval.metrics.<name>`),
# one per entry of METRICS (tests check the two lists agree).
def avg(records): return _pick("avg", records)  # noqa: E704
def config_longqa(records): return _pick("config_longqa", records)  # noqa: E704
def config_summ(records): return _pick("config_summ", records)  # noqa: E704
def config_safety(records): return _pick("config_safety", records)  # noqa: E704
def config_icl(records): return _pick("config_icl", records)  # noqa: E704
def config_cite(records): return _pick("config_cite", records)  # noqa: E704
def config_code(records): return _pick("config_code", records)  # noqa: E704
def config_math(records): return _pick("config_math", records)  # noqa: E704
def same(records): return _pick("same", records)  # noqa: E704
def diff(records): return _pick("diff", records)  # noqa: E704
def pairwise_avg(records): return _pick("pairwise_avg", records)  # noqa: E704
def length_4k(records): return _pick("length_4k", records)  # noqa: E704
def length_8k(records): return _pick("length_8k", records)  # noqa: E704
def length_16k(records): return _pick("length_16k", records)  # noqa: E704
def length_32k(records): return _pick("length_32k", records)  # noqa: E704
def length_64k(records): return _pick("length_64k", records)  # noqa: E704
def length_128k(records): return _pick("length_128k", records)  # noqa: E704
def length_avg(records): return _pick("length_avg", records)  # noqa: E704
def rank2(records): return _pick("rank2", records)  # noqa: E704
def rank3(records): return _pick("rank3", records)  # noqa: E704
def rank4(records): return _pick("rank4", records)  # noqa: E704
def rank_avg(records): return _pick("rank_avg", records)  # noqa: E704
def extra_unparsed_rate(records): return _pick("extra_unparsed_rate", records)  # noqa: E704
def extra_truncated(records): return _pick("extra_truncated", records)  # noqa: E704
def extra_truncated_tokens(records): return _pick("extra_truncated_tokens", records)  # noqa: E704
def extra_skipped(records): return _pick("extra_skipped", records)  # noqa: E704
def extra_overlong(records): return _pick("extra_overlong", records)  # noqa: E704
def extra_short_budget(records): return _pick("extra_short_budget", records)  # noqa: E704
def extra_thinking_outputs(records): return _pick("extra_thinking_outputs", records)  # noqa: E704
def extra_bestofn_exact_match(records): return _pick("extra_bestofn_exact_match", records)  # noqa: E704
def extra_bestofn_top1(records): return _pick("extra_bestofn_top1", records)  # noqa: E704
def extra_position_a_rate(records): return _pick("extra_position_a_rate", records)  # noqa: E704
def extra_consistent_accuracy(records): return _pick("extra_consistent_accuracy", records)  # noqa: E704
