"""Which permutation of an item's answers the judge sees (position-bias control).

A permutation ``order`` means: position i shows ``answers[order[i]]``; since
answers are stored best -> worst, ``order[i]`` is also the true rank of
position i (0 = best), which is what the metrics compare against.

Schemes:
- ``paper``: the reference evaluator's permutations, exactly. Per config file
  it seeds Python's RNG with 42, shuffles the file's records, then draws one
  ``shuffle(range(n))`` per record in that shuffled sequence. So a record's
  order depends on the whole file: it is computed at load time
  (`assign_paper_orders`) and then survives any selection.
- ``both``: the paper permutation and its reverse (for pairs: both orders), so
  position bias cancels and position-consistent accuracy can be measured.
- ``hash:SEED``: a permutation drawn from a SHA-256 of (seed, config, id), stable
  across processes and under any selection (never Python's salted ``hash()``).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # a type only: data.loading imports this module, so a runtime import would be a cycle
    from longrm_tasks.data.schema import Item

PAPER_SEED = 42


def paper_orders(sizes: Sequence[int], seed: int = PAPER_SEED) -> list[list[int]]:
    """Reference permutations for the records of one file, given each record's answer count.

    Returned in file order. `random.Random(seed)` yields the same stream as the
    reference's module-level `random.seed(seed)`.
    """
    rng = random.Random(seed)
    positions = list(range(len(sizes)))
    rng.shuffle(positions)  # the reference shuffles the records themselves
    orders: list[list[int]] = [[] for _ in sizes]
    for pos in positions:
        order = list(range(sizes[pos]))
        rng.shuffle(order)
        orders[pos] = order
    return orders


def assign_paper_orders(items: list[Item]) -> None:
    """Set ``paper_order`` on every item of ONE config file (items in file order)."""
    for item, order in zip(items, paper_orders([it.n for it in items])):
        item.paper_order = order


def hash_order(seed: int | str, config: str, item_id: str, n: int) -> list[int]:
    digest = hashlib.sha256(f"{seed}\x1f{config}\x1f{item_id}".encode("utf-8")).digest()
    order = list(range(n))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


@dataclass(frozen=True)
class OrderScheme:
    kind: str  # paper | both | hash
    seed: str | None = None

    @classmethod
    def parse(cls, text: str) -> "OrderScheme":
        text = (text or "paper").strip()
        if text in ("paper", "both"):
            return cls(text)
        if text.startswith("hash:") and text[5:].strip():
            return cls("hash", text[5:].strip())
        raise ValueError(f"unknown order scheme {text!r}: use 'paper', 'both' or 'hash:SEED'")

    def __str__(self) -> str:
        return f"hash:{self.seed}" if self.kind == "hash" else self.kind

    def orders_for(self, item: Item) -> list[list[int]]:
        """The permutation(s) under which ``item`` is shown: one, or two for ``both``."""
        if self.kind == "hash":
            return [hash_order(self.seed, item.config, item.id, item.n)]
        if item.paper_order is None:
            raise ValueError(f"item {item.config}/{item.id} has no paper order: load it with its whole file")
        base = list(item.paper_order)
        return [base, base[::-1]] if self.kind == "both" else [base]
