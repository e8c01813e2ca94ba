"""Learning check: `longrm train` (SFT -> alignment) lifts held-out pairwise accuracy from chance to >= 90 %."""
import random

import pytest

from longrm_tasks.train.learning_check import FACT, QUESTION, CheckSettings, make_items, run_check


def test_items_hide_the_fact_and_reject_other_values():
    items = make_items(20, context_words=50, num_rejected=3, rng=random.Random(1))
    for item in items:
        context = item["messages"][0]["content"]
        assert FACT.format(value=item["chosen"]) in context
        assert len(set(item["rejected"]) | {item["chosen"]}) == 4
        assert all(FACT.format(value=r) not in context for r in item["rejected"])
    depths = {items[i]["messages"][0]["content"].index(" the answer is") for i in range(20)}
    assert len(depths) > 10  # the fact sits at varying depths


def test_training_lengths_can_range_up_to_the_heldout_length():
    def words(item):
        fact_and_question = len(FACT.format(value=item["chosen"]).split()) + len(QUESTION.split())
        return len(item["messages"][0]["content"].split()) - fact_and_question

    ranged = make_items(200, context_words=60, min_context_words=10, num_rejected=1, rng=random.Random(2))
    lengths = [words(item) for item in ranged]
    assert min(lengths) >= 10 and max(lengths) <= 60 and len(set(lengths)) > 30
    fixed = make_items(5, context_words=60, num_rejected=1, rng=random.Random(2))
    assert {words(item) for item in fixed} == {60}


@pytest.mark.parametrize("path", ["generative", "discriminative"])
def test_training_lifts_heldout_accuracy_from_chance(tmp_path, path):
    # generative: sft -> alignment, ranked by log-prob; discriminative: reward stage, ranked by score
    result = run_check(tmp_path, CheckSettings(path=path))  # tiny 1-layer model, ~130-token contexts
    print(result)
    assert 0.3 <= result["accuracy_before"] <= 0.7
    assert result["accuracy_after"] >= 0.9
