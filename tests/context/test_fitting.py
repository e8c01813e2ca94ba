"""The fitting rules (`longrm_tasks.context.fitting`): paper head/tail, fit middle span, room at the context, stats."""
from __future__ import annotations

import pytest

from longrm_tasks.context.fitting import (FitStats, DoesNotFit, Span, generation_room, middle_span, paper_prompt,
                                          paper_span, strip_bos, zero_shot_prompt)
from longrm_tasks.testing import build_tokenizer
from longrm_tasks.context.truncation import PAPER_LIMIT


def test_paper_span_is_the_reference_slices():
    n = PAPER_LIMIT + 123
    ids = list(range(n))
    assert paper_span(n).apply(ids) == ids[:65536] + ids[5 - 65536:]
    assert paper_span(PAPER_LIMIT).dropped == PAPER_LIMIT - 65536 - 65531
    assert paper_span(PAPER_LIMIT - 1) == Span()


def test_middle_span_protects_head_and_tail_and_splits_the_room():
    span = middle_span(100, 30, protect_head=10, protect_tail=8)
    kept = span.apply(range(100))
    assert len(kept) == 30 and kept[:10] == list(range(10)) and kept[-8:] == list(range(92, 100))
    # room 12: the context's beginning keeps 6, its end 6
    assert kept[10:16] == list(range(10, 16)) and kept[16:22] == list(range(86, 92))
    assert middle_span(20, 30) == Span()
    with pytest.raises(DoesNotFit):
        middle_span(100, 10, protect_head=6, protect_tail=6)


def test_generation_room_classifies_at_the_models_context():
    assert generation_room(100, 4096, 2048).status == "ok"
    room = generation_room(3000, 4096, 2048)
    assert room.status == "short_budget" and room.gen_tokens == 1096
    assert generation_room(4096, 4096, 2048).status == "overlong"
    assert generation_room(9000, None, 2048).status == "ok"


def test_fit_stats_count_and_merge():
    a, b = FitStats(examples=2, inputs=4), FitStats(examples=1, inputs=1)
    a.cut(10), a.cut(0), b.cut(30), b.too_long("Math/3", "5000 tokens > 4096"), a.skip("Cite/1", "too long")
    a.saw_length(700), b.saw_length(5000)
    a.merge(b)
    assert (a.examples, a.inputs, a.truncated, a.tokens_dropped, a.max_dropped) == (3, 5, 2, 40, 30)
    assert (a.overlong, a.skipped, a.longest_input) == (1, 1, 5000) and len(a.reasons) == 2
    assert "beyond the model's context" in a.summary() and "reasons" not in a.as_dict()


def test_fit_stats_merge_adds_every_counter():
    """`merge` names each field: one added later and forgotten there fails here."""
    from dataclasses import fields

    counters = [f.name for f in fields(FitStats) if f.name != "reasons"]
    a = FitStats(**{name: i + 1 for i, name in enumerate(counters)})
    b = FitStats(**{name: 100 * (i + 1) for i, name in enumerate(counters)}, reasons=["x: y"])
    merged = a.merge(b).as_dict()
    maxima = {"max_dropped", "longest_input"}
    assert merged == {name: 100 * (i + 1) + (0 if name in maxima else i + 1) for i, name in enumerate(counters)}
    assert a.reasons == ["x: y"]


def test_paper_prompt_without_template_is_fastchat_zero_shot():
    tok = build_tokenizer()
    tok.chat_template = None
    messages = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Which is better?"}]
    out = paper_prompt(tok, messages)
    assert out.text == "Judge.\n### Human: Which is better?\n### Assistant:" == zero_shot_prompt("Judge.",
                                                                                             "Which is better?")
    assert out.dropped == 0


def test_strip_bos_only_strips_a_leading_bos():
    class Tok:
        bos_token = "<s>"
    assert strip_bos("<s>hello <s>", Tok()) == "hello <s>"
    assert strip_bos("hello", Tok()) == "hello"
    assert strip_bos("<s>x", object()) == "<s>x"
