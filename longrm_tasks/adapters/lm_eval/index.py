"""Index only our task folder when every task a run asks for is ours (``longrm eval``).

lm-eval's ``TaskManager`` indexes all of lm-eval's own ~14K task YAMLs on every
start (seconds to tens of seconds, most of a short run) before it looks at
``--tasks``. When the run asks only for names defined in our folder, that index
is never used: ``TaskManager(include_defaults=False)`` over our folder (plus the
user's ``--include_path``, which is indexed as usual) builds the same task and
group configs from the same files, so results are identical.

The decision is taken where lm-eval itself has the final task list: in its
``EvaluatorConfig.process_tasks`` (after ``--config`` files, CLI flags and
defaults are merged), through `longrm_tasks.compat`. Anything we cannot prove is
ours keeps lm-eval's full index:

- a name not defined in our folder (``hellaswag``), a glob pattern, a ``.yaml``
  path or a folder given as a task, a task given as a dict;
- any ``--include_path`` other than our own folder (a user task may reach
  lm-eval's tasks by name, or shadow one of ours).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
from pathlib import Path

from longrm_tasks import compat

log = logging.getLogger(__name__)

# Set while lm-eval's process_tasks runs for a run whose tasks are all ours: the
# TaskManager it builds then skips lm-eval's built-in folder.
_narrow: contextvars.ContextVar[bool] = contextvars.ContextVar("longrm_narrow_task_index", default=False)


def requested_names(tasks) -> list[str] | None:
    """The task list as lm-eval's process_tasks splits it, or None when an entry is not a plain string."""
    if tasks is None:
        return None
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    if not all(isinstance(item, str) for item in items):
        return None  # inline dict configs: lm-eval builds them without the index, we do not guess
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def only_our_folder(include_path, ours: Path) -> bool:
    """``include_path`` is empty or names only our folder."""
    from longrm_tasks.adapters.lm_eval.plugin import _same_path

    if include_path is None:
        return True
    paths = include_path if isinstance(include_path, (list, tuple)) else [include_path]
    return all(_same_path(p, ours) for p in paths)


@functools.lru_cache(maxsize=4)
def our_names(folder: str) -> frozenset[str]:
    """Every task, group and tag name lm-eval indexes in ``folder`` alone (tens of milliseconds)."""
    cls = compat.lm_eval_task_manager_class()
    return frozenset(cls(include_path=[folder], include_defaults=False).all_tasks)


def all_ours(tasks, include_path, folder: Path) -> bool:
    """Whether the narrow index serves this run: every requested name is an exact name from our folder."""
    names = requested_names(tasks)
    if not names or not only_our_folder(include_path, folder):
        return False
    ours = our_names(str(folder))
    # Exact names only: a glob could also match lm-eval's tasks; a path is read by lm-eval from disk.
    return all(name in ours for name in names)


def narrow_task_index(folder: Path):
    """A context in which lm-eval runs whose tasks are all from ``folder`` index only ``folder`` (and --include_path).

    Wraps ``EvaluatorConfig.process_tasks`` (takes the decision) and ``TaskManager.__init__``
    (applies it); both are restored on exit, so nothing outlives the ``longrm eval`` call.
    Raises `compat.IncompatibleVersion` now (not on entering) outside the lm-eval versions it was written for.
    """
    return _patched(compat.lm_eval_evaluator_config_class(), compat.lm_eval_task_manager_class(), folder)


@contextlib.contextmanager
def _patched(config_cls, manager_cls, folder: Path):
    original_process, original_init = config_cls.process_tasks, manager_cls.__init__

    @functools.wraps(original_process)
    def process_tasks(self, *args, **kwargs):
        narrow = all_ours(self.tasks, self.include_path, folder)
        if narrow:
            log.info("Long-RewardBench: every requested task is ours; indexing only %s (not lm-eval's own tasks)",
                     folder)
        token = _narrow.set(narrow)
        try:
            return original_process(self, *args, **kwargs)
        finally:
            _narrow.reset(token)

    signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        if _narrow.get():
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["include_defaults"] = False
            args, kwargs = bound.args[1:], bound.kwargs
        original_init(self, *args, **kwargs)

    config_cls.process_tasks, manager_cls.__init__ = process_tasks, __init__
    try:
        yield
    finally:
        config_cls.process_tasks, manager_cls.__init__ = original_process, original_init
