"""Shared-context log-probs under FSDP2 (two CPU processes, gloo): sharded gradients equal one process's."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

PROMPT = list(range(3, 70))
RESPONSES = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]


def _model():
    from longrm_tasks.testing import build_model
    from longrm_tasks.train.shared_context import enable_shared_prefix_attention

    model, _ = build_model(hidden=32, layers=2, vocab_size=301)  # odd vocabulary: uneven head shards
    enable_shared_prefix_attention(model)
    return model


def _logps_through_forward(model):
    """As the alignment trainer does: through the (FSDP-hooked) root forward."""
    from trl.models.utils import _ForwardRedirection

    from longrm_tasks.train.shared_context import shared_context_logps

    return _ForwardRedirection()(model, model, lambda: shared_context_logps(model, PROMPT, RESPONSES))[0]


def _rank(rank: int, world: int, port: int, out: str, head_unit: bool) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _model()
    for layer in model.model.layers:
        fully_shard(layer)
    if head_unit:  # its own FSDP unit: the head's weight stays a DTensor shard during the root forward
        fully_shard(model.lm_head)
    fully_shard(model)
    _logps_through_forward(model).sum().backward()
    grads = {name: p.grad.full_tensor() for name, p in model.named_parameters()}
    if rank == 0:
        torch.save(grads, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
@pytest.mark.parametrize("head_unit", [False, True])
def test_fsdp2_sharded_gradients_equal_single_process(tmp_path, head_unit):
    out = str(tmp_path / "grads.pt")
    mp.spawn(_rank, args=(2, _free_port(), out, head_unit), nprocs=2, join=True)
    sharded = torch.load(out)
    reference = _model()
    _logps_through_forward(reference).sum().backward()
    for name, p in reference.named_parameters():
        # both ranks saw the same item: FSDP's averaged gradient is the single-process one
        torch.testing.assert_close(sharded[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)
