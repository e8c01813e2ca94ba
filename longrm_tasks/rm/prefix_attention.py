"""Attention for answers packed behind a shared, cached prefix, without a block mask.

The shared-prefix scorer packs an item's remainders into one row after the
prefix's cache; each remainder sees the whole prefix and, causally, only
itself. SDPA with that block mask is correct everywhere but slow on CPU: the
masked kernel costs ~1.6x the mask-free one per attended key. Attention over a
union of key sets splits exactly: attend once to the prefix with no mask,
once per remainder to its own keys with plain causal masking, and merge the
two partial results by their log-sum-exp weights (the flash-attention
recombination rule). On CPU PyTorch's flash kernel returns that log-sum-exp
(``aten._scaled_dot_product_flash_attention_for_cpu``), so the split runs there;
on other devices, or when the op is missing, the same call falls back to SDPA
with the block mask.

The function is registered with transformers' ``AttentionInterface`` under
``IMPLEMENTATION``: without the ``longrm_remainder_lengths`` keyword it is
exactly transformers' SDPA, so a model switched to it behaves as before.
"""
from __future__ import annotations

import torch
from transformers import AttentionInterface

from longrm_tasks import compat

# transformers internals, each behind the version range it was written for (longrm_tasks.compat).
repeat_kv, sdpa_attention_forward = compat.transformers_sdpa_helpers()
ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask, _ = compat.transformers_mask_functions()

IMPLEMENTATION = "longrm_shared_prefix_sdpa"
# Keyword the scorer passes through the model's forward down to every attention call.
REMAINDERS_KWARG = "longrm_remainder_lengths"

_CPU_FLASH = compat.torch_cpu_flash_attention()  # a private ATen op, or None: callers fall back to SDPA


def shared_prefix_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                            scaling: float | None = None, **kwargs):
    """transformers attention function: SDPA, plus the mask-free split for packed remainders.

    ``key``/``value`` hold the prefix followed by the packed remainders (what
    the frozen prefix cache returns); ``longrm_remainder_lengths`` lists the
    remainders' lengths in packing order and ``attention_mask`` is their block
    mask, used whenever the split cannot run.
    """
    if "longrm_layout" in kwargs:  # train/shared_context's packed layout: SDPA here would silently ignore it
        raise RuntimeError(f"a shared-context training forward reached the RM scorer's attention {IMPLEMENTATION!r}")
    lengths = kwargs.pop(REMAINDERS_KWARG, None)
    # A sliding layer's window cuts into the prefix, which the split attends to in full: its mask decides there.
    if lengths is None or _CPU_FLASH is None or query.device.type != "cpu" or dropout or \
            kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    prefix = key.shape[2] - query.shape[2]
    # Every packed query attends to the whole prefix: one mask-free call.
    out, lse = _CPU_FLASH(query, key[:, :, :prefix], value[:, :, :prefix], scale=scaling)[:2]
    own_out, own_lse = torch.empty_like(out), torch.empty_like(lse)
    start = 0
    for n in lengths:
        rows = slice(start, start + n)
        keys = slice(prefix + start, prefix + start + n)
        # Within its own tokens a remainder is plain causal attention (square, so top-left = bottom-right).
        o, s = _CPU_FLASH(query[:, :, rows], key[:, :, keys], value[:, :, keys], is_causal=True, scale=scaling)[:2]
        own_out[:, :, rows], own_lse[:, :, rows] = o, s
        start += n
    # softmax over the union = each part's softmax weighted by its share of the total exp-sum.
    total = torch.logaddexp(lse, own_lse)
    merged = out.float() * torch.exp(lse - total)[..., None] + own_out.float() * torch.exp(own_lse - total)[..., None]
    return merged.to(query.dtype).transpose(1, 2).contiguous(), None


def use_shared_prefix_attention(model) -> bool:
    """Switch an SDPA model to ``IMPLEMENTATION``; False (model untouched) for any other implementation."""
    if model.config._attn_implementation != "sdpa":
        return False
    model.set_attn_implementation(IMPLEMENTATION)
    return model.config._attn_implementation == IMPLEMENTATION


AttentionInterface.register(IMPLEMENTATION, shared_prefix_attention)
# Masks are built as for SDPA (the prefix prefill keeps SDPA's mask-free causal path).
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)
