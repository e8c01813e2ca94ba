"""Package layout that pyproject.toml cannot express; metadata lives in pyproject.toml.

Two things need code here:

- ``task_yamls/`` sits at the repository top level (the folder users point
  ``--include_path`` at) but must ship inside the wheel, so it is mapped to the
  package ``longrm_tasks.task_yamls``.
- ``longrm_tasks_hook.pth`` must land at the top of site-packages, where
  ``site`` runs its ``import`` line at interpreter start. setuptools installs
  package data only inside packages, so ``build_py`` writes the file into the
  build root (regular wheels) and ``editable_wheel`` adds it to the editable
  wheel (``pip install -e .``), whose build root is not part of the install.
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "longrm_tasks_hook.pth"
# One line: site.py executes .pth lines that start with "import". The module
# checks LONGRM_TASKS_NO_HOOK and catches everything itself.
PTH_LINE = "import longrm_tasks_hook\n"


class BuildPyWithHook(build_py):
    """build_py that also writes the start-up .pth file next to the packages (the wheel's root)."""

    def run(self):
        super().run()
        if not self.editable_mode:  # editable installs: see EditableWheelWithHook
            Path(self.build_lib, PTH_NAME).write_text(PTH_LINE, encoding="utf-8")


class EditableWheelWithHook(editable_wheel):
    """editable_wheel that installs the same .pth file as a regular install.

    Files left in the unpacked-wheel folder go into the editable wheel as they
    are (that is how setuptools ships scripts and data there).
    """

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        outputs = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        Path(unpacked_wheel, PTH_NAME).write_text(PTH_LINE, encoding="utf-8")
        return outputs


setup(
    packages=find_packages(include=["longrm_tasks", "longrm_tasks.*"]) + ["longrm_tasks.task_yamls"],
    package_dir={"longrm_tasks.task_yamls": "task_yamls"},
    py_modules=["longrm_tasks_hook"],
    package_data={
        "longrm_tasks": ["data/sample/*.jsonl", "data/sample/*.md", "data/*.json",
                         "train/sample/*.jsonl", "train/sample/*.md"],
        "longrm_tasks.task_yamls": ["*.yaml", "**/*.yaml"],
    },
    cmdclass={"build_py": BuildPyWithHook, "editable_wheel": EditableWheelWithHook},
)
