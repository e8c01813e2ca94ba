"""Score Long-RewardBench items with a scalar reward model, encoding the shared context once.

Every candidate of an item repeats the same long context. The reference
evaluator runs one full forward pass per candidate; here the longest common
token prefix of the candidates runs once (optionally in chunks, to bound peak
memory) up to the last layer's keys/values, and each remainder — the answer
and the chat template's closing tokens — attends to that prefix's KV cache.
Only the hidden state of each candidate's pooled token goes through the
classification head.

``share_prefix=False`` is the reference behaviour (one full forward per
candidate), kept for comparison and as the fallback for models whose caches
cannot be shared (sliding-window or linear-attention layers).
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from longrm_tasks import compat
from longrm_tasks.errors import InputError
from longrm_tasks.rm.checkpoint import JUDGE_GROUPS
from longrm_tasks.rm.formatting import FormattedItem, ScoringItem, common_prefix_length, format_item
from longrm_tasks.rm.prefix_attention import IMPLEMENTATION, REMAINDERS_KWARG, use_shared_prefix_attention

# transformers cache layers, behind the version range they were written for (longrm_tasks.compat).
Cache, DynamicCache, DynamicLayer = compat.transformers_cache_layers()

logger = logging.getLogger(__name__)

# Attribute names of the classification head in transformers' and common custom reward models.
_HEAD_NAMES = ("score", "classifier", "v_head", "reward_head", "rm_head")
_UNSHAREABLE = "its cache has sliding-window or linear-attention layers"
# Most elements of one packed block mask (remainders x (prefix + remainders)): 4 GiB as bool. Short answers
# after a 128K context pack inside it (4 x 4K tokens: 2.3G); the paper protocol's per-candidate cuts leave
# remainders of ~65K tokens each, whose mask would take 26+ GB: those run one per forward, needing no mask.
PACKED_MASK_ELEMENTS = 1 << 32


@dataclass
class ItemScore:
    """Scores of one item's candidates (input order) and what it cost to compute them."""

    scores: list[float]
    tokens_processed: int  # real tokens run through the model
    unique_tokens: int  # shared prefix once + every candidate's remainder
    dropped_tokens: int = 0  # cut by over-long handling (most from any one candidate)
    skipped: bool = False
    skip_reason: str | None = None
    padding_tokens: int = 0  # pad slots run alongside real tokens (unshared batches only)
    shared_prefix_tokens: int = 0  # length of the prefix that ran once (0 = no sharing)
    id: str | None = None
    forward_passes: int | None = None  # model calls this item cost (None: the backend does not say)


def token_ratio(results: Iterable[ItemScore]) -> float:
    """Tokens processed / unique tokens over the scored items (1.0 = each token encoded once)."""
    processed = unique = 0
    for r in results:
        if not r.skipped:
            processed += r.tokens_processed
            unique += r.unique_tokens
    return processed / unique if unique else float("nan")


def token_summary(results: Sequence[ItemScore]) -> dict[str, Any]:
    """Run-level figures a report prints next to the metrics."""
    scored = [r for r in results if not r.skipped]
    return {
        "items": len(results),
        "skipped": len(results) - len(scored),
        "truncated": sum(1 for r in scored if r.dropped_tokens),
        "dropped_tokens": sum(r.dropped_tokens for r in scored),
        "tokens_processed": sum(r.tokens_processed for r in scored),
        "unique_tokens": sum(r.unique_tokens for r in scored),
        "padding_tokens": sum(r.padding_tokens for r in scored),
        "tokens_ratio": token_ratio(scored),
        # Only backends that count their model calls contribute (vLLM schedules its own batches).
        "forward_passes": (None if all(r.forward_passes is None for r in results)
                           else sum(r.forward_passes or 0 for r in results)),
    }


def packed_groups(lengths: Sequence[int], prefix: int, most: int, mask_elements: int) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of consecutive remainders packed into one forward.

    At most ``most`` remainders per run, and more than one only while the packed
    block mask (total x (prefix + total)) stays within ``mask_elements``; a single
    remainder needs no mask and always runs.
    """
    groups, start = [], 0
    while start < len(lengths):
        stop, total = start + 1, lengths[start]
        while (stop < len(lengths) and stop - start < most
               and (total + lengths[stop]) * (prefix + total + lengths[stop]) <= mask_elements):
            total += lengths[stop]
            stop += 1
        groups.append((start, stop))
        start = stop
    return groups


def find_score_head(model) -> torch.nn.Module:
    """The module mapping a hidden state to the reward (``model.score`` for Llama/Qwen/Gemma)."""
    for name in _HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    others = [m for n, m in model.named_children() if n != model.base_model_prefix]
    if len(others) == 1:
        return others[0]
    raise ValueError(f"cannot find the classification head of {type(model).__name__}; "
                     f"children: {[n for n, _ in model.named_children()]}")


def pooled_index(ids: Sequence[int], pad_token_id: int | None) -> int:
    """Position whose hidden state the model scores: transformers' rule, the last non-pad token."""
    if pad_token_id is not None:
        for i in range(len(ids) - 1, -1, -1):
            if ids[i] != pad_token_id:
                return i
        return 0  # transformers' argmax over an all-pad row
    return len(ids) - 1


def _sharing_unavailable_reason(model) -> str | None:
    layer_types = getattr(model.config.get_text_config(), "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return f"layers {sorted(set(layer_types))} are not all full attention"
    return None


class FrozenPrefixLayer(DynamicLayer):
    """A cache layer that lets remainders attend to a shared prefix without storing them.

    ``update`` returns the prefix's keys/values followed by the new ones and
    keeps nothing, so the prefix stays intact for the next group of remainders
    and only one layer's concatenation is alive at a time (expanding a
    `DynamicCache` per candidate would copy the whole prefix cache per candidate).
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(self, key_states, value_states, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


class PrefixCached(Exception):
    """Raised by `LastPrefixLayer` once the prefix's keys/values are stored in every layer."""


class LastPrefixLayer(DynamicLayer):
    """The last layer's cache during the prefix prefill: store the keys/values, then stop the forward.

    Only the cache matters for the prefix, and the last layer's keys/values
    come from its input: its attention (quadratic in the prefix), output
    projection and MLP, and the final norm, would all be thrown away. Raising
    right after the cache update skips them on any architecture, without
    re-implementing a decoder layer (1/num_layers of the prefix's compute).
    """

    def update(self, key_states, value_states, *args, **kwargs):
        super().update(key_states, value_states, *args, **kwargs)
        raise PrefixCached


def frozen_prefix_cache(prefix_cache: DynamicCache) -> Cache | None:
    """Read-only view of a prefix cache, or None when a layer is not a plain full-attention layer."""
    if not all(type(layer) in (DynamicLayer, LastPrefixLayer) for layer in prefix_cache.layers):
        return None
    return Cache(layers=[FrozenPrefixLayer(layer.keys, layer.values) for layer in prefix_cache.layers])


class RewardScorer:
    """Score items with an ``AutoModelForSequenceClassification`` reward model.

    >>> scorer = RewardScorer.from_pretrained("Skywork/Skywork-Reward-V2-Llama-3.1-8B", max_length=131072)
    >>> [result] = scorer.score([{"prompt_template": [{"role": "user", "content": "..."}],
    ...                           "candidates": ["answer A", "answer B"]}])
    >>> result.scores  # higher = better
    """

    def __init__(self, model, tokenizer, *, max_length: int | None = None, share_prefix: bool = True,
                 batch_size: int = 4, prefill_chunk_size: int | None = None, truncation: str = "middle",
                 progress: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prefill_chunk_size is not None and prefill_chunk_size < 1:
            raise ValueError(f"prefill_chunk_size must be >= 1, got {prefill_chunk_size}")
        if getattr(model.config, "num_labels", 1) != 1:
            raise InputError(f"a scalar reward model has one output, this one has {model.config.num_labels}: "
                             f"judge with a causal LM through {JUDGE_GROUPS}", field="pretrained")
        self.model = model.eval()
        self.tokenizer = tokenizer
        # None = the model's positional limit, so over-long inputs are never scored silently.
        self.max_length = max_length or getattr(model.config.get_text_config(), "max_position_embeddings", None)
        self.batch_size = batch_size
        self.prefill_chunk_size = prefill_chunk_size
        self.truncation = truncation
        self.progress = progress
        self.forward_passes = 0  # model calls so far (what a data-parallel run splits between ranks)
        self.base = getattr(model, model.base_model_prefix)
        self.head = find_score_head(model)
        self.pad_token_id = model.config.get_text_config().pad_token_id
        self._pad_fill = next((t for t in (tokenizer.pad_token_id, self.pad_token_id, tokenizer.eos_token_id)
                               if t is not None), 0)
        params = inspect.signature(self.base.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        reason = _sharing_unavailable_reason(model) if share_prefix else None
        if reason:
            logger.warning("shared-prefix scoring is off for %s: %s", type(model).__name__, reason)
        self.share_prefix = share_prefix and reason is None
        # SDPA models switch to SDPA plus a mask-free path for packed remainders (rm/prefix_attention.py).
        self._split_remainders = self.share_prefix and use_shared_prefix_attention(model)

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: str | torch.dtype | None = None, device: str | None = None,
                        tokenizer=None, device_map: str | dict | None = None, max_memory: dict | None = None,
                        offload_folder: str | None = None, trust_remote_code: bool = False,
                        **kwargs) -> "RewardScorer":
        """Load a reward model and its tokenizer; bf16 on GPU and fp32 on CPU unless ``dtype`` says otherwise.

        ``device_map`` (with ``max_memory``/``offload_folder``) spreads a model too large
        for one device over several, through accelerate's big-model loading; the
        scorer then feeds inputs to the embedding's device and accelerate's hooks
        move activations (and each layer's cached prefix stays on its layer's device).
        The config is checked first: a causal LM or a multi-label classifier is
        refused in one line instead of being loaded with a random head.
        """
        from transformers import AutoModelForSequenceClassification

        from longrm_tasks.rm.checkpoint import check_chat_template, check_reward_config, load_config, load_tokenizer

        check_reward_config(load_config(path, trust_remote_code=trust_remote_code), path)
        if tokenizer is None or isinstance(tokenizer, str):
            tokenizer = load_tokenizer(tokenizer or path, trust_remote_code=trust_remote_code)
        check_chat_template(tokenizer, getattr(tokenizer, "name_or_path", path))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_cpu = torch.device(device).type == "cpu" and not (device_map and device_map != "cpu")
        if dtype is None or dtype == "auto":
            dtype = torch.float32 if on_cpu else torch.bfloat16
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        load = dict(dtype=dtype, trust_remote_code=trust_remote_code)
        if device_map is not None:
            load.update(device_map=device_map, max_memory=max_memory, offload_folder=offload_folder)
        model = AutoModelForSequenceClassification.from_pretrained(path, **load)
        if device_map is None:
            model = model.to(device)
        return cls(model, tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device (the first device of a ``device_map``)."""
        device = self.model.get_input_embeddings().weight.device
        # Offloaded weights sit on "meta" until accelerate's hook brings them in; inputs start on the CPU then.
        return torch.device("cpu") if device.type == "meta" else device

    def format(self, item: ScoringItem | Mapping[str, Any]) -> FormattedItem:
        """Chat-format and fit one item, with this scorer's length policy."""
        return format_item(self.tokenizer, item, max_length=self.max_length, truncation=self.truncation)

    def score(self, items: Iterable[ScoringItem | Mapping[str, Any]]) -> list[ItemScore]:
        """Score every candidate of every item; skipped items come back with ``skipped=True``."""
        items = list(items)
        bar = tqdm(items, desc="reward scoring", unit="item", disable=not self.progress)
        return [self.score_formatted(self.format(item)) for item in bar]

    @torch.inference_mode()
    def score_formatted(self, item: FormattedItem) -> ItemScore:
        """Score one already-formatted item (token ids per candidate)."""
        if item.skipped:
            return ItemScore([], 0, 0, item.dropped_tokens, True, item.skip_reason, id=item.id, forward_passes=0)
        calls_before = self.forward_passes
        # Identical candidates are scored once.
        distinct = list(dict.fromkeys(tuple(ids) for ids in item.input_ids))
        lcp = common_prefix_length(distinct)
        unique = lcp + sum(len(ids) - lcp for ids in distinct)
        pooled = [pooled_index(ids, self.pad_token_id) for ids in distinct]
        # Each remainder must contain its pooled token, so a candidate that is a
        # prefix of another (or ends in pad tokens) pulls the shared prefix back.
        shared = min([lcp] + pooled) if self.share_prefix else 0
        frozen = self._prefix_cache(distinct[0][:shared]) if shared > 0 else None
        if frozen is not None:
            values, padding = self._score_shared(distinct, pooled, shared, frozen), 0
            processed = shared + sum(len(ids) - shared for ids in distinct)
        else:
            shared = 0
            values, padding = self._score_unshared(distinct, pooled)
            processed = sum(len(ids) for ids in distinct)
        by_sequence = dict(zip(distinct, values))
        return ItemScore([by_sequence[tuple(ids)] for ids in item.input_ids], processed, unique,
                         item.dropped_tokens, padding_tokens=padding, shared_prefix_tokens=shared, id=item.id,
                         forward_passes=self.forward_passes - calls_before)

    # -- the two forward paths -------------------------------------------------

    def _score_unshared(self, sequences: list[tuple[int, ...]], pooled: list[int]) -> tuple[list[float], int]:
        scores, padding = [], 0
        for start in range(0, len(sequences), self.batch_size):
            batch = sequences[start:start + self.batch_size]
            ids, mask, positions, slots, pad = self._pad(batch, pooled[start:start + self.batch_size])
            self.forward_passes += 1
            # Without padding the mask says nothing causal attention does not: dropping it lets SDPA
            # take its mask-free causal kernel (flash) instead of materialising a sequence x sequence mask.
            hidden = self.base(input_ids=ids, attention_mask=mask if pad else None, position_ids=positions,
                               use_cache=False).last_hidden_state
            scores += self._head(hidden[torch.arange(len(slots)), slots])
            padding += pad
        return scores, padding

    def _score_shared(self, sequences: list[tuple[int, ...]], pooled: list[int], shared: int,
                      frozen: Cache) -> list[float]:
        # Remainders are packed into one row (no padding, no per-candidate copy of
        # the prefix cache) behind a block mask: each sees the whole prefix and,
        # causally, only itself. Attention kernels that take no explicit mask get
        # one remainder per forward, where the cache offset alone makes it causal.
        # With the split attention (SDPA models, CPU) the mask is built but only
        # read by the fallback: the split gets the remainders' lengths instead.
        group = self.batch_size if self.model.config._attn_implementation in ("sdpa", "eager", IMPLEMENTATION) else 1
        scores = []
        for start, stop in packed_groups([len(s) - shared for s in sequences], shared, group, PACKED_MASK_ELEMENTS):
            remainders = [s[shared:] for s in sequences[start:stop]]
            lengths = torch.tensor([len(r) for r in remainders])
            ids = torch.tensor([[t for r in remainders for t in r]], device=self.device)
            positions = torch.cat([torch.arange(n) for n in lengths.tolist()]) + shared
            mask = self._packed_mask(lengths, shared) if len(remainders) > 1 else None
            split = {REMAINDERS_KWARG: lengths.tolist()} if self._split_remainders else {}
            self.forward_passes += 1
            hidden = self.base(input_ids=ids, attention_mask=mask, position_ids=positions[None].to(self.device),
                               use_cache=True, **{self._cache_kwarg: frozen}, **split).last_hidden_state
            starts = (lengths.cumsum(0) - lengths).tolist()
            slots = [begin + p - shared for begin, p in zip(starts, pooled[start:stop])]
            scores += self._head(hidden[0, slots])
        return scores

    def _packed_mask(self, lengths: torch.Tensor, prefix: int) -> torch.Tensor:
        """4-D mask for remainders packed in one row after a cached prefix of ``prefix`` tokens."""
        segment = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        n = len(segment)
        own = (segment[:, None] == segment[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
        allowed = torch.cat([torch.ones(n, prefix, dtype=torch.bool), own], dim=1)[None, None].to(self.device)
        if self.model.config._attn_implementation in ("sdpa", IMPLEMENTATION):
            return allowed
        # Eager attention adds the mask to the scores.
        dtype = self.model.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill(~allowed,
                                                                                     torch.finfo(dtype).min)

    def _prefix_cache(self, prefix: Sequence[int]) -> Cache | None:
        """Run the shared prefix once, in chunks if asked; its read-only KV cache, or None if unshareable."""
        cache = DynamicCache(config=self.model.config)
        if not all(type(layer) is DynamicLayer for layer in cache.layers):  # known before any compute
            self._disable_sharing(_UNSHAREABLE)
            return None
        cache.layers[-1] = LastPrefixLayer()
        ids = torch.tensor([prefix], device=self.device)
        chunk = self.prefill_chunk_size or ids.shape[1]
        for start in range(0, ids.shape[1], chunk):
            part = ids[:, start:start + chunk]
            # A later chunk is one "remainder" after the cached part: the mask-free split applies.
            split = {REMAINDERS_KWARG: [part.shape[1]]} if start and self._split_remainders else {}
            self.forward_passes += 1
            try:
                self.base(input_ids=part, use_cache=True, **{self._cache_kwarg: cache}, **split)
            except PrefixCached:
                pass
        if not cache.layers[-1].is_initialized:
            raise RuntimeError(f"{type(self.model).__name__} never stored its last layer's keys/values")
        frozen = frozen_prefix_cache(cache)
        if frozen is None:
            self._disable_sharing(_UNSHAREABLE)
        return frozen

    def _disable_sharing(self, reason: str) -> None:
        logger.warning("shared-prefix scoring is off for %s: %s", type(self.model).__name__, reason)
        self.share_prefix = False

    def _pad(self, sequences: list[Sequence[int]], pooled: list[int]):
        """Pad a batch on the tokenizer's side; position ids count real tokens only."""
        width = max(len(s) for s in sequences)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        ids = torch.full((len(sequences), width), self._pad_fill, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        slots = []
        for row, (seq, pool) in enumerate(zip(sequences, pooled)):
            start = width - len(seq) if left else 0
            ids[row, start:start + len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, start:start + len(seq)] = 1
            slots.append(start + pool)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        device = self.device
        pad = int(mask.numel() - mask.sum())
        return ids.to(device), mask.to(device), positions.to(device), slots, pad

    def _head(self, pooled_hidden: torch.Tensor) -> list[float]:
        """Rewards from the pooled tokens' hidden states (the only positions the head ever sees)."""
        return self.head(pooled_hidden).float().squeeze(-1).tolist()
