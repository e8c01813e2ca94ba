"""Short-to-long synthesis: hide a record's key passage in distractor text up to a target length.

The paper judges each response with only the key chunks (short, reliable),
then pads the context back to the target length with unrelated text, the key
passage at a controlled depth. The layout copies the authors' Stage II data
(LCM-Lab/Long-RM ``datas/SimPO_Data_Sampled20``):

- the user message is ``<context>\\n{documents}</context>\\n\\n<prompt>\\n{question}\\n</prompt>\\n\\n``
  then ``The following is the given response to evaluate.\\n<response>\\n{response}\\n</response>\\n\\n``;
- the key passage sits between ``<TAG>`` and ``</TAG>`` on their own lines, at a
  document boundary; the authors draw a random 2-4 character tag per record
  (``LD``, ``Q9``, ``465D``...) and name it in the system prompt;
- ``key_passage_position`` counts the distractor documents before the key
  passage (a long document split at a line break to reach the requested
  depth counts its head as one), ``answer`` holds the response being judged.

Lengths count the whole chat-templated prompt (``prompt_tokens``) with the
given tokenizer, so a 32K record fits a 32K training window. Every item gets
its own seeded RNG derived from (seed, record id, length, depth slot), so
output does not depend on the order or number of other records.
"""
from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from longrm_tasks.errors import InputError
from longrm_tasks.paths import require_regular_file
from longrm_tasks.train.synth import MAX_LISTED_IDS, read_jsonl

# Verbatim from the authors' data (typos included): the judge model was trained on this wording.
AUTHORS_SYSTEM_PROMPT = (
    "You are an expert in evaluating the quality of model responses on QA tasks (such as those in "
    "LongAlpaca).\nYou will receive a context (which may contain both relevant and irrelevant "
    "information), You will receive a long context (which may contain both useful clues and irrelevant, "
    "a user question related to the part between <{tag}> and </{tag}>, and a corresponding model response, "
    "focusing specifically on the content between the <{tag}> and </{tag}>.Your task is to carefully "
    "assess the **quality of the response**, focusing on how well it handles the context.\n"
    "Key dimensions include:\n"
    "(1) Correctness: Does the response accurately answer the user’s question based on the information "
    "in the context?\n"
    "(2) Relevance: Does the response focus on the information relevant to the question, while ignoring "
    "unrelated or distracting details?\n"
    "(3) Conciseness & Clarity: Is the response clear, well-structured, and free of unnecessary "
    "repetition or overlong digressions?\n\n"
    "[Analysis]\n{your analysis here according to the scoring criteria}\n"
    "[Score: {an integer between 0 and 10}]"
)
RESPONSE_INTRO = "The following is the given response to evaluate."
_TAG_ALPHABET = string.ascii_uppercase + string.digits


def parse_length(text: str) -> int:
    """``4096``, ``4k``, ``128K`` -> tokens (K = 1024, as in the paper's 4K...128K)."""
    text = text.strip().lower()
    scale = 1024 if text.endswith("k") else 1
    try:
        value = int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise InputError(f"not a length: {text!r} (use e.g. 4096 or 32k)", field="lengths") from None
    if value <= 0:
        raise InputError(f"length must be positive, got {text!r}", field="lengths")
    return value


def parse_depths(text: str) -> tuple[float, ...] | None:
    """``0.5`` or ``0,0.5,1`` -> fixed depths; ``uniform`` -> None (one seeded draw per item)."""
    if text.strip().lower() == "uniform":
        return None
    try:
        depths = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"not a depth list: {text!r} (fractions 0..1, or 'uniform')", field="depths") from None
    if not depths or any(not 0.0 <= d <= 1.0 for d in depths):
        raise InputError(f"depths must lie in [0, 1], got {text!r}", field="depths")
    return depths


@dataclass(frozen=True)
class ShortRecord:
    """A short judge item: question, its key passage(s), optional responses to judge."""

    id: str
    question: str
    key_passages: tuple[str, ...]
    responses: tuple[str, ...] = ()
    reference: str | None = None


def _strings(value, *, path, line, name) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise InputError("expected a non-empty string or list of non-empty strings", path=path, line=line,
                         field=name)
    return tuple(items)


def load_short_records(path: str | Path) -> Iterator[ShortRecord]:
    """Read short records: ``question`` (or ``query``), ``key_passages`` (or ``key_passage``),
    optional ``responses`` (or ``response``), ``reference``, ``id`` (defaults to the line number)."""
    path = str(path)
    for line, obj in read_jsonl(path):
        qkey = "query" if "query" in obj and "question" not in obj else "question"
        question = obj.get(qkey)
        if not isinstance(question, str) or not question.strip():
            raise InputError("missing or empty question", path=path, line=line, field=qkey)
        pkey = "key_passage" if "key_passage" in obj and "key_passages" not in obj else "key_passages"
        if pkey not in obj:
            raise InputError("missing key passage", path=path, line=line, field=pkey)
        passages = _strings(obj[pkey], path=path, line=line, name=pkey)
        rkey = "response" if "response" in obj and "responses" not in obj else "responses"
        responses = _strings(obj[rkey], path=path, line=line, name=rkey) if obj.get(rkey) is not None else ()
        reference = obj.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise InputError("expected a string", path=path, line=line, field="reference")
        yield ShortRecord(id=str(obj.get("id", line)), question=question, key_passages=passages,
                          responses=responses, reference=reference)


def count_prompt_tokens(tokenizer, messages: list[dict]) -> int:
    """Prompt length as the judge sees it: chat template with the generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        return len(ids)
    text = "\n\n".join(m["content"] for m in messages)
    return len(tokenizer(text)["input_ids"])


class DistractorCorpus:
    """Distractor documents with lazily cached token counts (only drawn documents are tokenized)."""

    def __init__(self, documents: Sequence[str], tokenizer, *, empty_documents: int = 0):
        # Each piece ends with exactly one newline so pieces concatenate into lines.
        self.pieces = [doc.strip("\n") + "\n" for doc in documents]
        self.tokenizer = tokenizer
        self.empty_documents = empty_documents
        self._lengths: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.pieces)

    def n_tokens(self, index: int) -> int:
        if index not in self._lengths:
            ids = self.tokenizer(self.pieces[index], add_special_tokens=False)["input_ids"]
            self._lengths[index] = len(ids)
        return self._lengths[index]

    def head(self, index: int, n_tokens: int) -> str:
        """The first ``n_tokens`` tokens of a document, cut on a character boundary."""
        piece = self.pieces[index]
        try:
            enc = self.tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
            end = enc["offset_mapping"][n_tokens - 1][1] if n_tokens > 0 else 0
            text = piece[:end]
        except NotImplementedError:  # slow tokenizers have no offsets
            ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"][:n_tokens]
            text = self.tokenizer.decode(ids)
        return text.rstrip("\n") + "\n"

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], tokenizer, *, text_field: str = "text") -> DistractorCorpus:
        """JSONL files (one document per line, text in ``text_field``), other files one document
        each; folders are read recursively in sorted order. Blank documents are counted, not kept."""
        documents: list[str] = []
        empty = 0
        for path in expand_corpus_paths(paths):
            if path.suffix in (".jsonl", ".json"):
                for line, obj in read_jsonl(path):
                    text = obj.get(text_field)
                    if not isinstance(text, str):
                        raise InputError("missing or not a string", path=str(path), line=line, field=text_field)
                    if text.strip():
                        documents.append(text)
                    else:
                        empty += 1
            else:
                text = path.read_text(encoding="utf-8")
                if text.strip():
                    documents.append(text)
                else:
                    empty += 1
        return cls(documents, tokenizer, empty_documents=empty)


def expand_corpus_paths(paths: Sequence[str | Path]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            # every entry but sub-folders and hidden files: a FIFO or broken link in the corpus is named, not skipped
            out.extend(Path(require_regular_file(f)) for f in sorted(p.rglob("*"))
                       if not (f.is_dir() or f.name.startswith(".")))
        elif p.exists() or p.is_symlink():
            out.append(Path(require_regular_file(p)))
        else:
            raise InputError("distractor corpus not found", path=str(p))
    return out


def _random_order(rng: random.Random, n: int) -> Iterator[int]:
    """All of ``range(n)`` in seeded random order, without materialising a shuffle up front
    (an item usually needs a few dozen documents out of a large corpus)."""
    seen: set[int] = set()
    while len(seen) < n // 2:
        i = rng.randrange(n)
        if i not in seen:
            seen.add(i)
            yield i
    rest = [i for i in range(n) if i not in seen]
    rng.shuffle(rest)
    yield from rest


def _line_cut(text: str, char: int) -> int:
    """The line start in ``text`` nearest to ``char`` (0 or len(text) when there is none inside)."""
    before = text.rfind("\n", 0, char) + 1
    after = text.find("\n", char) + 1 or len(text)
    return before if char - before <= after - char else after


def place_key(pieces: Sequence[str], lengths: Sequence[int], depth: float,
              tokenizer) -> tuple[list[str], list[str], float]:
    """Split the distractor pieces into (before, after) so that ``depth`` of their tokens precede
    the key passage; returns the achieved depth.

    The key goes between documents when that is close; when the goal falls deep inside a
    long document, that document is split at the nearest line break instead (never mid-line),
    so depth stays precise with book-length distractors.
    """
    total = sum(lengths)
    if total == 0:
        return [], list(pieces), 0.0
    goal = depth * total
    cum = 0
    for j, n in enumerate(lengths):
        if cum + n > goal or j == len(lengths) - 1:
            break
        cum += n
    # whole-document boundaries either side of document j
    best = min((cum, j), (cum + lengths[j], j + 1), key=lambda c: abs(c[0] - goal))
    before, after = list(pieces[:best[1]]), list(pieces[best[1]:])
    achieved = best[0]
    piece = pieces[j]
    try:
        offsets = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except NotImplementedError:  # slow tokenizers have no offsets: whole documents only
        return before, after, achieved / total
    inside = min(max(int(round(goal - cum)), 0), len(offsets) - 1)
    cut = _line_cut(piece, offsets[inside][0]) if offsets else 0
    if 0 < cut < len(piece):
        head_tokens = len(tokenizer(piece[:cut], add_special_tokens=False)["input_ids"])
        if abs(cum + head_tokens - goal) < abs(achieved - goal):
            before, after = list(pieces[:j]) + [piece[:cut]], [piece[cut:]] + list(pieces[j + 1:])
            achieved = cum + head_tokens
    return before, after, achieved / total


def key_block(tag: str, passages: Sequence[str]) -> str:
    return f"<{tag}>\n" + "\n\n".join(passages) + f"\n</{tag}>\n"


def user_message(context: str, question: str, response: str | None) -> str:
    text = f"<context>\n{context}</context>\n\n<prompt>\n{question}\n</prompt>\n\n"
    if response is not None:
        text += f"{RESPONSE_INTRO}\n<response>\n{response}\n</response>\n\n"
    return text


@dataclass(frozen=True)
class ShortToLongConfig:
    lengths: tuple[int, ...]
    depths: tuple[float, ...] | None = (0.5,)  # None: one uniform draw per item
    seed: int = 0
    tag: str | None = None  # None: a random tag per item, as the authors do
    tolerance: float = 0.02  # an item shorter than (1 - tolerance) * target counts as too short
    system_prompt: str = AUTHORS_SYSTEM_PROMPT  # every ``{tag}`` is replaced by the item's tag


@dataclass
class ShortToLongSummary:
    records: int = 0
    written: int = 0
    too_short: int = 0  # the corpus ran out of distractor text
    too_long: int = 0  # key passage + question + response alone exceed the target
    empty_documents: int = 0
    skipped_ids: list[str] = field(default_factory=list)

    def skip(self, reason: str, item_id: str) -> None:
        """One item not built: counted under its reason (a declared field), named while the list is short."""
        if reason == "too_short":
            self.too_short += 1
        elif reason == "too_long":
            self.too_long += 1
        else:
            raise ValueError(f"unknown skip reason {reason!r}")
        if len(self.skipped_ids) < MAX_LISTED_IDS:
            self.skipped_ids.append(f"{item_id} ({reason.replace('_', ' ')})")

    def as_dict(self) -> dict:
        return asdict(self)


class ShortToLong:
    """Builds long judge records from short ones; counts what cannot be built in ``summary``."""

    def __init__(self, corpus: DistractorCorpus, tokenizer, config: ShortToLongConfig):
        if not corpus.pieces:
            raise InputError("the distractor corpus holds no documents", field="corpus")
        self.corpus = corpus
        self.tokenizer = tokenizer
        self.config = config
        self.summary = ShortToLongSummary(empty_documents=corpus.empty_documents)

    def build(self, record: ShortRecord) -> list[dict]:
        """Every (length, depth, response) item of one record; skipped items are counted."""
        self.summary.records += 1
        out = []
        responses: Sequence[str | None] = record.responses or (None,)
        for target in self.config.lengths:
            depths = self.config.depths
            if depths is None:
                depths = (random.Random(f"{self.config.seed}|{record.id}|{target}|depth").random(),)
            for slot, depth in enumerate(depths):
                for r_index, response in enumerate(responses):
                    item_id = f"{record.id}/{target}/{slot}" + (f"/{r_index}" if response is not None else "")
                    # Same seed for every response: they share distractors and tag, only the trim differs.
                    seed = f"{self.config.seed}|{record.id}|{target}|{slot}"
                    item = self._item(record, response, target, depth, seed)
                    if isinstance(item, str):
                        self.summary.skip(item, item_id)
                        continue
                    item = {"id": item_id, "source_id": record.id, **item}
                    if record.reference is not None:
                        item["reference"] = record.reference
                    out.append(item)
                    self.summary.written += 1
        return out

    def _tag(self, rng: random.Random, record: ShortRecord, response: str | None) -> str:
        own_text = "\n".join((record.question, response or "", *record.key_passages))
        while True:
            tag = self.config.tag or "".join(rng.choice(_TAG_ALPHABET) for _ in range(rng.randint(2, 4)))
            if self.config.tag or (f"<{tag}>" not in own_text and f"</{tag}>" not in own_text):
                return tag

    def _item(self, record: ShortRecord, response: str | None, target: int, depth: float,
              seed: str) -> dict | str:
        tag_rng = random.Random(seed + "|tag")
        while True:
            tag = self._tag(tag_rng, record, response)
            item = self._assemble(record, response, target, depth, tag, random.Random(seed + "|docs"))
            if isinstance(item, str) or self.config.tag:
                return item
            context = item["messages"][1]["content"]
            if context.count(f"<{tag}>") == 1 and context.count(f"</{tag}>") == 1:
                return item  # a distractor that happens to contain the tag would make it ambiguous

    def _assemble(self, record, response, target, depth, tag, rng) -> dict | str:
        system = self.config.system_prompt.replace("{tag}", tag)
        key = key_block(tag, record.key_passages)

        def render(before: list[str], after: list[str]) -> list[dict]:
            context = "".join(before) + key + "".join(after)
            return [{"role": "system", "content": system},
                    {"role": "user", "content": user_message(context, record.question, response)}]

        budget = target - count_prompt_tokens(self.tokenizer, render([], []))
        if budget < 0:
            return "too_long"
        chosen: list[int] = []
        lengths: list[int] = []
        drawn = 0
        for index in _random_order(rng, len(self.corpus)):
            if drawn >= budget:
                break
            chosen.append(index)
            lengths.append(self.corpus.n_tokens(index))
            drawn += lengths[-1]
        pieces = [self.corpus.pieces[i] for i in chosen]
        excess = drawn - budget
        # Token counts of separate pieces only estimate the joined prompt: trim the last
        # document until the exact count fits, re-placing the key passage each round.
        while True:
            if excess > 0 and pieces:
                keep = lengths[-1] - excess
                if keep <= 0:
                    pieces.pop(), chosen.pop(), lengths.pop()
                else:
                    pieces[-1] = self.corpus.head(chosen[-1], keep)
                    lengths[-1] = keep
            before, after, achieved = place_key(pieces, lengths, depth, self.tokenizer)
            messages = render(before, after)
            n_tokens = count_prompt_tokens(self.tokenizer, messages)
            excess = n_tokens - target
            if excess <= 0 or not pieces:
                break
        if n_tokens < (1 - self.config.tolerance) * target:
            return "too_short"
        item = {"messages": messages, "query": record.question}
        if response is not None:
            item["answer"] = response  # the authors' name for the response being judged
        item.update(key_tag=tag, key_passage_position=len(before), key_passage_depth=round(achieved, 4),
                    target_tokens=target, prompt_tokens=n_tokens)
        return item
