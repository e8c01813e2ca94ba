"""Per-candidate scores -> RewardBench's numbers (its rules, its results JSON) and the paper's metrics.

Scoring rules, as RewardBench 0.1.4 implements them:

- RewardBench 1 (``rewardbench/rewardbench.py``, ``scripts/run_rm.py``): a pair
  is right iff ``chosen > rejected`` — a tie is wrong; a subset's value is the
  mean over its pairs.
- RewardBench 2 (``rewardbench/utils.py`` ``reroll_and_score_dataset``): with
  the scores in the order chosen first, then the rejected, an item scores
  ``1 / (number of scores equal to the maximum)`` if the first score is the
  maximum, else 0. So the chosen must outscore every rejected for full credit,
  and a tie at the top earns a share, not 0. A NaN anywhere scores 0 (NumPy's
  max propagates it). A subset's value is the mean.

Inputs (one or more files, formats may be mixed):

- RewardBench CLI per-sample output ``{model}_outputs.jsonl``, or any JSONL with
  ``id``, ``subset``, ``scores_chosen``, ``scores_rejected`` (numbers for a pair,
  lists for best-of-N);
- RewardBench 2 rows with ``scores`` (chosen first) and ``num_correct``;
- RewardBench scripts' column-oriented ``eval-set-scores/{model}.json``
  (``run_rm.py``, ``run_v2.py``);
- RewardBench CLI ``{model}_all.jsonl`` (``{"chosen": x, "rejected": y}`` in
  dataset order, no id): matched by position to ``--export DIR``;
- our prediction files: ``output`` = list of scalar scores in shown order plus
  ``shuffled_order`` (``longrm score``'s format).

The paper's metrics need each item's task type, subtype, length bucket and
shown order: our prediction rows carry them, RewardBench's outputs carry the
metadata columns ``export`` wrote, and ``--export DIR`` supplies them by id.
"""
from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from longrm_tasks.adapters.rewardbench.export import META_FIELDS, read_export
from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl
from longrm_tasks.paths import file_problem

MODEL_TYPES = ("Seq. Classifier", "Custom Classifier", "DPO", "DPO Ref. Free", "Generative", "Generative RM")
_RESULT_META = ("model", "model_type", "chat_template")


# ---------------------------------------------------------------- the two rules

def rewardbench1_result(chosen: float, rejected: float) -> int:
    """1 iff chosen strictly above rejected (a NaN compares False, so it scores 0)."""
    return 1 if chosen > rejected else 0


def rewardbench2_result(scores: Sequence[float]) -> float:
    """Chosen first: ``1/k`` if it is among the ``k`` scores tied for the maximum, else 0."""
    if any(math.isnan(s) for s in scores):
        return 0.0
    top = max(scores)
    return 1.0 / sum(s == top for s in scores) if scores[0] == top else 0.0


# ---------------------------------------------------------------- reading

@dataclass
class Scored:
    """One item's scores in true order: ``chosen`` (best first) then ``rejected`` (best -> worst)."""

    id: str | None
    subset: str | None
    chosen: list[float]
    rejected: list[float]
    meta: dict = field(default_factory=dict)
    where: str = ""
    # A RewardBench 1 pair (scalar chosen/rejected scores) rather than a best-of-N list.
    scalar_pair: bool = False
    prediction: dict | None = None  # our prediction row, scored for the paper exactly as `longrm score`

    @property
    def scores(self) -> list[float]:
        return self.chosen + self.rejected

    @property
    def pairwise(self) -> bool:
        """RewardBench 1 (a pair) or RewardBench 2 (best-of-N); the exported task type decides when known."""
        tasktype = self.meta.get("tasktype")
        return tasktype == "PairWise" if tasktype else self.scalar_pair


def _number(value, where: dict, name: str) -> float:
    if isinstance(value, list) and len(value) == 1:  # RewardBench 2 may store [score]
        value = value[0]
    if value is None:
        return math.nan  # RewardBench writes None for models that return no score; it can never win
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {type(value).__name__}", field=name, **where)
    return float(value)


def _numbers(value, where: dict, name: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise InputError("expected a non-empty list of numbers", field=name, **where)
    return [_number(v, where, name) for v in value]


def _meta_of(row: dict) -> dict:
    return {k: row[k] for k in META_FIELDS if row.get(k) is not None}


def _from_row(row, path: str, line: int | None) -> Scored:
    where = {"path": path, "line": line}
    loc = f"{path}:{line}" if line is not None else path
    if not isinstance(row, dict):
        raise InputError(f"expected a JSON object, got {type(row).__name__}", **where)
    if "output" in row and "shuffled_order" in row:
        return _from_prediction(row, where, loc)
    rid = None if row.get("id") is None else str(row["id"])
    subset = row.get("subset")
    if "scores_chosen" in row and "scores_rejected" in row:
        sc, sr = row["scores_chosen"], row["scores_rejected"]
        if isinstance(sc, list) or isinstance(sr, list):
            return Scored(rid, subset, _numbers(sc if isinstance(sc, list) else [sc], where, "scores_chosen"),
                          _numbers(sr if isinstance(sr, list) else [sr], where, "scores_rejected"), _meta_of(row), loc)
        return Scored(rid, subset, [_number(sc, where, "scores_chosen")], [_number(sr, where, "scores_rejected")],
                      _meta_of(row), loc, scalar_pair=True)
    if "scores" in row:
        scores = _numbers(row["scores"], where, "scores")
        k = row.get("num_correct", 1)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < len(scores):
            raise InputError(f"expected an integer in 1..{len(scores) - 1}", field="num_correct", **where)
        return Scored(rid, subset, scores[:k], scores[k:], _meta_of(row), loc)
    if "chosen" in row and "rejected" in row and rid is None:  # rewardbench --save_all: {model}_all.jsonl
        return Scored(None, None, [_number(row["chosen"], where, "chosen")],
                      [_number(row["rejected"], where, "rejected")], {}, loc, scalar_pair=True)
    raise InputError("no scores: expected scores_chosen + scores_rejected, scores (+ num_correct), "
                     "chosen + rejected, or output + shuffled_order", **where)


def _from_prediction(row: dict, where: dict, loc: str) -> Scored:
    from longrm_tasks.verdicts.predictions import judged_from_prediction

    judged_from_prediction(row, path=where["path"], line=where["line"])  # the same validation as `longrm score`
    shown = row["output"]
    if not isinstance(shown, list):
        raise InputError("expected a list of scalar scores in shown order (judge text has no scores)",
                         field="output", **where)
    order = row["shuffled_order"]
    true = [math.nan] * len(order)
    for position, rank in enumerate(order):
        true[rank] = _number(shown[position], where, "output")
    config = row["subset"]
    n = len(order)
    subset = config if row["tasktype"] == "PairWise" else f"{config}/bon-{n}"
    item_id = row.get("id", row.get("index"))
    rid = None if item_id is None else f"{config}/{item_id}"
    meta = {"config": config, "tasktype": row["tasktype"], "subtype": str(row["subtype"]),
            "ctx_length": row["ctx_length"], "shown_order": order}
    return Scored(rid, subset, true[:1], true[1:], meta, loc, scalar_pair=n == 2, prediction=row)


def _columns_to_rows(obj: dict, path: str) -> tuple[list[dict], dict]:
    """RewardBench scripts' ``eval-set-scores`` JSON: one list per column plus model/model_type/chat_template."""
    lists = {k: v for k, v in obj.items() if isinstance(v, list)}
    lengths = {len(v) for v in lists.values()}
    if not lists or len(lengths) != 1:
        raise InputError("expected RewardBench's column-oriented scores JSON (lists of one length)", path=path)
    n = lengths.pop()
    rows = [{k: v[i] for k, v in lists.items()} for i in range(n)]
    return rows, {k: obj[k] for k in _RESULT_META if isinstance(obj.get(k), str)}


def read_scores(paths: Iterable[str | os.PathLike]) -> tuple[list[Scored], dict]:
    """Every scored item of every file (folders contribute ``*.jsonl`` and ``*.json``), plus the
    model / model_type / chat_template found in RewardBench's own files."""
    found: dict = {}
    out: list[Scored] = []
    for p in map(Path, paths):
        files = sorted(list(p.glob("*.jsonl")) + list(p.glob("*.json"))) if p.is_dir() else [p]
        if not files:
            raise InputError(f"no *.jsonl / *.json score files in folder {p}")
        for f in files:
            if not f.is_file():  # a FIFO, folder or broken link is named for what it is (never opened)
                raise InputError(f"scores file not found: {f}" if file_problem(f) == "file not found"
                                 else file_problem(f), path=str(f))
            if f.suffix == ".json":
                try:
                    obj = json.loads(f.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise InputError(f"invalid JSON ({err})", path=str(f)) from None
                if not isinstance(obj, dict):
                    raise InputError("expected a JSON object", path=str(f))
                rows, meta = _columns_to_rows(obj, str(f))
                _check_same_model(found, meta, str(f))
                for k, v in meta.items():
                    found.setdefault(k, v)
                out.extend(_from_row(r, str(f), i + 1) for i, r in enumerate(rows))
            else:
                out.extend(_from_row(r, str(f), lineno) for lineno, r in iter_jsonl(f, allow_non_finite=True))
    _check_one_run(out)
    return out, found


def _check_same_model(found: dict, meta: dict, path: str) -> None:
    if "model" in meta and "model" in found and meta["model"] != found["model"]:
        raise InputError(f"scores of model {meta['model']!r}, but an earlier file holds {found['model']!r}: "
                         f"score one model per `longrm rewardbench score` call (models are never mixed)",
                         path=path)


def _check_one_run(scored: Sequence[Scored]) -> None:
    """Refuse files that score the same item: two models' (or two runs') scores would be mixed.

    One run may be split over files (pairs in ``{model}_outputs.jsonl``, best-of-N
    in ``run_v2``'s JSON) but then every item is in one file; the same item in two
    files is a second run, and averaging it in would produce numbers of no model
    (and, for the paper metrics, fake both-orders statistics).
    """
    file_of: dict[str, str] = {}
    for s in scored:
        if s.id is None:
            continue
        path = s.where.rsplit(":", 1)[0] if s.where.rsplit(":", 1)[-1].isdigit() else s.where
        first = file_of.setdefault(s.id, path)
        if first != path:
            raise InputError(f"item {s.id!r} is also scored in {first}: two runs (two models, or one model twice) "
                             f"cannot be mixed; score each with its own `longrm rewardbench score` call",
                             path=path)


# ---------------------------------------------------------------- joining with an export

def attach_export(scored: list[Scored], export_dir: str | os.PathLike) -> list[str]:
    """Fill id / subset / metadata from ``export``'s files; rows without id (``{model}_all.jsonl``)
    are matched by position to ``rewardbench1.jsonl``. Returns the ids of exported items with no score."""
    exported = read_export(export_dir)
    by_id = {rec["id"]: rec for rows in exported.values() for rec in rows}
    anonymous = [s for s in scored if s.id is None]
    if anonymous:
        pairs = exported.get("rewardbench1", [])
        if len(anonymous) != len(pairs):
            raise InputError(f"{len(anonymous)} score rows without id but {len(pairs)} records in the exported "
                             f"rewardbench1.jsonl (rows without id are matched by position; was --debug used?)",
                             path=anonymous[0].where.rsplit(":", 1)[0])
        for s, rec in zip(anonymous, pairs):
            s.id = rec["id"]
    for s in scored:
        rec = by_id.get(s.id)
        if rec is None:
            raise InputError(f"id {s.id!r} is not in the export {export_dir}", path=s.where)
        n = len(s.scores)
        if n != (2 if "num_correct" not in rec else rec["total_completions"]):
            raise InputError(f"{n} scores for an exported item with {rec.get('total_completions', 2)} answers",
                             path=s.where)
        s.subset = s.subset or rec["subset"]
        s.meta = {**_meta_of(rec), **s.meta}
    return sorted(set(by_id) - {s.id for s in scored})


# ---------------------------------------------------------------- results

@dataclass
class Results:
    rewardbench: dict  # RewardBench's results-JSON layout
    counts: dict  # subset -> items
    paper: dict | None  # compute_metrics(...) or None when metadata is missing
    duplicates: int = 0
    missing: list[str] = field(default_factory=list)
    no_paper_reason: str = ""


def _subset_of(s: Scored) -> str:
    if s.subset:
        return str(s.subset)
    raise InputError("no subset: pass --export DIR so ids can be matched to their subsets", path=s.where)


def _paper_rows(scored: Sequence[Scored]):
    """`Judged` rows for the paper metrics: each item shown in its recorded order (ours) or its
    paper order (RewardBench's outputs / the export), scores -> ranks with ties keeping the earlier position."""
    from longrm_tasks.metrics.benchmark import Judged
    from longrm_tasks.verdicts.predictions import judged_from_prediction
    from longrm_tasks.verdicts.parsing import scores_to_ranks

    rows = []
    for s in scored:
        if s.prediction is not None:
            path, _, line = s.where.rpartition(":")
            rows.append(judged_from_prediction(s.prediction, path=path, line=int(line)))
            continue
        order = s.meta.get("paper_order")
        if not order or any(k not in s.meta for k in ("config", "tasktype", "subtype", "ctx_length")):
            return None
        true = s.scores
        shown = [true[o] for o in order]
        rows.append(Judged(config=s.meta["config"], item_id=str(s.meta.get("source_id", s.id)),
                           tasktype=s.meta["tasktype"], subtype=str(s.meta["subtype"]), length=s.meta["ctx_length"],
                           true_ranks=list(order), predicted=scores_to_ranks(shown)))
    return rows


def score(scored: list[Scored], *, model: str, model_type: str = "Seq. Classifier",
          chat_template: str | None = "tokenizer") -> Results:
    """RewardBench's per-subset values (one item counted once) and, where possible, the paper's metrics."""
    from longrm_tasks.metrics.benchmark import compute_metrics

    first: OrderedDict[str, Scored] = OrderedDict()
    duplicates = 0
    for i, s in enumerate(scored):
        key = s.id if s.id is not None else f"#{i}"
        if key in first:
            duplicates += 1  # e.g. the same item shown in both orders: scored alone, so one RewardBench result
            continue
        first[key] = s
    per_subset: dict[str, list[float]] = {}
    for s in first.values():
        if s.pairwise:
            if len(s.scores) != 2:
                raise InputError(f"a pair needs 2 scores, got {len(s.scores)}", path=s.where)
            result = float(rewardbench1_result(s.chosen[0], s.rejected[0]))
        else:
            result = rewardbench2_result(s.scores)
        per_subset.setdefault(_subset_of(s), []).append(result)
    values = {k: sum(v) / len(v) for k, v in sorted(per_subset.items())}
    clash = set(values) & set(_RESULT_META)
    if clash:
        raise InputError(f"subset name(s) {sorted(clash)} collide with RewardBench's result keys")
    rb = {"model": model, "model_type": model_type, "chat_template": chat_template, **values}
    # Each RewardBench row counts once for the paper metrics too (as above); our prediction rows
    # carry their shown order, so an item shown in both orders is two presentations, both kept.
    kept = {id(s) for s in first.values()}
    rows = _paper_rows([s for s in scored if s.prediction is not None or id(s) in kept])
    # Orders as shown: our predictions record theirs; RewardBench's outputs are scored in the paper's order.
    orders = "paper" if all(s.prediction is None for s in scored) else None
    paper = compute_metrics(rows, orders=orders) if rows else None
    reason = "" if rows else ("the scores carry no task type / subtype / length / order: "
                              "pass --export DIR (the folder `longrm rewardbench export` wrote)")
    return Results(rb, {k: len(v) for k, v in sorted(per_subset.items())}, paper, duplicates,
                   no_paper_reason=reason)


def results_json(results: Results) -> str:
    """As RewardBench's ``save_to_hub`` writes ``results/eval-set/{model}.json``."""
    return json.dumps(results.rewardbench, indent=4, sort_keys=True)
