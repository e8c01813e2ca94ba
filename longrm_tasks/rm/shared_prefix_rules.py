"""Which attention a shared prefix can reproduce, and the mask rule both sharing paths apply.

Two code paths encode one long prefix once for several continuations: the
reward-model scorer (`rm.prefix_scorer`: the prefix's KV cache, remainders packed
after it) and the trainer (`train.shared_context`: prompt and responses packed in
one differentiable forward). Both must give exactly what the model computes on
``prefix + continuation`` alone, so both take from here

- `shared_prefix_support`: whether the model's attention can be reproduced at all
  (full and sliding-window layers, soft-capping; not chunked, linear or sink
  attention, bidirectional layers, flex/paged kernels), read from the config alone;
- `may_attend`: the mask rule, in positions and segments: a query sees a key of the
  shared prefix or of its own continuation, not after itself, and on a sliding
  layer only within the window -- the rule transformers' own causal and
  ``sliding_window_overlay`` masks apply to ``prefix + continuation``.
"""
from __future__ import annotations

import torch

# Layer types (config.layer_types) whose rule `may_attend` reproduces.
SHAREABLE_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})
# Model types whose attention adds learned sink logits (an extra softmax term a split or a cache view would drop).
SINK_MODEL_TYPES = frozenset({"gpt_oss"})
PREFIX_SEGMENT = -1  # segment id of the shared prefix's tokens


def shared_prefix_support(config) -> str | None:
    """None when a shared prefix reproduces this model's attention, else one line saying why not."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    name = getattr(text, "model_type", None) or type(text).__name__
    implementation = getattr(config, "_attn_implementation", None) or ""
    if implementation.startswith(("flex", "paged")):
        return f"{name}: attn_implementation={implementation!r} cannot be shared (use sdpa, eager or flash)"
    layer_types = set(getattr(text, "layer_types", None) or ())
    other = sorted(layer_types - SHAREABLE_LAYER_TYPES)
    if other:
        return f"{name}: layer types {other} cannot be shared (only full and sliding-window attention)"
    if getattr(text, "attention_chunk_size", None):
        return f"{name}: chunked attention (attention_chunk_size) cannot be shared"
    if name in SINK_MODEL_TYPES or getattr(text, "use_sink", False):
        return f"{name}: attention sinks cannot be shared"
    if getattr(text, "use_bidirectional_attention", False) or getattr(text, "is_causal", True) is False:
        # A prefix token would see the continuation after it: it is no longer shared.
        return f"{name}: bidirectional attention cannot be shared"
    return None


def may_attend(query_positions: torch.Tensor, query_segments: torch.Tensor, key_positions: torch.Tensor,
               key_segments: torch.Tensor, window: int | None) -> torch.Tensor:
    """``(queries, keys)`` bool: True where the query may attend to the key.

    Segments are `PREFIX_SEGMENT` for the shared prefix and one id per continuation;
    positions are the position ids the model sees (a continuation starts right after the prefix).
    """
    qpos, kpos = query_positions[:, None], key_positions[None, :]
    qseg, kseg = query_segments[:, None], key_segments[None, :]
    ok = ((kseg == PREFIX_SEGMENT) | (kseg == qseg)) & (kpos <= qpos)
    if window is not None:
        ok &= qpos - kpos < window  # transformers' sliding_window_overlay
    return ok
