"""The public surface users and other tools depend on, held still while the code behind it moves: the ``longrm``
command tree and its options, the console script, lm-eval's plugin entry points, every task and group name, the
metric keys each task writes into lm-eval's results, and the Python imports the README documents.

The expected surface is `public_surface.json` beside this file. A change to it is a change users see: make it on
purpose (``LONGRM_WRITE_SURFACE=1 python -m pytest tests/plumbing/test_public_surface.py`` rewrites the file)
and say it in the README. Module paths behind entry points and ``!function`` tags may move; each must still resolve.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from longrm_tasks import cli
from longrm_tasks.commands.tasks import _load_yaml

from project import ROOT  # noqa: E402
SNAPSHOT = Path(__file__).with_name("public_surface.json")
FUNCTION_TAG = re.compile(r"!function\s+([\w.]+)")
DOCUMENTED_IMPORT = re.compile(r"^from (longrm_tasks[\w.]*) import ([\w, ]+)$|python -m (longrm_tasks[\w.]*)", re.M)


def _commands() -> dict[str, list[str]]:
    """``longrm ...`` command path -> its option strings (and positional names), for every command."""
    out = {}

    def walk(parser: argparse.ArgumentParser, prog: str):
        options = []
        for action in parser._actions:  # argparse keeps no public list of a parser's actions
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prog} {name}")
            elif action.option_strings:
                options += action.option_strings
            else:
                options.append(action.dest)
        out[prog] = sorted(options)

    walk(cli.build_parser(), "longrm")
    return out


def _yaml_with_includes(path: Path) -> dict:
    config = _load_yaml(path)
    if "include" in config:
        base = _yaml_with_includes((path.parent / config["include"]).resolve())
        config = {**base, **{k: v for k, v in config.items() if k != "include"}}
    return config


def _tasks() -> dict[str, list[str]]:
    """Task name -> the metric keys it reports; group name -> its members (prefixed ``group:``)."""
    out = {}
    for path in sorted((ROOT / "task_yamls").rglob("*.yaml")):
        if path.name.startswith("_"):
            continue
        config = _yaml_with_includes(path)
        if "group" in config:
            members = config.get("task") or []
            out[f"group:{config['group']}"] = sorted([members] if isinstance(members, str) else members)
        else:
            out[config["task"]] = [m["metric"] for m in config.get("metric_list") or []]
    return out


def _entry_points() -> dict[str, list[str]]:
    """What pip installed from pyproject.toml (read from the installed metadata, the way lm-eval and the shell find
    them; a stdlib TOML parser would need Python 3.11): console scripts and every plugin group."""
    points = metadata.distribution("longrm-tasks").entry_points
    out: dict[str, list[str]] = {}
    for point in points:
        key = "scripts" if point.group == "console_scripts" else f"entry-points.{point.group}"
        out.setdefault(key, []).append(point.name)
    return {key: sorted(names) for key, names in sorted(out.items())}


def _surface() -> dict:
    return {"commands": _commands(), "entry_points": _entry_points(), "tasks": _tasks()}


def _resolve(target: str):
    """``module:attr`` or ``module.attr`` -> the object, imported for real."""
    module, sep, attr = target.partition(":")
    if not sep:
        module, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_the_public_surface_is_unchanged():
    surface = _surface()
    if os.environ.get("LONGRM_WRITE_SURFACE") == "1":
        SNAPSHOT.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in ("entry_points", "commands", "tasks"):
        added = sorted(set(surface[part]) - set(expected[part]))
        removed = sorted(set(expected[part]) - set(surface[part]))
        changed = sorted(k for k in set(surface[part]) & set(expected[part]) if surface[part][k] != expected[part][k])
        assert not (added or removed or changed), f"{part}: added {added}, removed {removed}, changed {changed}"


def test_every_entry_point_and_task_function_resolves():
    targets = [point.value for point in metadata.distribution("longrm-tasks").entry_points]
    for path in (ROOT / "task_yamls").rglob("*.yaml"):
        targets += FUNCTION_TAG.findall(path.read_text(encoding="utf-8"))
    assert len(targets) > 10
    unresolved = []
    for target in sorted(set(targets)):
        try:
            _resolve(target)
        except (ImportError, AttributeError) as err:
            unresolved.append(f"{target}: {type(err).__name__}: {err}")
    assert unresolved == []


def test_the_imports_the_readme_documents_work():
    found = DOCUMENTED_IMPORT.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert found
    for module, names, run_module in found:
        if run_module:
            assert importlib.util.find_spec(run_module) is not None, run_module
            continue
        imported = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(imported, name), f"from {module} import {name}"


def test_the_package_api_resolves_lazily():
    import longrm_tasks

    assert set(longrm_tasks.__all__) == {"BENCHMARK_NAME", "HUB_DATASET", "__version__", *longrm_tasks._PUBLIC}
    for name in longrm_tasks.__all__:
        assert getattr(longrm_tasks, name) is not None, name
    assert set(longrm_tasks.__all__) <= set(dir(longrm_tasks))
    try:
        longrm_tasks.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    # the import itself stays cheap: no engine is loaded until a name is used
    code = ("import sys, longrm_tasks; heavy = [m for m in ('torch', 'transformers', 'lm_eval', 'trl') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# The top level is plumbing; every stage, adapter and trainer part lives in a package (ARCHITECTURE.md).
PLUMBING = {"__init__", "atomic", "cli", "compat", "errors", "jsonl", "paths", "testing", "vllm_cpu_alias"}


def test_the_top_level_holds_plumbing_only():
    modules = {p.stem for p in (ROOT / "longrm_tasks").glob("*.py")}
    assert modules == PLUMBING, f"new top-level modules {sorted(modules - PLUMBING)}: put them in their stage package"
