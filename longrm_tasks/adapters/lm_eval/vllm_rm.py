"""``--model vllm-rm``: a scalar reward model on vLLM's pooling runner inside lm-eval.

The same requests, grouping and ``(reward, False)`` answers as ``hf-rm``
(`longrm_tasks.adapters.lm_eval.rm.RewardModelLM`); the scoring is
`longrm_tasks.rm.vllm_scorer.VLLMRewardScorer` (``LLM.encode(...,
pooling_task="classify")`` with raw rewards, automatic prefix caching instead
of our shared-prefix cache). Engine options pass through to ``vllm.LLM``:
``tensor_parallel_size``, ``data_parallel_size`` (one engine per process under
``torchrun``, lm-eval sharding the documents), ``max_model_len``,
``gpu_memory_utilization``, ``dtype``, ``enable_prefix_caching``, ``seed``,
``trust_remote_code``, and any other field of ``vllm.EngineArgs`` (``enforce_eager``,
``max_num_seqs``, ...), as lm-eval's ``vllm`` model passes its extra kwargs.

    lm_eval --model vllm-rm --model_args pretrained=Skywork/Skywork-Reward-V2-Llama-3.1-8B,\\
        tensor_parallel_size=2,max_model_len=131072 --tasks long_rewardbench_rm
    torchrun --nproc-per-node=8 -m lm_eval --model vllm-rm \\
        --model_args pretrained=...,data_parallel_size=8 --tasks long_rewardbench_rm

It logs one line with the context it fits items to and where that came from
(``max_model_len``/``max_length`` argument, else the engine's own
``max_model_len``). Tested on vLLM's CPU build (tests/vllm_backend/test_vllm_lm_eval.py,
marker ``vllm``): same prompts, over-context counts and rewards as ``hf-rm``.
"""
from __future__ import annotations

import os
from typing import Any

from longrm_tasks.adapters.lm_eval.rm import RewardModelLM, _flag, check_model_args, say_input_errors


def _engine_args(given: dict[str, Any]) -> dict[str, Any]:
    """The model args that are fields of ``vllm.EngineArgs`` (e.g. ``enforce_eager``, ``max_num_seqs``): passed to
    ``vllm.LLM`` as lm-eval's own ``vllm`` model passes its extra kwargs; any other unknown key stays an error.
    Values arrive as strings from ``--model_args``: converted to the field's default's type."""
    import dataclasses
    import importlib.util

    if not given or importlib.util.find_spec("vllm") is None:
        return {}  # without vLLM every unknown key is refused (the missing-vLLM message comes next)
    from longrm_tasks.rm.vllm_scorer import import_vllm

    fields = {f.name: f for f in dataclasses.fields(import_vllm().EngineArgs)}
    out = {}
    for key, value in given.items():
        field = fields.get(key)
        if field is None:
            continue
        default = field.default
        if isinstance(default, bool):
            value = _flag(value)
        elif isinstance(default, (int, float)) and isinstance(value, str):
            value = type(default)(value)
        out[key] = value
    return out


class VLLMRewardModel(RewardModelLM):
    """lm-eval model over `VLLMRewardScorer`; build it from a checkpoint or around an existing scorer."""

    MODEL_NAME = "vllm-rm"

    @say_input_errors
    def __init__(self, pretrained, tokenizer: str | None = None, dtype: str = "auto",
                 max_model_len: int | None = None, max_length: int | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, gpu_memory_utilization: float = 0.9, truncation: str = "middle",
                 wave_tokens: int = 131_072, enable_prefix_caching: bool = True, seed: int = 0,
                 trust_remote_code: bool = False, device: str | None = None, batch_size: Any = None,
                 max_batch_size: Any = None, **unused: Any):
        # device / batch_size / max_batch_size: what lm-eval's CLI always passes; vLLM places and batches itself.
        super().__init__()
        from longrm_tasks.rm.vllm_scorer import VLLMRewardScorer

        engine_extra = _engine_args(unused)
        check_model_args(type(self), {k: v for k, v in unused.items() if k not in engine_extra}, self.MODEL_NAME)
        if max_length is not None and max_model_len is not None and int(max_length) != int(max_model_len):
            raise ValueError("pass max_model_len or max_length, not both")
        length = max_model_len if max_model_len is not None else max_length
        if isinstance(pretrained, VLLMRewardScorer):
            self.scorer = pretrained  # an engine the caller already started
        else:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            self.scorer = VLLMRewardScorer.from_pretrained(
                pretrained, max_length=None if length is None else int(length), truncation=truncation,
                wave_tokens=int(wave_tokens), tokenizer=tokenizer, dtype=dtype,
                tensor_parallel_size=int(tensor_parallel_size), data_parallel_size=int(data_parallel_size),
                world_size=world_size, gpu_memory_utilization=float(gpu_memory_utilization),
                enable_prefix_caching=_flag(enable_prefix_caching), seed=int(seed),
                trust_remote_code=_flag(trust_remote_code), **engine_extra)
            if world_size > 1:
                self._join_launch(world_size)
        self._say_context(None if length is None else int(length),
                          "max_model_len argument" if max_model_len is not None else "max_length argument")

    def _say_context(self, given: int | None, given_source: str) -> None:
        """One line: the context items are fitted to and where it came from (vLLM derives it when not given)."""
        import sys

        value = getattr(self.scorer, "max_length", None)
        if given is not None and value == given:
            source = given_source
        else:
            engine = getattr(getattr(getattr(self.scorer, "llm", None), "llm_engine", None), "model_config", None)
            derived = getattr(engine, "max_model_len", None)
            source = ("vLLM engine's max_model_len (derived from the model config)" if derived == value
                      and value is not None else "the scorer's max_length")
        shown = f"{value:,} tokens" if value else "unknown"
        print(f"{self.MODEL_NAME}: context {shown} from {source}", file=sys.stderr)

    def _join_launch(self, world_size: int) -> None:
        """One engine per process: this process is lm-eval rank RANK of WORLD_SIZE, talking over vLLM's gloo group."""
        import torch
        from vllm.distributed.parallel_state import get_world_group

        self._rank, self._world_size = int(os.environ["RANK"]), world_size
        self._group = get_world_group().cpu_group
        self._device = torch.device("cpu")
