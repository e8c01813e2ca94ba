"""Shared-prefix reward scoring on sliding-window and soft-capped families equals the model's own forward.

Each classifier is a tiny random-weight config built at test time, with a window far shorter than the
prefix, so on sliding layers the window cuts into the shared prefix and into each candidate; candidates
have unequal lengths, and several are packed behind one prefix. The reference is the model's own
unshared forward (its own masks and attention implementation) on each full candidate sequence.
"""
import pytest
import torch
import transformers

from longrm_tasks.rm.formatting import FormattedItem
from longrm_tasks.rm.prefix_scorer import RewardScorer
from longrm_tasks.testing import build_tokenizer

WINDOW = 6
TOL = 1e-4


def _config(family: str, vocab: int, pad: int):
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, num_labels=1,
                  pad_token_id=pad)
    if family == "gemma2":  # sliding/global alternation, attention-logit soft-capping (eager attention)
        return transformers.Gemma2Config(head_dim=8, sliding_window=WINDOW, attn_logit_softcapping=5.0,
                                         query_pre_attn_scalar=8, attn_implementation="eager", **common)
    if family == "gemma3":  # Gemma 3's sliding/global mix, local and global RoPE bases, the last layer sliding
        return transformers.Gemma3TextConfig(head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                             layer_types=["sliding_attention", "full_attention",
                                                          "sliding_attention"], **common)
    if family == "mistral":  # one window on every layer
        return transformers.MistralConfig(head_dim=8, sliding_window=WINDOW, **common)
    if family == "qwen2":  # Qwen2's use_sliding_window: layers from max_window_layers on are sliding
        return transformers.Qwen2Config(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, **common)
    raise ValueError(family)


_CLASSES = {"gemma2": "Gemma2ForSequenceClassification", "gemma3": "Gemma3TextForSequenceClassification",
            "mistral": "MistralForSequenceClassification", "qwen2": "Qwen2ForSequenceClassification"}
FAMILIES = list(_CLASSES)


def _model(family: str, attn: str | None = None):
    tok = build_tokenizer()
    torch.manual_seed(0)
    config = _config(family, len(tok), tok.pad_token_id)
    if attn:
        config._attn_implementation = attn
    model = getattr(transformers, _CLASSES[family])(config).eval()
    return model, tok


def _item(prefix_len: int, remainder_lens, vocab: int, seed: int = 0) -> FormattedItem:
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(5, vocab, (prefix_len,), generator=g).tolist()
    candidates = [prefix + torch.randint(5, vocab, (n,), generator=g).tolist() for n in remainder_lens]
    return FormattedItem(candidates, [len(c) for c in candidates], id="x")


def _own_forward(model, item: FormattedItem) -> list[float]:
    with torch.inference_mode():
        return [model(torch.tensor([ids])).logits.item() for ids in item.input_ids]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("remainders", [(3, 3), (2, 9, 5, 1), (12, 4)])
def test_shared_prefix_rewards_equal_the_models_own_forward(family, remainders, caplog):
    model, tok = _model(family)
    item = _item(23, remainders, len(tok))
    scorer = RewardScorer(model, tok, batch_size=4)
    with caplog.at_level("WARNING"):
        [result] = [scorer.score_formatted(item)]
    assert "shared-prefix scoring is off" not in caplog.text
    assert scorer.share_prefix and result.shared_prefix_tokens == 23
    reference = _own_forward(model, item)
    assert max(abs(a - b) for a, b in zip(result.scores, reference)) < TOL, (result.scores, reference)
    # the prefix ran once: 23 + the remainders, not len(remainders) x 23
    assert result.tokens_processed == 23 + sum(remainders)


@pytest.mark.parametrize("family", ["gemma3", "mistral"])
def test_chunked_prefill_and_one_remainder_per_forward_agree(family):
    model, tok = _model(family)
    item = _item(31, (4, 7, 2), len(tok), seed=1)
    reference = _own_forward(model, item)
    for kwargs in ({"prefill_chunk_size": 5}, {"batch_size": 1}, {"prefill_chunk_size": 4, "batch_size": 2}):
        [result] = [RewardScorer(model, tok, **kwargs).score_formatted(item)]
        assert max(abs(a - b) for a, b in zip(result.scores, reference)) < TOL, kwargs


@pytest.mark.parametrize("family", ["gemma3", "qwen2"])
def test_eager_attention_shares_with_additive_masks(family):
    model, tok = _model(family, attn="eager")
    item = _item(20, (5, 3, 8), len(tok), seed=2)
    [result] = [RewardScorer(model, tok).score_formatted(item)]
    assert result.shared_prefix_tokens == 20
    assert max(abs(a - b) for a, b in zip(result.scores, _own_forward(model, item))) < TOL


def test_a_prefix_shorter_than_the_window_is_kept_whole():
    model, tok = _model("gemma3")
    item = _item(3, (2, 6), len(tok), seed=3)
    [result] = [RewardScorer(model, tok).score_formatted(item)]
    assert result.shared_prefix_tokens == 3
    assert max(abs(a - b) for a, b in zip(result.scores, _own_forward(model, item))) < TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_unshared_fallback_runs_unpadded_and_agrees(family):
    model, tok = _model(family)
    item = _item(15, (2, 9, 9, 4), len(tok), seed=4)
    scorer = RewardScorer(model, tok, share_prefix=False, batch_size=4)
    [result] = [scorer.score_formatted(item)]
    assert result.padding_tokens == 0 and result.shared_prefix_tokens == 0
    assert result.tokens_processed == sum(len(ids) for ids in item.input_ids)
    assert result.forward_passes == 3  # the two 9-token remainders share a batch, the others run alone
    assert max(abs(a - b) for a, b in zip(result.scores, _own_forward(model, item))) < TOL


def test_attention_that_cannot_be_shared_falls_back_with_one_line(caplog):
    tok = build_tokenizer()
    config = transformers.Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           head_dim=8, sliding_window=WINDOW, num_labels=1,
                                           pad_token_id=tok.pad_token_id, use_bidirectional_attention=True)
    torch.manual_seed(0)
    model = transformers.Gemma3TextForSequenceClassification(config).eval()
    with caplog.at_level("WARNING"):
        scorer = RewardScorer(model, tok)
    assert not scorer.share_prefix
    assert "shared-prefix scoring is off for Gemma3TextForSequenceClassification" in caplog.text
    assert "bidirectional attention cannot be shared" in caplog.text
