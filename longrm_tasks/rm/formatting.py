"""Turn a Long-RewardBench item into the token ids a scalar reward model scores.

Each candidate is rendered as ``prompt_template + [assistant: candidate]``
through the reward model's own chat template (the reference protocol). Over-long
items are handled here, once, so every scorer (shared-prefix, unshared, vLLM)
sees exactly the same tokens:

- ``middle``: drop one middle span of the *context* — the same span from every
  candidate — so the longest candidate fits ``max_length``. The head of the
  context, its tail (the question) and every answer survive, and the
  candidates keep their common prefix, which is what shared-prefix scoring
  needs (cutting each candidate separately would misalign their tails).
- ``paper``: the reference evaluator's fixed rule (>= 131,072 tokens: first
  65,536 + last 65,531; `fitting.paper_span`), applied to each candidate as
  the reference does (LCM-Lab/Long-RM ``LongRewardBenchDisRMPreprocess``). An
  item with a sequence still longer than ``max_length`` cannot be held by the
  model: it is not scored and is marked ``overlong`` (the task scores it wrong).
- ``skip``: items with a candidate longer than ``max_length`` are skipped.

The request's protocol decides first (`truncation_for`): an item of the
``paper`` protocol always gets the ``paper`` rule, whatever the scorer's own
policy, so a result labelled ``paper`` is the reference's tokens; ``fit`` (or a
request that names no protocol) uses the scorer's policy.

Paper cuts and shared-prefix scoring: each candidate is cut on its own, so
past the first 65,536 tokens the candidates' tails start at different points of
the context and no longer line up. Nothing needs to fall back: the scorers
share exactly the longest common prefix of the ids they get (here the 65,536
head tokens, which every candidate takes from the same context) and run each
candidate's rest in full, which is what one forward per candidate computes.
Those ~65K-token rests run one per forward (`prefix_scorer.packed_groups`
bounds the packed block mask, which would otherwise take tens of GB).

Nothing is cut or skipped silently: every `FormattedItem` says how many
tokens were dropped or why it was skipped.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from longrm_tasks.errors import InputError
from longrm_tasks.context.fitting import PROTOCOLS, Protocol, middle_span, paper_span

TRUNCATION_POLICIES = ("middle", "paper", "skip")


@dataclass(frozen=True)
class ScoringItem:
    """One item to score: the whole task prompt and the candidate answers to rank."""

    prompt_template: list[dict[str, str]]
    candidates: list[str]
    id: str | None = None
    protocol: Protocol | None = None  # the task's protocol (`requests.reward`); None: the scorer's own policy

    def __post_init__(self) -> None:
        # the one place a protocol name given to a scorer is read: below, items carry a `Protocol`
        if self.protocol is not None and not isinstance(self.protocol, Protocol):
            if self.protocol not in PROTOCOLS:
                raise InputError(f"unknown protocol {self.protocol!r} ({', '.join(PROTOCOLS)})", line=self.id,
                                 field="protocol")
            object.__setattr__(self, "protocol", Protocol(self.protocol))


@dataclass(frozen=True)
class FormattedItem:
    """Token ids of every candidate, ready for a scorer, plus what over-long handling did."""

    input_ids: list[list[int]]
    original_lengths: list[int]
    dropped_tokens: int = 0  # most tokens removed from any one candidate
    skip_reason: str | None = None
    id: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    overlong: bool = False  # paper: beyond the model's context after the paper rule (scored wrong, not skipped)

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


def as_scoring_item(obj: ScoringItem | Mapping[str, Any]) -> ScoringItem:
    """Accept a `ScoringItem` or a mapping with ``prompt_template`` and ``candidates``."""
    if isinstance(obj, ScoringItem):
        item = obj
    elif isinstance(obj, Mapping):
        item_id = obj.get("id")
        for key in ("prompt_template", "candidates"):
            if key not in obj:
                raise InputError(f"missing (got keys {sorted(obj)})", line=item_id, field=key)
        protocol = obj.get("protocol")
        item = ScoringItem(list(obj["prompt_template"]), list(obj["candidates"]),
                           None if item_id is None else str(item_id), protocol if isinstance(protocol, str) else None)
    else:
        raise TypeError(f"expected a ScoringItem or a mapping, got {type(obj).__name__}")
    if not item.candidates:
        raise InputError("no candidates to score", line=item.id, field="candidates")
    if not all(isinstance(c, str) for c in item.candidates):
        raise InputError("every candidate must be a string", line=item.id, field="candidates")
    if not item.prompt_template:
        raise InputError("empty prompt", line=item.id, field="prompt_template")
    return item


def chat_token_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` rendered by the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    # Some tokenizers still hand back an encoding object; take the ids from it.
    if isinstance(ids, Mapping):
        ids = ids["input_ids"]
    return list(ids)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all ``sequences``."""
    if not sequences:
        return 0
    shortest = min(len(s) for s in sequences)
    first = sequences[0]
    for i in range(shortest):
        token = first[i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return shortest


def truncation_for(protocol: Protocol | None, configured: str) -> str:
    """The over-long rule for an item of ``protocol``: ``paper`` items get the paper rule, others ``configured``."""
    return "paper" if protocol is Protocol.PAPER else configured


def format_item(tokenizer, item: ScoringItem | Mapping[str, Any], *, max_length: int | None = None,
                truncation: str = "middle") -> FormattedItem:
    """Chat-format every candidate of ``item`` and fit it to ``max_length`` by ``truncation``.

    ``truncation`` is the scorer's policy; an item of the ``paper`` protocol gets the paper rule instead.
    """
    if truncation not in TRUNCATION_POLICIES:
        raise ValueError(f"unknown truncation {truncation!r} (choose from {', '.join(TRUNCATION_POLICIES)})")
    item = as_scoring_item(item)
    truncation = truncation_for(item.protocol, truncation)
    full = [chat_token_ids(tokenizer, item.prompt_template + [{"role": "assistant", "content": c}])
            for c in item.candidates]
    lengths = [len(ids) for ids in full]

    if truncation == "paper":
        spans = [paper_span(len(ids)) for ids in full]
        full = [span.apply(ids) for span, ids in zip(spans, full)]
        dropped = max(span.dropped for span in spans)
        if max_length is not None and max(map(len, full)) > max_length:
            return FormattedItem([], lengths, dropped, _too_long(full, max_length, "after the paper rule"),
                                 item.id, overlong=True)
        return FormattedItem(full, lengths, dropped, id=item.id)

    if max_length is None or max(lengths) <= max_length:
        return FormattedItem(full, lengths, id=item.id)
    if truncation == "skip":
        return FormattedItem([], lengths, skip_reason=_too_long(full, max_length), id=item.id)
    return _truncate_context(tokenizer, item, full, lengths, max_length)


def _truncate_context(tokenizer, item: ScoringItem, full: list[list[int]], lengths: list[int],
                      max_length: int) -> FormattedItem:
    # The context is what every candidate shares with the prompt rendered alone;
    # everything after it (assistant header, answer, end-of-turn) is protected.
    prompt_ids = chat_token_ids(tokenizer, item.prompt_template)
    context_len = min(common_prefix_length([prompt_ids, ids]) for ids in full)
    tails = [ids[context_len:] for ids in full]
    budget = max_length - max(len(t) for t in tails)
    if budget <= 0:
        return FormattedItem([], lengths, skip_reason=(
            f"the longest answer alone needs {max(len(t) for t in tails)} tokens, over max_length "
            f"{max_length}"), id=item.id)
    span = middle_span(context_len, budget)  # the fit rule (`longrm_tasks.context.fitting`) on the shared context
    context = span.apply(full[0][:context_len])
    return FormattedItem([context + tail for tail in tails], lengths, span.dropped, id=item.id)


def _too_long(full: list[list[int]], max_length: int, when: str = "") -> str:
    longest = max(len(ids) for ids in full)
    return f"longest candidate has {longest} tokens {when + ' ' if when else ''}> max_length {max_length}"
