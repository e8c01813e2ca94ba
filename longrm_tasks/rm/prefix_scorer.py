"""Score Long-RewardBench items with a scalar reward model, encoding the shared context once.

Every candidate of an item repeats the same long context. The reference
evaluator runs one full forward pass per candidate; here the longest common
token prefix of the candidates runs once (optionally in chunks, to bound peak
memory) up to the last layer's keys/values, and each remainder — the answer
and the chat template's closing tokens — attends to that prefix's KV cache.
Only the hidden state of each candidate's pooled token goes through the
classification head.

Sliding-window layers (Gemma 2/3's sliding/global mix, Mistral, Qwen2's
``use_sliding_window``) share too: their cache keeps the prefix's last
``window - 1`` keys (transformers' ``DynamicSlidingWindowLayer``), which is all
a remainder can reach, and the remainders get one mask per layer type, built by
the rule the trainer uses (`longrm_tasks.rm.shared_prefix_rules.may_attend`): a
full layer sees the whole prefix, a sliding layer only its window of prefix +
candidate. Soft-capped attention (Gemma 2) is the model's own attention
function behind that mask.

``share_prefix=False`` is the reference behaviour (one full forward per
candidate), kept for comparison and as the fallback for models whose attention
cannot be shared (chunked, linear or sink attention, bidirectional layers). The
fallback runs candidates without padding: equal lengths share a batch, others
run one per forward, so memory follows each candidate's tokens, never
candidates x the longest one.
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
from longrm_tasks.rm.shared_prefix_rules import PREFIX_SEGMENT, may_attend, shared_prefix_support

# transformers cache layers, behind the version range they were written for (longrm_tasks.compat).
Cache, DynamicCache, DynamicLayer = compat.transformers_cache_layers()
DynamicSlidingWindowLayer = compat.transformers_sliding_cache_layer()

logger = logging.getLogger(__name__)

# Attribute names of the classification head in transformers' and common custom reward models.
_HEAD_NAMES = ("score", "classifier", "v_head", "reward_head", "rm_head")
_UNSHAREABLE = "its cache has layers other than full or sliding-window attention, or sliding windows of several sizes"
# Attention implementations that take the explicit packed masks; others (flash kernels) get one remainder per
# forward with no mask, where the cache offset makes it causal and the kernel applies the window itself.
_MASKED_IMPLEMENTATIONS = ("sdpa", "eager", IMPLEMENTATION)
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
    """Why this model's attention cannot run behind a shared prefix (the trainer's rules), or None."""
    return shared_prefix_support(model.config)


class FrozenPrefixLayer(DynamicLayer):
    """A cache layer that lets remainders attend to a shared prefix without storing them.

    ``update`` returns the prefix's keys/values followed by the new ones and
    keeps nothing, so the prefix stays intact for the next group of remainders
    and only one layer's concatenation is alive at a time (expanding a
    `DynamicCache` per candidate would copy the whole prefix cache per candidate).
    On a sliding layer the keys are the prefix's last ones (at most ``window - 1``)
    and ``window`` is set; the packed masks say which of them each remainder token sees.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, window: int | None = None):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values
        self.window = window

    def update(self, key_states, value_states, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


class PrefixCached(Exception):
    """Raised by `LastPrefixLayer` once the prefix's keys/values are stored in every layer."""


class _StoresThenStops:
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


class LastPrefixLayer(_StoresThenStops, DynamicLayer):
    """`_StoresThenStops` for a full-attention last layer."""


class LastSlidingPrefixLayer(_StoresThenStops, DynamicSlidingWindowLayer):
    """`_StoresThenStops` for a sliding-window last layer (keeps only its window, as the layer it replaces)."""


_FULL_LAYERS = (DynamicLayer, LastPrefixLayer)
_SLIDING_LAYERS = (DynamicSlidingWindowLayer, LastSlidingPrefixLayer)


def last_prefix_layer(layer) -> DynamicLayer:
    """The stopping stand-in for the prefill's last cache layer, of the same kind."""
    if type(layer) in _SLIDING_LAYERS:
        return LastSlidingPrefixLayer(sliding_window=layer.sliding_window)
    return LastPrefixLayer()


def frozen_prefix_cache(prefix_cache: DynamicCache) -> Cache | None:
    """Read-only view of a prefix cache, or None when a layer is neither full nor sliding-window attention,
    or sliding layers differ in window (the packed masks are one per layer type)."""
    layers = []
    for layer in prefix_cache.layers:
        if type(layer) in _FULL_LAYERS:
            layers.append(FrozenPrefixLayer(layer.keys, layer.values))
        elif type(layer) in _SLIDING_LAYERS:
            layers.append(FrozenPrefixLayer(layer.keys, layer.values, window=int(layer.sliding_window)))
        else:
            return None
    if len({(layer.window, layer.keys.shape[-2]) for layer in layers if layer.window is not None}) > 1:
        return None
    return Cache(layers=layers)


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
        """One forward per batch of equal-length candidates (up to ``batch_size``), never padded.

        Padding unequal candidates to the longest would cost candidates x longest tokens and, for
        the mask, a batch x longest x longest tensor (tens of GB at 128K); runs of one length
        need neither: no mask at all, so SDPA takes its mask-free causal kernel. Returns the
        scores in input order and the padding run (always 0, kept for the report's column).
        """
        scores: list[float | None] = [None] * len(sequences)
        by_length: dict[int, list[int]] = {}
        for index in sorted(range(len(sequences)), key=lambda i: len(sequences[i])):
            by_length.setdefault(len(sequences[index]), []).append(index)
        for length, indices in by_length.items():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                ids = torch.tensor([sequences[i] for i in batch], device=self.device)
                positions = torch.arange(length, device=self.device).expand(len(batch), length)
                self.forward_passes += 1
                hidden = self.base(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state
                values = self._head(hidden[torch.arange(len(batch)), [pooled[i] for i in batch]])
                for i, value in zip(batch, values):
                    scores[i] = value
        return scores, 0

    def _score_shared(self, sequences: list[tuple[int, ...]], pooled: list[int], shared: int,
                      frozen: Cache) -> list[float]:
        # Remainders are packed into one row (no padding, no per-candidate copy of
        # the prefix cache) behind a block mask: each sees the whole prefix and,
        # causally, only itself. Attention kernels that take no explicit mask get
        # one remainder per forward, where the cache offset alone makes it causal.
        # With the split attention (SDPA models, CPU) the mask is built but only
        # read by the fallback: the split gets the remainders' lengths instead.
        masked = self.model.config._attn_implementation in _MASKED_IMPLEMENTATIONS
        sliding = any(layer.window is not None for layer in frozen.layers)
        group = self.batch_size if masked else 1
        scores = []
        for start, stop in packed_groups([len(s) - shared for s in sequences], shared, group, PACKED_MASK_ELEMENTS):
            remainders = [s[shared:] for s in sequences[start:stop]]
            lengths = torch.tensor([len(r) for r in remainders])
            ids = torch.tensor([[t for r in remainders for t in r]], device=self.device)
            positions = torch.cat([torch.arange(n) for n in lengths.tolist()]) + shared
            # One remainder on full layers only: the cache offset alone makes it causal. Sliding layers
            # always get their mask (the model's own would number the kept keys from 0).
            mask = self._packed_masks(lengths, shared, frozen) if masked and (len(remainders) > 1 or sliding) \
                else None
            split = {REMAINDERS_KWARG: lengths.tolist()} if self._split_remainders else {}
            self.forward_passes += 1
            hidden = self.base(input_ids=ids, attention_mask=mask, position_ids=positions[None].to(self.device),
                               use_cache=True, **{self._cache_kwarg: frozen}, **split).last_hidden_state
            starts = (lengths.cumsum(0) - lengths).tolist()
            slots = [begin + p - shared for begin, p in zip(starts, pooled[start:stop])]
            scores += self._head(hidden[0, slots])
        return scores

    def _packed_masks(self, lengths: torch.Tensor, prefix: int, frozen: Cache):
        """4-D masks for remainders packed in one row after a cached prefix of ``prefix`` tokens.

        One mask per kind of layer in the cache: full layers hold the whole prefix, sliding
        layers its last keys. A model with both kinds gets them as the ``{layer type: mask}``
        mapping its forward accepts in place of building its own; a model with one kind, one mask.
        """
        segment = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        positions = prefix + torch.arange(len(segment)) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        masks = {}
        for layer in frozen.layers:
            kind = "full_attention" if layer.window is None else "sliding_attention"
            if kind in masks:
                continue
            kept = layer.keys.shape[-2]  # the prefix's last `kept` tokens
            key_positions = torch.cat([torch.arange(prefix - kept, prefix), positions])
            key_segments = torch.cat([torch.full((kept,), PREFIX_SEGMENT), segment])
            allowed = may_attend(positions, segment, key_positions, key_segments, layer.window)
            masks[kind] = self._as_attention_mask(allowed[None, None].to(self.device))
        return masks if len(masks) > 1 else next(iter(masks.values()))

    def _as_attention_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """A bool mask as this model's attention takes it: SDPA reads bools, eager adds the mask to the scores."""
        if self.model.config._attn_implementation in ("sdpa", IMPLEMENTATION):
            return allowed
        dtype = self.model.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill(~allowed,
                                                                                     torch.finfo(dtype).min)

    def _prefix_cache(self, prefix: Sequence[int]) -> Cache | None:
        """Run the shared prefix once, in chunks if asked; its read-only KV cache, or None if unshareable."""
        cache = DynamicCache(config=self.model.config)
        if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers):
            self._disable_sharing(_UNSHAREABLE)  # known before any compute
            return None
        cache.layers[-1] = last_prefix_layer(cache.layers[-1])
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

    def _head(self, pooled_hidden: torch.Tensor) -> list[float]:
        """Rewards from the pooled tokens' hidden states (the only positions the head ever sees)."""
        return self.head(pooled_hidden).float().squeeze(-1).tolist()
