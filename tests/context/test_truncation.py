import pytest

from longrm_tasks.context.truncation import PAPER_LIMIT, paper_truncate, truncate_middle


def test_paper_rule_matches_reference_slices():
    ids = list(range(PAPER_LIMIT + 10))
    kept, cut = paper_truncate(ids)
    assert kept == ids[:65536] + ids[5 - 65536:]
    assert cut.dropped == len(ids) - len(kept) and cut.truncated


def test_paper_rule_leaves_shorter_prompts_alone():
    ids = list(range(PAPER_LIMIT - 1))
    kept, cut = paper_truncate(ids)
    assert kept == ids and not cut.truncated


def test_truncate_middle_keeps_head_tail_and_protected_answer():
    ids = list(range(100))
    kept, cut = truncate_middle(ids, 20, protect_tail=15)
    assert len(kept) == 20 and cut.dropped == 80
    assert kept[-15:] == ids[-15:] and kept[:5] == ids[:5]


def test_truncate_middle_balanced_split_and_noop():
    kept, _ = truncate_middle(list(range(10)), 4)
    assert kept == [0, 1, 8, 9]
    kept, cut = truncate_middle([1, 2], 4)
    assert kept == [1, 2] and cut.dropped == 0


def test_truncate_middle_refuses_when_protected_parts_do_not_fit():
    with pytest.raises(ValueError, match="protected"):
        truncate_middle(list(range(50)), 10, protect_tail=8, protect_head=5)
