"""Summed log-probabilities of V+1 responses to one long prompt, encoding the prompt once.

Two things make a 128K-token preference step affordable, and both live here:

1. **The context is encoded once for all responses.** Prompt and responses are
   packed into one sequence ``[prompt | r_0 | r_1 | ... | r_V]``; position ids
   restart at ``len(prompt)`` for every response, and a custom attention
   function lets the prompt attend causally to itself while each response
   attends to the whole prompt and, causally, to itself only. The forward is
   then exactly the unshared computation of ``prompt + r_j`` for every j, and
   gradients from all responses flow into the one set of prompt keys/values.

   Why a packed layout and not "run the prompt once, expand its KV cache":
   transformers turns the cache off under gradient checkpointing (a
   checkpointed layer that appends to a cache would append again when it is
   recomputed in the backward pass), so a cache-based share could not use
   checkpointing, which 128K tokens need. The packed sequence is a pure
   function of its inputs, so checkpointing, bf16, PEFT and any HF decoder
   that dispatches through ``ALL_ATTENTION_FUNCTIONS`` work unchanged. The
   attention is split in two SDPA calls instead of one L x L mask: the prompt
   part runs with ``is_causal=True`` (flash kernel, no mask, causal blocks
   skipped), and only the few response rows carry an explicit
   ``R x (P + R)`` mask, so no quadratic mask over the context is ever built.

2. **No full-vocabulary logits for the context.** The LM head is applied only
   to the positions that predict response tokens, a block of positions at a
   time with the block's logits recomputed in the backward pass
   (`response_head.target_logps`: TRL's ``ChunkedLogProbFunction`` on CUDA),
   so memory stays bounded at 150K vocabularies.

Sliding windows (Mistral, Qwen2's ``use_sliding_window``, Gemma 2/3's
sliding/global layer mix) and attention-logit soft-capping (Gemma 2) are shared
too: a query at position q sees a key at position k when k is in the prompt
or in its own response, k <= q and, on a sliding layer, q - k < window -- the
rule the model's own mask applies to ``prompt + r_j``. Those layers run in
blocks of query rows, each against only the keys its window can reach, with a
block-sized mask; soft-capped layers compute the capped scores per block as the
model's eager attention does (their memory is the eager attention's, which is
what such a model runs unshared too). Features that cannot be shared (chunked
or sink attention, flex/paged kernels) are named by `shared_context_support`
before any stage runs, and the trainer falls back to the unshared path.

``unshared_logps`` runs each ``prompt + r_j`` separately with the same
response-only head: the reference for the gradient test, the benchmark's
baseline and the ``share_context=False`` path.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from longrm_tasks.compat import transformers_mask_functions, transformers_sdpa_helpers
from longrm_tasks.rm.shared_prefix_rules import PREFIX_SEGMENT, may_attend, shared_prefix_support
from longrm_tasks.train.response_head import causal_lm as _causal_lm
from longrm_tasks.train.response_head import lm_head_logps as _response_logps

repeat_kv, sdpa_attention_forward = transformers_sdpa_helpers()
ALL_MASK_ATTENTION_FUNCTIONS, _, AttentionMaskInterface = transformers_mask_functions()

# Distinct from the RM scorer's "longrm_shared_prefix_sdpa" (rm/prefix_attention.py), and compared exactly:
# a model switched to one path's attention is refused by the other.
ATTENTION_PREFIX = "longrm_train_shared_context"
LAYOUT_KWARG = "longrm_layout"
# The scorer's keyword (rm/prefix_attention.REMAINDERS_KWARG): arriving here it means the wrong function is in use.
_SCORER_KWARG = "longrm_remainder_lengths"
# Names this module registered: enable/check compare against these exactly, never by prefix.
_REGISTERED: set[str] = set()
# Query rows per block on sliding-window / soft-capped layers: a block's mask is rows x (rows + window).
ATTENTION_BLOCK_ROWS = 1024
# Set while a packed forward builds its masks: the model's mask builders are skipped (our attention
# builds its own small masks), so no L x L mask is built for sliding layers or eager models.
_PACKED_FORWARD: ContextVar[bool] = ContextVar("longrm_packed_forward", default=False)


@dataclass(frozen=True)
class SharedPrefixLayout:
    """Where the prompt and each response sit in the packed sequence.

    ``response_mask`` (R x (P + R), True = may attend) is built once per forward
    and reused by every layer.
    """

    prompt_length: int
    response_lengths: tuple[int, ...]
    response_mask: torch.Tensor
    positions: torch.Tensor  # (L,) position id of every packed token
    segments: torch.Tensor   # (L,) PREFIX_SEGMENT (-1) for the prompt, j for response j
    block_rows: int = ATTENTION_BLOCK_ROWS

    def allowed(self, rows: slice, cols: slice, window: int | None) -> torch.Tensor:
        """Which packed keys ``cols`` the queries ``rows`` may attend to (True = attend)."""
        return may_attend(self.positions[rows], self.segments[rows], self.positions[cols], self.segments[cols],
                          window)


def build_layout(prompt_length: int, response_lengths: Sequence[int], device, *,
                 block_rows: int = ATTENTION_BLOCK_ROWS) -> SharedPrefixLayout:
    lengths = torch.tensor(list(response_lengths), device=device)
    total = int(lengths.sum())
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    offset = torch.arange(total, device=device)
    # each response row sees the whole prompt, then its own response up to itself
    own = (segment[:, None] == segment[None, :]) & (offset[None, :] <= offset[:, None])
    prompt_cols = torch.ones(total, prompt_length, dtype=torch.bool, device=device)
    starts = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    positions = torch.cat([torch.arange(prompt_length, device=device), prompt_length + offset - starts])
    segments = torch.cat([torch.full((prompt_length,), PREFIX_SEGMENT, device=device), segment])
    return SharedPrefixLayout(prompt_length, tuple(int(n) for n in response_lengths),
                              torch.cat([prompt_cols, own], dim=1), positions, segments, block_rows)


def _capped_attention(module, query, key, value, mask, *, scaling, softcap, dropout):
    """Eager attention with tanh soft-capped scores (Gemma 2), as the model's eager function computes it."""
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2)


def _blocked_attention(module, query, key, value, layout: SharedPrefixLayout, rows: range, *,
                       window, softcap, scaling, dropout, **kwargs):
    """Attention of the query rows ``rows``, a block at a time, each against only the keys it can reach.

    Packed order is causal for every row (a row's keys all come before it), so a block's keys end at the
    block's end; a window also bounds them from below, by the block's smallest position (clipped to the
    prompt: response columns are not numbered by position).
    """
    outs = []
    p = layout.prompt_length
    for start in range(rows.start, rows.stop, layout.block_rows):
        stop = min(start + layout.block_rows, rows.stop)
        first = 0
        if window is not None:
            first = min(max(0, int(layout.positions[start:stop].min()) - window + 1), p)
        block, cols = slice(start, stop), slice(first, stop)
        mask = layout.allowed(block, cols, window)[None, None]
        q, k, v = query[:, :, block], key[:, :, cols], value[:, :, cols]
        if softcap:
            outs.append(_capped_attention(module, q, k, v, mask, scaling=scaling, softcap=softcap,
                                          dropout=dropout))
        else:
            outs.append(sdpa_attention_forward(module, q, k, v, mask, dropout=dropout, scaling=scaling,
                                               is_causal=False, **kwargs)[0])
    return torch.cat(outs, dim=1)


def _make_attention(original: str):
    """An attention function that splits shared-prefix batches and defers everything else to ``original``."""

    def attention(module, query, key, value, attention_mask, *, longrm_layout=None, **kwargs):
        if _SCORER_KWARG in kwargs:
            raise RuntimeError(f"the RM scorer's packed call reached the training attention {ATTENTION_PREFIX!r}; "
                               "score with a model that was not prepared for shared-context training")
        if longrm_layout is None:
            if original == "eager":  # each model file defines its own eager attention
                impl = sys.modules[type(module).__module__].eager_attention_forward
            else:
                impl = ALL_ATTENTION_FUNCTIONS[original]
            return impl(module, query, key, value, attention_mask, **kwargs)
        kwargs.pop("is_causal", None)
        window, softcap = kwargs.pop("sliding_window", None), kwargs.pop("softcap", None)
        unknown = sorted(k for k, v in kwargs.items() if v is not None and k not in _PASSED_THROUGH)
        if unknown:  # e.g. attention sinks: a term our split would drop
            raise NotImplementedError(f"shared-context attention does not know the attention argument(s) {unknown} "
                                      f"of {type(module).__name__}; train this model with share_context=False")
        scaling = kwargs.pop("scaling", None)
        if scaling is None:
            scaling = query.shape[-1] ** -0.5
        dropout = kwargs.pop("dropout", 0.0)
        p = longrm_layout.prompt_length
        total = query.shape[2]
        if window is None and not softcap:
            # query/key/value: (batch, heads, seq, head_dim); SDPA forward returns (batch, seq, heads, head_dim)
            prompt_out, _ = sdpa_attention_forward(module, query[:, :, :p], key[:, :, :p], value[:, :, :p],
                                                   None, dropout=dropout, scaling=scaling, is_causal=True, **kwargs)
            response_out, _ = sdpa_attention_forward(module, query[:, :, p:], key, value,
                                                     longrm_layout.response_mask[None, None], dropout=dropout,
                                                     scaling=scaling, is_causal=False, **kwargs)
            return torch.cat([prompt_out, response_out], dim=1), None
        # sliding window and/or soft-capping: blocks of rows, each against the keys its window reaches
        out = _blocked_attention(module, query, key, value, longrm_layout, range(0, total), window=window,
                                 softcap=softcap, scaling=scaling, dropout=dropout, **kwargs)
        return out, None

    return attention


# Keywords models pass to attention functions that the split honours (or that do not change the result).
_PASSED_THROUGH = {"scaling", "dropout", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                   "max_length_k", "output_attentions", "use_cache", "cache_position", "layer_idx", "head_mask"}


def _mask_builder(original):
    """The original mask builder, except inside a packed forward, where our attention builds its own masks."""

    def build(*args, **kwargs):
        if _PACKED_FORWARD.get():
            return None
        return original(*args, **kwargs)

    return build


@contextmanager
def _packed_forward():
    token = _PACKED_FORWARD.set(True)
    try:
        yield
    finally:
        _PACKED_FORWARD.reset(token)


def shared_context_support(config) -> str | None:
    """None when shared-context training reproduces this model's attention, else one line saying why not.

    Read from the config alone, so it can run before any stage (and any weight) is loaded; the rules are
    the RM scorer's too (`longrm_tasks.rm.shared_prefix_rules`).
    """
    return shared_prefix_support(config)


def enable_shared_prefix_attention(model) -> str:
    """Route ``model``'s attention through the shared-prefix dispatcher (idempotent).

    Without a ``longrm_layout`` keyword the dispatcher calls the model's original
    implementation and its original mask builder, so generation, evaluation and
    saving behave as before. The name is not serialised (transformers drops
    ``_attn_implementation_internal`` from config.json).
    """
    config = model.config
    current = config._attn_implementation or "sdpa"
    if current in _REGISTERED:
        return current
    if current.startswith("longrm"):
        raise ValueError(f"the model runs another LongRM attention ({current!r}, the RM scorer's); shared-context "
                         "training needs a model loaded with 'sdpa', 'eager' or a flash attention implementation")
    reason = shared_context_support(config)
    if reason:
        raise ValueError(f"shared-context training is not possible: {reason}; use share_context=False")
    name = f"{ATTENTION_PREFIX}[{current}]"
    AttentionInterface.register(name, _make_attention(current))
    if current in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(name, _mask_builder(ALL_MASK_ATTENTION_FUNCTIONS[current]))
    _REGISTERED.add(name)
    model.set_attn_implementation(name)
    return name


def _segment_sums(values: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    return torch.stack([part.sum() for part in values.split(list(lengths))])


def _backbone(model):
    return _causal_lm(model).get_decoder()


def shared_context_logps(model, prompt_ids: Sequence[int], response_ids: Sequence[Sequence[int]], *,
                         logit_chunk_size: int = 1024, attention_block_rows: int = ATTENTION_BLOCK_ROWS,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts of each response, the prompt encoded once.

    Returns ``(logps, lengths)``, both of shape ``(len(response_ids),)``. The
    model must have been through ``enable_shared_prefix_attention``.
    """
    if model.config._attn_implementation not in _REGISTERED:
        raise RuntimeError(f"the model's attention is {model.config._attn_implementation!r}: call "
                           "enable_shared_prefix_attention(model) before shared_context_logps")
    device = _causal_lm(model).get_output_embeddings().weight.device
    p = len(prompt_ids)
    if p == 0 or any(len(r) == 0 for r in response_ids):
        raise ValueError("the prompt and every response need at least one token")
    lengths = [len(r) for r in response_ids]
    packed = torch.tensor([list(prompt_ids) + [t for r in response_ids for t in r]], device=device)
    positions = torch.cat([torch.arange(p)] + [torch.arange(p, p + n) for n in lengths])[None].to(device)
    layout = build_layout(p, lengths, device, block_rows=attention_block_rows)
    # An explicit all-ones 2D mask says "no padding": without it transformers reads the restarting
    # position ids as packed sequences and builds an L x L block mask (17 GB of bools at 128K) that
    # our attention would ignore anyway; with it, and our mask builders skipped inside the packed
    # forward, no mask over the sequence is built (sliding layers and eager models included).
    no_padding = torch.ones_like(packed)
    with _packed_forward():
        hidden = _backbone(model)(input_ids=packed, attention_mask=no_padding, position_ids=positions,
                                  use_cache=False, **{LAYOUT_KWARG: layout}).last_hidden_state[0]
    # the hidden state predicting response token k is the one before it; for k = 0 that is the
    # last prompt token, shared by all responses
    starts = torch.tensor([0] + lengths[:-1], device=device).cumsum(0) + p
    rows = []
    for start, n in zip(starts.tolist(), lengths):
        rows.append(torch.tensor([p - 1], device=device))
        rows.append(torch.arange(start, start + n - 1, device=device))
    token_logps = _response_logps(model, hidden[torch.cat(rows)], packed[0, p:], logit_chunk_size)
    return _segment_sums(token_logps, lengths), torch.tensor(lengths, device=device)


def unshared_logps(model, prompt_ids: Sequence[int], response_ids: Sequence[Sequence[int]], *,
                   logit_chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as ``shared_context_logps``, one forward of ``prompt + response`` per response."""
    device = _causal_lm(model).get_output_embeddings().weight.device
    p = len(prompt_ids)
    sums = []
    for response in response_ids:
        ids = torch.tensor([list(prompt_ids) + list(response)], device=device)
        hidden = _backbone(model)(input_ids=ids, use_cache=False).last_hidden_state[0]
        token_logps = _response_logps(model, hidden[p - 1:-1], ids[0, p:], logit_chunk_size)
        sums.append(token_logps.sum())
    return torch.stack(sums), torch.tensor([len(r) for r in response_ids], device=device)
