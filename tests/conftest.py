"""Shared by every test: the helpers' folder on the path, offline hub, vLLM skips, isolated logging, and the
session-wide fixtures (the wheel-installed venv).

``tests/`` mirrors the package: one folder per stage (``data/``, ``prompts/``, ``request_building/`` (for
``requests/``: a folder named ``requests`` on the path would shadow the library), ``context/``, ``metrics/``,
``report/``, ``rm/``), adapter (``adapters/lm_eval/``, ``adapters/rewardbench/``), engine
(``vllm_backend/``, not ``vllm/``, which ``find_spec("vllm")`` would take for the engine), train part (``train/``,
``train/alignment/``, ``train/synth/``), the commands, the plumbing and the benchmarks' own code (``bench/``).
Test file names stay unique across folders (pytest imports them by base name). Modules shared between folders live
in ``tests/helpers/`` (oracles, scripted servers, the repository's paths) and are imported by name.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

# No test may need the network, and none should wait on it: lm-eval's `dummy` model, for one, fetches a
# gpt2 tokenizer for its run log and retries the unreachable hub for ~45 s. Set before huggingface_hub
# is imported (it reads the variable once); tests of the online paths set their own value.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``vllm`` run vLLM's engine for real; without vllm installed they skip and say why.
    LONGRM_REQUIRE_VLLM=1 (set by .ci/run's vLLM job) turns that skip into a failure."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return
    reason = ("needs vLLM (the `vllm` marker): run in the vLLM venv .ci/run builds "
              "(${TMPDIR:-/tmp}/longrm-vllm-venv), see README 'vLLM'")
    marked = [item for item in items if item.get_closest_marker("vllm") is not None]
    if marked and os.environ.get("LONGRM_REQUIRE_VLLM") == "1":
        raise pytest.UsageError(f"LONGRM_REQUIRE_VLLM=1 but vllm is not importable: {len(marked)} vLLM tests cannot run")
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))


def _logging_state():
    import logging

    loggers = [logging.getLogger(), logging.getLogger("lm_eval")]
    return [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]


def _restore_logging(saved) -> None:
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.fixture(autouse=True)
def _isolated_logging():
    """Every test leaves logging as it found it.

    lm-eval's CLI (run in-process by many tests) adds a StreamHandler bound to the sys.stderr of that
    moment, which is pytest's capture of that one test, and then marks logging configured for the process.
    Left behind, the handler writes "--- Logging error --- Traceback" into later tests' stderr once that
    capture is closed; so handlers, levels and lm-eval's flag are put back after each test.
    """
    saved = _logging_state()
    utils = sys.modules.get("lm_eval.utils")
    configured = getattr(utils, "_LOGGING_CONFIGURED", None)
    yield
    _restore_logging(saved)
    utils = sys.modules.get("lm_eval.utils")
    if utils is not None and hasattr(utils, "_LOGGING_CONFIGURED"):
        utils._LOGGING_CONFIGURED = bool(configured)


@pytest.fixture(scope="session")
def lm_eval_venv(tmp_path_factory):
    """A fresh venv with this project's wheel installed (tests/helpers/lm_eval_venv.py), built once."""
    from lm_eval_venv import build_lm_eval_venv

    return build_lm_eval_venv(tmp_path_factory)
