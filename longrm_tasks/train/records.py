"""Training records, normalised once for every stage: prompt/completion (SFT) and preferences.

The one reader and normaliser of training data: Stage I (`sft.py`), Stage II
(`alignment/data.py`) and the reward stage (`reward.py`) all read records here
and tokenise them the same way (`long_inputs.encode`, the chat template's
assistant turn). TRL's own formats (``prompt``/``completion``, ``messages``,
explicit- and implicit-prompt preference records) are accepted as they are,
plus the LongRM authors' Stage II records (``messages`` = judge prompt,
``chosen`` = majority judgment, ``rejected`` = list of dissenting judgments).
Records come from a JSON Lines file, a ``.json`` list, or memory. Every
problem is an ``InputError`` naming the file, the 1-based line and the field.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl, non_finite_field, non_finite_message
from longrm_tasks.paths import file_problem, require_regular_file

# A prompt or response is plain text or a list of chat messages ({"role", "content"}).
Turns = Union[str, list]

SFT_FORMATS = ("chat records with 'messages' ending in an assistant turn, 'prompt'/'completion' records, "
               "or Stage II records ('messages' prompt plus a 'chosen' judgment)")
PREFERENCE_FORMATS = ("'prompt'/'chosen'/'rejected' records, implicit-prompt 'chosen'/'rejected' conversations, "
                      "or Stage II records ('messages' prompt, 'chosen' string, 'rejected' list)")


@dataclass(frozen=True)
class Where:
    """Where a record came from, for error messages."""

    path: str | None  # None for records handed over in memory
    line: int

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field)


@dataclass
class PromptCompletion:
    prompt: Turns
    completion: Turns
    where: Where


@dataclass
class Preference:
    """One prompt, its chosen response and every rejected one (Stage II keeps them together)."""

    prompt: Turns
    chosen: Turns
    rejected: list[Turns]
    where: Where
    margin: float | None = None


@dataclass
class PreferencePair:
    prompt: Turns
    chosen: Turns
    rejected: Turns
    where: Where
    margin: float | None = None


class DataFile(os.PathLike):
    """A data file of which only the first ``max_records`` records are read (None: all of them).

    A recipe's ``max_records`` (e.g. the reference discriminative run's first 6,000 rows)
    reaches every stage's reader this way: `read_jsonl` honours it, everything else sees a path.
    """

    def __init__(self, path: str | os.PathLike, max_records: int | None = None):
        self.path = Path(path)
        self.max_records = max_records

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"DataFile({str(self.path)!r}, max_records={self.max_records})"


def _is_json_list(path: Path) -> bool:
    if path.suffix == ".json":
        return True
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read(64).lstrip().startswith("[")


def read_records(source: str | os.PathLike | Iterable[Any]) -> Iterator[tuple[Where, dict]]:
    """`read_jsonl` for a path; records handed over in memory are numbered from 1."""
    if isinstance(source, (str, os.PathLike)):
        yield from read_jsonl(source)
        return
    for number, record in enumerate(source, 1):
        where = Where(None, number)
        if not isinstance(record, dict):
            raise where.error(f"record must be a JSON object, got {type(record).__name__}")
        yield where, record


def read_jsonl(path: str | Path) -> Iterator[tuple[Where, dict]]:
    """Yield (where, record) for each non-blank line of a JSON Lines file (or each item of a JSON list).

    A `DataFile` stops after its ``max_records`` records.
    """
    limit = getattr(path, "max_records", None)
    if limit is not None:
        records = _read_jsonl(Path(path))
        for _ in range(limit):
            item = next(records, None)
            if item is None:
                return
            yield item
        return
    yield from _read_jsonl(Path(path))


def _read_jsonl(path: Path) -> Iterator[tuple[Where, dict]]:
    if file_problem(path) == "file not found":
        raise InputError("data file not found", path=str(path))
    require_regular_file(path)  # stat only: a FIFO must not block _is_json_list's peek
    if _is_json_list(path):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"invalid JSON: {err.msg}", path=str(path), line=err.lineno) from None
        if not isinstance(items, list):
            raise InputError("a .json data file must hold a list of records", path=str(path))
        for index, record in enumerate(items, 1):
            where = Where(str(path), index)
            if not isinstance(record, dict):
                raise where.error(f"record must be a JSON object, got {type(record).__name__}")
            bad = non_finite_field(record)  # as iter_jsonl does for JSONL: NaN/Infinity are not numbers
            if bad is not None:
                raise where.error(non_finite_message(bad[1]), field=bad[0])
            yield where, record
        return
    for number, record in iter_jsonl(path):
        where = Where(str(path), number)
        if not isinstance(record, dict):
            raise where.error(f"record must be a JSON object, got {type(record).__name__}")
        yield where, record


def _messages(value: Any, where: Where, field: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise where.error("must be a non-empty list of {role, content} messages", field)
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise where.error("must be an object with 'role' and 'content'", f"{field}[{i}]")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise where.error("missing or not a string", f"{field}[{i}].{key}")
    return value


def _turns(value: Any, where: Where, field: str) -> Turns:
    """Text or a conversation; anything else is an error naming the field."""
    if isinstance(value, str):
        if not value.strip():
            raise where.error("is empty", field)
        return value
    if isinstance(value, list):
        return _messages(value, where, field)
    raise where.error(f"must be a string or a list of messages, got {type(value).__name__}", field)


def _as_response(value: Turns, prompt: Turns) -> Turns:
    """A plain-text response to a conversational prompt becomes one assistant turn."""
    if isinstance(prompt, list) and isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return value


def _check_same_kind(prompt: Turns, response: Turns, where: Where, field: str) -> None:
    if isinstance(prompt, str) and isinstance(response, list):
        raise where.error("is a conversation but the prompt is plain text; use one style per record", field)


def sft_example(record: dict, where: Where) -> PromptCompletion:
    """One SFT example; the loss goes on ``completion`` only."""
    if "prompt" in record and "completion" in record:
        prompt = _turns(record["prompt"], where, "prompt")
        completion = _turns(record["completion"], where, "completion")
        _check_same_kind(prompt, completion, where, "completion")
        return PromptCompletion(prompt, _as_response(completion, prompt), where)
    if "messages" in record:
        messages = _messages(record["messages"], where, "messages")
        if messages[-1]["role"] == "assistant":
            if len(messages) < 2:
                raise where.error("needs at least one turn before the assistant turn", "messages")
            return PromptCompletion(messages[:-1], messages[-1:], where)
        if "chosen" in record:  # Stage II record: train the judge on the majority judgment
            chosen = record["chosen"]
            if not isinstance(chosen, str) or not chosen.strip():
                raise where.error("must be a non-empty string (the judgment to learn)", "chosen")
            return PromptCompletion(messages, [{"role": "assistant", "content": chosen}], where)
        raise where.error(
            f"last message has role {messages[-1]['role']!r}; SFT needs the assistant turn to learn", "messages")
    raise where.error(f"unrecognised SFT record (keys: {sorted(record)}); expected {SFT_FORMATS}")


def _margin(record: dict, where: Where) -> float | None:
    if "margin" not in record or record["margin"] is None:
        return None
    value = record["margin"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error("must be a number", "margin")
    return float(value)


def preference_record(record: dict, where: Where) -> Preference:
    """A preference record in any accepted format -> prompt, chosen and the list of rejected responses."""
    if "chosen" not in record or "rejected" not in record:
        raise where.error(f"missing 'chosen'/'rejected' (keys: {sorted(record)}); expected {PREFERENCE_FORMATS}")
    margin = _margin(record, where)
    if "prompt" in record or "messages" in record:
        key = "prompt" if "prompt" in record else "messages"
        prompt = _turns(record[key], where, key)
        chosen = _turns(record["chosen"], where, "chosen")
        _check_same_kind(prompt, chosen, where, "chosen")
        rejected_list = record["rejected"]
        if isinstance(rejected_list, list) and not rejected_list:
            raise where.error("must be a response or a non-empty list of responses", "rejected")
        # A list of messages is one conversation; any other list holds several rejected responses.
        if isinstance(rejected_list, list) and not all(isinstance(r, dict) for r in rejected_list):
            fields = [f"rejected[{i}]" for i in range(len(rejected_list))]
        else:  # a single rejected response (text or conversation)
            rejected_list, fields = [rejected_list], ["rejected"]
        rejected = []
        for value, field in zip(rejected_list, fields):
            response = _turns(value, where, field)
            _check_same_kind(prompt, response, where, field)
            rejected.append(_as_response(response, prompt))
        return Preference(prompt, _as_response(chosen, prompt), rejected, where, margin)
    # Implicit prompt: two whole conversations sharing their first turns (TRL's extract_prompt).
    from trl.data_utils import extract_prompt

    if not (isinstance(record["chosen"], list) and isinstance(record["rejected"], list)):
        raise where.error("missing: give 'prompt' or 'messages', or 'chosen' and 'rejected' as whole "
                          "conversations", "prompt")

    chosen = _messages(record["chosen"], where, "chosen")
    rejected = _messages(record["rejected"], where, "rejected")
    split = extract_prompt({"chosen": chosen, "rejected": rejected})
    if not split["prompt"]:
        raise where.error("implicit-prompt conversations share no leading turns; add a 'prompt' field", "chosen")
    if not split["chosen"] or not split["rejected"]:
        raise where.error("chosen and rejected conversations are identical", "rejected")
    return Preference(split["prompt"], split["chosen"], [split["rejected"]], where, margin)


def preference_pairs(record: dict, where: Where) -> list[PreferencePair]:
    """Chosen-vs-rejected pairs of one record: one pair, or one per rejected response (Stage II)."""
    pref = preference_record(record, where)
    return [PreferencePair(pref.prompt, pref.chosen, rejected, where, pref.margin) for rejected in pref.rejected]
