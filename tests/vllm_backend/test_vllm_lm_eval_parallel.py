"""Tensor / data parallel arguments reach vLLM as vLLM documents them, for lm-eval's ``vllm`` and our
``vllm-rm``. Two CPU cores cannot run a TP=2 engine usefully, so each test takes the keyword arguments that
would be given to ``vllm.LLM`` and has vLLM's own ``EngineArgs.create_engine_config`` (the first thing
``LLM(...)`` does) build the engine configuration from them: vLLM, not us, says what they mean.
"""
from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.vllm


def _engine_config(kwargs: dict):
    import vllm

    return vllm.EngineArgs(**kwargs).create_engine_config()


class _Given(Exception):
    """Raised by the stand-in for ``vllm.LLM`` once it has the arguments: no engine is started."""


def test_lm_eval_vllm_passes_tensor_parallel_size_to_the_engine(models, monkeypatch):
    import lm_eval.models.vllm_causallms as lm_eval_vllm

    given = {}

    def record(**kwargs):
        given.update(kwargs)
        raise _Given

    monkeypatch.setattr(lm_eval_vllm, "LLM", record)
    with pytest.raises(_Given):
        lm_eval_vllm.VLLM(pretrained=str(models["causal"]), tensor_parallel_size=2, max_model_len=2048,
                          dtype="float32")
    assert given["tensor_parallel_size"] == 2 and given["max_model_len"] == 2048
    config = _engine_config(given)
    assert config.parallel_config.tensor_parallel_size == 2 and config.parallel_config.world_size == 2
    assert config.model_config.max_model_len == 2048


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed here")
def test_lm_eval_vllm_data_parallel_needs_ray():
    # lm-eval's vllm model runs data parallelism as one Ray actor per engine (vllm_causallms.py): without
    # ray it refuses at once, before any engine starts. vllm-rm does it with torchrun instead (below).
    import lm_eval.models.vllm_causallms as lm_eval_vllm

    with pytest.raises(ModuleNotFoundError, match="ray"):
        lm_eval_vllm.VLLM(pretrained="unused", data_parallel_size=2)


def test_vllm_rm_tensor_parallel_reaches_the_pooling_engine(models):
    from longrm_tasks.rm.vllm_scorer import pooling_engine_args

    args = pooling_engine_args(str(models["rm"]), dtype="float32", max_model_len=2048, tensor_parallel_size=2)
    config = _engine_config(args)
    assert config.parallel_config.tensor_parallel_size == 2 and config.parallel_config.world_size == 2
    assert config.model_config.runner_type == "pooling"


def test_vllm_rm_data_parallel_under_torchrun_is_vllms_external_launcher(models, monkeypatch):
    from longrm_tasks.errors import InputError
    from longrm_tasks.rm.vllm_scorer import pooling_engine_args

    # what torchrun sets for rank 0 of 2 (vLLM reads RANK/LOCAL_RANK for its external launcher)
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29511"}.items():
        monkeypatch.setenv(name, value)
    args = pooling_engine_args(str(models["rm"]), dtype="float32", max_model_len=2048, data_parallel_size=2,
                               world_size=2)
    config = _engine_config(args)
    assert config.parallel_config.data_parallel_size == 2
    assert config.parallel_config.distributed_executor_backend == "external_launcher"
    assert config.parallel_config.tensor_parallel_size == 1
    with pytest.raises(InputError, match="torchrun --nproc-per-node=2"):
        pooling_engine_args(str(models["rm"]), data_parallel_size=2, world_size=1)


def test_vllm_rm_passes_other_engine_args_through_and_still_refuses_typos(models):
    from longrm_tasks.adapters.lm_eval.vllm_rm import VLLMRewardModel, _engine_args
    from longrm_tasks.errors import InputError

    assert _engine_args({"enforce_eager": "true", "max_num_seqs": 4, "tensor_paralel_size": 2}) == \
        {"enforce_eager": True, "max_num_seqs": 4}
    with pytest.raises(InputError, match="did you mean 'tensor_parallel_size'"):
        VLLMRewardModel(pretrained=str(models["rm"]), tensor_paralel_size=2)
