"""A venv with this project's wheel installed, for tests of what a user's ``pip install`` gets.

The venv sees the test interpreter's site-packages as plain path entries, so
lm-eval, torch and transformers come from there without any download, while
none of that interpreter's ``.pth`` files run (an editable install of this
project there must not leak its hook into the comparison). Built once per test
session and reused from disk (the ``lm_eval_venv`` fixture in ``tests/conftest.py``).
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from project import ROOT as REPO

PROJECT_FILES = ("pyproject.toml", "setup.py", "longrm_tasks_hook.py", "README.md", "longrm_tasks", "task_yamls")
SITE_PACKAGES = Path("lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")


@dataclass(frozen=True)
class Venv:
    root: Path
    wheel: Path | None = None

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    @property
    def site_packages(self) -> Path:
        return self.root / SITE_PACKAGES

    def run(self, *args: str, hook: bool = True, cwd: Path | None = None, timeout: int = 300,
            python: list[str] | None = None) -> subprocess.CompletedProcess:
        """Run ``python ARGS`` in this venv (or ``python`` given), offline, outside the repository."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LONGRM_TASKS_NO_HOOK")}
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
        if not hook:
            env["LONGRM_TASKS_NO_HOOK"] = "1"
        # The working directory is on sys.path with `-m`/`-c`: keep the source tree out of it.
        return subprocess.run([*(python or [self.python]), *args], cwd=cwd or self.root, env=env,
                              capture_output=True, text=True, timeout=timeout)


def copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def fresh_venv(root: Path) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    venv = Venv(root)
    # Plain path lines: the base interpreter's packages, without running its .pth files.
    (venv.site_packages / "_base_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def pip(venv: Venv, *args: str) -> None:
    done = venv.run("-m", "pip", *args, "--no-deps", "--no-build-isolation", "--no-index", "-q", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def build_lm_eval_venv(tmp_path_factory) -> Venv:
    """A venv with this project's wheel installed; built once per test session, reused from disk."""
    root = tmp_path_factory.getbasetemp() / "lm-eval-venv"
    wheels = tmp_path_factory.getbasetemp() / "lm-eval-wheel"
    if (root / "ready").exists():
        return Venv(root, next(wheels.glob("*.whl")))
    project = copy_project(tmp_path_factory.mktemp("project") / "longrm-tasks")
    venv = fresh_venv(root)
    pip(venv, "wheel", str(project), "-w", str(wheels))
    wheel = next(wheels.glob("longrm_tasks-*.whl"))
    pip(venv, "install", str(wheel))
    (root / "ready").touch()
    return Venv(root, wheel)
