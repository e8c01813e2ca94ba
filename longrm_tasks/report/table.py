"""Render runs as terminal tables (rich) and Markdown, laid out like paper Tables 1-2.

Terminal tables are sized by hand, not left to rich's shrinking: every number
column is as wide as its header (at least "100.0"), the label column takes
what is left (labels are short: see `report.names`), so at 80 columns (or
less) no number column collapses, whatever the run names.
"""
from __future__ import annotations

from typing import Sequence

from rich.markup import escape

from longrm_tasks.report.comparability import file_hash_lines, standings
from longrm_tasks.report.layout import EMPTY, TABLE1, TABLE2, TERMINAL_TABLES, Run, notes
from longrm_tasks.report.names import clip
from longrm_tasks.report.paper import (RB_COLUMNS, TABLE1_COLUMNS, TABLE2_COLUMNS, matching_rows, paper_rows,
                                      paper_source)

NUMBER_WIDTH = len("100.0")
MIN_LABEL = 8


def _table(title: str, columns: Sequence[str], rows: Sequence[tuple[str, list[str], str | None]], width: int,
           section_after: int | None = None):
    """A rich table whose number columns never shrink; ``rows`` = (label, cells, style).

    Columns are separated by one space, so the numbers take ``sum(width + 1)``
    and the label column gets the rest (labels longer than that lose their
    middle, never their end: sizes and versions sit there).
    """
    from rich import box
    from rich.table import Table

    widths = [max(len(c), NUMBER_WIDTH) for c in columns]
    fixed = sum(w + 1 for w in widths)
    longest = max([len(label) for label, _, _ in rows] + [len("Run")])
    label_width = max(min(longest, width - fixed), MIN_LABEL)
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                  show_edge=False, min_width=min(len(title), width))
    table.add_column("Run", no_wrap=True, min_width=label_width, max_width=label_width)
    for col, w in zip(columns, widths):
        table.add_column(col, justify="right", no_wrap=True, min_width=w)
    for i, (label, cells, style) in enumerate(rows):
        table.add_row(escape(clip(label, label_width)), *cells, style=style, end_section=i + 1 == section_after)
    return table


def rich_tables(runs: Sequence[Run], width: int = 80):
    return [_table(title, columns, [(r.name, [r.cell(c) for c in columns], None) for r in runs], width)
            for title, columns in TERMINAL_TABLES]


def _console(console=None):
    from rich.console import Console

    return console or Console(highlight=False)


def _indented(console, text: str, indent: int, style: str | None = None) -> None:
    """Print plain text wrapped to the console, every line indented (no markup read from it)."""
    import textwrap

    from rich.text import Text

    pad = " " * indent
    lines = textwrap.wrap(text, max(console.width, 40), initial_indent=pad, subsequent_indent=pad) or [pad]
    console.print(Text("\n".join(lines), style=style or ""), soft_wrap=True)


def print_provenance(runs: Sequence[Run], console) -> None:
    console.print("[bold]Provenance[/bold] (protocol, data, revision, file hashes)")
    for s in standings(runs):
        console.print(f"  {escape(s.run.name)}")
        _indented(console, s.settings_line, 4)
        _indented(console, s.data_line, 4)
        _indented(console, " · ".join(s.marks), 4, "dim" if s.paper_comparable else "yellow")
    for line in file_hash_lines(runs):
        head, _, files = line.partition(": ")
        console.print(f"  [dim]{escape(head)} file SHA-256:[/dim]")
        _indented(console, files, 4, "dim")


def print_report(runs: Sequence[Run], console=None) -> None:
    from rich.markup import escape

    console = _console(console)
    for table in rich_tables(runs, console.width):
        console.print(table)
    print_provenance(runs, console)
    for run in runs:
        console.print(f"[bold]{escape(run.name)}[/bold]")
        for line in notes(run) + run.warnings:
            _indented(console, line, 2)


def _paper_label(row) -> str:
    return row.model if row.table != 6 else f"{row.model} [rm]"


def compare_tables(runs: Sequence[Run], width: int = 80):
    """Paper rows (Tables 1 and 6, then 2) with the runs below them, same cells, same rounding."""
    t1 = [(_paper_label(r), [r.cell(c) or EMPTY for c in TABLE1_COLUMNS], None) for r in paper_rows(1) + paper_rows(6)]
    t2 = [(_paper_label(r), [r.cell(c) or EMPTY for c in TABLE2_COLUMNS], None) for r in paper_rows(2)]
    mine1 = [(r.name, [r.cell(c) for c in TABLE1_COLUMNS], "bold cyan") for r in runs]
    mine2 = [(r.name, [r.cell(c) for c in TABLE2_COLUMNS], "bold cyan") for r in runs]
    configs, ranks = TABLE1_COLUMNS[:7] + ["AVG"], TABLE1_COLUMNS[7:]
    pick = lambda rows, cols, all_cols: [(n, [c[all_cols.index(k)] for k in cols], s) for n, c, s in rows]  # noqa: E731
    return [
        _table("Paper Table 1 (+ Table 6 [rm]) and your runs: PairWise accuracy by config, %", configs,
               pick(t1 + mine1, configs, TABLE1_COLUMNS), width, len(t1)),
        _table("Paper Table 1 (+ Table 6 [rm]) and your runs: Best-of-N rank match, %", ranks,
               pick(t1 + mine1, ranks, TABLE1_COLUMNS), width, len(t1)),
        _table("Paper Table 2 and your runs: PairWise accuracy by context length, %", TABLE2_COLUMNS, t2 + mine2,
               width, len(t2)),
    ]


def print_compare(runs: Sequence[Run], console=None) -> None:
    from rich.markup import escape

    console = _console(console)
    for table in compare_tables(runs, console.width):
        console.print(table)
    console.print(f"[dim]Paper: {escape(paper_source())}. Rank2-4 are the reference code's partial-credit rank "
                  f"match; the paper's Random row uses exact-match chance.[/dim]")
    for s in standings(runs):
        style = "dim" if s.paper_comparable else "yellow"
        console.print(f"{escape(s.run.name)}: {escape(' · '.join(s.marks))}", style=style)
        line = versus_paper(s.run)
        if line:
            _indented(console, line, 2)


def versus_paper(run: Run) -> str | None:
    """The run against its own model's paper rows (AVG, PairWise/Rank summaries, Length Avg), if listed."""
    rows = matching_rows(run.model or run.name, run.judge)
    if not rows:
        return None
    parts = []
    for row in rows:
        for key in ("AVG", "Length Avg"):
            mine, theirs = run.value(key), row.cells.get(key)
            if theirs is None or mine is None or run.no_verdict:
                continue
            parts.append(f"{key} {100 * mine:.1f} vs {theirs:.1f} ({100 * mine - theirs:+.1f})")
    where = " and ".join(f"T{r.table} row {r.row}" for r in rows)
    body = "; ".join(parts) if parts else "no comparable cell"
    return f"vs the paper's {rows[0].model} ({where}): {body}"


def markdown(runs: Sequence[Run], compare_paper: bool = False) -> str:
    parts = []
    for title, columns in (("Long-RewardBench (%)", TABLE1), ("PairWise accuracy by context length (%)", TABLE2)):
        parts.append(f"### {title}\n")
        parts.append("| Model | " + " | ".join(columns) + " |")
        parts.append("|---|" + "---:|" * len(columns))
        for run in runs:
            parts.append(f"| {run.name} | " + " | ".join(run.cell(c) for c in columns) + " |")
        parts.append("")
    if compare_paper:
        for title, columns, tables in (("Paper Tables 1 and 6 vs runs (%)", TABLE1_COLUMNS, (1, 6)),
                                       ("Paper Table 2 vs runs (%)", TABLE2_COLUMNS + RB_COLUMNS, (2,))):
            parts.append(f"### {title}\n")
            parts.append("| Model | Source | " + " | ".join(columns) + " |")
            parts.append("|---|---|" + "---:|" * len(columns))
            for t in tables:
                for row in paper_rows(t):
                    parts.append(f"| {row.model} | paper T{row.table} row {row.row} | "
                                 + " | ".join(row.cell(c) or EMPTY for c in columns) + " |")
            for run in runs:
                parts.append(f"| **{run.name}** | this run | "
                             + " | ".join(run.cell(c) if c in TABLE1 + TABLE2 else EMPTY for c in columns) + " |")
            parts.append("")
        parts.append(f"Paper: {paper_source()}.\n")
    provenance = standings(runs)
    if provenance:
        parts.append("### Provenance\n")
        parts.extend(f"- {s.run.name}: {s.line} — {'; '.join(s.marks)}" for s in provenance)
        parts.extend(f"- {line}" for line in file_hash_lines(runs, width=64))
        parts.append("")
    for run in runs:
        parts.extend(f"- {run.name}: {line}" for line in notes(run) + run.warnings)
    return "\n".join(parts) + "\n"
