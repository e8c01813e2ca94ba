"""Judge outputs -> predicted rank of each shown position (0 = best), or None if unparsed.

Two parsers:
- ``reference``: the benchmark evaluator's rules, quirks included, so scores
  reproduce the paper's (LCM-Lab/Long-RM ``extract_judgement``). Pair: ``[[A]]``
  anywhere wins, else ``[[B]]``. Rank: give up on more than 9 ``>``; take the
  first bracketed ``X>Y>Z`` chain (single brackets suffice, words allowed),
  drop "Assistant"/"assistant", colons and spaces, map letters to positions.
  A chain that names another number of positions than shown is not rejected:
  the per-item score then compares the positions both cover.
- ``strict``: the judge's *final* verdict: the last ``[[A]]``/``[[B]]``, or
  the last double-bracketed chain, which must rank exactly the shown letters
  once each (case-insensitive, "Assistant" prefixes allowed).

Scalar reward models: scores in shown order -> ranks by descending score;
ties keep the earlier position ahead (a stable sort, as the reference).
"""
from __future__ import annotations

import math
import re
from typing import Sequence

PARSERS = ("reference", "strict")

_REF_CHAIN = re.compile(r"\[[\w\s]+(?:\s*>\s*[\w\s]+)+\]")
_STRICT_PAIR = re.compile(r"\[\[\s*([AB])\s*\]\]")
_STRICT_CHAIN = re.compile(r"\[\[([^\[\]]*>[^\[\]]*)\]\]")
_ASSISTANT = re.compile(r"^\s*(?:assistant)?\s*([a-z])\s*$", re.IGNORECASE)


def _positions_to_ranks(best_first: Sequence[int]) -> list[int]:
    """[2, 0, 1] (C best, then A, then B) -> rank of each position: [1, 2, 0].

    Raises ValueError when a position in range(len(best_first)) is missing,
    as the reference does (and then counts the output as unparsed).
    """
    return [best_first.index(pos) for pos in range(len(best_first))]


def _reference_pair(text: str) -> list[int] | None:
    if "[[A]]" in text:
        return [0, 1]
    if "[[B]]" in text:
        return [1, 0]
    return None


def _reference_rank(text: str) -> list[int] | None:
    if text.count(">") > 9:
        return None
    found = _REF_CHAIN.search(text)
    if found is None:
        return None
    parts = found.group(0).split(">")
    for mark in ("assistant", "Assistant", ":", " "):
        parts = [p.replace(mark, "") for p in parts]
    parts[0] = parts[0].lstrip("[")
    parts[-1] = parts[-1].rstrip("]")
    if any(len(p) != 1 for p in parts):  # the reference's ord() fails on these
        return None
    try:
        return _positions_to_ranks([ord(p) - ord("A") for p in parts])
    except ValueError:
        return None


def _strict_pair(text: str) -> list[int] | None:
    found = _STRICT_PAIR.findall(text)
    if not found:
        return None
    return [0, 1] if found[-1] == "A" else [1, 0]


def _strict_rank(text: str, n: int) -> list[int] | None:
    found = _STRICT_CHAIN.findall(text)
    if not found:
        return None
    letters = []
    for part in found[-1].split(">"):
        m = _ASSISTANT.match(part)
        if m is None:
            return None
        letters.append(ord(m.group(1).upper()) - ord("A"))
    if sorted(letters) != list(range(n)):
        return None
    return _positions_to_ranks(letters)


def parse_judgment(text, kind: str, n: int, parser: str = "reference") -> list[int] | None:
    """Parse a generative judge's text. ``kind``: ``pair`` or ``rank``; ``n`` positions shown."""
    if not isinstance(text, str):
        return None
    if parser == "reference":
        return _reference_pair(text) if kind == "pair" else _reference_rank(text)
    if parser == "strict":
        return _strict_pair(text) if kind == "pair" else _strict_rank(text, n)
    raise ValueError(f"unknown parser {parser!r} ({', '.join(PARSERS)})")


def scores_to_ranks(scores: Sequence) -> list[int] | None:
    """Scalar rewards in shown order -> ranks; None if any score is missing or not a finite number."""
    values = []
    for s in scores:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            return None
        values.append(float(s))
    best_first = sorted(range(len(values)), key=lambda i: -values[i])  # stable: ties keep earlier first
    return _positions_to_ranks(best_first)


def rank_match(true_ranks: Sequence[int], predicted: Sequence[int] | None) -> float:
    """The benchmark's per-item score: share of shown positions whose predicted rank is right.

    Positions beyond the shorter list are not compared, but the share is of all
    shown positions (the reference's ``compare_shuffled``). Unparsed -> 0.
    """
    if not predicted:
        return 0.0
    return sum(int(a == b) for a, b in zip(true_ranks, predicted)) / len(true_ranks)
