"""Read per-item prediction files (the reference evaluator's output format) into `Judged` rows.

One JSON object per line with ``output`` (the judge's text, or a list of
scalar scores in shown order), ``shuffled_order``, ``subset``, ``tasktype``,
``subtype`` and ``ctx_length`` — what LCM-Lab's evaluator writes to
``{subset}.jsonl`` — optionally ``id``/``index`` (to regroup the orders of one
item), ``truncated_tokens`` and ``skipped`` (written by our own runners).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from longrm_tasks.data.schema import LENGTH_BUCKETS, TASKTYPES
from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl
from longrm_tasks.metrics import Judged
from longrm_tasks.verdicts import parse_judgment, scores_to_ranks

REQUIRED = ("output", "shuffled_order", "subset", "tasktype", "subtype", "ctx_length")


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder contributes its ``*.jsonl`` files in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise InputError(f"no *.jsonl prediction files in folder {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"prediction file not found: {p}")
    return out


def _order(value, where: dict) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InputError("expected a list of integers", field="shuffled_order", **where)
    if sorted(value) != list(range(len(value))):
        raise InputError(f"{value} is not a permutation of 0..{len(value) - 1}", field="shuffled_order", **where)
    return value


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
    if rec["ctx_length"] not in LENGTH_BUCKETS:
        raise InputError(f"unknown length bucket {rec['ctx_length']!r} ({', '.join(LENGTH_BUCKETS)})",
                         field="ctx_length", **where)
    if not isinstance(rec["subset"], str) or not rec["subset"]:
        raise InputError("expected a config name", field="subset", **where)
    output = rec["output"]
    if isinstance(output, list):
        if len(output) != len(order):
            raise InputError(f"{len(output)} scores for {len(order)} shown answers", field="output", **where)
        predicted = scores_to_ranks(output)
    elif output is None or isinstance(output, str):
        predicted = parse_judgment(output, "rank" if tasktype == "BestOfN" else "pair", len(order), parser)
    else:
        raise InputError(f"expected judge text or a list of scores, got {type(output).__name__}",
                         field="output", **where)
    item_id = rec.get("id", rec.get("index"))
    truncated = rec.get("truncated_tokens") or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise InputError("expected a non-negative integer", field="truncated_tokens", **where)
    return Judged(
        config=rec["subset"], item_id=f"{path}:{line}" if item_id is None else str(item_id),
        tasktype=tasktype, subtype=str(rec["subtype"]), length=rec["ctx_length"], true_ranks=order,
        predicted=predicted, truncated_tokens=truncated, skipped=bool(rec.get("skipped", False)),
    )


def read_predictions(paths: Iterable[str | os.PathLike], parser: str = "reference") -> Iterator[Judged]:
    for path in expand_paths(paths):
        for lineno, rec in iter_jsonl(path):
            yield judged_from_prediction(rec, parser=parser, path=str(path), line=lineno)
