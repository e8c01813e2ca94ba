"""What the log-likelihood judge scores after the judge prompt: one forward per item where the tokenizer allows.

The judge prompt asks for a verdict ``[[A]]`` / ``[[B]]`` (pairs) or a ranking
chain ``[[C>A>B>D]]`` (Best-of-N). The log-likelihood judge does not generate:
it scores, after the rendered prompt, one continuation per shown position and
takes the likeliest.

Design (task version 2): the prompt ends with the verdict's *opening* ``[[``
and each choice is the bare *letter*. Every choice is then exactly one token
after a shared context, so lm-eval's hf backend computes all N log-likelihoods
from one forward pass: ``HFLM._loglikelihood_tokens`` groups requests by
``context_tokens + continuation_tokens[:-1]`` (``Collator(group_by="contexts")``,
``_lookup_one_token_cont``; on by default, ``logits_cache=True``), runs the
longest member of each group once and reads every member's last-token
log-prob from the same logits (``Collator.get_cache``). A 128K-token Best-of-4
item costs one prefill instead of four.

Design until version 1: no opening; pairs scored ``[[A]]`` / ``[[B]]``, Best-of-N
scored ``[[X>``. Those continuations differ before their last token, so every
choice was its own full prefill.

The decision is the same in spirit: *which verdict the model opens with*.
Version 1 compared ``log P("[[") + log P(X | "[[") + log P(close | "[[X")``
(close = ``]]`` or ``>``); the first term is the same for every choice, so the
two designs differ only by the closing token's log-prob, which is ~0 for a
model that follows the verdict format. Ties still keep the earlier position.
(lm-eval also moves a context's trailing whitespace into the continuation: a
chat template ending in ``"\n\n"`` made version 1 score ``"\n\n[[A]]"``; that
common term cancels too, and a context ending in ``[[`` has none to move.)

lm-eval splits a request into tokens by encoding ``context`` and
``context + continuation`` separately and taking the extra tokens as the
continuation (`TemplateLM._encode_pair`). So one forward per item needs, per
tokenizer, that ``tail + "[[" + X`` encodes as the tokens of ``tail + "[["``
plus exactly one token, for every letter X: the letter must be one token and
must not merge with the opening. `verdict_request` checks this once per
(tokenizer, kind, N, prompt tail); when it fails it says why, once, and falls
back to the version-1 continuations (correct, N forwards per item).

Backends: lm-eval's ``hf`` (and ``hf-multimodal`` for causal models) reuse the
forward. ``vllm`` sends one request per choice with ``prompt_logprobs``, and
vLLM's V1 engine skips its prefix cache for such requests, so it still pays N
prefills; the completion APIs (``local-completions``) also send one request per
choice. The new design is never slower on them (the opening moves one or two
tokens from the continuation to the context). Under ``--apply_chat_template``
the task renders the chat again and appends the opening (`opening_for`).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

from longrm_tasks.prompts.judge_prompts import LETTERS

log = logging.getLogger(__name__)

OPENING = "[["  # how every verdict of the judge prompt starts: "[[A]]", "[[C>A>B>D]]"
KINDS = ("pair", "rank")


@dataclass(frozen=True)
class VerdictRequest:
    """The continuations one document asks the model to score.

    ``opening`` is appended to the rendered judge prompt (and counted in its
    tokens); ``choices`` are scored after it, one per shown position, in
    position order.
    """

    opening: str  # text appended to the rendered judge prompt before scoring ("[["), "" in the fallback
    choices: list[str] = field(hash=False)  # one continuation per shown position, position order
    one_forward: bool  # True when every choice is exactly one token after prompt+opening for this tokenizer
    reason: str = ""  # why not one_forward (for a once-only warning)


def legacy_choices(kind: str, n: int) -> list[str]:
    """The version-1 continuations: ``[[A]]`` / ``[[B]]`` for pairs, ``[[X>`` for each letter in Best-of-N."""
    letters = LETTERS[:n]
    return [f"[[{x}]]" for x in letters] if kind == "pair" else [f"[[{x}>" for x in letters]


def _check_args(kind: str, n: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown prompt kind {kind!r} ({', '.join(KINDS)})")
    if not 2 <= n <= len(LETTERS) or (kind == "pair" and n != 2):
        raise ValueError(f"a {kind} verdict cannot have {n} positions")


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _tokens(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


@lru_cache(maxsize=256)
def _one_token_reason(tokenizer, context: str, letters: str) -> str:
    """Why some letter is not exactly one token after ``context`` (the way lm-eval splits it), or ""."""
    base = _encode(tokenizer, context)
    for letter in letters:
        whole = _encode(tokenizer, context + letter)
        if whole[:len(base)] != base:
            merged = _tokens(tokenizer, whole[max(0, len(base) - 2):])
            return f"{OPENING!r} + {letter!r} merges across the boundary (ends as {merged})"
        extra = whole[len(base):]
        if len(extra) != 1:
            return f"{letter!r} after {OPENING!r} is {len(extra)} tokens ({_tokens(tokenizer, extra)})"
    return ""


_warned: set[tuple] = set()
_legacy_forced = 0  # > 0 inside `legacy_design()`


@contextmanager
def legacy_design() -> Iterator[None]:
    """Build version-1 requests (one forward per choice) inside this block: for side-by-side measurements."""
    global _legacy_forced
    _legacy_forced += 1
    try:
        yield
    finally:
        _legacy_forced -= 1


def verdict_request(tokenizer, kind: str, n: int, prompt_tail: str = "") -> VerdictRequest:
    """The opening and choices for a ``kind`` (``pair`` | ``rank``) verdict over ``n`` shown answers.

    ``prompt_tail`` is the end of the rendered prompt (e.g. the chat template's
    generation prompt), so the check sees the tokens the opening follows.
    Without a tokenizer nothing can be checked: the version-1 continuations.
    """
    _check_args(kind, n)
    letters = LETTERS[:n]
    if tokenizer is None:
        return VerdictRequest("", legacy_choices(kind, n), False, "no tokenizer to check the letters with")
    if _legacy_forced:
        return VerdictRequest("", legacy_choices(kind, n), False, "version-1 design requested")
    reason = _one_token_reason(tokenizer, prompt_tail + OPENING, letters)
    if not reason:
        return VerdictRequest(OPENING, list(letters), True)
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    key = (id(tokenizer), kind, n)  # once per tokenizer and verdict shape, whatever the prompt's tail
    if key not in _warned:
        _warned.add(key)
        log.warning("long_rewardbench_ll: with tokenizer %s the %s verdict letters are not one token each after "
                    "%r (%s): scoring the full continuations %s instead, one forward per choice", name, kind,
                    OPENING, reason, "/".join(legacy_choices(kind, n)))
    return VerdictRequest("", legacy_choices(kind, n), False, reason)


def opening_for(choices) -> str:
    """The opening a document's context must end with, read back from its choices (version 2: bare letters).

    For contexts rendered again later (``--apply_chat_template`` renders the
    user content with the model's template and must append the opening itself).
    """
    return OPENING if choices and not str(choices[0]).startswith(OPENING) else ""


def opening_tokens(tokenizer, request: VerdictRequest, prompt_tail: str) -> int:
    """Tokens ``request.opening`` adds after a prompt ending in ``prompt_tail`` (to count it in the prompt)."""
    if not request.opening or tokenizer is None:
        return 0
    return len(_encode(tokenizer, prompt_tail + request.opening)) - len(_encode(tokenizer, prompt_tail))

