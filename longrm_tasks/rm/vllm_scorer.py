"""Scalar reward models on vLLM: its pooling runner with automatic prefix caching.

vLLM (>= 0.11, the ``runner="pooling"`` API) scores a ``*ForSequenceClassification``
checkpoint with ``LLM.encode(..., pooling_task="classify")``; raw rewards need
``PoolingParams(use_activation=False)`` (the default applies a sigmoid/softmax).
Prefix caching only reuses blocks that are already computed, so an item's
candidates are sent in two waves: the first candidate of each item computes the
context, then the other candidates find it in the cache. Waves hold a bounded
number of context tokens so the first wave's blocks are not evicted before the
second wave reads them. Token accounting comes from vLLM's own
``num_cached_tokens``.

Formatting and over-long handling are the same as the transformers scorer's
(`longrm_tasks.rm.formatting`), so both score the same tokens. One difference:
vLLM pools the last token, transformers the last non-pad token; they differ
only for a sequence that ends in the pad token.

Written against vLLM's documented offline pooling API (``examples/pooling/reward``,
``torchrun_dp_example.py``). Tested for real on vLLM's CPU build (tests marked
``vllm``: tests/vllm_backend/test_vllm_lm_eval.py for parity with ``hf-rm``,
tests/vllm_backend/test_vllm_prefix_cache.py for the cache hits); the request planning also
against a labelled stand-in engine (tests/rm/test_rm_vllm_scorer.py).
``benchmarks/vllm_prefix.py`` measures tokens computed / unique tokens with the
cache on (waves), on with every candidate sent at once, and off.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from longrm_tasks.errors import InputError
from longrm_tasks.rm.formatting import FormattedItem, ScoringItem, common_prefix_length, format_item
from longrm_tasks.rm.prefix_scorer import ItemScore

VLLM_HINT = "the vLLM scorer needs vLLM >= 0.11 on a GPU machine: pip install 'longrm-tasks[vllm]'"


def import_vllm():
    """The ``vllm`` module, or an ImportError that says how to get it."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(f"{VLLM_HINT} ({exc})") from exc
    return vllm


def plan_waves(items: Sequence[FormattedItem], token_budget: int) -> list[list[tuple[int, int]]]:
    """Order requests as (item, candidate) pairs in waves.

    Items are grouped so a group's longest candidates add up to at most
    ``token_budget`` tokens (at least one item per group); each group gives a
    wave of first candidates, then a wave of the remaining ones.
    """
    waves: list[list[tuple[int, int]]] = []
    group: list[int] = []
    used = 0

    def flush():
        if group:
            waves.append([(i, 0) for i in group])
            rest = [(i, c) for i in group for c in range(1, len(items[i].input_ids))]
            if rest:
                waves.append(rest)

    for index, item in enumerate(items):
        if item.skipped:
            continue
        size = max(len(ids) for ids in item.input_ids)
        if group and used + size > token_budget:
            flush()
            group, used = [], 0
        group.append(index)
        used += size
    flush()
    return waves


def token_prompts(items: Sequence[FormattedItem], wave: Sequence[tuple[int, int]]) -> list[dict[str, list[int]]]:
    """vLLM ``TokensPrompt`` dicts for one wave (already chat-formatted and fitted, so no re-tokenising)."""
    return [{"prompt_token_ids": list(items[i].input_ids[c])} for i, c in wave]


def collect_scores(items: Sequence[FormattedItem],
                   results: Mapping[tuple[int, int], tuple[float, int]]) -> list[ItemScore]:
    """Build per-item results from ``(item, candidate) -> (reward, tokens computed)``."""
    out = []
    for i, item in enumerate(items):
        if item.skipped:
            out.append(ItemScore([], 0, 0, item.dropped_tokens, True, item.skip_reason, id=item.id))
            continue
        lcp = common_prefix_length(item.input_ids)
        unique = lcp + sum(len(ids) - lcp for ids in item.input_ids)
        rewards = [results[i, c][0] for c in range(len(item.input_ids))]
        processed = sum(results[i, c][1] for c in range(len(item.input_ids)))
        out.append(ItemScore(rewards, processed, unique, item.dropped_tokens,
                             shared_prefix_tokens=lcp if len(item.input_ids) > 1 else 0, id=item.id))
    return out


def reward_of(output) -> tuple[float, int]:
    """The raw reward and the number of tokens actually computed for one vLLM pooling output."""
    data = output.outputs.data
    values = data.flatten().tolist() if hasattr(data, "flatten") else list(data)
    if len(values) != 1:
        raise ValueError(f"a scalar reward model has one output, vLLM returned {len(values)}")
    cached = getattr(output, "num_cached_tokens", None) or 0
    return float(values[0]), len(output.prompt_token_ids) - cached


def pooling_engine_args(model: str, *, tokenizer: str | None = None, dtype: str = "auto",
                        max_model_len: int | None = None, tensor_parallel_size: int = 1,
                        data_parallel_size: int = 1, world_size: int = 1, gpu_memory_utilization: float = 0.9,
                        enable_prefix_caching: bool = True, trust_remote_code: bool = False, seed: int = 0,
                        **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` that load ``model`` as a scalar reward model.

    ``world_size`` is the number of processes this run was launched with
    (torchrun / accelerate launch): data parallelism in vLLM's offline API means
    one engine per process with ``distributed_executor_backend="external_launcher"``
    (vLLM's ``torchrun_dp_example.py``), each process scoring its own share. In
    one process there is no data parallelism to run, so asking for it is an error
    that says how to launch it instead of silently using one engine.
    """
    if tensor_parallel_size < 1 or data_parallel_size < 1:
        raise InputError("tensor_parallel_size and data_parallel_size must be >= 1", field="model_args")
    args: dict[str, Any] = dict(model=model, runner="pooling", dtype=dtype, max_model_len=max_model_len,
                                tensor_parallel_size=tensor_parallel_size,
                                gpu_memory_utilization=gpu_memory_utilization,
                                enable_prefix_caching=enable_prefix_caching, trust_remote_code=trust_remote_code,
                                seed=seed, **extra)
    if tokenizer:
        args["tokenizer"] = tokenizer
    if world_size > 1:
        if tensor_parallel_size != 1:
            # lm-eval shards documents by process; tensor-parallel ranks of one engine would score
            # the same share twice and be counted twice.
            raise InputError(f"under torchrun each of the {world_size} processes runs one engine: use "
                             f"tensor_parallel_size=1 there, or one process with "
                             f"tensor_parallel_size={tensor_parallel_size}", field="tensor_parallel_size")
        if data_parallel_size not in (1, world_size):
            raise InputError(f"data_parallel_size={data_parallel_size} but {world_size} processes were launched: "
                             f"launch torchrun --nproc-per-node={data_parallel_size}",
                             field="data_parallel_size")
        args.update(data_parallel_size=world_size, distributed_executor_backend="external_launcher")
    elif data_parallel_size > 1:
        raise InputError(f"data_parallel_size={data_parallel_size} runs one vLLM engine per process: launch "
                         f"`torchrun --nproc-per-node={data_parallel_size} -m lm_eval --model vllm-rm ...` "
                         f"(each process scores its share)", field="data_parallel_size")
    return args


class VLLMRewardScorer:
    """Same interface as `RewardScorer`, on a vLLM ``LLM`` in pooling mode.

    ``llm`` is a ``vllm.LLM`` started with ``runner="pooling"`` (`from_pretrained`
    starts one); ``pooling_params`` is what every ``encode`` call gets (default:
    ``vllm.PoolingParams(use_activation=False)``, the raw reward).
    """

    def __init__(self, llm, tokenizer, *, max_length: int | None = None, truncation: str = "middle",
                 wave_tokens: int = 131_072, pooling_params=None):
        self.llm = llm
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.wave_tokens = wave_tokens
        self.pooling_params = pooling_params if pooling_params is not None else \
            import_vllm().PoolingParams(use_activation=False)

    @classmethod
    def from_pretrained(cls, path: str, *, max_length: int | None = None, truncation: str = "middle",
                        wave_tokens: int = 131_072, **engine_kwargs: Any) -> "VLLMRewardScorer":
        """Start vLLM's pooling runner with prefix caching; ``engine_kwargs`` go to `pooling_engine_args`."""
        from longrm_tasks.rm.checkpoint import check_chat_template, check_reward_config, load_config

        # Checked before vLLM allocates anything: a causal LM would load as a classifier with a random head.
        check_reward_config(load_config(path, trust_remote_code=engine_kwargs.get("trust_remote_code", False)), path)
        vllm = import_vllm()
        llm = vllm.LLM(**pooling_engine_args(path, max_model_len=max_length, **engine_kwargs))
        tokenizer = llm.get_tokenizer()
        check_chat_template(tokenizer, engine_kwargs.get("tokenizer") or path)
        # Fit inputs to the context vLLM actually allocated, so none is rejected mid-run.
        model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        max_length = max_length or getattr(model_config, "max_model_len", None)
        return cls(llm, tokenizer, max_length=max_length, truncation=truncation, wave_tokens=wave_tokens,
                   pooling_params=vllm.PoolingParams(use_activation=False))

    def score(self, items: Iterable[ScoringItem | Mapping[str, Any]]) -> list[ItemScore]:
        """Format (chat template, over-long handling) and score every candidate of every item."""
        return self.score_formatted([format_item(self.tokenizer, item, max_length=self.max_length,
                                                 truncation=self.truncation) for item in items])

    def score_formatted(self, formatted: Sequence[FormattedItem]) -> list[ItemScore]:
        """Score already-formatted items (token ids per candidate), in cache-friendly waves."""
        results: dict[tuple[int, int], tuple[float, int]] = {}
        for wave in plan_waves(formatted, self.wave_tokens):
            outputs = self.llm.encode(token_prompts(formatted, wave), pooling_task="classify",
                                      pooling_params=self.pooling_params, use_tqdm=False)
            if len(outputs) != len(wave):
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(wave)} prompts")
            results.update(zip(wave, map(reward_of, outputs)))
        return collect_scores(formatted, results)
