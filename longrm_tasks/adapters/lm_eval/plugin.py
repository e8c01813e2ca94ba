"""Make lm-eval see our task folder and the ``hf-rm`` model, without flags.

Two routes lead here:

- the start-up hook (``longrm_tasks_hook``, run from a ``.pth`` file) calls
  `register_models` right after lm-eval imports ``lm_eval.api.registry`` and
  `patch_task_manager` right after it imports ``lm_eval.tasks.manager``;
- ``longrm eval`` calls `activate` before handing its arguments to lm-eval.

Both step aside when lm-eval reads the entry points declared in pyproject.toml
(``lm_eval.tasks``: upstream PR #4015; ``lm_eval.models``: PR #4013): then
lm-eval finds us by itself and patching would register everything twice.
Both patch points are lm-eval internals, reached through `longrm_tasks.compat`:
outside the lm-eval versions they were written for, the hook steps aside and
says so in one line on stderr, and ``longrm eval`` stops with that line.
Only the standard library is imported here, so the hook stays free.
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
from pathlib import Path

from longrm_tasks import compat

# `--model` name -> "module:Class"; pyproject.toml's `lm_eval.models` entry points say the same.
MODEL_TARGETS = {
    "hf-rm": "longrm_tasks.adapters.lm_eval.rm:HFRewardModel",
    "vllm-rm": "longrm_tasks.adapters.lm_eval.vllm_rm:VLLMRewardModel",
}


def _find_task_dir() -> Path:
    package = Path(__file__).resolve().parents[2]
    # Installed wheel: longrm_tasks/task_yamls (setup.py maps it there).
    # Source checkout and editable install: task_yamls/ next to the package.
    for candidate in (package / "task_yamls", package.parent / "task_yamls"):
        if candidate.is_dir():
            return candidate
    return package / "task_yamls"


class _TaskFolder(str):
    """The task folder's path; also callable, returning itself.

    This is what our ``lm_eval.tasks`` entry point resolves to. PR #4015 is not
    released and may end up calling the object or using it as a path; a path
    string that can be called works either way.
    """

    def __call__(self) -> "_TaskFolder":
        return self


TASK_DIR = _TaskFolder(_find_task_dir())


def _lm_eval_source_mentions(group: str, relative_files: tuple[str, ...]) -> bool:
    """Whether lm-eval's own code names the entry-point group ``group`` (i.e. reads it)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    quoted = (f'"{group}"', f"'{group}'")
    for pattern in relative_files:
        for file in root.glob(pattern):
            text = file.read_text(encoding="utf-8", errors="replace")
            if any(q in text for q in quoted):
                return True
    return False


def lm_eval_reads_task_entry_points() -> bool:
    return _lm_eval_source_mentions("lm_eval.tasks", ("tasks/*.py", "api/*.py"))


def lm_eval_reads_model_entry_points() -> bool:
    return _lm_eval_source_mentions("lm_eval.models", ("api/*.py", "models/__init__.py"))


def with_task_dir(include_path):
    """``include_path`` with our folder in front (user folders come later and win on name clashes)."""
    ours = Path(TASK_DIR)
    if include_path is None:
        paths = []
    elif isinstance(include_path, (list, tuple)):
        paths = list(include_path)
    else:
        paths = [include_path]
    if any(_same_path(p, ours) for p in paths):
        return include_path
    return [ours, *paths]


def _same_path(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError, ValueError):
        return False


_announced: list[str] = []


def _step_aside() -> bool:
    """True (after one line on stderr, once per process) when this lm-eval is outside the patched range."""
    problem = compat.lm_eval_patch_problem()
    if problem is None:
        return False
    if not _announced:
        _announced.append(problem)
        sys.stderr.write(f"longrm-tasks: start-up hook steps aside: {problem}; "
                         f"use `lm_eval --include_path \"$(longrm tasks --path)\"`\n")
    return True


def running_lm_eval_cli() -> bool:
    """This process is lm-eval's own command line (``lm_eval ...`` or ``python -m lm_eval ...``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) == "lm_eval.__main__":
        return True
    # The console script; not sys.argv[0], which `longrm eval` sets to "lm_eval" for lm-eval's parser.
    return Path(getattr(main, "__file__", None) or "").name in ("lm_eval", "lm-eval")


def one_line_errors_under_lm_eval() -> None:
    """Under plain ``lm_eval``, our `InputError` ends as one line and exit code 2, as in ``longrm eval``.

    lm-eval runs our task code inside its own frames and has no hook for errors; a
    ``sys.excepthook`` (`errors.install_one_line_exit`) is the one place that sees an error
    that nobody caught, and it leaves every other exception to lm-eval's usual traceback.
    Not installed when lm-eval is used as a library (a notebook, a script of the user's own).
    """
    if running_lm_eval_cli():
        from longrm_tasks.errors import install_one_line_exit

        install_one_line_exit("lm_eval")


def patch_task_manager(manager_module) -> None:
    """Wrap ``TaskManager.__init__`` so every task index also covers our folder.

    ``manager_module`` is the module the hook saw imported; the class itself is taken through
    `compat` (version-checked).
    """
    one_line_errors_under_lm_eval()
    if _step_aside() or lm_eval_reads_task_entry_points():
        return
    cls = compat.lm_eval_task_manager_class()
    original = cls.__init__
    if getattr(original, "_longrm_tasks", False):
        return
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        raise RuntimeError("lm_eval's TaskManager has no include_path argument")

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.arguments["include_path"] = with_task_dir(bound.arguments.get("include_path"))
        original(*bound.args, **bound.kwargs)

    __init__._longrm_tasks = True
    cls.__init__ = __init__


def register_models(registry_module) -> None:
    """Register ``hf-rm`` and ``vllm-rm`` lazily ("module:Class" placeholders: nothing heavy is imported now)."""
    one_line_errors_under_lm_eval()
    if _step_aside() or lm_eval_reads_model_entry_points():
        return
    # lm-eval fills its model registry from lm_eval.models only while the registry
    # is empty (registry.get_model); registering first would hide every built-in model.
    import lm_eval.models  # noqa: F401

    registry = compat.lm_eval_model_registry()
    for name, target in MODEL_TARGETS.items():
        if name not in registry:
            registry.register(name, target=target)


def activate() -> None:
    """Apply both patches now, in this process (``longrm eval``); a no-op where the hook already did.

    Raises `compat.IncompatibleVersion` (one line) outside the lm-eval versions the patches were written for.
    """
    problem = compat.lm_eval_patch_problem()
    if problem is not None:
        raise compat.IncompatibleVersion(problem)
    import lm_eval.api.registry
    import lm_eval.tasks.manager

    register_models(lm_eval.api.registry)
    patch_task_manager(lm_eval.tasks.manager)

