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

    _fast_loads = _orjson.loads
    _JSONError: tuple[type[Exception], ...] = (_orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
    _JSONError = (json.JSONDecodeError, ValueError)

# orjson refuses NaN/Infinity literals (so such a line falls back to `_loads_noting_non_finite`), but
# a line it accepts could still hold a number that overflows to inf: that is looked for in the bytes.
_HUGE_EXPONENT = re.compile(rb"[0-9][eE]\+?[0-9]{3}")


def _loads_noting_non_finite(text: str) -> tuple[Any, bool]:
    """Python's json, and whether any number it read is NaN or infinite.

    The hooks run only for number tokens (never for text inside strings), so a text-heavy line
    costs what a plain ``json.loads`` does."""
    seen: list[str] = []

    def constant(name: str) -> float:  # NaN, Infinity, -Infinity
        seen.append(name)
        return float(name)

    def number(token: str) -> float:  # 1e999 overflows to inf
        value = float(token)
        if not math.isfinite(value):
            seen.append(token)
        return value

    return json.loads(text, parse_constant=constant, parse_float=number), bool(seen)


_MISSING = object()


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
            strict = allow_non_finite is not True
            obj, suspect = _MISSING, False
            if _fast_loads is not None:
                try:
                    obj = _fast_loads(text)
                    suspect = strict and _HUGE_EXPONENT.search(raw) is not None
                except _JSONError:
                    pass  # orjson refuses NaN / Infinity: the standard parser has the last word
            if obj is _MISSING:
                try:
                    obj, suspect = _loads_noting_non_finite(text) if strict else (json.loads(text), False)
                except json.JSONDecodeError as err:
                    raise InputError(f"invalid JSON ({err})", path=path, line=lineno) from None
            if suspect:  # find where, to name the field
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
