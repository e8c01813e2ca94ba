"""Line-numbered JSONL reading with errors that name file and line.

Lines are decoded one at a time so a bad byte or a truncated JSON line is
reported where it is, instead of as an opaque traceback from a bulk reader.
Only regular files are read (`paths.require_regular_file`: a FIFO would block,
a folder or a dangling link is named), and non-finite numbers (``NaN``,
``Infinity``, ``1e999``: Python's json accepts them, JSON does not) are refused
with file:line:field unless the caller names the fields where they mean
something (RewardBench writes ``NaN`` for a missing score).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Collection, Iterator

from longrm_tasks.errors import InputError
from longrm_tasks.paths import require_regular_file

try:  # orjson parses the benchmark's multi-MB lines several times faster; optional
    import orjson as _orjson

    _loads = _orjson.loads
    _JSONError: tuple[type[Exception], ...] = (_orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    _JSONError = (json.JSONDecodeError, ValueError)


# An exponent this large overflows a float to inf; only such lines (or ones with a NaN/Infinity
# literal) are walked for non-finite numbers, so ordinary lines cost one regex scan.
_HUGE_EXPONENT = re.compile(rb"[0-9][eE]\+?[0-9]{3}")


def non_finite_field(obj: Any, allowed: Collection[str] = ()) -> tuple[str, float] | None:
    """``(field path, value)`` of the first NaN/inf number in ``obj`` (``candidates_score[1]``), or None.

    Top-level keys in ``allowed`` are not looked into (their reader gives NaN its meaning)."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return where, value
        elif isinstance(value, dict):
            items = [(k, v) for k, v in value.items() if not (where == "" and k in allowed)]
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(items))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def iter_jsonl(path: str | os.PathLike, *,
               allow_non_finite: bool | Collection[str] = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    ``allow_non_finite``: True accepts NaN/Infinity anywhere; a collection of top-level field
    names accepts them only inside those fields; False (default) refuses them everywhere.
    """
    path = require_regular_file(path)
    try:
        fh = open(path, "rb")
    except PermissionError:
        raise InputError("permission denied (the file is not readable)", path=path) from None
    with fh:
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
            if allow_non_finite is not True and (b"NaN" in raw or b"Infinity" in raw or _HUGE_EXPONENT.search(raw)):
                found = non_finite_field(obj, allow_non_finite or ())
                if found is not None:
                    field, value = found
                    raise InputError(non_finite_message(value), path=path, line=lineno, field=field or None)
            yield lineno, obj


def non_finite_message(value: float) -> str:
    """The refusal of a NaN/inf number, named as it is written in JSON."""
    name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return f"non-finite number {name}: expected a finite number (NaN and Infinity are not JSON numbers)"


def write_jsonl(path: str | os.PathLike, rows) -> int:
    """Write ``rows`` one JSON object per line, atomically (see `longrm_tasks.atomic`)."""
    from longrm_tasks.atomic import write_jsonl as _write

    return _write(path, rows)
