"""Tokenise prompt + response and fit over-long examples by cutting the context, never the response.

TRL's trainers either cut the end of a long sequence (SFT: the answer is
lost) or drop the example (RewardTrainer). LongRM data is a long context
followed by a question and the response to learn or judge, so we apply the
benchmark's head+tail rule (`longrm_tasks.context.truncation.truncate_middle`) to
the prompt only. When the prompt tags its key passage the paper's way
(``<LD> ... </LD>``) the cut goes around it, so the evidence survives too; the
part after ``</context>`` (question, response to judge) is kept whole when it
fits. Every cut is counted in `longrm_tasks.context.fitting.FitStats` (the one stats
type of every path that fits text) and reported by the stage.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from longrm_tasks.context.fitting import FitStats  # the one "what fitting did" type; re-exported for the stages
from longrm_tasks.prompts.judge_prompts import render_chat
from longrm_tasks.context.truncation import truncate_middle
from longrm_tasks.rm.formatting import common_prefix_length

# The key passage is tagged <TAG> ... </TAG>; the tag varies per record (<LD>, <Q9>, <465D>, ...) and
# the authors' system prompt names it ("... the part between <LD> and </LD>").
_TAG_NAMED = re.compile(r"<([A-Za-z0-9]{1,8})> and </\1>")
_ANY_TAGGED = re.compile(r"<([A-Za-z0-9]{1,8})>.*?</\1>", re.DOTALL)
CONTEXT_START = "<context>"
# Judge prompts close the long context with this marker; what follows (question, response to
# judge, instructions) is kept whole when it fits, as the Stage II loader does.
CONTEXT_END = "</context>"


@dataclass
class Encoded:
    """A tokenised prompt + response: ``ids[:prompt_len]`` is context, the rest is learned or judged."""

    ids: list[int]
    prompt_len: int
    key_span: tuple[int, int] | None  # token span of the tagged key passage inside the prompt
    tail_len: int  # prompt tokens from the last CONTEXT_END marker on (0 without one)


def _render_prompt(tokenizer, prompt) -> str:
    # The evaluation prompt's rendering (`prompts.render_chat`: generation prompt, thinking off), so a
    # judge trains on the exact format it is asked in (Qwen3: the empty <think></think> block).
    if isinstance(prompt, list):
        return render_chat(tokenizer, prompt, add_generation_prompt=True, enable_thinking=False)
    return prompt


def _render_full(tokenizer, prompt, response) -> str:
    if isinstance(prompt, list):
        return render_chat(tokenizer, prompt + response, add_generation_prompt=False, enable_thinking=False)
    # Plain text: like TRL, end the response with EOS.
    eos = tokenizer.eos_token or ""
    full_text = prompt + response
    return full_text + eos if eos and not full_text.endswith(eos) else full_text


def key_span(prompt_text: str, offsets: list) -> tuple[int, int] | None:
    # Search inside the context only: the instructions before it mention the tag themselves.
    context = prompt_text.find(CONTEXT_START)
    named = _TAG_NAMED.search(prompt_text, 0, context if context >= 0 else len(prompt_text))
    pattern = re.compile(f"<{named.group(1)}>.*?</{named.group(1)}>", re.DOTALL) if named else _ANY_TAGGED
    found = pattern.search(prompt_text, context + len(CONTEXT_START) if context >= 0 else 0)
    if found is None:
        return None
    start_char, end_char = found.span()
    tokens = [i for i, (a, b) in enumerate(offsets) if b > start_char and a < end_char]
    return (tokens[0], tokens[-1] + 1) if tokens else None


RENDERINGS = ("generation", "conversation")


def encode(tokenizer, prompt, responses: list, *, rendering: str = "generation") -> list[Encoded]:
    """Tokenise prompt + each response; every stage (SFT, alignment, reward) encodes through here.

    The prompt is rendered as the evaluation renders it (chat template, generation prompt,
    thinking off; or plain text), and a response is the assistant turn as the template renders
    it after that prompt. When the template's rendering of the conversation continues its own
    generation prompt (Llama, Qwen2/3, Gemma, Mistral, ...), this is TRL's way: the whole
    conversation tokenised at once, the prompt/response boundary at the common token prefix.
    When it does not (a template whose generation prompt adds an empty thinking block its
    rendered assistant turns lack), ``rendering`` says which evaluation to match:
    ``"generation"`` (a judge generating its verdict: Stage I and II) keeps the evaluation
    prompt's tokens and appends the rendered turn's text from where the two renderings part,
    what the judge must generate when asked in the evaluation's format; ``"conversation"`` (a
    scalar RM, which the scorer feeds the whole rendered conversation: the reward stage) keeps
    the conversation's tokens, split at the common prefix. Plain text: text + response + EOS
    with special tokens.
    """
    if rendering not in RENDERINGS:
        raise ValueError(f"rendering must be one of {RENDERINGS}, got {rendering!r}")
    special = not isinstance(prompt, list)  # a chat template already holds its special tokens
    prompt_text = _render_prompt(tokenizer, prompt)
    prompt_enc = tokenizer(prompt_text, add_special_tokens=special, return_offsets_mapping=True)
    prompt_ids = list(prompt_enc["input_ids"])
    out = []
    for response in responses:
        full_text = _render_full(tokenizer, prompt, response)
        if rendering == "conversation" or full_text.startswith(prompt_text):
            full = tokenizer(full_text, add_special_tokens=special, return_offsets_mapping=True)
            ids = list(full["input_ids"])
            prompt_len = common_prefix_length([prompt_ids, ids])
            out.append(_encoded(ids, prompt_len, prompt_text, full["offset_mapping"][:prompt_len]))
            continue
        start = _common_text_prefix(prompt_text, full_text)
        response_ids = tokenizer(full_text[start:], add_special_tokens=False)["input_ids"]
        out.append(_encoded(prompt_ids + list(response_ids), len(prompt_ids), prompt_text,
                            prompt_enc["offset_mapping"]))
    return out


def _common_text_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def encode_prompt(tokenizer, prompt) -> Encoded:
    """The prompt alone (chat template with generation prompt, or text), with its key span and tail."""
    special = not isinstance(prompt, list)
    text = _render_prompt(tokenizer, prompt)
    encoding = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    return _encoded(ids, len(ids), text, encoding["offset_mapping"])


def _encoded(ids: list[int], prompt_len: int, prompt_text: str, offsets: list) -> Encoded:
    """``Encoded`` with the key passage's token span and the protected tail, from the prompt tokens' offsets."""
    marker = prompt_text.rfind(CONTEXT_END)
    tail_len = sum(1 for _, end in offsets if end > marker) if marker >= 0 else 0
    return Encoded(ids, prompt_len, key_span(prompt_text, offsets), tail_len)


def _cut(ids: list[int], budget: int, tail_len: int, stats: FitStats) -> list[int]:
    """Head+tail cut that keeps the last ``tail_len`` tokens whole when they fit (counted when not)."""
    if tail_len > budget:
        stats.tails_cut += 1
        tail_len = 0
    return truncate_middle(ids, budget, protect_tail=tail_len)[0]


def fit_prompt(prompt: list[int], budget: int, enc: Encoded, stats: FitStats) -> list[int]:
    """Cut ``prompt`` to ``budget`` tokens: head+tail, or head+tail on each side of the key passage."""
    key_span = enc.key_span
    n = len(prompt)
    stats.inputs += 1
    stats.measured += 1
    if n <= budget:
        return prompt
    stats.cut(n - budget)
    if key_span is not None:
        start, end = key_span
        key_len = end - start
        if key_len < budget:
            before, after = prompt[:start], prompt[end:]
            room = budget - key_len
            # Share the remaining room in proportion to each side's length, so both the
            # instructions (head) and the question (tail) keep context around the evidence;
            # the question/response tail is served first, so it stays whole whenever it fits.
            keep_before = round(room * len(before) / max(1, len(before) + len(after)))
            keep_after = room - keep_before
            tail = min(enc.tail_len, len(after))
            if keep_after < tail <= room:
                keep_after, keep_before = tail, room - tail
            if keep_before > len(before):
                keep_before, keep_after = len(before), room - len(before)
            if keep_after > len(after):
                keep_after, keep_before = len(after), room - len(after)
            stats.key_passages_kept += 1
            head = truncate_middle(before, keep_before)[0] if keep_before else []
            tail = _cut(after, keep_after, min(enc.tail_len, len(after)), stats) if keep_after else []
            return head + prompt[start:end] + tail
        stats.key_passages_cut += 1
    return _cut(prompt, budget, enc.tail_len, stats)


def response_budget_error(where, field: str, response_len: int, max_length: int):
    """The response alone does not leave room for any context: refuse, naming the record."""
    return where.error(
        f"response is {response_len} tokens, which leaves no room for the prompt within max_length "
        f"{max_length}; raise max_length (the response is never cut)", field)


def tokenized_splits(tokenize_file, tokenizer, max_length, train_file, eval_file=None, what: str = "data"):
    """Train (and optional eval) file -> ``datasets.Dataset`` s plus the fit report of each.

    ``tokenize_file(path, tokenizer, max_length) -> (rows, FitStats)`` is the stage's own tokenizer.
    """
    from datasets import Dataset

    report, datasets_ = {}, {}
    for split, path in (("train", train_file), ("eval", eval_file)):
        if path is None:
            datasets_[split] = None
            continue
        rows, stats = tokenize_file(path, tokenizer, max_length)
        logging.getLogger(__name__).info("%s %s %s: %s", what, split, path, stats.summary())
        report[split] = stats.as_dict()
        datasets_[split] = Dataset.from_list(rows)
    return datasets_["train"], datasets_["eval"], report
