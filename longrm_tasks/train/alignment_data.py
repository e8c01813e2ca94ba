"""Read and tokenise Stage II alignment data: one prompt, one chosen and V rejected responses.

Accepted record formats (JSON lines, a JSON list, or in-memory records):

* the LongRM authors' format (``../shared/data/longrm_alignment_sample.jsonl``):
  ``messages`` (system + user turns that form the prompt), ``chosen`` (str),
  ``rejected`` (list of str);
* TRL's preference formats: ``prompt``/``chosen``/``rejected``, either plain
  text or conversational (lists of ``{"role", "content"}``), with ``rejected``
  one response or a list of them; the implicit-prompt form (``chosen`` and
  ``rejected`` are whole conversations) goes through ``trl.data_utils.extract_prompt``.

Conversational prompts are rendered with the tokenizer's chat template and a
generation prompt; plain prompts are tokenised as text. A response is its text
(the assistant turn's content) followed by the tokenizer's EOS token.

Over-long prompts are cut in the context like every training stage's
(`long_inputs.fit_prompt`): the tagged key passage and the tail from the
``</context>`` marker on (the question and the response to judge) are kept
whole when they fit, head and tail of the context around them; every cut is
counted and logged; no record is dropped.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from datasets import Dataset
from trl.data_utils import extract_prompt

from ..errors import InputError
from .long_inputs import FitStats, encode_prompt, fit_prompt

logger = logging.getLogger(__name__)


@dataclass
class AlignmentDataStats(FitStats):
    """How the prompts were fitted (one example per record) and what happened to the rejected lists."""

    extra_rejected_ignored: int = 0  # records with more than V rejected (the first V are used)
    padded_rejected: int = 0    # records filled up to V by repetition (pad_rejected=True)

    @property
    def records(self) -> int:
        return self.examples

    def summary(self) -> str:
        return (f"alignment records: {super().summary()}; {self.extra_rejected_ignored} with more than V "
                f"rejected (first V used), {self.padded_rejected} padded to V by repetition")


def _read_records(path_or_records) -> Iterable[tuple[str | None, int, Any]]:
    """Yield (path, 1-based line or record number, record)."""
    if not isinstance(path_or_records, (str, os.PathLike)):
        for i, record in enumerate(path_or_records, start=1):
            yield None, i, record
        return
    path = os.fspath(path_or_records)
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read alignment data: {exc.strerror}", path=path) from None
    with handle:
        first = handle.read(1)
        handle.seek(0)
        if first == "[":  # a JSON list of records
            try:
                records = json.load(handle)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
            for i, record in enumerate(records, start=1):
                yield path, f"record {i}", record
            return
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg}", path=path, line=lineno) from None
            yield path, lineno, record


def _is_conversation(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _check_messages(messages, where, field: str) -> list[dict]:
    if not _is_conversation(messages):
        raise InputError("must be a non-empty list of {'role', 'content'} messages", **where, field=field)
    for k, m in enumerate(messages):
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"message {k} needs a string 'role' and a string 'content'", **where, field=field)
    return messages


def _response_text(value, where, field: str) -> str:
    """A response is a string, or a conversation whose assistant turn(s) hold it."""
    if isinstance(value, str):
        return value
    if _is_conversation(value):
        messages = _check_messages(value, where, field)
        turns = [m["content"] for m in messages if m["role"] == "assistant"]
        if turns:
            return "".join(turns)
        raise InputError("conversation has no assistant turn", **where, field=field)
    raise InputError(f"must be a string or an assistant conversation, got {type(value).__name__}",
                     **where, field=field)


def _rejected_list(value, where) -> list:
    """``rejected`` may be one response (str or conversation) or a list of them."""
    if isinstance(value, str) or _is_conversation(value):
        return [value]
    if isinstance(value, list) and value:
        return value
    raise InputError("must be a response or a non-empty list of responses", **where, field="rejected")


def _normalise(record, where) -> tuple[list[dict] | str, str, list[str]]:
    """(prompt as messages or text, chosen text, rejected texts) from any accepted format."""
    if not isinstance(record, dict):
        raise InputError(f"record must be a JSON object, got {type(record).__name__}", **where)
    for field in ("chosen", "rejected"):
        if field not in record:
            raise InputError("missing", **where, field=field)
    if "messages" in record:
        prompt = _check_messages(record["messages"], where, "messages")
    elif "prompt" in record:
        prompt = record["prompt"]
        if isinstance(prompt, list):
            prompt = _check_messages(prompt, where, "prompt")
        elif not isinstance(prompt, str):
            raise InputError(f"must be a string or a list of messages, got {type(prompt).__name__}",
                             **where, field="prompt")
    elif _is_conversation(record["chosen"]) and _is_conversation(record["rejected"]):
        record = extract_prompt({"chosen": record["chosen"], "rejected": record["rejected"]})
        prompt = record["prompt"]
        if not prompt:
            raise InputError("chosen and rejected conversations share no prompt", **where, field="prompt")
    else:
        raise InputError("missing (need 'messages' or 'prompt')", **where, field="prompt")
    chosen = _response_text(record["chosen"], where, "chosen")
    rejected = [_response_text(r, where, f"rejected[{j}]")
                for j, r in enumerate(_rejected_list(record["rejected"], where))]
    return prompt, chosen, rejected


def _tokenize_record(tokenizer, prompt, chosen: str, rejected: Sequence[str], *, max_length: int,
                     where, stats: AlignmentDataStats) -> dict:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; set one so responses can end")

    def response_ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]

    chosen_ids = response_ids(chosen)
    rejected_ids = [response_ids(r) for r in rejected]
    encoded = encode_prompt(tokenizer, prompt)
    longest = max(len(chosen_ids), *(len(r) for r in rejected_ids))
    budget = max_length - longest
    if budget < 1:
        raise InputError(f"a response has {longest} tokens, which leaves no room for the prompt within "
                         f"max_length={max_length}", **where, field="chosen/rejected")
    kept = fit_prompt(encoded.ids, budget, encoded, stats)
    stats.examples += 1
    stats.longest_input = max(stats.longest_input, len(encoded.ids) + longest)  # before fitting, as in SFT
    return {"prompt_input_ids": kept, "chosen_input_ids": chosen_ids, "rejected_input_ids": rejected_ids,
            "prompt_length_original": len(encoded.ids)}


def load_alignment_dataset(path_or_records, tokenizer, *, max_length: int = 131_072, num_rejected: int = 4,
                           pad_rejected: bool = False, return_stats: bool = False):
    """Tokenised alignment data as a ``datasets.Dataset``.

    Columns: ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``
    (exactly ``num_rejected`` lists), ``prompt_length_original``. Records with
    more than ``num_rejected`` rejected responses use the first ones; records
    with fewer raise ``InputError`` unless ``pad_rejected`` repeats theirs
    cyclically. With ``return_stats`` the result is ``(dataset, AlignmentDataStats)``.
    """
    if num_rejected < 1:
        raise ValueError(f"num_rejected must be >= 1, got {num_rejected}")
    stats = AlignmentDataStats()
    rows = []
    for path, line, record in _read_records(path_or_records):
        where = {"path": path, "line": line}
        prompt, chosen, rejected = _normalise(record, where)
        if len(rejected) > num_rejected:
            stats.extra_rejected_ignored += 1
            rejected = rejected[:num_rejected]
        elif len(rejected) < num_rejected:
            if not pad_rejected:
                raise InputError(f"has {len(rejected)} responses but num_rejected (V) is {num_rejected}; "
                                 "lower V or allow padding by repetition (pad_rejected)", **where,
                                 field="rejected")
            stats.padded_rejected += 1
            rejected = [rejected[j % len(rejected)] for j in range(num_rejected)]
        rows.append(_tokenize_record(tokenizer, prompt, chosen, rejected, max_length=max_length,
                                     where=where, stats=stats))
    if not rows:
        raise InputError("no alignment records found",
                         path=os.fspath(path_or_records) if isinstance(path_or_records, (str, os.PathLike))
                         else None)
    (logger.warning if stats.truncated else logger.info)(stats.summary())
    dataset = Dataset.from_list(rows)
    return (dataset, stats) if return_stats else dataset
