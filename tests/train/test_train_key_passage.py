"""The key passage is found by the record's own tag, inside the context (not in the instructions),
and fitting keeps it and the question/response tail whole when they fit."""
import json
import os

import pytest

from longrm_tasks.context.fitting import FitStats
from longrm_tasks.train.long_inputs import Encoded, fit_prompt, key_span
from longrm_tasks.train.sample.generate import sample_path

# The authors' 20-record Stage II sample is not shipped; point this variable at a copy to check it too.
REAL_SAMPLE = os.environ.get("LONGRM_ALIGNMENT_SAMPLE")


def _span(text):
    span = key_span(text, [(i, i + 1) for i in range(len(text))])  # one "token" per character
    return None if span is None else text[span[0]:span[1]]


def test_tag_named_by_the_instructions_is_searched_inside_the_context():
    text = ("Judge the part between <Q9> and </Q9>.\n<context>\nfiller <b>bold</b> more\n"
            "<Q9>the evidence</Q9> tail\n</context>\nQuestion?")
    assert _span(text) == "<Q9>the evidence</Q9>"


def test_without_a_named_tag_the_first_tagged_passage_in_the_context_counts():
    assert _span("<context>\nx <LD>key</LD> y\n</context>\nQ") == "<LD>key</LD>"
    assert _span("<context>\nno tags at all\n</context>") is None


@pytest.mark.parametrize("source", ["bundled", "authors"])
def test_sample_key_passages_are_inside_the_context(source):
    if source == "authors" and not REAL_SAMPLE:
        pytest.skip("set LONGRM_ALIGNMENT_SAMPLE to the authors' Stage II sample to check its key passages")
    path = sample_path("alignment") if source == "bundled" else REAL_SAMPLE
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            text = "\n".join(m["content"] for m in record["messages"])
            found = _span(text)
            assert found is not None and text.index(found) > text.index("<context>")


def test_the_question_tail_is_kept_whole_when_it_fits_even_with_a_key_passage_early_on():
    # 1000 prompt tokens: key passage at 100-110, the last 150 tokens are the question/response tail.
    # The room left besides the key passage is shared in proportion to each side's length, which
    # gives the part after the passage about 0.89 x 290 = 258 tokens: enough here. Push the passage
    # late instead (at 800) and the after part would get ~55 tokens, less than its 150-token tail.
    prompt = list(range(1000))
    for start in (100, 800):
        enc = Encoded(prompt, 1000, (start, start + 10), tail_len=150)
        stats = FitStats()
        kept = fit_prompt(prompt, 300, enc, stats)
        assert len(kept) == 300 and kept[-150:] == prompt[-150:]  # the tail whole
        assert prompt[start:start + 10] == kept[kept.index(start):kept.index(start) + 10]  # the passage whole
        assert (stats.truncated, stats.key_passages_kept, stats.tails_cut, stats.tokens_dropped) == (1, 1, 0, 700)
    # A tail longer than the room left is cut too, and counted.
    stats = FitStats()
    kept = fit_prompt(prompt, 100, Encoded(prompt, 1000, (800, 810), tail_len=150), stats)
    assert len(kept) == 100 and stats.tails_cut == 1
