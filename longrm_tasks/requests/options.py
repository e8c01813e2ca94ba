"""The run's options, typed and validated once where a run starts, then passed down as one object.

Each entry point (lm-eval's ``--metadata`` in `adapters.lm_eval.options`,
``longrm render``'s flags) hands its raw values to `RunOptions.parse`, naming
them as its user spells them (``overlong`` or ``--overlong``), and gets back
`Protocol` / `Overlong` members, an `OrderScheme` and checked numbers. Below
that boundary nothing re-reads an option string: `Fitting` (``context.fitting``)
is made from the parsed object by `RunOptions.fitting`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from longrm_tasks.context.fitting import (GENERATION_TOKENS, OVERLONG_POLICIES, PROTOCOLS, VERDICT_TOKENS, Fitting,
                                         Overlong, Protocol)
from longrm_tasks.errors import InputError
from longrm_tasks.prompts.orders import OrderScheme
from longrm_tasks.verdicts.parsing import PARSERS

_EMPTY = (None, "", "none", "None")


def positive_int(value: Any, field: str) -> int | None:
    """``None`` for an empty value, else a positive integer (``true`` and ``1.5`` are not lengths)."""
    if value in _EMPTY:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"expected a positive integer, got {type(value).__name__} {value!r}", field=field)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a positive integer, got {value!r}", field=field) from None
    if number <= 0:
        raise InputError(f"expected a positive integer, got {number}", field=field)
    return number


@dataclass(frozen=True)
class RunOptions:
    """What every stage below the entry point reads: protocol, candidate order, over-long policy, verdict
    parser and the generation budget (``gen_tokens``; ``gen_tokens_given``: the user set it)."""

    protocol: Protocol = Protocol.PAPER
    order: OrderScheme = OrderScheme("paper")
    overlong: Overlong = Overlong.TRUNCATE
    parser: str = "reference"
    gen_tokens: int = GENERATION_TOKENS
    gen_tokens_given: bool = False

    @classmethod
    def parse(cls, *, protocol: Any = None, order: Any = None, overlong: Any = None, parser: Any = None,
              gen_tokens: Any = None, name: Callable[[str], str] = str) -> RunOptions:
        """Raw values (``None`` = default) -> options; ``name(option)`` is how the caller's user spells it."""
        raw_protocol = str(protocol or Protocol.PAPER.value)
        if raw_protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol {raw_protocol!r} ({', '.join(PROTOCOLS)}: paper = the reference "
                             "evaluator's prompts, fit = instructions and answers kept whole, context cut to the "
                             "model)", field=name("protocol"))
        parsed_protocol = Protocol(raw_protocol)
        try:
            scheme = OrderScheme.parse(str(order or "paper"))
        except ValueError as err:
            raise InputError(str(err), field=name("order")) from None
        raw_overlong = str(overlong or Overlong.TRUNCATE.value)
        if raw_overlong not in OVERLONG_POLICIES:
            raise InputError(f"unknown value {raw_overlong!r} ({', '.join(OVERLONG_POLICIES)})",
                             field=name("overlong"))
        if parsed_protocol is Protocol.PAPER and overlong:  # given at all: paper has no over-long choice
            raise InputError(f"{name('overlong')} applies to {name('protocol')}=fit; under the paper protocol a "
                             "prompt beyond the model's context is scored wrong, as in the paper (use "
                             f"{name('protocol')}=fit to cut or skip instead)", field=name("overlong"))
        raw_parser = str(parser or "reference")
        if raw_parser not in PARSERS:
            raise InputError(f"unknown parser {raw_parser!r} ({', '.join(PARSERS)})", field=name("parser"))
        budget = positive_int(gen_tokens, name("max_gen_toks"))
        return cls(protocol=parsed_protocol, order=scheme, overlong=Overlong(raw_overlong), parser=raw_parser,
                   gen_tokens=budget or GENERATION_TOKENS, gen_tokens_given=budget is not None)

    def reserve(self, judge: str) -> int:
        """Tokens that must follow a prompt: the generation budget under ``fit``, one verdict for ``_ll``."""
        if judge == "loglikelihood":
            return VERDICT_TOKENS
        return self.gen_tokens if judge == "generative" and self.protocol is Protocol.FIT else 0

    def fitting(self, judge: str, max_length: int | None, *, strip_bos: bool = False) -> Fitting:
        """The `Fitting` these options give a ``judge`` at a context of ``max_length``."""
        return Fitting(protocol=self.protocol, max_length=max_length, reserve=self.reserve(judge),
                       overlong=self.overlong, strip_bos=strip_bos)
