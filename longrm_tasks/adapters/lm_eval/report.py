"""Export an lm-eval run's logged samples of our tasks as prediction JSONL files for `longrm score`.

Reading lm-eval output for reports lives in the core (`longrm_tasks.report.lm_eval_runs`:
it only reads lm-eval's JSON files); this module re-exports its reader for
callers of the old names and adds the export.

``python -m longrm_tasks.adapters.lm_eval.report OUT --predictions DIR`` writes
the prediction rows as ``DIR/{Config}.jsonl`` (``DIR/<judge>/{Config}.jsonl``
when the run holds several judges).
"""
from __future__ import annotations

from pathlib import Path

from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import write_jsonl
from longrm_tasks.paths import check_name, contained
from longrm_tasks.report.lm_eval_runs import (check_counts, collect_rows, find_results, iter_logged,  # noqa: F401
                                              load_lm_eval_runs, prediction_row, read_json, sample_files)
from longrm_tasks.report.layout import Run


def load_lm_eval_run(path: Path) -> Run | None:
    """The one run at ``path`` (None when it is not lm-eval output of our tasks)."""
    runs = load_lm_eval_runs(Path(path))
    if not runs:
        return None
    if len(runs) > 1:
        raise InputError(f"{len(runs)} runs here ({', '.join(r.source for r in runs[:3])}); pick one results file",
                         path=str(path))
    return runs[0]


def export_predictions(path: Path, out_dir: Path) -> list[Path]:
    """Write the logged samples at ``path`` as ``out_dir/{Config}.jsonl`` prediction files (one judge each)."""
    found = find_results(Path(path))
    if not found:
        raise InputError("no lm-eval results_*.json here", path=str(path))
    if len(found) > 1:
        raise InputError(f"{len(found)} lm-eval results files here ({', '.join(p.name for p in found[:3])}); "
                         f"pass the one to export", path=str(path))
    results_path = found[0]
    files = sample_files(results_path)
    if not files:
        raise InputError("no Long-RewardBench samples next to the results: run lm_eval with --log_samples",
                         path=str(results_path))
    logged = list(iter_logged(files))
    check_counts(logged, read_json(results_path), results_path)
    by_judge, _ = collect_rows(logged)
    written = []
    out_dir = Path(out_dir)
    for judge, entries in by_judge.items():
        folder = out_dir if len(by_judge) == 1 else contained(out_dir, check_name(judge, field="judge"))
        folder.mkdir(parents=True, exist_ok=True)
        by_config: dict[str, list[dict]] = {}
        for entry in entries:
            by_config.setdefault(entry.row["subset"], []).append(entry.row)
        for config, config_rows in by_config.items():
            target = contained(folder, f"{check_name(config, field='subset')}.jsonl")  # names from the samples
            write_jsonl(target, config_rows)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m longrm_tasks.adapters.lm_eval.report",
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
