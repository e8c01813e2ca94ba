"""Training-data synthesis from the LongRM paper: short-to-long contexts and consistency voting.

``short_to_long`` hides a record's key passage(s) at a chosen depth inside
distractor documents up to a target token length; ``voting`` lets several
judges (``judges``: OpenAI-compatible endpoint, vLLM, transformers) score each
response and keeps the majority judgment as ``chosen``, the dissent as
``rejected``. Both write the authors' Stage II record layout
(``../shared/data/longrm_alignment_sample.jsonl``) and are deterministic given
a seed. The JSONL helpers here are shared by both steps.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from longrm_tasks.errors import InputError

MAX_LISTED_IDS = 20  # summaries name at most this many skipped items; the counts are always complete


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON names its line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"not valid JSON ({err.msg})", path=str(path), line=number) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", path=str(path), line=number)
            yield number, obj


def dump_jsonl_line(obj: dict) -> str:
    """One record as one line; fixed formatting so equal records give equal bytes."""
    return json.dumps(obj, ensure_ascii=False) + "\n"
