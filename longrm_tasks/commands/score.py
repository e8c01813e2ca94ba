"""`longrm score`: re-score per-item predictions (ours or the reference evaluator's)."""
from __future__ import annotations

import json
from pathlib import Path

from longrm_tasks.verdicts import PARSERS

HELP = "re-score per-item prediction files with the benchmark's metrics (and ours)"


def add_arguments(p) -> None:
    p.add_argument("--predictions", nargs="+", required=True, metavar="FILE",
                   help="JSONL prediction files or folders of them (e.g. the reference evaluator's {subset}.jsonl)")
    p.add_argument("--json", metavar="OUT", help="write the metrics JSON here")
    p.add_argument("--parser", choices=PARSERS, default="reference",
                   help="verdict parser: the reference evaluator's rules (default) or the final verdict only")
    p.add_argument("--name", help="model name shown in the table and stored in the JSON")
    p.add_argument("--quiet", action="store_true", help="do not print the table")


def score_files(paths, parser: str = "reference", name: str | None = None) -> dict:
    from longrm_tasks.metrics import compute_metrics
    from longrm_tasks.predictions import read_predictions

    metrics = compute_metrics(read_predictions(paths, parser=parser), parser=parser)
    return {"model": name or Path(str(paths[0])).stem, **metrics}


def run(args) -> int:
    result = score_files(args.predictions, args.parser, args.name)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.quiet:
        from longrm_tasks.report.layout import Run
        from longrm_tasks.report.table import print_report

        print_report([Run(result["model"], result, source=str(args.json or ""))])
    return 0
