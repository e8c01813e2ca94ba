"""The key passage is found by the record's own tag, inside the context (not in the instructions)."""
import json
from pathlib import Path

import pytest

from longrm_tasks.train.long_inputs import key_span

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "longrm_alignment_sample.jsonl"


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


def test_authors_sample_key_passages_are_inside_the_context():
    if not SAMPLE.is_file():
        pytest.skip(f"shared sample not found at {SAMPLE}")
    for line in SAMPLE.read_text().splitlines():
        record = json.loads(line)
        text = "\n".join(m["content"] for m in record["messages"])
        found = _span(text)
        assert found is not None and text.index(found) > text.index("<context>")
