"""The vLLM scorer's request planning and result mapping (vLLM itself needs a GPU machine)."""
import importlib.util

import pytest

from longrm_tasks.rm.formatting import FormattedItem
from longrm_tasks.rm.prefix_scorer import token_ratio
from longrm_tasks.rm.vllm_scorer import VLLMRewardScorer, collect_scores, plan_waves, token_prompts


def item(*lengths, shared=100, skip=False):
    if skip:
        return FormattedItem([], list(lengths), skip_reason="too long")
    return FormattedItem([list(range(shared)) + [1000 + k] * (n - shared) for k, n in enumerate(lengths)],
                         list(lengths))


def test_first_candidates_run_before_the_rest_within_a_token_budget():
    items = [item(120, 130), item(150, 110, 105, 140), item(1, skip=True), item(300, 310)]
    waves = plan_waves(items, token_budget=300)
    assert waves == [
        [(0, 0), (1, 0)], [(0, 1), (1, 1), (1, 2), (1, 3)],  # 130 + 150 tokens fit in 300
        [(3, 0)], [(3, 1)],  # an item over the budget still gets its own waves
    ]
    prompts = token_prompts(items, waves[0])
    assert prompts == [{"prompt_token_ids": items[0].input_ids[0]}, {"prompt_token_ids": items[1].input_ids[0]}]


def test_single_candidate_items_need_one_wave():
    assert plan_waves([item(120), item(130)], token_budget=10_000) == [[(0, 0), (1, 0)]]


def test_results_map_back_to_items_with_vllm_token_counts():
    items = [item(120, 130), item(1, skip=True)]
    # What vLLM reports: the first candidate computes everything, the second reuses the cached prefix.
    results = {(0, 0): (0.5, 120), (0, 1): (-1.25, 30)}
    scored, skipped = collect_scores(items, results)
    assert scored.scores == [0.5, -1.25] and scored.unique_tokens == 150 and scored.tokens_processed == 150
    assert skipped.skipped and skipped.skip_reason == "too long"
    assert token_ratio([scored, skipped]) == 1.0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_gives_an_install_hint():
    with pytest.raises(ImportError, match="longrm-tasks\\[vllm\\]"):
        VLLMRewardScorer.from_pretrained("any/model")
