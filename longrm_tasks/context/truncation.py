"""The benchmark's rule for over-long inputs: keep the head and the tail, drop the middle.

Long-RewardBench puts the long context first and the question / answers last,
so cutting the middle keeps the task instructions and every answer. The
reference evaluator applies it to prompts of >= 131,072 tokens (first 65,536
plus last 65,531 tokens); `paper_truncate` reproduces that exactly, and
`truncate_middle` generalises it to any budget while guaranteeing that a
protected tail (the answers, the judgment to score) survives whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")

PAPER_LIMIT = 131_072
PAPER_HEAD = 65_536
PAPER_TAIL = 65_531  # the reference keeps ids[5 - 65536:]


@dataclass(frozen=True)
class Cut:
    """What a truncation did: original length and how many tokens were dropped."""

    original: int
    dropped: int

    @property
    def truncated(self) -> bool:
        return self.dropped > 0


def paper_truncate(ids: Sequence[T]) -> tuple[list[T], Cut]:
    """Exactly the reference evaluator's rule (LCM-Lab/Long-RM, evaluate/.../prompt.py)."""
    from longrm_tasks.context.fitting import paper_span  # the rule lives there; this is the ids view of it

    ids = list(ids)
    span = paper_span(len(ids))
    return span.apply(ids), Cut(len(ids), span.dropped)


def truncate_middle(ids: Sequence[T], max_length: int, *, protect_tail: int = 0,
                    protect_head: int = 0) -> tuple[list[T], Cut]:
    """Fit ``ids`` into ``max_length`` tokens by dropping a middle span.

    Half the budget goes to the head and half to the tail, except that the last
    ``protect_tail`` and first ``protect_head`` tokens always survive. Raises
    ``ValueError`` when the protected parts alone do not fit.
    """
    ids = list(ids)
    n = len(ids)
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if n <= max_length:
        return ids, Cut(n, 0)
    if protect_head + protect_tail > max_length:
        raise ValueError(
            f"cannot fit {n} tokens into {max_length}: the protected head ({protect_head}) and "
            f"tail ({protect_tail}) need {protect_head + protect_tail}")
    tail = max(max_length - max_length // 2, protect_tail)
    head = max_length - tail
    if head < protect_head:
        head = protect_head
        tail = max_length - head
    kept = ids[:head] + (ids[n - tail:] if tail else [])
    return kept, Cut(n, n - len(kept))
