"""Items -> presentations: the judge prompt of every (item, order), rendered, measured and fitted.

This is the prompt -> request stage of the core; lm-eval (`adapters/lm_eval/tasks`),
``longrm render`` and the benchmarks call it, and only translate its
`Presentation` s into their own objects. How a prompt meets the model's context
is decided by the protocol (`longrm_tasks.context.fitting`):

- ``paper`` (default): the reference's ``get_prompt`` per presentation (chat
  template with thinking off, or FastChat ``zero_shot`` without one; the whole
  prompt tokenized; >= 131,072 tokens keep the first 65,536 + last 65,531;
  decoded back to text). A prompt the model's context cannot hold is marked
  ``overlong`` and scored wrong; whether it leaves the full generation budget is
  decided when the request is made (the budget is known only then).
- ``fit``: keep the judge instructions and every answer whole and drop the
  middle of the context so prompt + reserved tokens fit the model
  (`fitting.middle_span`); ``overlong=skip`` skips what does not fit instead.

Speed (``fit``; ``benchmarks/prep.py``): the chat template is rendered once
per (prompt kind, N) around a sentinel, not once per document (the frame is
checked against a full render); the long head (template + system + question)
is tokenized once per item and shared by every order, only the short answers
tail per order; heads are tokenized in batches by the Rust tokenizer, and cut at
the tokens' character offsets. ``paper`` tokenizes and decodes each whole prompt,
as the reference does: that is the protocol.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from longrm_tasks.requests.reward import encode_rm_context
from longrm_tasks.data.schema import Item
from longrm_tasks.context.fitting import (VERDICT_TOKENS, DoesNotFit, Fitting, FitStats, Overlong, PaperPrompt,
                                         Protocol, generation_room, middle_span, paper_prompt, paper_prompts, strip_bos)
from longrm_tasks.requests.presentation import Presentation
from longrm_tasks.prompts.judge_prompts import (judge_messages, judge_prompts, prompt_kind, render_chat, shown_answers,
                                  system_prompt, user_prompt)

BATCH = 16  # heads tokenized per Rust call (bounded memory: 16 x 128K tokens)
_SENTINEL = "\u2063LONGRM-USER-CONTENT\u2063"


# ------------------------------------------------------------------ measuring

@dataclass(frozen=True)
class ChatFrame:
    """A chat template rendered around the user content: ``pre + user + post``."""

    system: str
    pre: str
    post: str


@lru_cache(maxsize=64)
def _frame(tokenizer, kind: str, n: int) -> ChatFrame | None:
    system = system_prompt(n, kind)
    text = render_chat(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": _SENTINEL}])
    if text.count(_SENTINEL) != 1:
        return None
    pre, post = text.split(_SENTINEL)
    return ChatFrame(system, pre, post)


_checked: dict[tuple, bool] = {}  # (tokenizer id, kind, N) -> the frame reproduces a full render


def chat_frame(tokenizer, item: Item, order: Sequence[int]) -> ChatFrame | None:
    """The frame for ``item``'s prompt kind, or None when the template does not insert content verbatim.

    Checked once per (kind, N) against a full render of a real prompt; a
    template that edits user content falls back to one full render per document.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    kind = prompt_kind(item)
    frame = _frame(tokenizer, kind, item.n)
    if frame is None:
        return None
    key = (id(tokenizer), kind, item.n)
    if key not in _checked:
        messages = [{"role": "system", "content": frame.system},
                    {"role": "user", "content": user_prompt(item.judge_question, shown_answers(item, order))}]
        _checked[key] = render_chat(tokenizer, messages) == frame.pre + messages[1]["content"] + frame.post
    return frame if _checked[key] else None


def _question_split() -> tuple[str, str]:
    """The user template around ``{question}``: ``("[User Question]\\n", "\\n\\n")``."""
    before, after = judge_prompts()["user_template"]["question"].split("{question}")
    return before, after


def answers_part(item: Item, order: Sequence[int]) -> str:
    """The user prompt after the question: the answer blocks in shown order."""
    before, after = _question_split()
    return user_prompt("", shown_answers(item, order))[len(before) + len(after):]


class Measured:
    """A text's token count, and its tokens' positions so it can be cut at token boundaries."""

    def __init__(self, text: str, count: int, encoding=None, ids: list[int] | None = None, tokenizer=None):
        self.text, self.count = text, count
        self._encoding, self._ids, self._tokenizer = encoding, ids, tokenizer

    def without(self, first_dropped: int, resume: int) -> str:
        """The text with tokens ``[first_dropped, resume)`` removed."""
        if self._encoding is not None:  # cut the text itself at the tokens' character offsets
            offsets = self._encoding.offsets
            end = offsets[resume][0] if resume < self.count else len(self.text)
            return self.text[:offsets[first_dropped][0]] + self.text[end:]
        decode = self._tokenizer.decode  # a tokenizer without offsets: decode the kept ids
        return decode(self._ids[:first_dropped]) + decode(self._ids[resume:])


class Measurer:
    """Token counts with the fast tokenizer's Rust backend (batched, parallel) when there is one."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self.backend is not None:
            encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
            return [len(e) for e in encode(texts, add_special_tokens=False)]
        return [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def seen_by_model(self, text: str, tokens: int | None = None) -> int:
        """Tokens the model sees for a text prompt: lm-eval's backends add special tokens unless it starts with BOS.

        ``tokens``: the text's own token count when already known.
        """
        n = self.count([text])[0] if tokens is None else tokens
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and text.startswith(bos):
            return n
        try:
            return n + self.tokenizer.num_special_tokens_to_add()
        except (AttributeError, NotImplementedError, TypeError):
            return n

    def measure(self, texts: list[str], keep) -> list[Measured]:
        """Count every text once; keep the token positions only where ``keep(count)`` (it may be cut)."""
        if not texts:
            return []
        if self.backend is not None:
            encodings = self.backend.encode_batch(texts, add_special_tokens=False)
            return [Measured(t, len(e), e if keep(len(e)) else None) for t, e in zip(texts, encodings)]
        out = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
            out.append(Measured(t, len(ids), ids=ids if keep(len(ids)) else None, tokenizer=self.tokenizer))
        return out


# ------------------------------------------------------------------ building

def new_presentation(item: Item, order: Sequence[int], index: int, judge: str, *, parser: str = "reference",
                     orders: str = "paper", fitting: Fitting = Fitting()) -> Presentation:
    kind = prompt_kind(item)
    return Presentation(
        key=f"{item.config}/{item.id}", config=item.config, id=item.id, tasktype=item.tasktype,
        subtype=item.subtype, length=item.length, kind=kind, n=item.n, order=list(order),
        target=list(order).index(0), presentation=index, judge=judge, parser=parser, orders=orders,
        protocol=fitting.protocol.value, max_length=-1 if fitting.max_length is None else fitting.max_length,
        system=system_prompt(item.n, kind))


def build_presentations(items: Iterable[Item], orders_for, *, judge: str, tokenizer, fitting: Fitting,
                        parser: str = "reference", orders: str = "paper",
                        stats: FitStats | None = None) -> list[Presentation]:
    """Presentations for the generative and log-likelihood judges (``judge``: ``generative`` | ``loglikelihood``).

    ``orders_for(item)`` gives the permutations to show. Without a tokenizer the
    prompt is kept as chat messages only (for ``--apply_chat_template`` / chat
    APIs) and not measured.
    """
    stats = stats if stats is not None else FitStats()
    if tokenizer is None:
        out = []
        for item in items:
            stats.examples += 1
            for p, order in enumerate(orders_for(item)):
                pres = new_presentation(item, order, p, judge, parser=parser, orders=orders, fitting=fitting)
                stats.inputs += 1
                pres.prompt = user_prompt(item.judge_question, shown_answers(item, order))
                pres.user_span = [0, len(pres.prompt)]
                _finish_verdict(pres, tokenizer)
                out.append(pres)
        return out
    if fitting.protocol is Protocol.PAPER:
        return _build_paper(items, orders_for, judge=judge, tokenizer=tokenizer, fitting=fitting, parser=parser,
                            orders=orders, stats=stats)
    return _build_fit(items, orders_for, judge=judge, tokenizer=tokenizer, fitting=fitting, parser=parser,
                      orders=orders, stats=stats)


def build_judge_docs(items: Iterable[Item], orders_for, *, judge: str, tokenizer, fitting: Fitting,
                     parser: str = "reference", orders: str = "paper", stats: FitStats | None = None) -> list[dict]:
    """`build_presentations` as lm-eval documents (dicts)."""
    return [p.to_doc() for p in build_presentations(items, orders_for, judge=judge, tokenizer=tokenizer,
                                                    fitting=fitting, parser=parser, orders=orders, stats=stats)]


def _measurer(tokenizer) -> Measurer:
    key = id(tokenizer)
    cached = _MEASURERS.get(key)
    if cached is None or cached.tokenizer is not tokenizer:
        cached = _MEASURERS[key] = Measurer(tokenizer)
    return cached


_MEASURERS: dict[int, Measurer] = {}


def _build_paper(items, orders_for, *, judge, tokenizer, fitting: Fitting, parser, orders,
                 stats: FitStats) -> list[Presentation]:
    out: list[Presentation] = []
    batch: list[tuple[Presentation, Item, list[int]]] = []

    def flush():
        prompts = paper_prompts(tokenizer, [judge_messages(item, order) for _, item, order in batch])
        for (pres, item, order), prompt in zip(batch, prompts):
            _paper(pres, item, order, prompt, tokenizer, fitting, stats)
            _finish_verdict(pres, tokenizer)
        batch.clear()

    for item in items:
        stats.examples += 1
        for p, order in enumerate(orders_for(item)):
            pres = new_presentation(item, order, p, judge, parser=parser, orders=orders, fitting=fitting)
            stats.inputs += 1
            out.append(pres)
            batch.append((pres, item, order))
            if len(batch) >= BATCH:
                flush()
    flush()
    return out


def _paper(pres: Presentation, item: Item, order, out: PaperPrompt, tokenizer, fitting: Fitting,
           stats: FitStats) -> None:
    """The reference's prompt; over-long for the model -> marked (scored wrong), never cut further."""
    text = out.text
    measurer = _measurer(tokenizer)
    pres.prompt_tokens = measurer.seen_by_model(text, out.tokens)
    stats.measured += 1
    stats.saw_length(out.original_tokens)
    pres.truncated_tokens = out.dropped
    stats.cut(out.dropped)
    if fitting.strip_bos:
        text = strip_bos(text, tokenizer)
    pres.prompt, pres.rendered = text, True
    frame = chat_frame(tokenizer, item, order)
    if frame is not None and text.startswith(frame.pre) and text.endswith(frame.post) and \
            len(text) >= len(frame.pre) + len(frame.post):
        pres.user_span = [len(frame.pre), len(text) - len(frame.post)]
    else:  # the decoded text cannot be split back into messages (a template that edits content, no template)
        pres.user_span = [0, 0]
    need = VERDICT_TOKENS if pres.judge == "loglikelihood" else 0
    if fitting.max_length is not None and \
            generation_room(pres.prompt_tokens + need, fitting.max_length, 1).status == "overlong":
        _overlong(pres, stats, f"{pres.prompt_tokens:,} prompt tokens{' + verdict' if need else ''} leave no room "
                               f"in the model's context of {fitting.max_length:,}")


def _overlong(pres: Presentation, stats: FitStats, reason: str) -> None:
    pres.overlong, pres.skip_reason = True, reason
    stats.too_long(pres.key, reason)


def _finish_verdict(pres: Presentation, tokenizer) -> None:
    """Log-likelihood judge: the opening appended to the prompt and the choices scored after it."""
    if pres.judge != "loglikelihood":
        return
    from longrm_tasks.requests.loglikelihood import legacy_choices, opening_tokens, verdict_request

    if not pres.rendered:
        pres.choices = legacy_choices(pres.kind, pres.n)
        return
    tail = pres.prompt[-64:]
    request = verdict_request(tokenizer, pres.kind, pres.n, prompt_tail=tail)
    pres.choices = list(request.choices)
    if request.opening and not pres.skipped:
        pres.prompt += request.opening
        if pres.prompt_tokens >= 0:  # the opening is part of the prompt the model sees (inside VERDICT_TOKENS)
            pres.prompt_tokens += opening_tokens(tokenizer, request, tail)


# ------------------------------------------------------------------ the fit protocol

def _build_fit(items, orders_for, *, judge, tokenizer, fitting: Fitting, parser, orders, stats) -> list[Presentation]:
    measurer = _measurer(tokenizer)
    before, _after = _question_split()
    out: list[Presentation] = []
    batch: list[tuple[Item, list[list[int]]]] = []
    limit = fitting.prompt_tokens

    def flush():
        heads = []
        for item, item_orders in batch:
            frame = chat_frame(tokenizer, item, item_orders[0])
            heads.append(None if frame is None else frame.pre + before + item.judge_question)
        # Token positions are kept only for heads that may need cutting (a tail has at least one token).
        may_cut = (lambda n: n + 1 > limit) if limit is not None else (lambda n: False)
        measured = iter(measurer.measure([h for h in heads if h is not None], may_cut))
        for (item, item_orders), head in zip(batch, heads):
            head = next(measured) if head is not None else None
            for p, order in enumerate(item_orders):
                pres = new_presentation(item, order, p, judge, parser=parser, orders=orders, fitting=fitting)
                stats.inputs += 1
                _fit_one(pres, item, order, tokenizer, measurer, head, fitting, stats)
                _finish_verdict(pres, tokenizer)
                out.append(pres)
        batch.clear()

    for item in items:
        stats.examples += 1
        batch.append((item, orders_for(item)))
        if len(batch) >= BATCH:
            flush()
    flush()
    return out


def _cut_head(head: Measured, n_tail: int, protect_head: int, budget: int) -> tuple[str, int]:
    """Drop a middle span of the context in ``head`` so head + tail fit ``budget`` tokens (`middle_span`).

    ``head`` = template + system prompt + question; its first ``protect_head``
    tokens (everything before the question) and the whole tail survive.
    Returns (text, tokens dropped); raises `DoesNotFit` when the protected
    parts alone do not fit.
    """
    if protect_head + n_tail >= budget:
        raise DoesNotFit(f"the judge instructions ({protect_head} tokens) and the answers ({n_tail} tokens) "
                         f"alone exceed the prompt budget of {budget} tokens")
    span = middle_span(head.count + n_tail, budget, protect_head=protect_head, protect_tail=n_tail)
    return head.without(span.start, span.end), span.dropped


def _fit_one(pres: Presentation, item: Item, order, tokenizer, measurer: Measurer, head: Measured | None,
             fitting: Fitting, stats: FitStats) -> None:
    before, after = _question_split()
    limit = fitting.prompt_tokens
    if head is None:  # the template edits content (or there is none): render this document in full
        messages = judge_messages(item, order)
        text = render_chat(tokenizer, messages) if getattr(tokenizer, "chat_template", None) else \
            paper_prompt(tokenizer, messages).text
        pres.prompt, pres.rendered, pres.user_span = text, True, [0, 0]
        pres.prompt_tokens = measurer.count([text])[0]
        stats.measured += 1
        stats.saw_length(pres.prompt_tokens)
        if limit is not None and pres.prompt_tokens > limit:
            _skip(pres, stats, f"{pres.prompt_tokens} prompt tokens > {limit} and this chat template cannot be "
                               "cut safely")
        return
    frame = _frame(tokenizer, pres.kind, item.n)
    tail = after + answers_part(item, order) + frame.post
    n_tail = measurer.count([tail])[0]
    total = head.count + n_tail
    pres.prompt_tokens = total
    stats.measured += 1
    stats.saw_length(total)
    text = head.text
    if limit is not None and total > limit:
        if fitting.overlong is Overlong.SKIP:
            return _skip(pres, stats, f"{total} prompt tokens > budget {limit}")
        protect_head = measurer.count([frame.pre + before])[0]
        if head._encoding is None and head._ids is None:  # the head fit alone; with this tail it does not
            head = measurer.measure([head.text], lambda n: True)[0]
        try:
            text, dropped = _cut_head(head, n_tail, protect_head, limit)
        except DoesNotFit as err:  # even the instructions and answers alone do not fit
            return _skip(pres, stats, str(err))
        pres.truncated_tokens = dropped
        pres.prompt_tokens = total - dropped  # what is sent (a boundary merge may differ by a token: MARGIN)
        stats.cut(dropped)
    full = text + tail
    pres.prompt = strip_bos(full, tokenizer) if fitting.strip_bos else full
    pres.rendered = True
    stripped = len(full) - len(pres.prompt)  # the cut lies after the frame's start, the BOS before it
    pres.user_span = [len(frame.pre) - stripped, len(pres.prompt) - len(frame.post)]


def _skip(pres: Presentation, stats: FitStats, reason: str) -> None:
    pres.skipped, pres.skip_reason, pres.prompt = True, reason, ""
    stats.skip(pres.key, reason)


# ------------------------------------------------------------------ scalar reward models

def build_rm_docs(items: Iterable[Item], orders_for, *, tokenizer, fitting: Fitting, orders: str = "paper",
                  stats: FitStats | None = None) -> list[dict]:
    """Documents for scalar reward models: the request context (see `requests.reward`) and the shown answers.

    The ``hf-rm`` model fits each item itself (`longrm_tasks.rm.formatting`);
    measuring with the same function here puts the dropped-token count in the
    results. ``paper``: the reference's head/tail rule per candidate, an item
    still beyond the model's context is scored wrong; ``fit``: one middle span of
    the context dropped (every answer survives), or skipped with ``overlong=skip``.
    """
    from longrm_tasks.rm.formatting import format_item

    stats = stats if stats is not None else FitStats()
    docs = []
    for item in items:
        stats.examples += 1
        context = encode_rm_context(item.prompt_template, f"{item.config}/{item.id}", fitting.protocol)
        for p, order in enumerate(orders_for(item)):
            pres = new_presentation(item, order, p, "reward", orders=orders, fitting=fitting)
            stats.inputs += 1
            pres.prompt, pres.choices = context, shown_answers(item, order)
            if tokenizer is not None:
                policy = ("paper" if fitting.protocol is Protocol.PAPER
                          else "skip" if fitting.overlong is Overlong.SKIP else "middle")
                formatted = format_item(tokenizer, {"prompt_template": item.prompt_template,
                                                    "candidates": pres.choices, "id": pres.key},
                                        max_length=fitting.max_length, truncation=policy)
                stats.measured += 1
                pres.prompt_tokens = max(formatted.original_lengths)
                stats.saw_length(pres.prompt_tokens)
                if formatted.skipped and fitting.protocol is Protocol.PAPER:
                    _overlong(pres, stats, formatted.skip_reason)
                elif formatted.skipped:
                    _skip(pres, stats, formatted.skip_reason)
                    pres.prompt = context
                elif formatted.dropped_tokens:
                    pres.truncated_tokens = formatted.dropped_tokens
                    stats.cut(formatted.dropped_tokens)
            docs.append(pres.to_doc())
    return docs
