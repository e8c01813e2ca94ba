"""Shared-prefix scoring equals one full forward per candidate, on several architectures."""
import pytest
import torch

from longrm_tasks.rm.formatting import FormattedItem
from longrm_tasks.rm.prefix_scorer import RewardScorer, find_score_head, pooled_index, token_ratio, token_summary
from longrm_tasks.testing import build_model, save_tiny_model

TOL = 1e-4
ANSWERS = ["The answer is 42, because the document says so.",
           "I think it is 41.",
           "The answer is 42, because the document says so, and the appendix agrees with it completely.",
           "No idea."]


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "gemma"])
def arch_model(request):
    return build_model("seq-cls", arch=request.param, hidden=32, layers=2)


def long_item(candidates, words=40, item_id="x"):
    context = " ".join(f"fact {i}: the fox jumps over the dog {i % 7}." for i in range(words))
    return {"id": item_id, "candidates": candidates,
            "prompt_template": [{"role": "system", "content": "Answer from the document."},
                                {"role": "user", "content": context + "\nQuestion: what is the answer?"}]}


def reference_scores(model, formatted):
    """The plain transformers forward of each candidate alone, no padding, no cache."""
    with torch.inference_mode():
        return [model(torch.tensor([ids])).logits.item() for ids in formatted.input_ids]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("n", [2, 4])
def test_shared_equals_unshared_and_plain_forward(arch_model, padding_side, n):
    model, tokenizer = arch_model
    tokenizer.padding_side = padding_side
    item = long_item(ANSWERS[:n])
    shared = RewardScorer(model, tokenizer, batch_size=4)
    unshared = RewardScorer(model, tokenizer, share_prefix=False, batch_size=4)
    [a], [b] = shared.score([item]), unshared.score([item])
    ref = reference_scores(model, shared.format(item))
    assert a.shared_prefix_tokens > 0 and b.shared_prefix_tokens == 0
    assert b.padding_tokens == 0 and a.padding_tokens == 0  # candidates are never padded, on either side
    assert max(abs(x - y) for x, y in zip(a.scores, ref)) < TOL
    assert max(abs(x - y) for x, y in zip(b.scores, ref)) < TOL
    assert len(set(a.scores)) == n  # different answers, different rewards


def test_small_batches_and_chunked_prefill_agree():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    item = long_item(ANSWERS)
    base = RewardScorer(model, tokenizer).score([item])[0].scores
    chunked = RewardScorer(model, tokenizer, batch_size=3, prefill_chunk_size=97).score([item])[0].scores
    assert max(abs(x - y) for x, y in zip(base, chunked)) < TOL


def formatted(*sequences):
    return FormattedItem([list(s) for s in sequences], [len(s) for s in sequences])


@pytest.mark.parametrize("sequences", [
    [range(10, 60), range(10, 70)],  # one candidate is a prefix of the other: zero-token remainder
    [range(10, 60), range(10, 60), range(10, 55)],  # identical candidates and a prefix
    [range(10, 60)],  # single candidate
    [list(range(10, 60)) + [3, 3], list(range(10, 60)) + [7, 3]],  # end in pad tokens (pad id 3)
], ids=["prefix", "identical", "single", "trailing-pad"])
def test_prefix_edge_cases(sequences):
    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    assert model.config.pad_token_id == 3
    item = formatted(*sequences)
    result = RewardScorer(model, tokenizer).score_formatted(item)
    assert max(abs(x - y) for x, y in zip(result.scores, reference_scores(model, item))) < TOL
    assert result.unique_tokens == len(set().union(*[{tuple(s[:k]) for k in range(1, len(s) + 1)}
                                                      for s in item.input_ids]))
    assert result.tokens_processed >= result.unique_tokens - 1


def test_identical_candidates_are_scored_once():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    result = RewardScorer(model, tokenizer).score_formatted(formatted(range(10, 60), range(10, 60)))
    assert result.scores[0] == result.scores[1]
    assert result.tokens_processed == 50 and result.unique_tokens == 50


def test_pooled_index_follows_transformers():
    assert pooled_index([5, 6, 3, 3], pad_token_id=3) == 1
    assert pooled_index([5, 6, 3, 3], pad_token_id=None) == 3
    assert pooled_index([3, 3], pad_token_id=3) == 0


def test_tokens_ratio_on_long_context_short_answers():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=1)
    items = [long_item(ANSWERS[:2], words=150, item_id="pair"), long_item(ANSWERS, words=150, item_id="bo4")]
    shared = RewardScorer(model, tokenizer).score(items)
    unshared = RewardScorer(model, tokenizer, share_prefix=False).score(items)
    assert token_ratio(shared) <= 1.02
    # The reference encodes the context once per candidate: ~2x for pairs, ~4x for Best-of-4.
    assert 1.9 < token_ratio(unshared[:1]) <= 2.0
    assert 3.8 < token_ratio(unshared[1:]) <= 4.0
    summary = token_summary(shared)
    assert summary["items"] == 2 and summary["skipped"] == 0 and summary["tokens_ratio"] <= 1.02


def test_truncated_items_keep_sharing_and_count_drops():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=1)
    item = long_item(ANSWERS)
    full = RewardScorer(model, tokenizer).format(item)
    limit = max(map(len, full.input_ids)) - 500
    [result] = RewardScorer(model, tokenizer, max_length=limit).score([item])
    assert not result.skipped and result.dropped_tokens == 500
    assert token_ratio([result]) <= 1.02


def test_skip_policy_is_counted():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=1)
    scorer = RewardScorer(model, tokenizer, max_length=400, truncation="skip")
    results = scorer.score([long_item(ANSWERS[:2]), long_item(ANSWERS[:2], words=5)])
    assert results[0].skipped and "max_length 400" in results[0].skip_reason and results[0].scores == []
    assert not results[1].skipped and len(results[1].scores) == 2
    assert token_summary(results)["skipped"] == 1


def test_default_max_length_is_the_models_positional_limit():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=1, max_positions=512)
    [result] = RewardScorer(model, tokenizer).score([long_item(ANSWERS[:2])])
    assert result.dropped_tokens > 0 and result.unique_tokens <= 2 * 512


def test_from_pretrained_loads_fp32_on_cpu(tmp_path):
    path = save_tiny_model(tmp_path / "rm", kind="seq-cls", hidden=32, layers=1)
    scorer = RewardScorer.from_pretrained(str(path), batch_size=2)
    assert scorer.model.dtype == torch.float32 and scorer.device.type == "cpu" and scorer.batch_size == 2
    [result] = scorer.score([long_item(ANSWERS[:2], words=20)])
    assert len(result.scores) == 2


def test_rejects_models_that_are_not_scalar_reward_models():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=1, num_labels=3)
    with pytest.raises(ValueError, match="one output"):
        RewardScorer(model, tokenizer)


def test_finds_the_classification_head():
    model, _ = build_model("seq-cls", hidden=32, layers=1)
    assert find_score_head(model) is model.score


def test_eager_attention_gets_an_additive_packed_mask():
    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    model.set_attn_implementation("eager")
    item = long_item(ANSWERS)
    scorer = RewardScorer(model, tokenizer)
    [result] = scorer.score([item])
    assert result.shared_prefix_tokens > 0
    assert max(abs(x - y) for x, y in zip(result.scores, reference_scores(model, scorer.format(item)))) < TOL


def test_long_remainders_are_not_packed_behind_a_huge_mask(monkeypatch):
    """Paper-protocol cuts leave ~65K-token remainders per candidate: a packed block mask over two of them
    would take ~26 GB, so they run one per forward (no mask), with the same scores."""
    from longrm_tasks.rm import prefix_scorer
    from longrm_tasks.rm.prefix_scorer import PACKED_MASK_ELEMENTS, packed_groups

    assert packed_groups([65_531, 65_531, 65_531], 65_536, 4, PACKED_MASK_ELEMENTS) == [(0, 1), (1, 2), (2, 3)]
    assert packed_groups([4_000] * 4, 128_000, 4, PACKED_MASK_ELEMENTS) == [(0, 4)]  # answers after a context
    assert packed_groups([5, 5, 5, 5, 5], 10, 2, 10**9) == [(0, 2), (2, 4), (4, 5)]
    assert packed_groups([5, 5, 5], 10, 4, 5 * 15) == [(0, 1), (1, 2), (2, 3)]
    assert packed_groups([], 10, 4, 100) == []

    model, tokenizer = build_model("seq-cls", hidden=32, layers=2)
    item = long_item(ANSWERS)
    packed = RewardScorer(model, tokenizer, batch_size=4)
    [a] = packed.score([item])
    before = packed.forward_passes
    monkeypatch.setattr(prefix_scorer, "PACKED_MASK_ELEMENTS", 1)  # nothing may be packed
    single = RewardScorer(model, tokenizer, batch_size=4)
    [b] = single.score([item])
    assert single.forward_passes == before + len(ANSWERS) - 1  # one forward per remainder instead of one
    assert max(abs(x - y) for x, y in zip(a.scores, b.scores)) < TOL
