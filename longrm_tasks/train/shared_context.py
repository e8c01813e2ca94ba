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

``unshared_logps`` runs each ``prompt + r_j`` separately with the same
response-only head: the reference for the gradient test, the benchmark's
baseline and the ``share_context=False`` path.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.distributed.tensor import DTensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from trl.trainer.utils import maybe_gather_lm_head_ctx

from longrm_tasks.train.response_head import target_logps

ATTENTION_PREFIX = "longrm_shared_prefix"


@dataclass(frozen=True)
class SharedPrefixLayout:
    """Where the prompt and each response sit in the packed sequence.

    ``response_mask`` (R x (P + R), True = may attend) is built once per forward
    and reused by every layer.
    """

    prompt_length: int
    response_lengths: tuple[int, ...]
    response_mask: torch.Tensor


def build_layout(prompt_length: int, response_lengths: Sequence[int], device) -> SharedPrefixLayout:
    lengths = torch.tensor(list(response_lengths), device=device)
    total = int(lengths.sum())
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    offset = torch.arange(total, device=device)
    # each response row sees the whole prompt, then its own response up to itself
    own = (segment[:, None] == segment[None, :]) & (offset[None, :] <= offset[:, None])
    prompt_cols = torch.ones(total, prompt_length, dtype=torch.bool, device=device)
    return SharedPrefixLayout(prompt_length, tuple(int(n) for n in response_lengths),
                              torch.cat([prompt_cols, own], dim=1))


def _make_attention(original: str):
    """An attention function that splits shared-prefix batches and defers everything else to ``original``."""

    def attention(module, query, key, value, attention_mask, *, longrm_layout=None, **kwargs):
        if longrm_layout is None:
            if original == "eager":  # each model file defines its own eager attention
                impl = sys.modules[type(module).__module__].eager_attention_forward
            else:
                impl = ALL_ATTENTION_FUNCTIONS[original]
            return impl(module, query, key, value, attention_mask, **kwargs)
        if kwargs.get("sliding_window") or kwargs.get("softcap"):
            raise NotImplementedError("shared-context attention supports neither sliding windows nor attention "
                                      "soft-capping; train this model with share_context=False")
        kwargs.pop("is_causal", None)
        p = longrm_layout.prompt_length
        # query/key/value: (batch, heads, seq, head_dim); SDPA forward returns (batch, seq, heads, head_dim)
        prompt_out, _ = sdpa_attention_forward(module, query[:, :, :p], key[:, :, :p], value[:, :, :p],
                                               None, is_causal=True, **kwargs)
        response_out, _ = sdpa_attention_forward(module, query[:, :, p:], key, value,
                                                 longrm_layout.response_mask[None, None],
                                                 is_causal=False, **kwargs)
        return torch.cat([prompt_out, response_out], dim=1), None

    return attention


def enable_shared_prefix_attention(model) -> str:
    """Route ``model``'s attention through the shared-prefix dispatcher (idempotent).

    Without a ``longrm_layout`` keyword the dispatcher calls the model's original
    implementation and its original mask builder, so generation, evaluation and
    saving behave as before. The name is not serialised (transformers drops
    ``_attn_implementation_internal`` from config.json).
    """
    config = model.config
    current = config._attn_implementation or "sdpa"
    if current.startswith(ATTENTION_PREFIX):
        return current
    if current.startswith("flex") or current.startswith("paged"):
        raise ValueError(f"shared-context training does not support attn_implementation={current!r}; "
                         "load the model with 'sdpa', 'eager' or a flash attention implementation")
    name = f"{ATTENTION_PREFIX}[{current}]"
    AttentionInterface.register(name, _make_attention(current))
    if current in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[current])
    model.set_attn_implementation(name)
    return name


def _causal_lm(model):
    """The ``*ForCausalLM`` inside a PEFT wrapper (LoRA layers are injected in place, so they still run)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _response_logps(model, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Per-token log p(target) of ``lm_head(hidden)``, ``chunk_size`` positions at a time, no full logits kept."""
    lm = _causal_lm(model)
    head = lm.get_output_embeddings()
    if hasattr(head, "base_layer"):
        # the head's weight is read directly below, so an adapter on it would be silently ignored
        raise ValueError("adapters on the LM head are not supported; leave lm_head out of the PEFT target_modules")
    text_config = lm.config.get_text_config()
    weight, bias = head.weight, head.bias
    # The head's weight is used outside the head's forward, where distributed wrappers do not
    # materialise it (TRL's fused heads do the same): FSDP2 keeps DTensor shards, gathered here once
    # (the gather's backward reduce-scatters the gradient); ZeRO-3 keeps an empty placeholder,
    # gathered for the forward here and again by `target_logps`' backward.
    if isinstance(weight, DTensor):
        weight = weight.full_tensor()
        bias = bias.full_tensor() if bias is not None else None
    with maybe_gather_lm_head_ctx(weight, bias):
        return target_logps(hidden, weight, bias, targets, block_rows=chunk_size,
                            softcap=getattr(text_config, "final_logit_softcapping", None),
                            scale=getattr(text_config, "logit_scale", None) or 1.0)


def _segment_sums(values: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    return torch.stack([part.sum() for part in values.split(list(lengths))])


def _backbone(model):
    return _causal_lm(model).get_decoder()


def shared_context_logps(model, prompt_ids: Sequence[int], response_ids: Sequence[Sequence[int]], *,
                         logit_chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts of each response, the prompt encoded once.

    Returns ``(logps, lengths)``, both of shape ``(len(response_ids),)``. The
    model must have been through ``enable_shared_prefix_attention``.
    """
    if not str(model.config._attn_implementation).startswith(ATTENTION_PREFIX):
        raise RuntimeError("call enable_shared_prefix_attention(model) before shared_context_logps")
    device = _causal_lm(model).get_output_embeddings().weight.device
    p = len(prompt_ids)
    if p == 0 or any(len(r) == 0 for r in response_ids):
        raise ValueError("the prompt and every response need at least one token")
    lengths = [len(r) for r in response_ids]
    packed = torch.tensor([list(prompt_ids) + [t for r in response_ids for t in r]], device=device)
    positions = torch.cat([torch.arange(p)] + [torch.arange(p, p + n) for n in lengths])[None].to(device)
    layout = build_layout(p, lengths, device)
    # An explicit all-ones 2D mask says "no padding": without it transformers reads the restarting
    # position ids as packed sequences and builds an L x L block mask (17 GB of bools at 128K) that
    # our attention would ignore anyway; with it, the SDPA/flash mask builders return None.
    no_padding = torch.ones_like(packed)
    hidden = _backbone(model)(input_ids=packed, attention_mask=no_padding, position_ids=positions,
                              use_cache=False, longrm_layout=layout).last_hidden_state[0]
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
