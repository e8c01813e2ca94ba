"""Log-likelihood judge at one forward per item: the per-tokenizer request check, and lm-eval's hf backend on it."""
from __future__ import annotations

import logging

import pytest

from longrm_tasks.loglikelihood_requests import (OPENING, VerdictRequest, legacy_choices, legacy_design,
                                                 verdict_request)
from longrm_tasks.testing import build_tokenizer

# Generation prompts that end real chat templates (the text the verdict's opening follows).
TAILS = {
    "chatml-thinking-off": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "gemma": "<end_of_turn>\n<start_of_turn>model\n",
    "llama3": "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": " [/INST]",
    "none": "",
}


def _encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _sentencepiece_style_tokenizer():
    """A Metaspace BPE (the Llama-2 / Gemma family's pre-tokenization: no regex split of punctuation)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from longrm_tasks.testing import _CORPUS

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789[]<>/\n:._,'|")
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<start_of_turn>", "<end_of_turn>"],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", name_or_path="sp-style")


def _merging_tokenizer():
    """A BPE whose vocabulary holds ``[[A`` and ``[[B`` (verdict openings as whole tokens, as some real ones do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789[]<>/\n:._,'|> \u2581"))
    vocab = {c: i for i, c in enumerate(["<unk>"] + chars)}
    merges = [("[", "["), ("]", "]"), ("[[", "A"), ("[[", "B")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", name_or_path="merging-vocab")


def _assert_one_token_after_opening(tokenizer, request: VerdictRequest, tail: str):
    """What lm-eval's `_encode_pair` will do: context = tail + opening, continuation = the extra tokens."""
    context = _encode(tokenizer, tail + request.opening)
    letter_ids = []
    for choice in request.choices:
        whole = _encode(tokenizer, tail + request.opening + choice)
        assert whole[:len(context)] == context
        assert len(whole) == len(context) + 1
        letter_ids.append(whole[-1])
    assert len(set(letter_ids)) == len(letter_ids)


@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("make", [build_tokenizer, _sentencepiece_style_tokenizer], ids=["byte-bpe", "metaspace"])
def test_letters_are_one_token_after_the_opening(make, tail):
    tokenizer = make()
    for kind, n in [("pair", 2), ("rank", 2), ("rank", 3), ("rank", 4)]:
        request = verdict_request(tokenizer, kind, n, TAILS[tail])
        assert request == VerdictRequest(OPENING, list("ABCD"[:n]), True, "")
        _assert_one_token_after_opening(tokenizer, request, TAILS[tail])


def test_merging_tokenizer_falls_back_and_says_so_once(caplog):
    tokenizer = _merging_tokenizer()
    assert _encode(tokenizer, "x [[A")[-1] == tokenizer.convert_tokens_to_ids("[[A")  # the opening swallows A
    with caplog.at_level(logging.WARNING, logger="longrm_tasks.loglikelihood_requests"):
        first = verdict_request(tokenizer, "pair", 2, TAILS["gemma"])
        again = verdict_request(tokenizer, "pair", 2, TAILS["gemma"])
    assert first == again
    assert not first.one_forward and first.opening == ""
    assert first.choices == ["[[A]]", "[[B]]"] == legacy_choices("pair", 2)
    assert "merges" in first.reason and "[[A" in first.reason
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "merging-vocab" in warnings[0] and "[[A]]/[[B]]" in warnings[0]
    # Best-of-4 on the same tokenizer: C and D do not merge, but A and B do, so all four fall back.
    rank = verdict_request(tokenizer, "rank", 4, TAILS["gemma"])
    assert rank.choices == ["[[A>", "[[B>", "[[C>", "[[D>"] and not rank.one_forward


def test_no_tokenizer_and_forced_legacy_give_version_one_requests():
    assert verdict_request(None, "rank", 3) == VerdictRequest("", ["[[A>", "[[B>", "[[C>"], False,
                                                               "no tokenizer to check the letters with")
    tokenizer = build_tokenizer()
    with legacy_design():
        old = verdict_request(tokenizer, "pair", 2, TAILS["chatml-thinking-off"])
    assert (old.opening, old.choices, old.one_forward) == ("", ["[[A]]", "[[B]]"], False)
    assert verdict_request(tokenizer, "pair", 2, TAILS["chatml-thinking-off"]).one_forward


@pytest.mark.parametrize("kind,n", [("pairs", 2), ("pair", 3), ("rank", 1), ("rank", 11)])
def test_bad_kind_or_size_is_refused(kind, n):
    with pytest.raises(ValueError):
        verdict_request(build_tokenizer(), kind, n)
