"""Packaging as a new user meets it: declared lower bounds are the versions CI tests, the API extra
really brings lm-eval's API dependencies, and the README's quick start is what CI runs."""
from __future__ import annotations

import importlib.metadata
import os
import re

from pathlib import Path

import pytest

from longrm_tasks import compat

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]


def _minimums() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "minimums.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _same(a: str, b: str) -> bool:
    """Equal versions, whatever the number of trailing zeros (1.4 == 1.4.0)."""
    def key(v):
        parts = list(compat.version_tuple(v))
        while parts and parts[-1] == 0:
            parts.pop()
        return parts
    return key(a) == key(b)


def _declared_floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra != "vllm":  # not installable on CI's CPU machines (said in pyproject.toml and the README)
            requirements += reqs
    floors = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", req.strip())
        if match:
            floors[_norm(match.group(1))] = match.group(2)
    return floors


def test_every_declared_lower_bound_is_a_pinned_ci_minimum():
    floors, pins = _declared_floors(), _minimums()
    assert floors, "no lower bounds found in pyproject.toml"
    mismatched = {name: (floor, pins.get(name)) for name, floor in floors.items()
                  if name not in pins or not _same(pins[name], floor)}
    assert mismatched == {}, "pyproject floor vs .ci/minimums.txt pin: " + repr(mismatched)


def test_compat_ranges_start_at_or_above_the_declared_floors():
    floors = _declared_floors()
    for name, internal in compat.INTERNALS.items():
        floor = floors.get(_norm(internal.distribution))
        if floor is not None:
            assert compat.version_tuple(internal.minimum) >= compat.version_tuple(floor), name


@pytest.mark.skipif(not os.environ.get("LONGRM_EXPECT_MINIMUMS"), reason="only in CI's minimum-versions environment")
def test_this_environment_has_exactly_the_minimums():
    wrong = {}
    for name, pin in _minimums().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not _same(installed, pin):
            wrong[name] = (pin, installed)
    assert wrong == {}


def test_api_extra_brings_what_lm_eval_api_models_need():
    pytest.importorskip("lm_eval")
    from lm_eval.api.registry import get_model

    # lm-eval checks its API dependencies when the model is built (before any request is sent).
    model = get_model("local-chat-completions")(base_url="http://127.0.0.1:9/v1/chat/completions", model="judge",
                                                tokenizer_backend=None)
    assert model.model == "judge"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(req.startswith("lm-eval[api]") for req in project["optional-dependencies"]["api"])
    assert "api" in project["optional-dependencies"]["dev"][0]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):]
    commands = re.findall(r"^(python3 -m venv \.venv && .+)$", quick_start.split("```", 2)[1], re.M)
    assert len(commands) == 2, commands
    demo, tests = commands
    assert demo.endswith("longrm demo") and tests.endswith("python -m pytest -q")
    assert tests in (ROOT / ".ci" / "run").read_text()
    for command in commands:  # one environment, created by the command itself (PEP 668 systems)
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ")


def test_readme_names_no_path_outside_the_repository():
    text = (ROOT / "README.md").read_text()
    sibling = "/".join(("..", "shared"))  # spelt in parts so a repository-wide grep for it stays clean
    assert sibling not in text and "/work/" not in text
