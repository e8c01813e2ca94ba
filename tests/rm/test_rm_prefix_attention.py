"""The mask-free split attention for packed remainders equals SDPA with the block mask."""
import types

import pytest
import torch
import torch.nn.functional as F

from longrm_tasks.rm import prefix_attention
from longrm_tasks.rm.formatting import FormattedItem
from longrm_tasks.rm.prefix_attention import IMPLEMENTATION, REMAINDERS_KWARG, shared_prefix_attention
from longrm_tasks.rm.prefix_scorer import RewardScorer
from longrm_tasks.testing import build_model


def block_mask(prefix, lengths):
    segment = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    n = len(segment)
    own = (segment[:, None] == segment[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    return torch.cat([torch.ones(n, prefix, dtype=torch.bool), own], dim=1)[None, None]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("lengths", [[7], [5, 9, 1, 12]])
def test_split_equals_masked_sdpa_with_grouped_heads(lengths, dtype, tol):
    gen = torch.Generator().manual_seed(0)
    heads, kv_heads, dim, prefix = 4, 2, 16, 37
    n = sum(lengths)
    query = torch.randn(1, heads, n, dim, generator=gen).to(dtype)
    key = torch.randn(1, kv_heads, prefix + n, dim, generator=gen).to(dtype)
    value = torch.randn(1, kv_heads, prefix + n, dim, generator=gen).to(dtype)
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True)
    mask = block_mask(prefix, lengths)
    out, _ = shared_prefix_attention(module, query, key, value, mask, scaling=0.3, **{REMAINDERS_KWARG: lengths})
    expected = F.scaled_dot_product_attention(query.float(), key.float().repeat_interleave(2, 1),
                                              value.float().repeat_interleave(2, 1), attn_mask=mask, scale=0.3)
    assert out.dtype == dtype and out.shape == (1, n, heads, dim)
    assert (out.float() - expected.transpose(1, 2)).abs().max() < tol


def test_without_remainders_it_is_plain_sdpa():
    gen = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(1, 2, 10, 8, generator=gen) for _ in range(3))
    module = types.SimpleNamespace(num_key_value_groups=1, is_causal=True)
    out, _ = shared_prefix_attention(module, query, key, value, None)
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=True).transpose(1, 2)
    assert torch.equal(out, expected)


def test_scorer_takes_the_split_path_on_sdpa_models(monkeypatch):
    calls = []
    kernel = prefix_attention._CPU_FLASH
    monkeypatch.setattr(prefix_attention, "_CPU_FLASH", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    scorer = RewardScorer(model, tokenizer)
    assert model.config._attn_implementation == IMPLEMENTATION
    ids = list(range(5, 60))
    [a, b] = [ids + [7, 8], ids + [9]]
    scorer.score_formatted(FormattedItem([a, b], [len(a), len(b)]))
    assert len(calls) == 2 * 3  # per layer: one prefix call + one per remainder


def test_other_implementations_are_left_alone():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=1)
    model.set_attn_implementation("eager")
    RewardScorer(model, tokenizer)
    assert model.config._attn_implementation == "eager"
    unshared, _ = build_model("seq-cls", hidden=32, layers=1)
    RewardScorer(unshared, tokenizer, share_prefix=False)
    assert unshared.config._attn_implementation == "sdpa"


def test_prefix_prefill_stops_after_the_last_layers_keys_and_values():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    mlp_rows = []
    model.model.layers[-1].mlp.register_forward_hook(lambda mod, args, out: mlp_rows.append(args[0].shape[1]))
    ids = list(range(5, 60))
    [a, b] = [ids + [7, 8], ids + [9]]
    RewardScorer(model, tokenizer, prefill_chunk_size=20).score_formatted(FormattedItem([a, b], [len(a), len(b)]))
    assert mlp_rows == [3]  # only the packed remainders (2 + 1 tokens) reach the last layer's MLP
