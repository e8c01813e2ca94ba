"""How long inputs meet a model's context: the one place that decides what is cut, kept or refused.

Two protocols (``--metadata protocol=...``, ``longrm render --protocol``):

- ``paper`` (default) is the reference evaluator (LCM-Lab/Long-RM,
  ``evaluate/evaluating/longreward_bench/utils/prompt.py``, ``get_prompt``):
  the judge messages go through the chat template with thinking off (or
  FastChat's ``zero_shot`` conversation when the tokenizer has no template),
  the *whole* prompt is tokenized, a prompt of >= 131,072 tokens keeps its first
  65,536 and last 65,531 tokens, and the ids are decoded back to text
  (`paper_prompt`). Then the model's real context decides (`generation_room`):
  a prompt it cannot hold is scored wrong (``overlong``), one that leaves less
  than the generation budget generates only what is left (``short_budget``), as
  vLLM does.
- ``fit`` keeps the judge instructions and every answer whole and drops the
  middle of the context so prompt + generation budget fit the model
  (`middle_span`); ``overlong=skip`` removes items that do not fit instead.

Every path that fits text (lm-eval generative / log-likelihood loaders, the
scalar-RM formatter, the RewardBench hook, and the trainer) uses the rules
here, and reports what they did in one `FitStats`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import NamedTuple, Sequence, TypeVar

from longrm_tasks.context.truncation import PAPER_HEAD, PAPER_LIMIT, PAPER_TAIL
from longrm_tasks.errors import InputError

T = TypeVar("T")


class _Choice(str, Enum):
    """An option's value: a ``str``, so results, docs, JSON and logs carry the plain name."""

    def __str__(self) -> str:
        return self.value


class Protocol(_Choice):
    """How prompts meet the model (module doc)."""

    PAPER = "paper"
    FIT = "fit"


class Overlong(_Choice):
    """What ``fit`` does with an input that cannot fit whole: cut the middle of its context, or skip it."""

    TRUNCATE = "truncate"
    SKIP = "skip"


PROTOCOLS = tuple(p.value for p in Protocol)
DEFAULT_PROTOCOL = Protocol.PAPER
OVERLONG_POLICIES = tuple(o.value for o in Overlong)
GENERATION_TOKENS = 2048  # the reference's max_tokens
MARGIN = 8  # fit: tokens kept free for boundary merges and a BOS token the backend may add
VERDICT_TOKENS = 16  # room for the scored verdict continuation of the log-likelihood judge

# FastChat's "zero_shot" conversation template (lm-sys/FastChat, fastchat/conversation.py:
# register_conv_template(Conversation(name="zero_shot", ..., roles=("Human", "Assistant"),
# sep_style=SeparatorStyle.ADD_COLON_SINGLE, sep="\n### ", stop_str="###"))). The reference uses it
# when the tokenizer has no chat template, after `set_system_message(<judge system prompt>)`, one user
# message and an empty assistant turn; ADD_COLON_SINGLE renders
# system + sep + "Human: " + user + sep + "Assistant:". Copied rather than depending on fastchat.
ZERO_SHOT_SEP = "\n### "
ZERO_SHOT_ROLES = ("Human", "Assistant")


# ------------------------------------------------------------------ the model's context and how prompts meet it

class ModelContext(NamedTuple):
    """The context length prompts are fitted or checked against (``None``: unknown) and where it came from
    (a model argument, the server's report, the config), recorded with every result."""

    tokens: int | None
    source: str


@dataclass(frozen=True)
class Fitting:
    """How prompts meet the model: the protocol and the model's context.

    ``reserve``: tokens that must follow the prompt (``fit``: the generation
    budget; log-likelihood: the verdict). ``strip_bos``: the backend adds its own
    BOS to text prompts, so a rendered leading BOS is removed (never two).
    """

    protocol: Protocol = Protocol.PAPER
    max_length: int | None = None
    reserve: int = 0
    overlong: Overlong = Overlong.TRUNCATE
    strip_bos: bool = False

    def __post_init__(self) -> None:
        # A caller of the public API may spell them as names ("fit"); below, only the types are compared.
        object.__setattr__(self, "protocol", Protocol(self.protocol))
        object.__setattr__(self, "overlong", Overlong(self.overlong))

    @property
    def prompt_tokens(self) -> int | None:
        """``fit``: the most prompt tokens allowed."""
        return None if self.max_length is None else self.max_length - self.reserve - MARGIN

    def refuse_no_room(self, option: str, hint: str = "") -> None:
        """``fit`` with a context that holds no prompt beside the reserved tokens: one error for the whole run
        (``option``: the context option as the user spells it), not every item skipped one by one."""
        if self.protocol is Protocol.FIT and self.prompt_tokens is not None and self.prompt_tokens <= 0:
            raise InputError(f"{option} {self.max_length} leaves no room for the prompt next to {self.reserve} "
                             f"reserved tokens (and {MARGIN} kept free){hint}", field=option)


# ------------------------------------------------------------------ what fitting did

@dataclass
class FitStats:
    """What fitting did to a set of inputs, for the log and the results: nothing is cut or dropped silently.

    ``examples``: items / records / training examples seen; ``inputs``: the
    sequences made from them (presentations, candidates); ``measured``: inputs
    whose tokens were counted. The key-passage / tail fields are the
    trainer's (`train/long_inputs.py`).
    """

    examples: int = 0
    inputs: int = 0
    measured: int = 0
    truncated: int = 0
    tokens_dropped: int = 0
    max_dropped: int = 0
    skipped: int = 0  # fit: removed from scoring (overlong=skip, or instructions + answers alone do not fit)
    overlong: int = 0  # beyond the model's context: scored wrong (paper)
    short_budget: int = 0  # fits, but leaves less than the generation budget: generates what is left
    key_passages_kept: int = 0
    key_passages_cut: int = 0
    tails_cut: int = 0
    longest_input: int = 0  # tokens, before fitting
    reasons: list[str] = field(default_factory=list)  # one line per skipped / overlong input

    def saw_length(self, n: int) -> None:
        self.longest_input = max(self.longest_input, n)

    def cut(self, dropped: int) -> None:
        if dropped > 0:
            self.truncated += 1
            self.tokens_dropped += dropped
            self.max_dropped = max(self.max_dropped, dropped)

    def skip(self, key: str, reason: str) -> None:
        self.skipped += 1
        self.reasons.append(f"{key}: skipped, {reason}")

    def too_long(self, key: str, reason: str) -> None:
        self.overlong += 1
        self.reasons.append(f"{key}: scored wrong, {reason}")

    def merge(self, other: "FitStats") -> "FitStats":
        """Add ``other``'s counts to these, field by field (the largest of the maxima, the reasons appended)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "reasons":
                mine.extend(theirs)
            else:
                setattr(self, f.name, max(mine, theirs) if f.name in _MAXIMA else mine + theirs)
        return self

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("reasons")
        return out

    def summary(self) -> str:
        text = f"{self.examples} items -> {self.inputs} prompts"
        if self.measured < self.inputs:
            text += f"; {self.inputs - self.measured} not measured (no tokenizer)"
        if self.longest_input:
            text += f"; longest {self.longest_input:,} tokens"
        if self.truncated:
            text += (f"; {self.truncated} truncated in the middle (mean {self.tokens_dropped / self.truncated:,.0f}, "
                     f"max {self.max_dropped:,} tokens dropped)")
        if self.overlong:
            text += f"; {self.overlong} beyond the model's context (scored wrong)"
        if self.short_budget:
            text += f"; {self.short_budget} generate less than the budget"
        if self.skipped:
            text += f"; {self.skipped} skipped as over-long (not fitting the prompt budget)"
        if self.key_passages_kept or self.key_passages_cut or self.tails_cut:
            text += (f"; key passages kept {self.key_passages_kept}, cut {self.key_passages_cut}; "
                     f"tails cut {self.tails_cut}")
        return text


_MAXIMA = ("max_dropped", "longest_input")  # FitStats fields that merge as the larger value, not a sum


# ------------------------------------------------------------------ the rules on token sequences

@dataclass(frozen=True)
class Span:
    """Tokens ``[start, end)`` of a sequence to drop (empty when ``start == end``)."""

    start: int = 0
    end: int = 0

    @property
    def dropped(self) -> int:
        return self.end - self.start

    def apply(self, seq: Sequence[T]) -> list[T]:
        seq = list(seq)
        return seq[:self.start] + seq[self.end:] if self.dropped else seq


class DoesNotFit(ValueError):
    """The protected parts of an input alone exceed the budget."""


def paper_span(n: int) -> Span:
    """The reference's rule on a whole prompt of ``n`` tokens: >= 131,072 keeps the first 65,536 + last 65,531."""
    return Span(PAPER_HEAD, n - PAPER_TAIL) if n >= PAPER_LIMIT else Span()


def middle_span(n: int, budget: int, *, protect_head: int = 0, protect_tail: int = 0) -> Span:
    """The ``fit`` rule: the span to drop so ``n`` tokens fit ``budget``.

    The first ``protect_head`` tokens (template, judge instructions) and the last
    ``protect_tail`` (question tail, answers, generation prompt) always survive;
    the room left is shared by the beginning and the end of what lies between
    (the context), the beginning getting the smaller half. Raises `DoesNotFit`
    when the protected parts alone exceed the budget.
    """
    if budget <= 0:
        raise DoesNotFit(f"no room for the input: budget {budget} tokens")
    if n <= budget:
        return Span()
    room = budget - protect_head - protect_tail
    if room < 0 or protect_head + protect_tail > n:
        raise DoesNotFit(f"cannot fit {n} tokens into {budget}: the protected head ({protect_head}) and tail "
                         f"({protect_tail}) need {protect_head + protect_tail}")
    keep_start = room // 2
    start = protect_head + keep_start
    return Span(start, start + (n - budget))


# ------------------------------------------------------------------ the paper prompt

def zero_shot_prompt(system: str, user: str) -> str:
    """FastChat ``zero_shot`` with the judge system prompt, one user turn and the open assistant turn."""
    return system + ZERO_SHOT_SEP + ZERO_SHOT_ROLES[0] + ": " + user + ZERO_SHOT_SEP + ZERO_SHOT_ROLES[1] + ":"


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_paper_text(tokenizer, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """The reference's untruncated prompt text and whether the tokenizer adds its special tokens to it.

    With a chat template: ``apply_chat_template(..., enable_thinking=False)``,
    tokenized without special tokens (what ``tokenize=True`` does). Without one:
    the ``zero_shot`` conversation, tokenized by ``tokenizer(prompt)``, which adds
    the tokenizer's special tokens (a BOS for Llama-style tokenizers).
    """
    if has_chat_template(tokenizer):
        from longrm_tasks.prompts.judge_prompts import render_chat

        return render_chat(tokenizer, messages), False
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = next(m["content"] for m in messages if m["role"] == "user")
    return zero_shot_prompt(system, user), True


@dataclass(frozen=True)
class PaperPrompt:
    text: str  # what the reference hands the model
    original_tokens: int  # the whole prompt, before the head/tail rule
    dropped: int  # tokens removed by the rule
    tokens: int | None = None  # tokens of ``text`` (no special tokens added) when known without re-encoding it


def paper_prompt(tokenizer, messages: list[dict[str, str]]) -> PaperPrompt:
    """One prompt of `paper_prompts`."""
    return paper_prompts(tokenizer, [messages])[0]


def paper_prompts(tokenizer, conversations: Sequence[list[dict[str, str]]]) -> list[PaperPrompt]:
    """``get_prompt`` of the reference: render, tokenize the whole prompt, head/tail rule, decode.

    Decoded as the reference decoded (`reference_decode`: special tokens kept,
    the tokenizer's own ``clean_up_tokenization_spaces`` as transformers 4.x
    applied it): on tokenizers that clean up (Llama-3's ``tokenizer_config.json``
    sets it true) the text differs from the rendered one around punctuation
    (``" ."`` -> ``"."``, ``" n't"`` -> ``"n't"``), for every prompt, truncated or
    not. That is the paper's prompt.

    Batched: the fast tokenizer's Rust backend encodes and decodes a batch in
    parallel (the same calls ``tokenizer(...)`` / ``tokenizer.decode`` make).
    """
    rendered = [render_paper_text(tokenizer, messages) for messages in conversations]
    out = []
    encoded = _encode(tokenizer, rendered)
    kept = []
    for ids in encoded:
        span = paper_span(len(ids))
        kept.append((span.apply(ids), span))
    decoded = _decode(tokenizer, [ids for ids, _ in kept])
    for (text, special), ids, (_, span), final in zip(rendered, encoded, kept, decoded):
        # Nothing cut and the text round-trips: its tokens are the ids already counted (no second encoding).
        known = len(ids) if not span.dropped and not special and final == text else None
        out.append(PaperPrompt(final, len(ids), span.dropped, known))
    return out


def _encode(tokenizer, rendered: list[tuple[str, bool]]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [list(tokenizer(text, add_special_tokens=special)["input_ids"]) for text, special in rendered]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # ids only, no character offsets
    out: list[list[int] | None] = [None] * len(rendered)
    for special in (False, True):
        index = [i for i, (_, sp) in enumerate(rendered) if sp == special]
        if index:
            for i, enc in zip(index, encode([rendered[i][0] for i in index], add_special_tokens=special)):
                out[i] = enc.ids
    return out


def clean_up_tokenization(out_string: str) -> str:
    """transformers 4.x ``PreTrainedTokenizerBase.clean_up_tokenization``, verbatim."""
    return (out_string.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


def _decode(tokenizer, batch: list[list[int]]) -> list[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [reference_decode(tokenizer, ids) for ids in batch]
    texts = backend.decode_batch(batch, skip_special_tokens=False)
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        texts = [clean_up_tokenization(t) for t in texts]
    return texts


def reference_decode(tokenizer, ids: Sequence[int]) -> str:
    """``tokenizer.decode(ids)`` as the reference's transformers 4.x did it.

    4.x applied `clean_up_tokenization` whenever the tokenizer's
    ``clean_up_tokenization_spaces`` was true (Llama-3's is); transformers 5
    skips it for BPE tokenizers. The paper's prompts were decoded by 4.x (its
    ``apply_chat_template(tokenize=True)`` returned a list), so the clean-up is
    applied here, whatever transformers is installed.
    """
    text = tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return clean_up_tokenization(text) if getattr(tokenizer, "clean_up_tokenization_spaces", False) else text


# ------------------------------------------------------------------ the model's context

@dataclass(frozen=True)
class Room:
    """What a prompt of ``prompt_tokens`` leaves in a context of ``max_length`` for ``gen_tokens``."""

    status: str  # "ok" | "short_budget" | "overlong"
    gen_tokens: int  # tokens the model may generate (0 when overlong)


def generation_room(prompt_tokens: int, max_length: int | None, gen_tokens: int) -> Room:
    """The paper rule at the model's context: refuse what it cannot hold, shorten what it can.

    A prompt that leaves no room for a single new token is ``overlong`` (vLLM
    refuses prompts longer than ``max_model_len``; one token cannot hold a
    verdict); one that leaves fewer than ``gen_tokens`` generates what is left.
    """
    if max_length is None:
        return Room("ok", gen_tokens)
    left = max_length - prompt_tokens
    if left <= 0:
        return Room("overlong", 0)
    if left < gen_tokens:
        return Room("short_budget", left)
    return Room("ok", gen_tokens)


def strip_bos(text: str, tokenizer) -> str:
    """``text`` without a leading BOS token string, for a consumer that adds its own BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    return text[len(bos):] if bos and text.startswith(bos) else text
