"""Read per-item prediction files (the reference evaluator's output format) into `Judged` rows.

One JSON object per line with ``output`` (the judge's text, or a list of
scalar scores in shown order), ``shuffled_order``, ``subset``, ``tasktype``,
``subtype`` and ``ctx_length`` — what LCM-Lab's evaluator writes to
``{subset}.jsonl`` — optionally ``id``/``index`` (to regroup the orders of one
item), ``truncated_tokens``, ``skipped``, ``overlong``, ``short_budget``, ``thinking`` and
``protocol`` (written by our own runners).

The reader is strict, because a lenient one turns typos into wrong numbers:
bools are JSON booleans (``"skipped": "false"`` is an error, not a dropped row),
counts are integers, a BestOfN subtype agrees with its number of positions,
scores are numbers (``null``/NaN = a missing score, counted as unparsed; NaN or
Infinity in any other field is an error), a
file with no rows is an error, and an item may appear once per shown order:
a repeated (subset, id, order) or two rows of one id that disagree about the
item is an error naming both lines (repeats would otherwise invent
both-orders statistics, see `metrics.compute_metrics`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Iterator

from longrm_tasks.data.schema import LENGTH_BUCKETS, TASKTYPES
from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl
from longrm_tasks.metrics.benchmark import Judged
from longrm_tasks.paths import require_regular_file
from longrm_tasks.verdicts.parsing import parse_judgment, scores_to_ranks

REQUIRED = ("output", "shuffled_order", "subset", "tasktype", "subtype", "ctx_length")


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder contributes its ``*.jsonl`` files in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise InputError(f"no *.jsonl prediction files in folder {p}")
            # x.jsonl in the folder must be a file: a folder, FIFO or broken link there is named, not skipped
            out.extend(Path(require_regular_file(f)) for f in found)
        elif p.exists() or p.is_symlink():  # a FIFO, socket or broken link is named for what it is
            out.append(Path(require_regular_file(p)))
        else:
            raise InputError(f"prediction file not found: {p}")
    seen: set[Path] = set()
    for p in out:  # the same file twice (a folder and a file in it) would count every row twice
        key = p.resolve()
        if key in seen:
            raise InputError("given twice (directly or through its folder)", path=str(p))
        seen.add(key)
    return out


def _order(value, where: dict) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InputError("expected a list of integers", field="shuffled_order", **where)
    if sorted(value) != list(range(len(value))):
        raise InputError(f"{value} is not a permutation of 0..{len(value) - 1}", field="shuffled_order", **where)
    return value


def _bool(rec: dict, name: str, where: dict) -> bool:
    value = rec.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"expected true or false, got {type(value).__name__} {value!r}", field=name, **where)
    return value


def _count(rec: dict, name: str, where: dict) -> int:
    value = rec.get(name)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InputError(f"expected a non-negative integer, got {type(value).__name__} {value!r}",
                         field=name, **where)
    return value


def _subtype(value, tasktype: str, n: int, where: dict) -> str:
    if isinstance(value, bool) or not (value is None or isinstance(value, (str, int))):
        raise InputError(f"expected a string or an integer, got {type(value).__name__}", field="subtype", **where)
    if tasktype == "PairWise":
        # The reference keeps ``str(subtype)``: a null subtype becomes "None" and lands in Diff.
        return str(value)
    subtype = str(n) if value is None else str(value)
    if subtype != str(n):
        raise InputError(f"BestOfN subtype {value!r} disagrees with {n} shown positions", field="subtype", **where)
    return subtype


def _scores(output: list, n: int, where: dict) -> list[int] | None:
    if len(output) != n:
        raise InputError(f"{len(output)} scores for {n} shown answers", field="output", **where)
    for i, s in enumerate(output):
        if s is None or (isinstance(s, float) and math.isnan(s)):
            continue  # a missing score (RewardBench writes NaN/null): the item counts as unparsed
        if isinstance(s, bool) or not isinstance(s, (int, float)) or math.isinf(s):
            raise InputError(f"score {i} is {s!r}; expected a number (or null for a missing score)",
                             field="output", **where)
    return scores_to_ranks(output)


def judged_from_prediction(rec, *, parser: str = "reference", path: str | None = None,
                           line: int | None = None) -> Judged:
    where = {"path": path, "line": line}
    if not isinstance(rec, dict):
        raise InputError(f"expected a JSON object, got {type(rec).__name__}", **where)
    for name in REQUIRED:
        if name not in rec:
            raise InputError("missing required field", field=name, **where)
    tasktype = rec["tasktype"]
    if tasktype not in TASKTYPES:
        raise InputError(f"unknown tasktype {tasktype!r} (expected one of {', '.join(TASKTYPES)})",
                         field="tasktype", **where)
    order = _order(rec["shuffled_order"], where)
    if tasktype == "PairWise" and len(order) != 2:
        raise InputError(f"PairWise needs 2 positions, got {len(order)}", field="shuffled_order", **where)
    if tasktype == "BestOfN" and len(order) < 2:
        raise InputError(f"BestOfN needs at least 2 candidates, got {len(order)}", field="shuffled_order", **where)
    subtype = _subtype(rec["subtype"], tasktype, len(order), where)
    if rec["ctx_length"] not in LENGTH_BUCKETS:
        raise InputError(f"unknown length bucket {rec['ctx_length']!r} ({', '.join(LENGTH_BUCKETS)})",
                         field="ctx_length", **where)
    if not isinstance(rec["subset"], str) or not rec["subset"]:
        raise InputError("expected a config name", field="subset", **where)
    output = rec["output"]
    if isinstance(output, list):
        predicted = _scores(output, len(order), where)
    elif output is None or isinstance(output, str):
        predicted = parse_judgment(output, "rank" if tasktype == "BestOfN" else "pair", len(order), parser)
    else:
        raise InputError(f"expected judge text or a list of scores, got {type(output).__name__}",
                         field="output", **where)
    id_field = "id" if rec.get("id") is not None else "index"
    item_id = rec.get(id_field)
    if item_id is not None and (isinstance(item_id, bool) or not isinstance(item_id, (str, int))):
        raise InputError(f"expected a string or an integer, got {type(item_id).__name__}", field=id_field, **where)
    protocol = rec.get("protocol")
    if protocol is not None and (not isinstance(protocol, str) or not protocol):
        raise InputError("expected a protocol name such as 'paper'", field="protocol", **where)
    return Judged(
        config=rec["subset"], item_id=f"{path}:{line}" if item_id is None else str(item_id),
        tasktype=tasktype, subtype=subtype, length=rec["ctx_length"], true_ranks=order,
        predicted=predicted, truncated_tokens=_count(rec, "truncated_tokens", where),
        skipped=_bool(rec, "skipped", where), protocol=protocol, overlong=_bool(rec, "overlong", where),
        short_budget=_bool(rec, "short_budget", where), thinking=_bool(rec, "thinking", where),
    )


class _Duplicates:
    """Each (subset, id) item may be shown once per order, and all its rows must describe one item."""

    def __init__(self):
        self.shown: dict[tuple, str] = {}
        self.items: dict[tuple, tuple[tuple, str]] = {}

    def check(self, row: Judged, path: str, line: int) -> None:
        here = f"{path}:{line}"
        if row.item_id == here:  # no id: nothing to pair it with
            return
        key = (row.config, row.item_id)
        shown = (*key, tuple(row.true_ranks))
        if shown in self.shown:
            raise InputError(f"item {row.item_id!r} of {row.config} shown in order {row.true_ranks} again "
                             f"(first at {self.shown[shown]}); remove the repeated row", path=path, line=line,
                             field="id")
        self.shown[shown] = here
        what = (row.tasktype, row.subtype, row.length, len(row.true_ranks))
        if key in self.items and self.items[key][0] != what:
            first, at = self.items[key]
            raise InputError(f"item {row.item_id!r} of {row.config} is {what[:3]} here but {first[:3]} at {at}: "
                             "two different items share one id", path=path, line=line, field="id")
        self.items.setdefault(key, (what, here))


def read_predictions(paths: Iterable[str | os.PathLike], parser: str = "reference") -> Iterator[Judged]:
    duplicates = _Duplicates()
    for path in expand_paths(paths):
        rows = 0
        # NaN in ``output`` is RewardBench's missing score (see `_scores`); anywhere else it is refused.
        for lineno, rec in iter_jsonl(path, allow_non_finite=("output",)):
            row = judged_from_prediction(rec, parser=parser, path=str(path), line=lineno)
            duplicates.check(row, str(path), lineno)
            rows += 1
            yield row
        if rows == 0:
            raise InputError("no predictions in this file (it is empty)", path=str(path))
