"""What the vLLM tests share: the tiny checkpoints vLLM's engine loads (head_dim 32: vLLM's CPU attention kernels
reject head_dim 16)."""
import pytest


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A causal judge and a sequence-classification reward model, one shape, saved once per session."""
    from longrm_tasks.testing import save_tiny_model

    root = tmp_path_factory.mktemp("vllm-models")
    shape = dict(arch="llama", hidden=64, heads=2, kv_heads=1, layers=1, max_positions=4096)
    return {"causal": save_tiny_model(root / "causal", "causal", **shape),
            "rm": save_tiny_model(root / "rm", "seq-cls", **shape)}
