"""Line-numbered JSONL reading with errors that name file and line.

Lines are decoded one at a time so a bad byte or a truncated JSON line is
reported where it is, instead of as an opaque traceback from a bulk reader.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

from longrm_tasks.errors import InputError

try:  # orjson parses the benchmark's multi-MB lines several times faster; optional
    import orjson as _orjson

    _loads = _orjson.loads
    _JSONError: tuple[type[Exception], ...] = (_orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _JSONError = (json.JSONDecodeError, ValueError)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (Windows editors)
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"not valid UTF-8 (byte {err.start} of the line)", path=path, line=lineno) from None
            try:
                obj = _loads(text)
            except _JSONError:
                # orjson refuses NaN / Infinity, which Python's json (and RewardBench) write for
                # missing scores: give the standard parser the last word.
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as err:
                    raise InputError(f"invalid JSON ({err})", path=path, line=lineno) from None
            yield lineno, obj


def write_jsonl(path: str | os.PathLike, rows) -> int:
    """Write ``rows`` one JSON object per line, atomically (see `longrm_tasks.atomic`)."""
    from longrm_tasks.atomic import write_jsonl as _write

    return _write(path, rows)
