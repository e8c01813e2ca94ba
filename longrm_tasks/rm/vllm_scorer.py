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
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


class VLLMRewardScorer:
    """Same interface as `RewardScorer`, on a vLLM ``LLM`` in pooling mode."""

    def __init__(self, llm, tokenizer, *, max_length: int | None = None, truncation: str = "middle",
                 wave_tokens: int = 131_072):
        self.llm = llm
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.wave_tokens = wave_tokens

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: str = "auto", max_length: int | None = None,
                        truncation: str = "middle", wave_tokens: int = 131_072,
                        **llm_kwargs: Any) -> "VLLMRewardScorer":
        """Start vLLM's pooling runner with prefix caching; extra keyword arguments go to ``vllm.LLM``."""
        vllm = import_vllm()
        llm_kwargs.setdefault("enable_prefix_caching", True)
        # runner="pooling" makes vLLM load a *ForSequenceClassification checkpoint as a classifier.
        llm = vllm.LLM(model=path, runner="pooling", dtype=dtype, max_model_len=max_length, **llm_kwargs)
        # Fit inputs to the context vLLM actually allocated, so none is rejected mid-run.
        model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        max_length = max_length or getattr(model_config, "max_model_len", None)
        return cls(llm, llm.get_tokenizer(), max_length=max_length, truncation=truncation,
                   wave_tokens=wave_tokens)

    def score(self, items: Iterable[ScoringItem | Mapping[str, Any]]) -> list[ItemScore]:
        vllm = import_vllm()
        params = vllm.PoolingParams(use_activation=False)
        formatted = [format_item(self.tokenizer, item, max_length=self.max_length, truncation=self.truncation)
                     for item in items]
        results: dict[tuple[int, int], tuple[float, int]] = {}
        for wave in plan_waves(formatted, self.wave_tokens):
            outputs = self.llm.encode(token_prompts(formatted, wave), pooling_task="classify",
                                      pooling_params=params, use_tqdm=False)
            results.update(zip(wave, map(reward_of, outputs)))
        return collect_scores(formatted, results)
