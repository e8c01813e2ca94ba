"""Load runs for `longrm report`: `longrm score` JSON files and lm-eval output (folders or results files).

Both readers are core code: they read JSON files only (lm-eval's output
format, not lm-eval itself), so the report never imports an adapter. One
argument may hold several runs (an lm-eval folder with several results files,
or one run with several judges): each becomes its own row.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from longrm_tasks.data.provenance import Provenance
from longrm_tasks.errors import InputError
from longrm_tasks.paths import require_regular_file
from longrm_tasks.report.layout import TABLE1, TABLE2, Run
from longrm_tasks.report.lm_eval_runs import is_lm_eval_results, load_lm_eval_runs
from longrm_tasks.report.names import label, split_name, unique_labels

PAPER_KEYS = list(dict.fromkeys(TABLE1 + TABLE2))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_metrics(metrics: dict, path: Path) -> None:
    """Every paper metric present is a finite number in [0, 1]; one line naming the first that is not."""
    for key in PAPER_KEYS:
        if key in metrics and metrics[key] is not None:
            value = metrics[key]
            if not _number(value) or not 0 <= value <= 1:
                raise InputError(f"expected a number in [0, 1], got {value!r:.60}", path=str(path), field=key)
    extra = metrics.get("extra", {})
    if not isinstance(extra, dict):
        raise InputError("expected an object", path=str(path), field="extra")
    counts = extra.get("counts", {})
    if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in counts.values()):
        raise InputError("expected item counts (non-negative integers)", path=str(path), field="extra.counts")


def load_score_json(path: Path) -> Run | None:
    """A `longrm score --json` file (or ``{"metrics": ...}``); None for an lm-eval results file or a folder."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a JSON file ({err})", path=str(path)) from None
    if isinstance(data, dict) and is_lm_eval_results(data):
        return None
    metrics = data.get("metrics", data) if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or "AVG" not in metrics:
        raise InputError("no Long-RewardBench metrics ('AVG' key) in this JSON", path=str(path))
    _check_metrics(metrics, path)
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    model = str(data.get("model") or path.stem)
    judge = str(prov.get("judge") or "")
    protocol = prov.get("protocol") if isinstance(prov.get("protocol"), str) else None
    if protocol == "unknown":
        protocol = None
    data_prov = Provenance.from_dict(prov.get("data"))
    settings = {k: prov[k] for k in ("parser", "order", "max_length") if k in prov}
    return Run(name=label(model, judge), metrics=metrics, source=str(path), model=model, judge=judge,
               protocol=protocol, provenance=data_prov, settings=settings)


def load_runs(path: str, name: str | None = None, use_samples: bool = True) -> list[Run]:
    """Every run at ``path``; ``name`` labels its one run (or names the model of one run with several judges)."""
    if not str(path).strip():
        raise InputError(f"empty run path{f' in {name}=' if name else ''}")
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise InputError(f"run not found: {p}")
    if not p.is_dir():  # a FIFO, socket or broken link is named for what it is (and never opened)
        require_regular_file(p)
    single = load_score_json(p)
    runs = [single] if single is not None else load_lm_eval_runs(p, use_samples)
    if not runs:
        raise InputError("not a run this tool can read (a `longrm score` JSON, or lm-eval output of "
                         "long_rewardbench tasks: a results_*.json or the folder holding it)", path=str(p))
    if name and len(runs) > 1 and len({r.source for r in runs}) == 1:
        for r in runs:  # one lm-eval run with several judges: NAME names the model, the judge kinds stay apart
            r.name = f"{name} [{r.judge}]"
        return runs
    if name:
        if len(runs) > 1:
            listing = ", ".join(f"{r.name} ({r.source})" for r in runs[:4])
            raise InputError(f"{name}={path} names one run but this path holds {len(runs)}: {listing}; "
                             f"pass one results file per NAME=", path=str(p))
        runs[0].name = name
    return runs


def load_run(path: str, name: str | None = None) -> Run:
    """The one run at ``path`` (an error asking to pick when it holds several)."""
    runs = load_runs(path, name)
    if len(runs) > 1:
        listing = ", ".join(f"{r.source} [{r.judge}]" for r in runs[:4])
        raise InputError(f"{len(runs)} runs here ({listing}); pick one results file", path=str(path))
    return runs[0]


def load_all(specs: Sequence[str], use_samples: bool = True) -> list[Run]:
    """Runs for ``RUN`` / ``NAME=RUN`` arguments, labels unique (derived ones get a protocol or ``#n``)."""
    runs: list[Run] = []
    for spec in specs:
        name, path = split_name(spec, lambda s: Path(s).exists())
        loaded = load_runs(path, name, use_samples)
        runs.extend(loaded)
    labels = unique_labels([r.name for r in runs], [r.protocol for r in runs])
    for run, new in zip(runs, labels):
        run.name = new
    return runs
