"""Chat formatting and over-long handling of reward-model items."""
import pytest

from longrm_tasks.errors import InputError
from longrm_tasks.rm.formatting import ScoringItem, chat_token_ids, common_prefix_length, format_item
from longrm_tasks.testing import build_tokenizer
from longrm_tasks.context.truncation import PAPER_HEAD, PAPER_TAIL


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def item(context_words=400, answers=("Yes, 42.", "No, it is 41 according to the text.")):
    context = "HEAD-MARK " + " ".join(f"word{i}" for i in range(context_words)) + " Question: what?"
    return ScoringItem([{"role": "user", "content": context}], list(answers), id="r1")


def test_candidates_render_as_prompt_plus_assistant_turn(tokenizer):
    it = item(10)
    out = format_item(tokenizer, it)
    expected = chat_token_ids(tokenizer, it.prompt_template + [{"role": "assistant", "content": "Yes, 42."}])
    assert out.input_ids[0] == expected and not out.skipped and out.dropped_tokens == 0
    assert tokenizer.decode(out.input_ids[1]).endswith("No, it is 41 according to the text.<|im_end|>\n")


def test_middle_truncation_keeps_head_question_and_answers(tokenizer):
    it = item()
    full = format_item(tokenizer, it)
    limit = max(full.original_lengths) - 300
    out = format_item(tokenizer, it, max_length=limit)
    assert max(map(len, out.input_ids)) == limit and out.dropped_tokens == 300
    for ids, answer in zip(out.input_ids, it.candidates):
        text = tokenizer.decode(ids)
        assert text.startswith("<|im_start|>user\nHEAD-MARK") and "Question: what?" in text
        assert text.endswith(answer + "<|im_end|>\n")
    # The same span is cut from every candidate, so they still share their context.
    assert common_prefix_length(out.input_ids) >= limit - max(
        len(ids) - common_prefix_length(full.input_ids) for ids in full.input_ids)


def test_answer_longer_than_the_budget_is_skipped_not_cut(tokenizer):
    out = format_item(tokenizer, item(answers=("long " * 200, "short")), max_length=100)
    assert out.skipped and "longest answer" in out.skip_reason and out.input_ids == []


def test_skip_policy(tokenizer):
    out = format_item(tokenizer, item(), max_length=50, truncation="skip")
    assert out.skipped and "> max_length 50" in out.skip_reason
    assert not format_item(tokenizer, item(3), max_length=500, truncation="skip").skipped


def test_paper_rule_is_the_reference_slices(tokenizer):
    it = item(context_words=70_000)  # >= 131,072 tokens with the tiny tokenizer
    full = format_item(tokenizer, it)
    assert min(full.original_lengths) >= 131_072
    out = format_item(tokenizer, it, truncation="paper")
    for ids, original in zip(out.input_ids, full.input_ids):
        assert ids == original[:PAPER_HEAD] + original[-PAPER_TAIL:]
    assert out.dropped_tokens == max(full.original_lengths) - PAPER_HEAD - PAPER_TAIL
    assert format_item(tokenizer, it, truncation="paper", max_length=100_000).skipped


def test_bad_items_name_the_record(tokenizer):
    with pytest.raises(InputError, match="record r9: field 'candidates'"):
        format_item(tokenizer, {"id": "r9", "prompt_template": [{"role": "user", "content": "q"}],
                                "candidates": []})
    with pytest.raises(InputError, match="field 'prompt_template'"):
        format_item(tokenizer, {"id": "r9", "candidates": ["a"]})
    with pytest.raises(ValueError, match="unknown truncation"):
        format_item(tokenizer, item(3), truncation="left")


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[1, 2]]) == 2 and common_prefix_length([]) == 0


def test_the_items_protocol_decides_before_the_scorers_policy(tokenizer):
    """A paper item gets the paper rule whatever the scorer's policy; beyond max_length it is over-long
    (scored wrong by the task), not skipped by policy. fit / no protocol: the scorer's policy."""
    it = item()
    n = max(format_item(tokenizer, it).original_lengths)
    paper = ScoringItem(it.prompt_template, it.candidates, it.id, protocol="paper")
    for policy in ("middle", "skip", "paper"):
        out = format_item(tokenizer, paper, max_length=n - 10, truncation=policy)
        assert out.skipped and out.overlong and "after the paper rule" in out.skip_reason
    fit = ScoringItem(it.prompt_template, it.candidates, it.id, protocol="fit")
    out = format_item(tokenizer, fit, max_length=n - 10, truncation="middle")
    assert not out.skipped and not out.overlong and out.dropped_tokens == 10
    skipped = format_item(tokenizer, {"prompt_template": it.prompt_template, "candidates": it.candidates,
                                      "protocol": "fit"}, max_length=n - 10, truncation="skip")
    assert skipped.skipped and not skipped.overlong
    as_mapping = {"prompt_template": it.prompt_template, "candidates": it.candidates, "protocol": "paper"}
    assert format_item(tokenizer, as_mapping, max_length=n - 10, truncation="middle").overlong
