"""Read lm-eval output of our tasks as report runs (lm-eval's JSON files only: no lm-eval import).

lm-eval writes ``OUT/<model>/results_<date>.json`` per run and, with
``--log_samples``, ``samples_<task>_<date>.jsonl`` next to it. A folder may hold
several runs (several dates, several models): each results file is one run
per judge it holds, and none is silently left out.

With samples, every logged presentation becomes a prediction row of the
reference evaluator's format (``output`` = the judge's text or the scores in
shown order, ``shuffled_order``, ``subset``, ``tasktype``, ``subtype``,
``ctx_length``, ``id``, ``truncated_tokens``, ``skipped``) and is scored by the
core exactly as ``longrm score`` scores a prediction file, so the two always
agree. Rows are checked against lm-eval's own ``n-samples`` count per task:
a samples file that lost lines is an error, not a different AVG. Without
samples, the numbers are read back from the results JSON (paper keys;
``extra`` only as far as lm-eval kept it).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from longrm_tasks.data.provenance import Provenance
from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl
from longrm_tasks.paths import require_regular_file
from longrm_tasks.metrics.benchmark import compute_metrics
from longrm_tasks.verdicts.predictions import judged_from_prediction
from longrm_tasks.report.layout import JUDGE_KINDS, Run
from longrm_tasks.report.names import label
from longrm_tasks.verdicts.parsing import PARSERS

TASK_PREFIX = "long_rewardbench"
JUDGE_ORDER = ("generative", "loglikelihood", "reward")
GROUPS = {"long_rewardbench": "generative", "long_rewardbench_ll": "loglikelihood", "long_rewardbench_rm": "reward"}
_DATE = r"(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)"
_RESULTS = re.compile(rf"results_{_DATE}\.json$")
_ANY_RESULTS = re.compile(rf"_{_DATE}\.json$")  # lm-eval --output_path x.json writes x_<date>.json


def ours(task: str) -> bool:
    return task == TASK_PREFIX or task.startswith(TASK_PREFIX + "_")


def judge_of_task(task: str) -> str:
    for prefix, judge in (("long_rewardbench_ll", "loglikelihood"), ("long_rewardbench_rm", "reward")):
        if task == prefix or task.startswith(prefix + "_"):
            return judge
    return "generative"


def _date(path: Path) -> str | None:
    m = _ANY_RESULTS.search(path.name)
    return m.group("date") if m else None


def find_results(path: Path) -> list[Path]:
    """Every lm-eval results file at ``path`` (a results JSON, or a folder searched recursively), oldest first."""
    if path.is_file():
        return [path] if _date(path) or path.suffix == ".json" else []
    if not path.is_dir():
        return []
    return sorted(path.rglob("results_*.json"), key=lambda p: (_date(p) or "", str(p)))


def read_json(path: Path) -> dict:
    require_regular_file(path)  # a FIFO named results_*.json would block the read: named instead
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a JSON file ({err})", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object (lm-eval results)", path=str(path))
    return data


def is_lm_eval_results(data: dict) -> bool:
    return isinstance(data.get("results"), dict) and "configs" in data


def sample_files(results_path: Path) -> dict[str, Path]:
    """``{task: samples file}`` of our tasks written with ``results_path`` (same date stamp)."""
    date = _date(results_path)
    if date is None:
        return {}
    suffix = f"_{date}.jsonl"
    return {p.name[len("samples_"):-len(suffix)]: p
            for p in sorted(results_path.parent.glob(f"samples_{TASK_PREFIX}*{suffix}"))}


def prediction_row(sample: dict, *, path: str | None = None, line: int | None = None) -> dict:
    """One logged lm-eval sample of our tasks -> a prediction row (reference format + our fields).

    ``protocol`` comes from the doc; ``overlong``, ``short_budget`` and ``thinking``
    from the doc or, as they are decided at run time (a reward model finding an
    item beyond its context, a generation given less than its budget, a thinking
    block), from the record our metrics logged. An over-long presentation's
    output is None: what lm-eval logged for it is a placeholder (a 1-token
    generation, ``-inf`` rewards), not a verdict.
    """
    doc = sample.get("doc")
    if not isinstance(doc, dict) or "judge" not in doc or "order" not in doc:
        raise InputError("not a Long-RewardBench sample (no 'doc' with 'judge' and 'order')", path=path, line=line,
                         field="doc")
    logged = _record(sample) or {}
    flags = {name: _flag(doc.get(name), logged.get(name), name, path, line)
             for name in ("overlong", "short_budget", "thinking")}
    _check_doc_types(doc, path, line)
    resps = sample.get("filtered_resps")
    if doc.get("skipped") or flags["overlong"]:
        output = None  # never judged: skipped is not scored, over-long is scored wrong
    elif not isinstance(resps, list) or not resps:
        # lm-eval logs the judged answer(s) of every sample; without them a hand-edited line would
        # silently count as "no verdict"
        got = "missing" if resps is None else f"got {type(resps).__name__} {resps!r:.100}"
        raise InputError(f"expected the judge's answers as a non-empty list, {got}", path=path, line=line,
                         field="filtered_resps")
    elif doc["judge"] == "generative":
        output = resps[0]
        if not isinstance(output, str):
            raise InputError(f"expected the generated text (a string), got {type(output).__name__} {output!r:.100}",
                             path=path, line=line, field="filtered_resps")
    else:  # one (log-likelihood or reward, is_greedy) per shown answer; lm-eval logs them as strings
        try:
            output = [float(r[0] if isinstance(r, list) else r) for r in resps]
        except (TypeError, ValueError):
            raise InputError(f"expected one (score, is_greedy) pair per answer, got {resps!r:.200}", path=path,
                             line=line, field="filtered_resps") from None
    try:
        return {"output": output, "shuffled_order": list(doc["order"]), "subset": doc["config"],
                "tasktype": doc["tasktype"], "subtype": doc["subtype"], "ctx_length": doc["length"],
                "id": doc["id"], "truncated_tokens": int(doc.get("truncated_tokens", 0)),
                "skipped": bool(doc.get("skipped", False)), **flags,
                "judge": doc["judge"], "parser": doc.get("parser", "reference"), "orders": doc.get("orders"),
                "protocol": doc.get("protocol"), "presentation": doc.get("presentation", 0)}
    except KeyError as err:
        raise InputError("missing field in a Long-RewardBench sample", path=path, line=line,
                         field=f"doc.{err.args[0]}") from None


def _check_doc_types(doc: dict, path: str | None, line: int | None) -> None:
    """The doc fields a hand edit could turn into something Python would still take (``list("AB")``,
    ``bool("no")``): refused with file:line:field rather than scored as something else."""
    order = doc.get("order")
    if not isinstance(order, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in order):
        raise InputError(f"expected a list of answer positions, got {order!r:.100}", path=path, line=line,
                         field="doc.order")
    if "skipped" in doc and not isinstance(doc["skipped"], bool):
        raise InputError(f"expected true or false, got {type(doc['skipped']).__name__} {doc['skipped']!r}",
                         path=path, line=line, field="doc.skipped")
    if doc.get("judge") not in JUDGE_ORDER:
        raise InputError(f"unknown judge {doc.get('judge')!r} (expected one of {', '.join(JUDGE_ORDER)})",
                         path=path, line=line, field="doc.judge")
    if doc.get("parser", "reference") not in PARSERS:
        raise InputError(f"unknown verdict parser {doc.get('parser')!r} (expected one of {', '.join(PARSERS)})",
                         path=path, line=line, field="doc.parser")
    presentation = doc.get("presentation", 0)
    if not isinstance(presentation, int) or isinstance(presentation, bool):
        raise InputError(f"expected a whole number, got {type(presentation).__name__} {presentation!r:.100}",
                         path=path, line=line, field="doc.presentation")
    if doc.get("orders") is not None and not isinstance(doc["orders"], str):
        raise InputError(f"expected an order scheme name, got {type(doc['orders']).__name__} {doc['orders']!r:.100}",
                         path=path, line=line, field="doc.orders")
    tokens = doc.get("truncated_tokens", 0)
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise InputError(f"expected a whole number, got {type(tokens).__name__} {tokens!r:.100}", path=path,
                         line=line, field="doc.truncated_tokens")


def _flag(in_doc, in_record, name: str, path: str | None, line: int | None) -> bool:
    """A run-time flag: true when the doc or the logged record says so (strict bools, as `longrm score` reads)."""
    for where, value in (("doc", in_doc), ("AVG", in_record)):
        if value is not None and not isinstance(value, bool):
            raise InputError(f"expected true or false, got {type(value).__name__} {value!r}", path=path, line=line,
                             field=f"{where}.{name}")
    return bool(in_doc) or bool(in_record)


@dataclass
class Logged:
    """One sample line: its task, lm-eval doc index, prediction row and the record lm-eval scored."""

    task: str
    doc_id: object
    row: dict
    record: dict | None
    path: str
    line: int


def _record(sample: dict) -> dict | None:
    """The per-presentation record our metrics logged (the same dict under every metric name)."""
    value = sample.get("AVG")
    return value if isinstance(value, dict) else None


def iter_logged(files: dict[str, Path]) -> Iterator[Logged]:
    for task, file in files.items():
        for line, sample in iter_jsonl(file, allow_non_finite=True):  # lm-eval logs NaN scores
            if not isinstance(sample, dict):
                raise InputError("expected a JSON object (an lm-eval sample)", path=str(file), line=line)
            yield Logged(task, sample.get("doc_id", line), prediction_row(sample, path=str(file), line=line),
                         _record(sample), str(file), line)


def check_counts(logged: list[Logged], results: dict, results_path: Path) -> None:
    """Every task's logged rows must be as many as lm-eval evaluated (``n-samples``); else nothing is reported."""
    expected = results.get("n-samples", {})
    seen = Counter(entry.task for entry in logged)
    for task, n in sorted(seen.items()):
        info = expected.get(task)
        if not isinstance(info, dict):
            continue  # an lm-eval without n-samples: nothing to check against
        want = info.get("effective", info.get("original"))
        if isinstance(want, int) and want != n:
            raise InputError(f"task {task}: the samples file has {n} rows but lm-eval evaluated {want} "
                             f"(n-samples): it is incomplete or from another run; numbers from it would differ "
                             f"from lm-eval's. Re-run with --log_samples, or report lm-eval's own numbers "
                             f"with --no-samples", path=str(results_path))


def collect_rows(logged: list[Logged]) -> tuple[dict[str, list[Logged]], list[str]]:
    """Rows per judge, each presentation once, and nothing lost when two items share an id.

    Overlapping tasks (a group and its config slices) log the same
    presentation several times; within one task, every line is its own
    presentation, even when two items share an id. So rows are keyed by
    (config, id, presentation, order) and each key keeps as many rows as the
    task that logged it most often. A line repeated within one task (same
    lm-eval doc index) is a true duplicate: counted, reported, read once.
    """
    warnings: list[str] = []
    by_task: dict[tuple[str, str], dict[tuple, list[Logged]]] = {}
    seen_docs: Counter = Counter()
    for entry in logged:
        seen_docs[(entry.task, str(entry.doc_id))] += 1
        if seen_docs[(entry.task, str(entry.doc_id))] > 1:
            continue
        r = entry.row
        key = (r["subset"], str(r["id"]), r["presentation"], tuple(r["shuffled_order"]))
        by_task.setdefault((r["judge"], entry.task), {}).setdefault(key, []).append(entry)
    repeated = {k: n for k, n in seen_docs.items() if n > 1}
    if repeated:
        (task, doc), n = next(iter(repeated.items()))
        warnings.append(f"{sum(n - 1 for n in repeated.values())} repeated sample lines read once "
                        f"(e.g. task {task} doc {doc}, {n} times)")
    by_judge: dict[str, dict[tuple, list[Logged]]] = {}
    for (judge, _task), keyed in by_task.items():
        best = by_judge.setdefault(judge, {})
        for key, entries in keyed.items():
            if len(entries) > len(best.get(key, ())):
                best[key] = entries
    out: dict[str, list[Logged]] = {}
    for judge, keyed in by_judge.items():
        out[judge] = [e for entries in keyed.values() for e in entries]
        per_presentation = Counter(key[:3] for key, entries in keyed.items() for _ in entries)
        shared = sorted({key[:2] for key, n in per_presentation.items() if n > 1})
        if shared:
            config, rid = shared[0]
            warnings.append(f"{len(shared)} ids are shared by more than one item (e.g. {config} id {rid!r}): "
                            f"every item is scored, but both-orders statistics pair presentations by id")
    return out, warnings


def _judged(entry: Logged):
    r = entry.row
    row = judged_from_prediction(r, parser=r["parser"], path=entry.path, line=entry.line)
    for flag in ("overlong", "short_budget", "thinking"):  # decided at run time: read what lm-eval logged
        value = (entry.record or {}).get(flag, r.get(flag))
        if value is not None and hasattr(row, flag):
            setattr(row, flag, bool(value))
    return row


def metrics_from_logged(entries: list[Logged]) -> dict:
    rows = [e.row for e in entries]
    parser = rows[0]["parser"] if rows else "reference"
    return compute_metrics([_judged(e) for e in entries], parser=parser,
                           orders=rows[0].get("orders") if rows else None)


def _widest_task(names) -> str:
    return sorted(names, key=lambda n: (n not in GROUPS and not n.endswith("_all"), n))[0]


def metrics_from_results(results: dict, tasks: list[str]) -> dict:
    """Paper metrics of the widest of ``tasks`` in a results JSON (a group or ``*_all`` first)."""
    table = {**results.get("results", {}), **results.get("groups", {})}
    best = _widest_task(tasks)
    metrics: dict = {}
    extra: dict = {}
    for key, value in table.get(best, {}).items():
        name, _, _filter = key.partition(",")
        if not _filter or name.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if name.startswith("extra/"):
            field = name[len("extra/"):]
            if field in ("bestofn_exact_match", "bestofn_top1"):
                extra[field] = {"Rank Avg": value}
            elif field == "consistent_accuracy":
                if not math.isnan(value):
                    extra["both_orders"] = {"consistent_accuracy": value}
            else:
                extra[field] = value
        else:
            metrics[name] = value
    metrics["extra"] = extra
    return metrics


def run_settings(results: dict, tasks: list[str], entries: list[Logged]) -> tuple[str | None, Provenance | None, dict]:
    """Protocol, data provenance and options of a run, from the task configs' ``metadata.longrm``."""
    configs = results.get("configs", {})
    meta = {}
    for task in sorted(tasks, key=lambda n: n != _widest_task(tasks)):
        found = ((configs.get(task) or {}).get("metadata") or {}).get("longrm")
        if isinstance(found, dict):
            meta = found
            break
    settings = {k: v for k, v in meta.items() if k != "data"}
    doc = entries[0].row if entries else {}
    for key, doc_key in (("protocol", "protocol"), ("order", "orders"), ("parser", "parser")):
        if settings.get(key) is None and doc.get(doc_key) is not None:
            settings[key] = doc[doc_key]
    return settings.get("protocol"), Provenance.from_dict(meta.get("data")), settings


def _model_name(results: dict, results_path: Path) -> str:
    return str(results.get("model_name") or results.get("config", {}).get("model_args") or results_path.parent.name)


def runs_from_results(results_path: Path, use_samples: bool = True) -> list[Run]:
    """One `Run` per judge in one lm-eval results file (empty when it holds none of our tasks)."""
    results = read_json(results_path)
    if not is_lm_eval_results(results):
        return []
    tasks = [name for name in {**results.get("results", {}), **results.get("groups", {})} if ours(name)]
    if not tasks:
        return []
    model = _model_name(results, results_path)
    files = sample_files(results_path) if use_samples else {}
    runs = []
    if files:
        logged = list(iter_logged(files))
        check_counts(logged, results, results_path)
        by_judge, warnings = collect_rows(logged)
        for judge in [j for j in JUDGE_ORDER if j in by_judge] + sorted(set(by_judge) - set(JUDGE_ORDER)):
            entries = by_judge[judge]
            judge_tasks = [t for t in tasks if judge_of_task(t) == judge] or tasks
            protocol, provenance, settings = run_settings(results, judge_tasks, entries)
            kind = JUDGE_KINDS.get(judge, judge)
            runs.append(Run(name=label(model, kind), metrics=metrics_from_logged(entries), source=str(results_path),
                            model=model, judge=kind, protocol=protocol, provenance=provenance, settings=settings,
                            warnings=list(warnings)))
        return runs
    for judge in JUDGE_ORDER:
        judge_tasks = [t for t in tasks if judge_of_task(t) == judge]
        if not judge_tasks:
            continue
        protocol, provenance, settings = run_settings(results, judge_tasks, [])
        kind = JUDGE_KINDS[judge]
        note = [] if use_samples else ["numbers from lm-eval's results JSON (--no-samples): per-cell counts unknown"]
        runs.append(Run(name=label(model, kind), metrics=metrics_from_results(results, judge_tasks),
                        source=str(results_path), model=model, judge=kind, protocol=protocol,
                        provenance=provenance, settings=settings, warnings=note))
    return runs


def load_lm_eval_runs(path: Path, use_samples: bool = True) -> list[Run] | None:
    """`longrm report` loader: every run of our tasks under ``path``; None when ``path`` is not lm-eval output."""
    found = find_results(Path(path))
    if not found:
        return None
    runs: list[Run] = []
    for results_path in found:
        if Path(path).is_file():
            data = read_json(results_path)
            if not is_lm_eval_results(data):
                return None
        runs.extend(runs_from_results(results_path, use_samples))
    return runs or None
