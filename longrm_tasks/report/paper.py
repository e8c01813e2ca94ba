"""The LongRM paper's published numbers (arXiv 2510.06915 v2, Tables 1, 2 and 6) as data.

``longrm_tasks/data/paper_results.json`` holds every model row and cell, with
the table and row (1-based, as printed) it came from; values are percentages
as the paper prints them. Column names are ours (``Rank2`` for the paper's R2,
``AVG`` for Table 1's Avg, ``Length Avg`` for Table 2's Avg, ``RB *`` for its
RewardBench columns), so a run's cells line up with them by key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PAPER_FILE = Path(__file__).resolve().parents[1] / "data" / "paper_results.json"
TABLE1_COLUMNS = ["LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math", "Rank2", "Rank3", "Rank4", "AVG"]
TABLE2_COLUMNS = ["4k", "8k", "16k", "32k", "64k", "128k", "Length Avg"]
RB_COLUMNS = ["RB Chat", "RB Chat-Hard", "RB Safety", "RB Reasoning", "RB Avg"]


@dataclass(frozen=True)
class PaperRow:
    table: int  # 1 (generative judges), 2 (length + RewardBench) or 6 (scalar reward models)
    row: int  # 1-based row of the table body, as printed
    label: str  # the row label as printed ("+SFT" rows name their base model in ``model``)
    model: str
    judge: str  # gen | rm
    cells: dict  # column -> percent

    def cell(self, column: str) -> str:
        value = self.cells.get(column)
        return "" if value is None else f"{value:.1f}"


@lru_cache(maxsize=1)
def paper_data() -> dict:
    return json.loads(PAPER_FILE.read_text(encoding="utf-8"))


def paper_rows(table: int | None = None) -> list[PaperRow]:
    rows = [PaperRow(table=r["table"], row=r["row"], label=r["label"], model=r["model"], judge=r["judge"],
                     cells=dict(r["cells"])) for r in paper_data()["rows"]]
    return [r for r in rows if table is None or r.table == table]


def paper_source() -> str:
    return paper_data()["source"]


def matching_rows(model: str, judge: str = "") -> list[PaperRow]:
    """The paper's rows for a model: its Table 1 (or Table 6 for reward models) row and Table 2 row.

    Matched by the last path component of the model name (``Qwen/Qwen3-8B`` ->
    ``Qwen3-8B``), case-insensitively, against Table 1/6 model names. Table 2
    abbreviates the names but lists Table 1's models (all but Random) in the
    same order, so its row is Table 1's row minus one.
    """
    from longrm_tasks.report.names import short_model

    key = short_model(model).casefold()
    tables = (6, 1) if judge == "rm" else (1, 6)
    for table in tables:
        for row in paper_rows(table):
            if row.model.casefold() == key:
                out = [row]
                if table == 1 and row.row > 1:
                    out += [r for r in paper_rows(2) if r.row == row.row - 1]
                return out
    return []
