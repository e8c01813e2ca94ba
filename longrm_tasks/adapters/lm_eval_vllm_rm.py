"""``--model vllm-rm``: a scalar reward model on vLLM's pooling runner inside lm-eval.

The same requests, grouping and ``(reward, False)`` answers as ``hf-rm``
(`longrm_tasks.adapters.lm_eval_rm.RewardModelLM`); the scoring is
`longrm_tasks.rm.vllm_scorer.VLLMRewardScorer` (``LLM.encode(...,
pooling_task="classify")`` with raw rewards, automatic prefix caching instead
of our shared-prefix cache). Engine options pass through to ``vllm.LLM``:
``tensor_parallel_size``, ``data_parallel_size`` (one engine per process under
``torchrun``, lm-eval sharding the documents), ``max_model_len``,
``gpu_memory_utilization``, ``dtype``, ``enable_prefix_caching``, ``seed``,
``trust_remote_code``.

    lm_eval --model vllm-rm --model_args pretrained=Skywork/Skywork-Reward-V2-Llama-3.1-8B,\\
        tensor_parallel_size=2,max_model_len=131072 --tasks long_rewardbench_rm
    torchrun --nproc-per-node=8 -m lm_eval --model vllm-rm \\
        --model_args pretrained=...,data_parallel_size=8 --tasks long_rewardbench_rm

It logs one line with the context it fits items to and where that came from
(``max_model_len``/``max_length`` argument, else the engine's own
``max_model_len``). Tested on vLLM's CPU build (tests/test_vllm_lm_eval.py,
marker ``vllm``): same prompts, over-context counts and rewards as ``hf-rm``.
"""
from __future__ import annotations

import os
from typing import Any

from longrm_tasks.adapters.lm_eval_rm import RewardModelLM, _flag, check_model_args, say_input_errors


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

        check_model_args(type(self), unused, self.MODEL_NAME)
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
                trust_remote_code=_flag(trust_remote_code))
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
