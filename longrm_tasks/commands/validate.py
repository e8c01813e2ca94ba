"""`longrm validate`: check benchmark files record by record and summarise what is there.

Reading goes through the same loader as every other command (`load_benchmark`),
so what it rejects or warns about (bad records, empty or misnamed files) is
exactly what `eval`/`render`/`rewardbench export` would meet. On top of that,
validate looks across records: two records of one config sharing an ``id``
are a warning (the reference evaluator keys items by position, so scoring is
unaffected, but per-item joins such as `longrm report`'s would merge them).
``--strict`` turns every warning into a failing exit code (1) for CI.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

HELP = "validate Long-RewardBench files (hub, a folder of {Config}.jsonl, or 'sample') and count items per cell"


def add_arguments(p) -> None:
    p.add_argument("--data", default="hub", help="'hub' (default), 'sample', or a folder of {Config}.jsonl files")
    p.add_argument("--configs", nargs="*", help="only these configs")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when there is any warning")


def duplicate_id_warnings(items, files: dict[str, str]) -> list[str]:
    """One warning per id that more than one record of a config carries, naming the lines."""
    lines = defaultdict(list)
    for it in items:
        lines[(it.config, it.id)].append(it.index + 1)
    out = []
    for (config, rid), where in lines.items():
        if len(where) > 1:
            shown = ", ".join(map(str, where[:10])) + (", ..." if len(where) > 10 else "")
            out.append(f"{files.get(config, config)}: id {rid!r} is used by {len(where)} records "
                       f"(records {shown}); ids should be unique")
    return out


def run(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from longrm_tasks.data import LENGTH_BUCKETS, load_benchmark

    bench = load_benchmark(args.data, args.configs or None)
    warnings = list(bench.warnings) + duplicate_id_warnings(bench.items, bench.files)
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
    # The bytes every result is computed on: compare these with a result's provenance.
    provenance = getattr(bench, "provenance", None)
    if getattr(provenance, "revision", None):
        console.print(f"hub revision {provenance.revision}")
    hashes = getattr(provenance, "files", {}) or {}
    for path in bench.files.values():
        if Path(path).name in hashes:
            console.print(f"sha256 {hashes[Path(path).name]}  {Path(path).name}", soft_wrap=True)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    console.print(f"{len(bench.items)} items valid; {len(warnings)} warnings")
    return 1 if args.strict and warnings else 0
