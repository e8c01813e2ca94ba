"""Start-up hook of longrm-tasks: plain ``lm_eval`` finds Long-RewardBench and ``hf-rm``,
and plain ``rewardbench`` / RewardBench's ``scripts.run_v2`` know the ``long-rewardbench`` dataset.

``longrm_tasks_hook.pth`` (installed at the top of site-packages) imports this
module when the interpreter starts. It only puts a watcher on ``sys.meta_path``
that waits for a few modules of lm-eval and RewardBench; nothing else is imported, and every other
import passes through with one dictionary lookup. When lm-eval loads one of
them, ``longrm_tasks.adapters.lm_eval.plugin`` patches it (task folder into
``TaskManager``, ``hf-rm`` into the model registry); RewardBench's modules are
patched by ``longrm_tasks.adapters.rewardbench.hook``. The plugin module steps
aside by itself once lm-eval reads the ``lm_eval.tasks`` / ``lm_eval.models``
entry points we declare.

``LONGRM_TASKS_NO_HOOK=1`` turns all of it off (nothing is installed at all).
Nothing here may raise: a broken hook must never break an interpreter start or
an lm-eval run, so failures become one warning on stderr.
"""
import os
import sys

ENV_SWITCH = "LONGRM_TASKS_NO_HOOK"

# module another tool imports -> "module:function" run with it right after its code has run
_WATCHED = {
    "lm_eval.api.registry": "longrm_tasks.adapters.lm_eval.plugin:register_models",
    "lm_eval.tasks.manager": "longrm_tasks.adapters.lm_eval.plugin:patch_task_manager",
    "rewardbench.rewardbench": "longrm_tasks.adapters.rewardbench.hook:on_import",
    "scripts.run_v2": "longrm_tasks.adapters.rewardbench.hook:on_import",
}


def _after_import(fullname, module):
    try:
        import importlib

        target_module, _, function = _WATCHED[fullname].partition(":")
        getattr(importlib.import_module(target_module), function)(module)
    except Exception as err:  # noqa: BLE001 - the hook must never break the tool
        sys.stderr.write(f"longrm-tasks: start-up hook for {fullname} skipped ({type(err).__name__}: {err}); "
                         f"`longrm eval` (lm-eval) and `python -m longrm_tasks.adapters.rewardbench.hook` "
                         f"work without it\n")


class LmEvalWatcher:
    """Meta-path finder that runs `_after_import` once a tool has executed a watched module.

    ``names`` is the subset of `_WATCHED` it acts on: everything when installed
    at start-up, only RewardBench's modules when `longrm_tasks.adapters.rewardbench.hook`
    installs it explicitly under ``LONGRM_TASKS_NO_HOOK=1``.

    It finds nothing itself: it asks the finders behind it for the real spec and
    wraps that spec's ``exec_module`` (the loader instance is per module), so the
    module keeps its own loader, file and source.
    """

    def __init__(self, names=None):
        self.names = set(_WATCHED if names is None else names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        try:
            return self._wrapped_spec(fullname, path, target)
        except Exception:  # noqa: BLE001 - fall back to the normal import
            return None

    def _wrapped_spec(self, fullname, path, target):
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        original = loader.exec_module

        def exec_module(module):
            original(module)
            _after_import(fullname, module)

        loader.exec_module = exec_module
        return spec


def install(names=None, force=False):
    """Put the watcher first on ``sys.meta_path`` (or widen the one there) for ``names``.

    At start-up it watches everything unless switched off; ``force`` is for an
    explicit caller (a wrapper command) that wants its modules watched anyway.
    """
    if not force and os.environ.get(ENV_SWITCH, "").strip().lower() not in ("", "0", "false", "no"):
        return
    for finder in sys.meta_path:
        if isinstance(finder, LmEvalWatcher):
            finder.names.update(_WATCHED if names is None else names)
            return
    sys.meta_path.insert(0, LmEvalWatcher(names))


try:
    install()
except Exception:  # noqa: BLE001 - never break interpreter start-up
    pass
