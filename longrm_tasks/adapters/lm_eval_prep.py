"""Items -> lm-eval documents: judge prompts rendered, measured and fitted to the model.

lm-eval's hf backend cuts over-long inputs from the *left* (only a warning),
which would drop the judge instructions and the start of the context. So the
prompts are rendered here through the model's chat template (thinking off),
measured with its tokenizer, and fitted with the benchmark's rule
(`truncate_middle`: keep head and tail, drop the middle of the context; the
answers block and the generation prompt are protected and always survive).

One document = one (item, order) presentation. Speed matters: real prompts
reach 128K tokens, so

- the chat template is rendered once per (prompt kind, N) around a sentinel,
  not once per document (the frame is checked against a full render);
- the long head (template + system + question) is tokenized once per item and
  shared by every order, only the short answers tail is tokenized per order;
- heads are tokenized in batches by the Rust tokenizer (parallel, no Python
  id lists); the same pass's character offsets are kept for the heads that may
  need cutting, so the text is cut at token boundaries without tokenizing it
  again or decoding ids.

``benchmarks/prep.py`` times this against the per-document way (render,
tokenize, cut ids, decode); what is left is nearly all the tokenizer's own work.

Counting the head and the tail separately matches tokenizing the whole prompt
for regex-split (byte-level BPE) tokenizers; `MARGIN` tokens of the budget
absorb the odd boundary merge of other tokenizers and a BOS token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

from longrm_tasks.adapters.rm_requests import encode_rm_context
from longrm_tasks.data.schema import Item
from longrm_tasks.prompts import (LETTERS, judge_prompts, prompt_kind, render_chat, shown_answers, system_prompt,
                                  user_prompt)
from longrm_tasks.truncation import truncate_middle

MARGIN = 8  # tokens kept free for boundary merges and a BOS token lm-eval may add
VERDICT_TOKENS = 16  # room for the scored verdict continuation ("[[A]]", "[[C>") of the log-likelihood judge
BATCH = 16  # heads tokenized per Rust call (bounded memory: 16 x 128K tokens)
_SENTINEL = "\u2063LONGRM-USER-CONTENT\u2063"


def verdict_choices(kind: str, n: int) -> list[str]:
    """What the log-likelihood judge scores after the prompt, one per shown position.

    Pairs: the two final verdicts ``[[A]]`` / ``[[B]]``. Best-of-N: the opening
    of the ranking chain ``[[X>`` for each letter X; sorting the letters by
    likelihood gives a full ranking from N requests.
    """
    letters = LETTERS[:n]
    return [f"[[{x}]]" for x in letters] if kind == "pair" else [f"[[{x}>" for x in letters]


@dataclass
class Stats:
    """What preparation did, for the log and the report: nothing is cut or skipped silently."""

    items: int = 0
    documents: int = 0
    measured: int = 0
    truncated: int = 0
    truncated_tokens: int = 0
    max_truncated_tokens: int = 0
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.items} items -> {self.documents} prompts"
        if self.measured < self.documents:
            text += f"; {self.documents - self.measured} not measured (no tokenizer)"
        if self.truncated:
            text += (f"; {self.truncated} truncated in the middle (mean "
                     f"{self.truncated_tokens / self.truncated:,.0f}, max {self.max_truncated_tokens:,} tokens dropped)")
        if self.skipped:
            text += f"; {self.skipped} skipped as over-long (overlong=skip)"
        return text


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


@dataclass
class Budget:
    """Prompt tokens allowed: the model's length minus what the answer needs, minus `MARGIN`."""

    max_length: int | None
    reserve: int
    overlong: str = "truncate"

    @property
    def prompt_tokens(self) -> int | None:
        return None if self.max_length is None else self.max_length - self.reserve - MARGIN


def _cut_head(head: Measured, n_tail: int, protect_head: int, budget: int) -> tuple[str, int]:
    """Drop a middle span of the context in ``head`` so head + tail fit ``budget`` tokens.

    ``head`` = template + system prompt + question; its first ``protect_head``
    tokens (everything before the question) and the whole tail survive. The
    room left is shared by the context's beginning and end (`truncate_middle`),
    so a long system prompt cannot starve the context's beginning. Returns
    (text, tokens dropped); raises ValueError when the protected parts alone
    do not fit.
    """
    room = budget - protect_head - n_tail
    if room <= 0:
        raise ValueError(f"the judge instructions ({protect_head} tokens) and the answers ({n_tail} tokens) "
                         f"alone exceed the prompt budget of {budget} tokens")
    kept, cut = truncate_middle(range(protect_head, head.count), room)
    # kept = a run from the context's start, then a run up to its end: the gap is the dropped span.
    first_dropped = protect_head + next((i for i, k in enumerate(kept) if k != protect_head + i), len(kept))
    return head.without(first_dropped, first_dropped + cut.dropped), cut.dropped


def _doc(item: Item, order: Sequence[int], presentation: int, judge: str, parser: str, orders: str) -> dict:
    return {
        "key": f"{item.config}/{item.id}", "config": item.config, "id": item.id, "tasktype": item.tasktype,
        "subtype": item.subtype, "length": item.length, "kind": prompt_kind(item), "n": item.n,
        "order": list(order), "target": list(order).index(0),  # shown position of the best answer
        "presentation": presentation, "judge": judge, "parser": parser, "orders": orders,
        "prompt": "", "rendered": False, "system": "", "user_span": [0, 0], "choices": [],
        "prompt_tokens": -1, "truncated_tokens": 0, "skipped": False, "skip_reason": "",
    }


def build_judge_docs(items: Iterable[Item], orders_for, *, judge: str, tokenizer, budget: Budget,
                     parser: str = "reference", orders: str = "paper",
                     stats: Stats | None = None) -> list[dict]:
    """Documents for the generative and log-likelihood judges (``judge``: ``generative`` | ``loglikelihood``).

    ``orders_for(item)`` gives the permutations to show. Without a tokenizer the
    prompt is kept as chat messages only (for ``--apply_chat_template`` / chat
    APIs) and not measured.
    """
    stats = stats if stats is not None else Stats()
    measurer = Measurer(tokenizer) if tokenizer is not None else None
    before, after = _question_split()
    docs: list[dict] = []
    batch: list[tuple[Item, list[list[int]]]] = []

    def flush():
        heads = []
        for item, item_orders in batch:
            frame = chat_frame(tokenizer, item, item_orders[0]) if tokenizer is not None else None
            heads.append(None if frame is None else frame.pre + before + item.judge_question)
        # Token positions are kept only for heads that may need cutting (a tail has at least one token).
        may_cut = (lambda n: n + 1 > budget.prompt_tokens) if budget.prompt_tokens is not None else (lambda n: False)
        measured = iter(measurer.measure([h for h in heads if h is not None], may_cut) if measurer else [])
        for (item, item_orders), head in zip(batch, heads):
            head = next(measured) if head is not None else None
            for p, order in enumerate(item_orders):
                docs.append(_judge_doc(item, order, p, judge, parser, orders, tokenizer, measurer, head, budget,
                                       stats))
        batch.clear()

    for item in items:
        stats.items += 1
        batch.append((item, orders_for(item)))
        if len(batch) >= BATCH:
            flush()
    flush()
    return docs


def _judge_doc(item, order, presentation, judge, parser, orders, tokenizer, measurer, head: Measured | None,
               budget, stats) -> dict:
    doc = _doc(item, order, presentation, judge, parser, orders)
    stats.documents += 1
    kind = prompt_kind(item)
    if judge == "loglikelihood":
        doc["choices"] = verdict_choices(kind, item.n)
    before, after = _question_split()
    answers = answers_part(item, order)
    doc["system"] = system_prompt(item.n, kind)
    if tokenizer is None:  # chat messages only: the user content is the whole "prompt"
        doc["prompt"] = user_prompt(item.judge_question, shown_answers(item, order))
        doc["user_span"] = [0, len(doc["prompt"])]
        return doc
    if head is None:  # the template edits content: render this document in full
        messages = [{"role": "system", "content": doc["system"]},
                    {"role": "user", "content": user_prompt(item.judge_question, shown_answers(item, order))}]
        text = render_chat(tokenizer, messages)
        doc.update(prompt=text, rendered=True, user_span=[0, 0], prompt_tokens=measurer.count([text])[0])
        stats.measured += 1
        if budget.prompt_tokens is not None and doc["prompt_tokens"] > budget.prompt_tokens:
            _skip(doc, stats, f"{doc['prompt_tokens']} prompt tokens > {budget.prompt_tokens} and this chat "
                              "template cannot be cut safely")
        return doc
    frame = _frame(tokenizer, kind, item.n)
    tail = after + answers + frame.post
    n_tail = measurer.count([tail])[0]
    total = head.count + n_tail
    doc["prompt_tokens"] = total
    stats.measured += 1
    limit = budget.prompt_tokens
    text = head.text
    if limit is not None and total > limit:
        if budget.overlong == "skip":
            return _skip(doc, stats, f"{total} prompt tokens > budget {limit}")
        protect_head = measurer.count([frame.pre + before])[0]
        try:
            text, dropped = _cut_head(head, n_tail, protect_head, limit)
        except ValueError as err:  # even the instructions and answers alone do not fit
            return _skip(doc, stats, str(err))
        doc["truncated_tokens"] = dropped
        stats.truncated += 1
        stats.truncated_tokens += dropped
        stats.max_truncated_tokens = max(stats.max_truncated_tokens, dropped)
    doc["prompt"] = text + tail
    doc["rendered"] = True
    doc["user_span"] = [len(frame.pre), len(doc["prompt"]) - len(frame.post)]
    return doc


def _skip(doc: dict, stats: Stats, reason: str) -> dict:
    doc.update(skipped=True, skip_reason=reason, prompt="")
    stats.skipped += 1
    stats.skip_reasons.append(f"{doc['key']}: {reason}")
    return doc


def build_rm_docs(items: Iterable[Item], orders_for, *, tokenizer, budget: Budget, orders: str = "paper",
                  stats: Stats | None = None) -> list[dict]:
    """Documents for scalar reward models: the request context (see `rm_requests`) and the shown answers.

    The ``hf-rm`` model fits each item itself (`longrm_tasks.rm.formatting`:
    drop one middle span of the context, every answer survives); measuring
    with the same function here puts the dropped-token count in the results.
    """
    from longrm_tasks.rm.formatting import format_item

    stats = stats if stats is not None else Stats()
    docs = []
    for item in items:
        stats.items += 1
        context = encode_rm_context(item.prompt_template, f"{item.config}/{item.id}")
        for p, order in enumerate(orders_for(item)):
            doc = _doc(item, order, p, "reward", "reference", orders)
            stats.documents += 1
            doc.update(prompt=context, choices=shown_answers(item, order))
            if tokenizer is not None and budget.max_length is not None:
                policy = "skip" if budget.overlong == "skip" else "middle"
                formatted = format_item(tokenizer, {"prompt_template": item.prompt_template,
                                                    "candidates": doc["choices"], "id": doc["key"]},
                                        max_length=budget.max_length, truncation=policy)
                stats.measured += 1
                doc["prompt_tokens"] = max(formatted.original_lengths)
                if formatted.skipped:
                    _skip(doc, stats, formatted.skip_reason)
                    doc["prompt"] = context
                elif formatted.dropped_tokens:
                    doc["truncated_tokens"] = formatted.dropped_tokens
                    stats.truncated += 1
                    stats.truncated_tokens += formatted.dropped_tokens
                    stats.max_truncated_tokens = max(stats.max_truncated_tokens, formatted.dropped_tokens)
            docs.append(doc)
    return docs
