"""`longrm report`: one or more runs -> paper-style tables, Markdown, JSON summary, length plot."""
from __future__ import annotations

import json
from pathlib import Path

HELP = "compare runs: terminal table like paper Tables 1-2, Markdown, JSON summary and a PNG length plot"


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a `longrm score` JSON file or an lm-eval output folder; NAME=PATH renames the run")
    p.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    p.add_argument("--json", metavar="FILE", help="write a JSON summary (paper metrics + extra per run)")
    p.add_argument("--plot", metavar="FILE.png", help="write PairWise accuracy vs context length as a PNG")


def _split_name(spec: str) -> tuple[str | None, str]:
    name, sep, path = spec.partition("=")
    return (name, path) if sep and not Path(spec).exists() else (None, spec)


def run(args) -> int:
    from longrm_tasks.report.runs import load_run
    from longrm_tasks.report.table import markdown, print_report

    runs = [load_run(path, name) for name, path in map(_split_name, args.runs)]
    print_report(runs)
    if args.markdown:
        Path(args.markdown).write_text(markdown(runs), encoding="utf-8")
    if args.json:
        summary = {"runs": [{"model": r.name, "source": r.source, "metrics": r.metrics} for r in runs]}
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        from longrm_tasks.report.plot import plot_length_curve

        plot_length_curve(runs, args.plot)
    return 0
