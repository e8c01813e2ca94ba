"""Where the repository's own files are, for tests at any depth of ``tests/``."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASK_DIR = ROOT / "task_yamls"
RECIPES = ROOT / "recipes"
BENCHMARKS = ROOT / "benchmarks"


def task_manager(metadata):
    """lm-eval's TaskManager over our task folder only, with ``metadata`` as ``--metadata`` would give it."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=metadata)
