"""Read an lm-eval output folder of our tasks as a `longrm report` run, and export its predictions.

lm-eval writes ``OUT/<model>/results_<date>.json`` and, with ``--log_samples``,
``samples_<task>_<date>.jsonl`` next to it. With samples, every document is
turned into a prediction row of the reference evaluator's format (``output`` =
the judge's text or the scores in shown order, ``shuffled_order``, ``subset``,
``tasktype``, ``subtype``, ``ctx_length``, ``id``, ``truncated_tokens``,
``skipped``) and scored by the core exactly as ``longrm score`` scores a
prediction file — so the two always agree. Without samples, the numbers are
read back from the results JSON (paper keys; ``extra`` only as far as lm-eval
kept it).

``python -m longrm_tasks.adapters.lm_eval_report OUT --predictions DIR`` writes
the prediction rows as ``DIR/{Config}.jsonl`` for ``longrm score``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterator

from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl, write_jsonl
from longrm_tasks.metrics import compute_metrics
from longrm_tasks.predictions import judged_from_prediction
from longrm_tasks.report.layout import Run

TASK_PREFIX = "long_rewardbench"
JUDGE_ORDER = ("generative", "loglikelihood", "reward")
JUDGE_LABEL = {"generative": "", "loglikelihood": " [ll]", "reward": " [rm]"}
_RESULTS = re.compile(r"results_(?P<date>.+)\.json$")


def _ours(task: str) -> bool:
    return task == TASK_PREFIX or task.startswith(TASK_PREFIX + "_")


def find_results(path: Path) -> Path | None:
    """The newest lm-eval results file at ``path`` (a results JSON, or a folder searched recursively)."""
    if path.is_file():
        return path if _RESULTS.search(path.name) else None
    if not path.is_dir():
        return None
    found = sorted(path.rglob("results_*.json"), key=lambda p: (_RESULTS.search(p.name).group("date"), str(p)))
    return found[-1] if found else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a JSON file ({err})", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object (lm-eval results)", path=str(path))
    return data


def sample_files(results_path: Path) -> list[Path]:
    """The ``--log_samples`` files of our tasks written with ``results_path`` (same date stamp)."""
    date = _RESULTS.search(results_path.name).group("date")
    return sorted(p for p in results_path.parent.glob(f"samples_{TASK_PREFIX}*_{date}.jsonl"))


def prediction_row(sample: dict, *, path: str | None = None, line: int | None = None) -> dict:
    """One logged lm-eval sample of our tasks -> a prediction row (reference format + our fields)."""
    doc = sample.get("doc")
    if not isinstance(doc, dict) or "judge" not in doc or "order" not in doc:
        raise InputError("not a Long-RewardBench sample (no 'doc' with 'judge' and 'order')", path=path, line=line,
                         field="doc")
    resps = sample.get("filtered_resps") or []
    if doc["skipped"]:
        output = None
    elif doc["judge"] == "generative":
        output = resps[0] if resps else None
    else:  # one (log-likelihood or reward, is_greedy) per shown answer; lm-eval logs them as strings
        try:
            output = [float(r[0] if isinstance(r, list) else r) for r in resps]
        except (TypeError, ValueError):
            raise InputError(f"expected one (score, is_greedy) pair per answer, got {resps!r:.200}", path=path,
                             line=line, field="filtered_resps") from None
    return {"output": output, "shuffled_order": list(doc["order"]), "subset": doc["config"],
            "tasktype": doc["tasktype"], "subtype": doc["subtype"], "ctx_length": doc["length"], "id": doc["id"],
            "truncated_tokens": int(doc["truncated_tokens"]), "skipped": bool(doc["skipped"]),
            "judge": doc["judge"], "parser": doc.get("parser", "reference"), "orders": doc.get("orders"),
            "presentation": doc.get("presentation", 0)}


def iter_prediction_rows(files: list[Path]) -> Iterator[tuple[str, int, dict]]:
    for file in files:
        for line, sample in iter_jsonl(file):
            yield str(file), line, prediction_row(sample, path=str(file), line=line)


def collect_predictions(files: list[Path]) -> dict[str, list[dict]]:
    """Prediction rows per judge; a presentation logged by two overlapping tasks counts once."""
    by_judge: dict[str, dict[tuple, dict]] = {}
    for _, _, row in iter_prediction_rows(files):
        key = (row["subset"], row["id"], row["presentation"])
        by_judge.setdefault(row["judge"], {}).setdefault(key, row)
    return {judge: list(rows.values()) for judge, rows in by_judge.items()}


def _metrics_from_rows(rows: list[dict]) -> dict:
    parser = rows[0]["parser"] if rows else "reference"
    judged = [judged_from_prediction(r, parser=parser) for r in rows]
    return compute_metrics(judged, parser=parser, orders=rows[0].get("orders") if rows else None)


def _metrics_from_results(results: dict) -> tuple[str, dict] | None:
    """Paper metrics of the widest of our tasks in a results JSON (a group or ``*_all`` first)."""
    tasks = {name: values for name, values in results.get("results", {}).items() if _ours(name)}
    if not tasks:
        return None
    best = sorted(tasks, key=lambda n: (not n.endswith("_all") and n not in ("long_rewardbench", "long_rewardbench_ll",
                                                                             "long_rewardbench_rm"), n))[0]
    metrics: dict = {}
    extra: dict = {}
    for key, value in tasks[best].items():
        name, _, _filter = key.partition(",")
        if not _filter or name.endswith("_stderr") or not isinstance(value, (int, float)):
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
    return best, metrics


def load_lm_eval_run(path: Path) -> Run | None:
    """`longrm report` loader: an lm-eval output folder (or results JSON) of our tasks, else None."""
    results_path = find_results(Path(path))
    if results_path is None:
        return None
    results = _read_json(results_path)
    if not any(_ours(name) for name in results.get("results", {})):
        return None
    model = str(results.get("model_name") or results_path.parent.name)
    files = sample_files(results_path)
    if files:
        by_judge = collect_predictions(files)
        judge = next(j for j in JUDGE_ORDER + tuple(by_judge) if j in by_judge)
        return Run(name=model + JUDGE_LABEL.get(judge, f" [{judge}]"), metrics=_metrics_from_rows(by_judge[judge]),
                   source=str(results_path))
    task, metrics = _metrics_from_results(results)
    judge = "reward" if task.startswith("long_rewardbench_rm") else (
        "loglikelihood" if task.startswith("long_rewardbench_ll") else "generative")
    return Run(name=model + JUDGE_LABEL[judge], metrics=metrics, source=str(results_path))


def export_predictions(path: Path, out_dir: Path) -> list[Path]:
    """Write the logged samples at ``path`` as ``out_dir/{Config}.jsonl`` prediction files (one judge each)."""
    results_path = find_results(Path(path))
    if results_path is None:
        raise InputError("no lm-eval results_*.json here", path=str(path))
    files = sample_files(results_path)
    if not files:
        raise InputError("no Long-RewardBench samples next to the results: run lm_eval with --log_samples",
                         path=str(results_path))
    by_judge = collect_predictions(files)
    written = []
    out_dir = Path(out_dir)
    for judge, rows in by_judge.items():
        folder = out_dir if len(by_judge) == 1 else out_dir / judge
        folder.mkdir(parents=True, exist_ok=True)
        by_config: dict[str, list[dict]] = {}
        for row in rows:
            by_config.setdefault(row["subset"], []).append(row)
        for config, config_rows in by_config.items():
            target = folder / f"{config}.jsonl"
            write_jsonl(target, config_rows)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m longrm_tasks.adapters.lm_eval_report",
                                     description="export an lm-eval run's logged samples as prediction JSONL files")
    parser.add_argument("run", help="lm-eval --output_path folder (run with --log_samples)")
    parser.add_argument("--predictions", required=True, metavar="DIR", help="write {Config}.jsonl files here")
    args = parser.parse_args(argv)
    try:
        for target in export_predictions(Path(args.run), Path(args.predictions)):
            print(target)
    except InputError as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
