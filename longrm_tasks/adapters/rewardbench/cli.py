"""`longrm rewardbench export|score`: Long-RewardBench in RewardBench's formats and numbers."""
from __future__ import annotations

from pathlib import Path

from longrm_tasks.errors import InputError

HELP = "export Long-RewardBench as RewardBench 1/2 files; score per-candidate scores the RewardBench way"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="rb_command", required=True, metavar="ACTION")
    e = sub.add_parser("export", help="PairWise items -> rewardbench1.jsonl, BestOfN items -> rewardbench2.jsonl",
                       description="Write RewardBench 1 (pairs) and RewardBench 2 (best-of-N) files; every "
                                   "PairWise and BestOfN item of the selection appears exactly once.")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder")
    e.add_argument("--data", default="hub", help="hub (default), sample (bundled synthetic) or a folder of "
                                                 "{Config}.jsonl files")
    e.add_argument("--configs", help="comma-separated configs (default: all)")
    e.add_argument("--tasktypes", help="PairWise,BestOfN (default: both)")
    e.add_argument("--subtypes", help="comma-separated subtypes (same, diff, 2, 3, 4, ...)")
    e.add_argument("--lengths", help="comma-separated length buckets (4k,...,128k)")
    e.set_defaults(rb_run=_export)

    s = sub.add_parser("score", help="RewardBench accuracy per subset + results JSON + the paper's metrics",
                       description="Score per-candidate scalar scores with RewardBench's rules "
                                   "(pairs: chosen > rejected; best-of-N: reroll_and_score_dataset).")
    s.add_argument("--scores", nargs="+", required=True, metavar="FILE",
                   help="RewardBench outputs ({model}_outputs.jsonl, {model}_all.jsonl, eval-set-scores JSON), "
                        "JSONL with id/subset/scores_chosen/scores_rejected, or our prediction files")
    s.add_argument("--export", metavar="DIR", help="the folder `longrm rewardbench export` wrote: supplies "
                                                   "subsets, metadata and the order of rows without id")
    s.add_argument("--json", metavar="OUT", help="write RewardBench's results JSON here")
    s.add_argument("--paper-json", metavar="OUT", help="write the paper's metrics JSON (as `longrm score`) here")
    s.add_argument("--model", help="model name in the results JSON (default: from the scores file, else its stem)")
    s.add_argument("--model-type", help="RewardBench model_type (default: from the file, else 'Seq. Classifier')")
    s.add_argument("--chat-template", help="RewardBench chat_template (default: from the file, else 'tokenizer')")
    s.add_argument("--quiet", action="store_true", help="print nothing")
    s.set_defaults(rb_run=_score)


def run(args) -> int:
    return args.rb_run(args)


def _export(args) -> int:
    from longrm_tasks.adapters.rewardbench.export import CONFIGS, export_items, parse_filter, select_checked
    from longrm_tasks.data import load_benchmark

    # Validate before destroy: every filter value and the selection are checked before the
    # previous export in --out is touched (export_items then swaps complete files in).
    configs = parse_filter("--configs", args.configs, CONFIGS)
    bench = load_benchmark(args.data, configs=configs)
    items = select_checked(bench, configs=args.configs, tasktypes=args.tasktypes, subtypes=args.subtypes,
                           lengths=args.lengths)
    for w in bench.warnings:
        print(f"warning: {w}")
    summary = export_items(items, args.out, source=bench.source)
    for key, path in summary.files.items():
        n = sum(v for k, v in summary.counts.items() if ("/bon-" in k) == (key == "rewardbench2"))
        print(f"{path}: {n} records")
    print(f"{summary.total} items exported, each exactly once ({len(bench.items) - len(items)} not selected)")
    if summary.renamed_ids:
        print(f"{len(summary.renamed_ids)} repeated source ids made unique with @index")
    return 0


def _score(args) -> int:
    from longrm_tasks.adapters.rewardbench.score import attach_export, read_scores, results_json, score
    from longrm_tasks.atomic import check_writable, write_json, write_text

    # Output paths are checked before any work; both files are written atomically.
    for option, path in (("--json", args.json), ("--paper-json", args.paper_json)):
        if path:
            check_writable(path, option)
    if args.json and args.paper_json and Path(args.json).resolve() == Path(args.paper_json).resolve():
        raise InputError("--json and --paper-json name the same file", path=args.json, field="--paper-json")
    scored, found = read_scores(args.scores)
    missing = attach_export(scored, args.export) if args.export else []
    results = score(scored, model=args.model or found.get("model") or Path(args.scores[0]).stem,
                    model_type=args.model_type or found.get("model_type") or "Seq. Classifier",
                    chat_template=args.chat_template or found.get("chat_template") or "tokenizer")
    results.missing = missing
    if args.paper_json and results.paper is None:
        raise InputError(f"no paper metrics to write: {results.no_paper_reason}", field="--paper-json")
    if args.json:
        write_text(args.json, results_json(results) + "\n")
    if args.paper_json:
        write_json(args.paper_json, {"model": results.rewardbench["model"], **results.paper})
    if not args.quiet:
        _print(results)
    return 0


def _print(results) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rb = results.rewardbench
    console.print(f"{rb['model']} ({rb['model_type']}, chat template: {rb['chat_template']})")
    table = Table(title="RewardBench rules", title_justify="left")
    table.add_column("subset")
    table.add_column("items", justify="right")
    table.add_column("%", justify="right")
    for subset, n in results.counts.items():
        table.add_row(subset, str(n), f"{100 * rb[subset]:.1f}")
    console.print(table)
    console.print("[dim]pairs: chosen > rejected (ties wrong); bon-N: 1/k when the chosen ties k-way at the top[/dim]")
    if results.duplicates:
        console.print(f"{results.duplicates} repeated rows of an item (e.g. both orders) counted once")
    if results.missing:
        console.print(f"[bold]{len(results.missing)} exported items have no score[/bold] "
                      f"(first: {', '.join(results.missing[:3])})")
    if results.paper is None:
        console.print(f"paper metrics: not available — {results.no_paper_reason}")
        return
    from longrm_tasks.report.layout import Run
    from longrm_tasks.report.table import print_report

    print_report([Run(rb["model"], results.paper)], console=console)
