"""Short run labels: ``<last part of the model name> [<judge kind>]``, unique within a report.

A model given as a path (``/data/ckpt/qwen3-8b-longrm/``) or a hub id
(``Qwen/Qwen3-8B``) is labelled by its last component, so a report stays
readable at 80 columns; the judge kind (gen / ll / rm) keeps two runs of one
model with different judges apart. ``NAME=RUN`` on the command line overrides.
"""
from __future__ import annotations

import re
from typing import Sequence

MAX_LABEL = 28


def short_model(model: str) -> str:
    """The last path component of a model name; lm-eval's sanitized ``a__b__c`` spelling too."""
    text = str(model).strip().rstrip("/\\")
    for sep in ("/", "\\"):
        text = text.rsplit(sep, 1)[-1]
    if "__" in text:  # lm-eval's model_name_sanitized turns "/" into "__"
        text = [part for part in text.split("__") if part][-1] if text.strip("_") else text
    return text or str(model)


def clip(text: str, width: int) -> str:
    """Keep the start and the end (sizes and versions usually sit at the end): ``Qwen2.5-7B…-long-v2``."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def label(model: str, judge: str = "", width: int = MAX_LABEL) -> str:
    suffix = f" [{judge}]" if judge else ""
    return clip(short_model(model), max(width - len(suffix), 8)) + suffix


def unique_labels(names: Sequence[str], protocols: Sequence[str | None]) -> list[str]:
    """Make equal labels distinct: by protocol where that differs, else ``#2``, ``#3`` in input order."""
    out = list(names)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(out):
        groups.setdefault(name, []).append(i)
    for name, where in groups.items():
        if len(where) < 2:
            continue
        if len({protocols[i] for i in where}) == len(where):
            for i in where:
                out[i] = f"{name} {protocols[i] or '?'}"
        else:
            for k, i in enumerate(where[1:], start=2):
                out[i] = f"{name} #{k}"
    return out


def split_name(spec: str, exists) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a path that exists as given (even with '=') is a path."""
    name, sep, path = spec.partition("=")
    if sep and name and not exists(spec) and re.fullmatch(r"[^/\\]+", name):
        return name, path
    return None, spec
