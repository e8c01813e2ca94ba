"""Long-RewardBench items -> RewardBench 1 (pairs) and RewardBench 2 (best-of-N) records.

What RewardBench 0.1.4 accepts (checked against its own loaders, see
tests/adapters/rewardbench/test_rewardbench_isolated_env.py):

- ``rewardbench --dataset FILE --load_json`` reads FILE with
  ``rewardbench.utils.load_and_process_dataset``. With current ``datasets``
  (>= 4, what pip resolves) the only layout it loads is ``chosen`` and
  ``rejected`` as *whole conversations* ending in the assistant answer: a
  string ``prompt`` with string ``chosen``/``rejected`` (the hub core set's
  layout) and a message-list ``prompt`` both crash in its
  ``process_preference_data``. It then rebuilds the prompt from
  ``chosen[:-1]``, ignores the roles and alternates user/assistant by
  position, asserting that the prompt ends on a user turn — so a leading
  system message would break it. We therefore fold system messages into the
  next user turn (blank-line join, the reference evaluator's own join), keep
  the long context whole, and also write ``prompt`` as text for people and
  tools that read the core-set layout.
- ``scripts/run_v2.py`` (RewardBench 2) reads a ``.jsonl`` with
  ``rewardbench.utils.load_bon_dataset_v2``: ``prompt`` is a string (one user
  turn), ``chosen``/``rejected`` are lists of answer strings, plus
  ``num_correct``, ``total_completions``, ``subset`` and ``id``.

Columns RewardBench does not know (``config``, ``tasktype``, ``subtype``,
``ctx_length``, ``source_id``, ``paper_order``) ride along: its CLI copies
them into its per-sample ``*_outputs.jsonl``, which lets ``score`` compute the
paper's metrics from RewardBench's own output. ``question`` and ``input`` are
never written: the loader would rename them to ``prompt``.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from longrm_tasks.data.schema import BON_SUBTYPES, CONFIGS, LENGTH_BUCKETS, TASKTYPES, Item
from longrm_tasks.errors import InputError, closest_name

RB1_FILE = "rewardbench1.jsonl"
RB2_FILE = "rewardbench2.jsonl"
MANIFEST_FILE = "manifest.json"
META_FIELDS = ("config", "tasktype", "subtype", "ctx_length", "source_id", "paper_order")
_BON_SUBSET = re.compile(r"^(?P<config>.+)/bon-(?P<n>\d+)$")


def rewardbench_id(item: Item) -> str:
    """Unique across configs (RewardBench mixes every subset in one file)."""
    return f"{item.config}/{item.id}"


def rewardbench_subset(item: Item) -> str:
    """RewardBench 1: the config (so its per-subset accuracy is the paper's per-config column);
    RewardBench 2: ``Config/bon-N``."""
    return item.config if item.tasktype == "PairWise" else f"{item.config}/bon-{item.n}"


def rewardbench_messages(messages: Sequence[dict]) -> list[dict[str, str]]:
    """A prompt RewardBench's loader turns back into the same turns: user first, alternating, user last.

    System messages are folded into the following turn and adjacent turns of one
    role are merged, both with a blank line (how the reference evaluator joins
    the prompt). A shape that still does not alternate becomes one user turn.
    """
    out: list[dict[str, str]] = []
    pending: list[str] = []
    for m in messages:
        if m["role"] == "system":
            pending.append(m["content"])
            continue
        content = "\n\n".join(pending + [m["content"]])
        pending = []
        if out and out[-1]["role"] == m["role"]:
            out[-1]["content"] += "\n\n" + content
        else:
            out.append({"role": m["role"], "content": content})
    if pending:  # system text after the last turn (or nothing but system messages)
        out.append({"role": "user", "content": "\n\n".join(pending)})
    roles = [m["role"] for m in out]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(out))]
    if roles != expected or roles[-1] != "user":
        return [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
    return out


def _meta(item: Item) -> dict:
    return {"config": item.config, "tasktype": item.tasktype, "subtype": item.subtype,
            "ctx_length": item.length, "source_id": item.id, "paper_order": item.paper_order}


def rewardbench1_record(item: Item) -> dict:
    """A PairWise item as a RewardBench 1 record (``rewardbench --dataset FILE --load_json``)."""
    if item.tasktype != "PairWise":
        raise ValueError(f"{item.config}/{item.id}: RewardBench 1 records are pairs, got {item.tasktype}")
    turns = rewardbench_messages(item.prompt_template)
    chosen, rejected = item.answers
    return {
        "prompt": item.judge_question,
        "chosen": turns + [{"role": "assistant", "content": chosen}],
        "rejected": turns + [{"role": "assistant", "content": rejected}],
        "subset": rewardbench_subset(item),
        "id": rewardbench_id(item),
        **_meta(item),
    }


def rewardbench2_record(item: Item) -> dict:
    """A BestOfN item as a RewardBench 2 record: the best candidate chosen, the rest rejected (best -> worst)."""
    if item.tasktype != "BestOfN":
        raise ValueError(f"{item.config}/{item.id}: RewardBench 2 records come from BestOfN items, got {item.tasktype}")
    return {
        "prompt": item.judge_question,
        "chosen": [item.answers[0]],
        "rejected": list(item.answers[1:]),
        "num_correct": 1,
        "total_completions": item.n,
        "subset": rewardbench_subset(item),
        "id": rewardbench_id(item),
        **_meta(item),
    }


# ---------------------------------------------------------------- schema checks

def _fail(msg: str, where: dict, field: str | None = None):
    raise InputError(msg, field=field, **where)


def _check_common(rec, where: dict) -> None:
    if not isinstance(rec, dict):
        _fail(f"expected a JSON object, got {type(rec).__name__}", where)
    for name in ("prompt", "subset", "id"):
        if not isinstance(rec.get(name), str) or not rec[name]:
            _fail("expected a non-empty string", where, name)
    for name in ("question", "input"):  # RewardBench's loader would rename these to `prompt`
        if name in rec:
            _fail("must not be present (RewardBench renames it to 'prompt')", where, name)


def check_rewardbench1(rec, *, path: str | None = None, line: int | None = None) -> None:
    """What ``load_and_process_dataset`` needs: two conversations with one shared prompt that
    alternates user/assistant from a user turn to a user turn, each ending in an assistant answer."""
    where = {"path": path, "line": line}
    _check_common(rec, where)
    convs = {}
    for name in ("chosen", "rejected"):
        conv = rec.get(name)
        if (not isinstance(conv, list) or len(conv) < 2 or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in conv)):
            _fail("expected a conversation: a list of at least 2 {role, content} messages", where, name)
        roles = [m["role"] for m in conv]
        if roles != ["user" if i % 2 == 0 else "assistant" for i in range(len(conv))] or roles[-1] != "assistant":
            _fail(f"roles {roles} must alternate user/assistant from user and end with the assistant answer",
                  where, name)
        convs[name] = conv
    if convs["chosen"][:-1] != convs["rejected"][:-1]:
        _fail("chosen and rejected must share the prompt turns", where, "rejected")


def check_rewardbench2(rec, *, path: str | None = None, line: int | None = None) -> None:
    """What ``load_bon_dataset_v2`` and ``reroll_and_score_dataset`` need."""
    where = {"path": path, "line": line}
    _check_common(rec, where)
    for name in ("chosen", "rejected"):
        value = rec.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            _fail("expected a non-empty list of answer strings", where, name)
    for name in ("num_correct", "total_completions"):
        if not isinstance(rec.get(name), int) or isinstance(rec[name], bool):
            _fail("expected an integer", where, name)
    if rec["num_correct"] != len(rec["chosen"]):
        _fail(f"{rec['num_correct']} but {len(rec['chosen'])} chosen answers", where, "num_correct")
    n = len(rec["chosen"]) + len(rec["rejected"])
    if rec["total_completions"] != n:
        _fail(f"{rec['total_completions']} but {n} answers", where, "total_completions")
    m = _BON_SUBSET.match(rec["subset"])
    if m is None or int(m["n"]) != n:
        _fail(f"expected 'Config/bon-{n}', got {rec['subset']!r}", where, "subset")


# ---------------------------------------------------------------- selection

def parse_filter(option: str, raw: str | None, known: Sequence[str]) -> list[str] | None:
    """Comma-separated values of ``option``, each one of ``known`` (exact spelling), or None when not given.

    A value nobody has (``pairwise``, ``4K``) would match nothing and export an
    empty file set, so it is an error naming the closest known value.
    """
    if raw is None:
        return None
    values = [v.strip() for v in str(raw).split(",") if v.strip()]
    if not values:
        raise InputError("empty list of values", field=option)
    for value in values:
        if value not in known:
            guess = closest_name(value, known)
            hint = f"did you mean {guess!r}? " if guess else ""
            raise InputError(f"unknown value {value!r}; {hint}known: {', '.join(known)}", field=option)
    return values


def known_subtypes(items: Iterable[Item]) -> list[str]:
    """Subtypes a selection may name: ``same``, ``diff`` (every other pair subtype), the Best-of-N
    sizes, and every subtype the loaded items actually have."""
    seen = sorted({it.subtype for it in items} - {"same", "diff", *BON_SUBTYPES})
    return ["same", "diff", *BON_SUBTYPES, *seen]


def select_checked(bench, *, configs: str | None = None, tasktypes: str | None = None,
                   subtypes: str | None = None, lengths: str | None = None) -> list[Item]:
    """The PairWise/BestOfN items matching every filter; unknown filter values and an empty result are errors."""
    from longrm_tasks.data import select

    tasktypes_ = parse_filter("--tasktypes", tasktypes, TASKTYPES)
    lengths_ = parse_filter("--lengths", lengths, LENGTH_BUCKETS)
    subtypes_ = parse_filter("--subtypes", subtypes, known_subtypes(bench.items))
    configs_ = parse_filter("--configs", configs, CONFIGS)
    items = select(bench.items, configs=configs_, tasktypes=tasktypes_, subtypes=subtypes_, lengths=lengths_)
    if not items:
        given = ", ".join(f"--{name} {value}" for name, value in (("configs", configs), ("tasktypes", tasktypes),
                                                                  ("subtypes", subtypes), ("lengths", lengths))
                          if value)
        raise InputError(f"no items match {given or 'the selection'} among the {len(bench.items)} items of "
                         f"{bench.source}; nothing was exported", field="selection")
    return items


# ---------------------------------------------------------------- writing

@dataclass
class ExportSummary:
    out_dir: str
    files: dict[str, str] = field(default_factory=dict)  # rewardbench1 / rewardbench2 -> path
    counts: dict[str, int] = field(default_factory=dict)  # subset -> records
    renamed_ids: list[str] = field(default_factory=list)  # duplicate source ids made unique

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _unique_ids(items: Sequence[Item], renamed: list[str]) -> list[str]:
    """RewardBench ids, with ``@index`` appended where a source file repeats an id."""
    seen = Counter(rewardbench_id(it) for it in items)
    ids = []
    for it in items:
        rid = rewardbench_id(it)
        if seen[rid] > 1:
            rid = f"{rid}@{it.index}"
            renamed.append(rid)
        ids.append(rid)
    return ids


def read_export(out_dir: str | os.PathLike) -> dict[str, list[dict]]:
    """Both exported files (those present), each validated line by line."""
    from longrm_tasks.jsonl import iter_jsonl

    out: dict[str, list[dict]] = {}
    for key, name, check in (("rewardbench1", RB1_FILE, check_rewardbench1),
                             ("rewardbench2", RB2_FILE, check_rewardbench2)):
        path = Path(out_dir) / name
        if path.is_file():
            rows = []
            for lineno, rec in iter_jsonl(path):
                check(rec, path=str(path), line=lineno)
                rows.append(rec)
            out[key] = rows
    if not out:
        raise InputError(f"no {RB1_FILE} or {RB2_FILE} in {out_dir}", field="export")
    return out


def _prepare_out_dir(out: Path) -> None:
    """Create ``out`` (and parents) or fail in one line; nothing in it is touched."""
    if out.exists() and not out.is_dir():
        raise InputError("is a file, expected a folder for the export", path=str(out), field="--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the export folder ({err.strerror or err})", path=str(out),
                         field="--out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError("folder is not writable", path=str(out), field="--out")


def export_items(items: Sequence[Item], out_dir: str | os.PathLike, *, source: str = "") -> ExportSummary:
    """Write every PairWise item to ``rewardbench1.jsonl`` and every BestOfN item to
    ``rewardbench2.jsonl`` (a file only when it has records) plus ``manifest.json``.

    Validate before destroy: the new files are written and read back (each item
    exactly once) in a staging folder inside ``out_dir``; only then do they
    replace the previous export's files (one atomic rename each, the manifest
    last), and a file of the previous export that the new selection does not
    produce is removed. An error or a kill before that leaves the previous
    export as it was.
    """
    from longrm_tasks.atomic import write_json, write_jsonl

    if not items:
        raise InputError("no items to export; the previous export (if any) is left as it was", field="selection")
    out = Path(out_dir)
    _prepare_out_dir(out)
    summary = ExportSummary(out_dir=str(out))
    ids = _unique_ids(items, summary.renamed_ids)
    groups = {"rewardbench1": (RB1_FILE, "PairWise", rewardbench1_record),
              "rewardbench2": (RB2_FILE, "BestOfN", rewardbench2_record)}
    expected: Counter = Counter()
    staging = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=out))
    try:
        produced = []
        for key, (name, tasktype, build) in groups.items():
            records = []
            for it, rid in zip(items, ids):
                if it.tasktype == tasktype:
                    records.append(dict(build(it), id=rid))
                    expected[rid] += 1
            if records:
                write_jsonl(staging / name, records)
                produced.append(name)
                summary.files[key] = str(out / name)
            for rec in records:
                summary.counts[rec["subset"]] = summary.counts.get(rec["subset"], 0) + 1
        if sum(expected.values()) != len(items):
            raise InputError(f"{len(items) - sum(expected.values())} items are neither PairWise nor BestOfN")
        written = Counter(rec["id"] for rows in read_export(staging).values() for rec in rows)
        if written != expected:  # an internal invariant: every item exactly once
            raise RuntimeError(f"export mismatch: missing {sorted(expected - written)[:5]}, "
                               f"extra {sorted(written - expected)[:5]}")
        manifest = {"source": source, "items": len(items),
                    "files": {k: Path(v).name for k, v in summary.files.items()},
                    "counts": dict(sorted(summary.counts.items())), "renamed_ids": summary.renamed_ids}
        write_json(staging / MANIFEST_FILE, manifest)
        # The swap: every new file is complete; the manifest goes last and marks the export as whole.
        for name in produced:
            os.replace(staging / name, out / name)
        for name in (RB1_FILE, RB2_FILE):
            if name not in produced and (out / name).exists():
                (out / name).unlink()  # a stale file of an earlier, wider selection
        os.replace(staging / MANIFEST_FILE, out / MANIFEST_FILE)
    except OSError as err:  # a full disk in the staging folder: name the file the user will look for
        if err.filename and Path(err.filename).parent == staging:
            raise OSError(err.errno, err.strerror, str(out / Path(err.filename).name)) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
