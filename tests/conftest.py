import sys
from pathlib import Path

# The oracle module lives next to the tests.
sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``vllm`` run vLLM's engine for real; without vllm installed they skip and say why.
    LONGRM_REQUIRE_VLLM=1 (set by .ci/run's vLLM job) turns that skip into a failure."""
    import importlib.util
    import os

    import pytest

    if importlib.util.find_spec("vllm") is not None:
        return
    reason = ("needs vLLM (the `vllm` marker): run in the vLLM venv .ci/run builds "
              "(${TMPDIR:-/tmp}/longrm-vllm-venv), see README 'vLLM'")
    marked = [item for item in items if item.get_closest_marker("vllm") is not None]
    if marked and os.environ.get("LONGRM_REQUIRE_VLLM") == "1":
        raise pytest.UsageError(f"LONGRM_REQUIRE_VLLM=1 but vllm is not importable: {len(marked)} vLLM tests cannot run")
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))
