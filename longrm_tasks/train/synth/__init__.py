"""Training-data synthesis from the LongRM paper: short-to-long contexts and consistency voting.

``short_to_long`` hides a record's key passage(s) at a chosen depth inside
distractor documents up to a target token length; ``voting`` lets several
judges (``judges``: OpenAI-compatible endpoint, vLLM, transformers) score each
response and keeps the majority judgment as ``chosen``, the dissent as
``rejected``. Both write the authors' Stage II record layout
(LCM-Lab/Long-RM ``datas/SimPO_Data_Sampled20``) and are deterministic given
a seed. The JSONL helpers here are shared by both steps.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl

MAX_LISTED_IDS = 20  # summaries name at most this many skipped items; the counts are always complete


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; a line that is not a JSON object names its file and line."""
    for number, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, got {type(obj).__name__}", path=str(path), line=number)
        yield number, obj


def dump_jsonl_line(obj: dict) -> str:
    """One record as one line; fixed formatting so equal records give equal bytes."""
    return json.dumps(obj, ensure_ascii=False) + "\n"
