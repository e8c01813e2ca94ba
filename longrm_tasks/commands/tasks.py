"""`longrm tasks`: our lm-eval task names, one line each, and `--path`: the folder lm-eval reads them from.

Everything is read from the task folder itself (the YAMLs written by
``task_yamls/_generate.py``), so the list cannot drift from what lm-eval runs.
The folder is `longrm_tasks.adapters.lm_eval.plugin.TASK_DIR`: inside the
package in a wheel install, ``task_yamls/`` next to it in an editable install or
a source checkout. ``lm_eval --include_path "$(longrm tasks --path)"`` therefore
works in every install mode, with or without the start-up hook.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HELP = "list the Long-RewardBench lm-eval tasks (one line each), or print their folder for --include_path"

# The slice keys of the YAMLs' dataset_kwargs, in words.
JUDGES = {
    "generative": "generative judge",
    "loglikelihood": "verdict log-likelihood",
    "reward": "scalar reward model (--model hf-rm / vllm-rm)",
}
FORMATS = {"PairWise": "PairWise", "BestOfN": "Best-of-N"}


def add_arguments(p) -> None:
    p.add_argument("--path", action="store_true",
                   help="print only the task folder (for `lm_eval --include_path`); it exists in wheel, editable "
                        "and source-checkout installs")


@dataclass(frozen=True)
class TaskEntry:
    name: str
    line: str  # what it runs, in words
    is_group: bool


def task_dir() -> Path:
    from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR
    from longrm_tasks.errors import InputError

    folder = Path(TASK_DIR)
    if not folder.is_dir():
        raise InputError(f"{folder}: the task folder is missing from this installation (reinstall longrm-tasks)")
    return folder


def _load_yaml(path: Path) -> dict:
    """A task YAML as a dict; lm-eval's ``!function`` tags are kept as their text (nothing is imported)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    return data if isinstance(data, dict) else {}


def _describe_task(config: dict) -> str:
    kwargs = config.get("dataset_kwargs") or {}
    judge = JUDGES.get(kwargs.get("longrm_judge"), str(kwargs.get("longrm_judge", "?")))
    tasktypes = kwargs.get("longrm_tasktypes")
    formats = "both formats" if not tasktypes else ", ".join(FORMATS.get(t, t) for t in str(tasktypes).split(","))
    configs = kwargs.get("longrm_configs")
    scope = "every config" if not configs else str(configs).replace(",", ", ")
    return f"{judge}: {formats}, {scope}"


def read_tasks(folder: Path | None = None) -> list[TaskEntry]:
    """Every group and task defined under the task folder, groups first, then by name."""
    folder = folder or task_dir()
    entries = []
    for path in sorted(folder.rglob("*.yaml")):
        if path.name.startswith("_"):
            continue  # shared bases (`include:`), not tasks
        config = _load_yaml(path)
        if "group" in config:
            members = config.get("task") or []
            members = [members] if isinstance(members, str) else members
            alias = str(config.get("group_alias") or config["group"]).split(": ", 1)[-1]
            entries.append(TaskEntry(str(config["group"]),
                                     f"GROUP {alias}: whole benchmark (runs {', '.join(map(str, members))})",
                                     True))
        elif "task" in config:
            entries.append(TaskEntry(str(config["task"]), _describe_task(config), False))
    return sorted(entries, key=lambda e: (not e.is_group, e.name))


def run(args) -> int:
    if args.path:
        print(task_dir())
        return 0
    entries = read_tasks()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.line}")
    groups = sum(e.is_group for e in entries)
    print(f"\n{groups} groups and {len(entries) - groups} tasks in {task_dir()}. Run one with "
          f"`lm_eval --model ... --tasks NAME` (`longrm eval --help`: options).")
    return 0
