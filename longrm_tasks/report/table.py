"""Render runs as terminal tables (rich) and Markdown, laid out like paper Tables 1-2."""
from __future__ import annotations

from typing import Sequence

from longrm_tasks.report.layout import TABLE1, TABLE2, TERMINAL_TABLES, Run, notes


def rich_tables(runs: Sequence[Run]):
    from rich.table import Table

    tables = []
    for title, columns in TERMINAL_TABLES:
        table = Table(title=title, title_justify="left")
        table.add_column("Model", no_wrap=True)
        for col in columns:
            table.add_column(col, justify="right")
        for run in runs:
            table.add_row(run.name, *(run.cell(c) for c in columns))
        tables.append(table)
    return tables


def print_report(runs: Sequence[Run], console=None) -> None:
    from rich.console import Console

    console = console or Console()
    for table in rich_tables(runs):
        console.print(table)
    for run in runs:
        for line in notes(run):
            console.print(f"[dim]{run.name}:[/dim] {line}")


def markdown(runs: Sequence[Run]) -> str:
    parts = []
    for title, columns in (("Long-RewardBench (%)", TABLE1), ("PairWise accuracy by context length (%)", TABLE2)):
        parts.append(f"### {title}\n")
        parts.append("| Model | " + " | ".join(columns) + " |")
        parts.append("|---|" + "---:|" * len(columns))
        for run in runs:
            parts.append(f"| {run.name} | " + " | ".join(run.cell(c) for c in columns) + " |")
        parts.append("")
    for run in runs:
        parts.extend(f"- {run.name}: {line}" for line in notes(run))
    return "\n".join(parts) + "\n"
