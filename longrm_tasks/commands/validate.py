"""`longrm validate`: check benchmark files record by record and summarise what is there."""
from __future__ import annotations

from collections import Counter

HELP = "validate Long-RewardBench files (hub, a folder of {Config}.jsonl, or 'sample') and count items per cell"


def add_arguments(p) -> None:
    p.add_argument("--data", default="hub", help="'hub' (default), 'sample', or a folder of {Config}.jsonl files")
    p.add_argument("--configs", nargs="*", help="only these configs")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from longrm_tasks.data import LENGTH_BUCKETS, load_benchmark

    bench = load_benchmark(args.data, args.configs or None)
    table = Table(title=f"Long-RewardBench items ({bench.source})", title_justify="left")
    for col in ("config", "PairWise", "BestOfN", *LENGTH_BUCKETS):
        table.add_column(col, justify="right" if col != "config" else "left")
    for config in bench.files:
        items = [it for it in bench.items if it.config == config]
        kinds = Counter(it.tasktype for it in items)
        lengths = Counter(it.length for it in items)
        table.add_row(config, str(kinds["PairWise"]), str(kinds["BestOfN"]), *(str(lengths[b]) for b in LENGTH_BUCKETS))
    console = Console()
    console.print(table)
    for warning in bench.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"{len(bench.items)} items valid; {len(bench.warnings)} warnings")
    return 0
