"""`longrm report`: one or more runs -> paper-style tables, provenance, Markdown, JSON summary, length plot.

Every output path is checked before any run is read, and written atomically.
"""
from __future__ import annotations

from longrm_tasks.errors import InputError

HELP = ("compare runs: tables like paper Tables 1-2 with each run's protocol and data, the paper's own rows "
        "(--compare paper), Markdown, JSON summary and an accuracy-vs-length plot")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a `longrm score` JSON, an lm-eval results_*.json, or an lm-eval output folder (every run "
                        "in it); NAME=RUN sets the row label (default: model's last path part + judge kind)")
    p.add_argument("--compare", choices=["paper"],
                   help="'paper': show the runs beside the paper's published rows (Tables 1, 2 and 6)")
    p.add_argument("--markdown", metavar="FILE.md", help="write the tables (and provenance) as Markdown")
    p.add_argument("--json", metavar="FILE.json", help="write a JSON summary (metrics, protocol, data per run)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="plot PairWise accuracy vs context length, all runs overlaid (.png, .pdf or .svg)")
    p.add_argument("--no-samples", action="store_true",
                   help="for lm-eval runs, use the numbers in results_*.json and ignore logged samples")


def check_outputs(args) -> None:
    """Validate every output path before reading anything (one line, naming the option)."""
    from pathlib import Path

    from longrm_tasks.atomic import check_writable

    for option in ("markdown", "json", "plot"):
        value = getattr(args, option, None)
        if value:
            check_writable(value, f"--{option}")
    plot = getattr(args, "plot", None)
    if plot and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"a plot file ends in {', '.join(PLOT_SUFFIXES)}", path=plot, field="--plot")


def summary(runs) -> dict:
    from longrm_tasks.report.comparability import standings

    out = []
    for s in standings(runs):
        r = s.run
        out.append({"model": r.name, "model_name": r.model, "judge": r.judge, "source": r.source,
                    "protocol": r.protocol, "data": r.provenance.as_dict() if r.provenance else None,
                    "settings": r.settings, "paper_comparable": s.paper_comparable, "marks": s.marks,
                    "warnings": r.warnings, "metrics": r.metrics})
    return {"runs": out}


def run(args) -> int:
    from longrm_tasks.atomic import write_json, write_text
    from longrm_tasks.report.runs import load_all
    from longrm_tasks.report.table import markdown, print_compare, print_report

    check_outputs(args)
    compare = getattr(args, "compare", None)
    runs = load_all(args.runs, use_samples=not getattr(args, "no_samples", False))
    print_report(runs)
    if compare == "paper":
        print_compare(runs)
    if args.markdown:
        write_text(args.markdown, markdown(runs, compare_paper=compare == "paper"))
    if args.json:
        write_json(args.json, summary(runs))
    if args.plot:
        from longrm_tasks.report.plot import plot_length_curve

        plot_length_curve(runs, args.plot)
    return 0
