"""Packaging and the start-up hook, checked on a real wheel installed into a fresh venv.

The venv (``lm_eval_venv``) sees the test interpreter's site-packages as plain
path entries, so lm-eval, torch and transformers come from there without any
download, while none of that interpreter's ``.pth`` files run (an editable
install of this project there must not leak its hook into the comparison).
"""
from __future__ import annotations

import json
import site
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from lm_eval_venv import REPO, copy_project, fresh_venv, pip  # noqa: E402  (tests/helpers)
OUR_GROUPS = ("long_rewardbench", "long_rewardbench_ll", "long_rewardbench_rm")


def test_wheel_ships_the_hook_the_task_yamls_and_the_entry_points(lm_eval_venv):
    with zipfile.ZipFile(lm_eval_venv.wheel) as wheel:
        names = set(wheel.namelist())
        assert wheel.read("longrm_tasks_hook.pth").decode() == "import longrm_tasks_hook\n"
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "longrm_tasks_hook.py" in names
    yamls = sorted(p.relative_to(REPO / "task_yamls").as_posix() for p in (REPO / "task_yamls").rglob("*.yaml"))
    assert yamls, "no task YAMLs in the repository"
    assert [y for y in yamls if f"longrm_tasks/task_yamls/{y}" not in names] == []
    assert "[lm_eval.models]\nhf-rm = longrm_tasks.adapters.lm_eval.rm:HFRewardModel" in entry_points
    assert "[lm_eval.tasks]\nlong_rewardbench = longrm_tasks.adapters.lm_eval.plugin:TASK_DIR" in entry_points
    installed = lm_eval_venv.site_packages
    assert (installed / "longrm_tasks_hook.pth").is_file()
    assert (installed / "longrm_tasks" / "task_yamls" / "long_rewardbench_rm" / "long_rewardbench_rm.yaml").is_file()


def test_entry_points_resolve_to_the_model_class_and_the_installed_task_folder(lm_eval_venv):
    done = lm_eval_venv.run("-c", """if True:
        import json
        from importlib.metadata import entry_points
        from lm_eval.api.model import LM
        (model,) = entry_points(group="lm_eval.models", name="hf-rm")
        (tasks,) = entry_points(group="lm_eval.tasks", name="long_rewardbench")
        cls, folder = model.load(), tasks.load()
        print(json.dumps([cls.__name__, issubclass(cls, LM), str(folder), str(folder())]))
    """)
    assert done.returncode == 0, done.stderr
    name, is_lm, folder, called = json.loads(done.stdout)
    assert (name, is_lm) == ("HFRewardModel", True)
    assert folder == called == str(lm_eval_venv.site_packages / "longrm_tasks" / "task_yamls")


_IMPORTED_AT_START = """if True:
    import json, sys
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                   ("longrm_tasks", "longrm_tasks_hook", "lm_eval", "torch", "transformers", "datasets"))
    print(json.dumps([heavy, [type(f).__name__ for f in sys.meta_path]]))
"""


@pytest.mark.parametrize("hook", [True, False])
def test_interpreter_start_imports_nothing_but_the_hook(lm_eval_venv, hook):
    done = lm_eval_venv.run("-c", _IMPORTED_AT_START, hook=hook)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    modules, finders = json.loads(done.stdout)
    assert modules == ["longrm_tasks_hook"]
    assert ("LmEvalWatcher" in finders) is hook


def test_a_failing_patch_is_reported_and_lm_eval_still_works(lm_eval_venv):
    # A broken install: our plugin module cannot be imported.
    done = lm_eval_venv.run("-c", """if True:
        import sys
        sys.modules["longrm_tasks.adapters.lm_eval.plugin"] = None
        from lm_eval.api.registry import get_model, model_registry
        import lm_eval.tasks
        print(get_model("dummy").__name__, "hf-rm" in model_registry)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DummyLM", "False"]
    assert "longrm-tasks: start-up hook for lm_eval.api.registry skipped (ModuleNotFoundError" in done.stderr
    assert "start-up hook for lm_eval.tasks.manager skipped" in done.stderr


_LM_EVAL_STATE = """if True:
    import json
    from lm_eval.api.registry import get_model, model_registry
    from lm_eval.tasks import TaskManager
    get_model("dummy")  # a run resolves its model: the registry is filled the way lm-eval fills it
    manager = TaskManager()
    print(json.dumps({"tasks": manager.all_tasks, "models": sorted(model_registry),
                      "init": TaskManager.__init__.__qualname__ + "@" + TaskManager.__init__.__module__}))
"""


def test_hook_switched_off_leaves_lm_eval_as_without_the_package(lm_eval_venv):
    off = lm_eval_venv.run("-c", _LM_EVAL_STATE, hook=False)
    assert off.returncode == 0, off.stderr
    # Without the package: no site processing at all, the base packages as plain paths.
    without = lm_eval_venv.run("-c", f"import sys; sys.path += {site.getsitepackages()!r}\n" + _LM_EVAL_STATE,
                               python=[sys.executable, "-S"])
    assert without.returncode == 0, without.stderr
    assert json.loads(off.stdout) == json.loads(without.stdout)
    assert not any(t.startswith("long_rewardbench") for t in json.loads(off.stdout)["tasks"])


def test_plain_lm_eval_ls_tasks_lists_ours(lm_eval_venv):
    done = lm_eval_venv.run("-m", "lm_eval", "ls", "tasks")
    assert done.returncode == 0, done.stderr[-3000:]
    listed = {cell.strip() for line in done.stdout.splitlines() for cell in line.split("|")}
    assert set(OUR_GROUPS) <= listed
    assert {"long_rewardbench_pairwise_longqa", "long_rewardbench_rm_bon", "long_rewardbench_ll_pairwise"} <= listed
    assert "arc_easy" in listed  # lm-eval's own tasks are still there


def test_editable_install_gets_the_hook_and_the_source_task_folder(tmp_path):
    project = copy_project(tmp_path / "longrm-tasks")
    venv = fresh_venv(tmp_path / "venv")
    pip(venv, "install", "-e", str(project))
    assert (venv.site_packages / "longrm_tasks_hook.pth").read_text() == "import longrm_tasks_hook\n"
    done = venv.run("-c", """if True:
        import json
        import lm_eval.tasks
        from lm_eval.api.registry import model_registry
        from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR
        print(json.dumps([str(TASK_DIR), getattr(lm_eval.tasks.TaskManager.__init__, "_longrm_tasks", False),
                          "hf-rm" in model_registry, "hf" in model_registry]))
    """)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [str(project / "task_yamls"), True, True, True]
    # `longrm tasks --path` prints the source folder an editable install reads (the README's fallback)
    printed = venv.run("-m", "longrm_tasks.cli", "tasks", "--path")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == str(project / "task_yamls")


def test_longrm_tasks_path_in_a_wheel_install_is_the_installed_folder(lm_eval_venv):
    done = lm_eval_venv.run("-m", "longrm_tasks.cli", "tasks", "--path")
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder == lm_eval_venv.site_packages / "longrm_tasks" / "task_yamls"
    assert (folder / "long_rewardbench" / "long_rewardbench.yaml").is_file()


def test_include_path_fallback_works_without_the_hook(lm_eval_venv):
    # The README's fallback: the hook off, lm-eval pointed at `longrm tasks --path`.
    path = lm_eval_venv.run("-m", "longrm_tasks.cli", "tasks", "--path", hook=False).stdout.strip()
    done = lm_eval_venv.run("-c", f"""if True:
        from lm_eval.tasks import TaskManager
        print(sorted(t for t in TaskManager(include_path={path!r}).all_tasks if t.startswith("long_rewardbench"))[:3])
    """, hook=False)
    assert done.returncode == 0, done.stderr
    assert "long_rewardbench" in done.stdout


def test_hook_on_an_lm_eval_outside_its_range_steps_aside_in_one_line(lm_eval_venv):
    # The hook reads lm-eval's version when lm-eval is imported; pretend an older release is installed.
    done = lm_eval_venv.run("-c", """if True:
        import longrm_tasks.compat as compat
        real = compat.installed_version
        compat.installed_version = lambda dist: "0.4.11" if dist == "lm-eval" else real(dist)
        from lm_eval.api.registry import get_model, model_registry
        from lm_eval.tasks import TaskManager
        get_model("dummy")
        print("hf-rm" in model_registry, getattr(TaskManager.__init__, "_longrm_tasks", False))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    lines = [line for line in done.stderr.splitlines() if "longrm-tasks" in line]
    assert len(lines) == 1, done.stderr
    assert "steps aside" in lines[0] and "lm-eval 0.4.11 is installed" in lines[0]
