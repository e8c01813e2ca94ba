"""Long-RewardBench for the tools people already run, and a LongRM trainer.

The public API is the stage pipeline's entry points, one per stage (see
ARCHITECTURE.md): data -> prompts -> requests -> verdicts -> metrics -> report.
Names resolve on first use (PEP 562 ``__getattr__``), so ``import longrm_tasks``
imports neither torch, transformers nor lm-eval; the modules behind them import
their heavy dependencies themselves.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

BENCHMARK_NAME = "Long-RewardBench"
HUB_DATASET = "LCM-Lab/LongRewardBench"

# public name -> module that defines it, in pipeline order
_PUBLIC = {
    # data
    "CONFIGS": "longrm_tasks.data.schema",
    "TASKTYPES": "longrm_tasks.data.schema",
    "Item": "longrm_tasks.data.schema",
    "Benchmark": "longrm_tasks.data.loading",
    "load_benchmark": "longrm_tasks.data.loading",
    # prompts
    "OrderScheme": "longrm_tasks.prompts.orders",
    "judge_messages": "longrm_tasks.prompts.judge_prompts",
    # requests (and the context rules they apply)
    "Fitting": "longrm_tasks.context.fitting",
    "build_presentations": "longrm_tasks.requests.build",
    "FitStats": "longrm_tasks.context.fitting",
    # verdicts
    "parse_judgment": "longrm_tasks.verdicts.parsing",
    "read_predictions": "longrm_tasks.verdicts.predictions",
    # metrics
    "Judged": "longrm_tasks.metrics.benchmark",
    "compute_metrics": "longrm_tasks.metrics.benchmark",
    # report
    "load_runs": "longrm_tasks.report.runs",
    "markdown": "longrm_tasks.report.table",
    # reward-model scoring with shared prefixes
    "RewardScorer": "longrm_tasks.rm.prefix_scorer",
    # errors every stage raises for bad input
    "InputError": "longrm_tasks.errors",
}

# spelled out so static tools see it; a test holds it equal to the table above
__all__ = [
    "BENCHMARK_NAME", "HUB_DATASET", "__version__", "CONFIGS", "TASKTYPES", "Item", "Benchmark",
    "load_benchmark", "OrderScheme", "judge_messages", "Fitting", "build_presentations", "FitStats",
    "parse_judgment", "read_predictions", "Judged", "compute_metrics", "load_runs", "markdown", "RewardScorer",
    "InputError",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'longrm_tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:  # static tools see the real objects
    from longrm_tasks.context.fitting import Fitting, FitStats
    from longrm_tasks.data.loading import Benchmark, load_benchmark
    from longrm_tasks.data.schema import CONFIGS, TASKTYPES, Item
    from longrm_tasks.errors import InputError
    from longrm_tasks.metrics.benchmark import Judged, compute_metrics
    from longrm_tasks.prompts.judge_prompts import judge_messages
    from longrm_tasks.prompts.orders import OrderScheme
    from longrm_tasks.report.runs import load_runs
    from longrm_tasks.report.table import markdown
    from longrm_tasks.requests.build import build_presentations
    from longrm_tasks.rm.prefix_scorer import RewardScorer
    from longrm_tasks.verdicts.parsing import parse_judgment
    from longrm_tasks.verdicts.predictions import read_predictions
