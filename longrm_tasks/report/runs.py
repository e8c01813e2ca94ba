"""Load runs for `longrm report`: our score JSON files, or other run formats via loaders.

A loader takes a path and returns a `Run` or None when the path is not its
format; lm-eval output folders get their own loader (adapters) so this module
needs no lm-eval import.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from longrm_tasks.errors import InputError
from longrm_tasks.report.layout import Run

Loader = Callable[[Path], "Run | None"]
_EXTRA_LOADERS = ["longrm_tasks.adapters.lm_eval_report:load_lm_eval_run"]


def load_score_json(path: Path) -> Run | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a JSON file ({err})", path=str(path)) from None
    if isinstance(data, dict) and "results" in data and "configs" in data:
        return None  # an lm-eval results_*.json: its own loader reads it
    metrics = data.get("metrics", data) if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or "AVG" not in metrics:
        raise InputError("no Long-RewardBench metrics ('AVG' key) in this JSON", path=str(path))
    name = data.get("model") or path.stem
    return Run(name=str(name), metrics=metrics, source=str(path))


def _loaders() -> list[Loader]:
    import importlib

    loaders: list[Loader] = [load_score_json]
    for spec in _EXTRA_LOADERS:
        module, _, attr = spec.partition(":")
        try:
            loaders.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            continue
    return loaders


def load_run(path: str, name: str | None = None) -> Run:
    p = Path(path)
    if not p.exists():
        raise InputError(f"run not found: {p}")
    for loader in _loaders():
        run = loader(p)
        if run is not None:
            if name:
                run.name = name
            return run
    raise InputError("not a run this tool can read (a `longrm score` JSON or an lm-eval output folder)",
                     path=str(p))
