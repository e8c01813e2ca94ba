"""Consistency majority voting: several judges score one response, the majority judgment wins.

Rules read off the authors' 20-record Stage II sample (LCM-Lab/Long-RM ``datas/SimPO_Data_Sampled20``):

- a judgment's score is read from its last non-empty line, ``[Score: N]`` with an
  integer N in 0-10 (Markdown bold around it tolerated, as in ``**Score: 4**``);
  anything else there (a score mid-text, ``8.2``, a cut-off analysis) is a parse
  failure and scores ``-1``. This reproduces every ``judge_scores`` entry of the sample;
- the majority is the largest group of judges giving the same score, if no other
  group ties it and at least two judges agree (the sample keeps items voted
  ``[2, 1, 1, 1]``); ``strict`` additionally needs more than half of the judges;
  failures never win;
- ``vote_counts`` are the group sizes, largest first (failures included);
- ``chosen`` is the judgment of the first judge (in the order given) in the
  majority group, ``rejected`` the dissenting judgments (``dissent``) or every
  other judgment (``others``: the sample's layout, where unanimous items still
  carry four rejected judgments).

The judges see the short prompt by default: only the tagged key passage is kept
in ``<context>``, as in the paper ("judge with only the key chunks"); the long
record then carries their verdicts as training targets.

What a judge could not do is counted, never hidden among parse failures: a
judgment cut at the token limit (``finish_reason: length``) counts as
``cut_at_length`` and votes as a failure (its last line may be a cut score such
as ``[Score: 1`` of ``[Score: 10]``); a record longer than some judge's context
is skipped whole and counted as ``too_long``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from longrm_tasks.errors import InputError
from longrm_tasks.train.synth import MAX_LISTED_IDS
from longrm_tasks.train.synth.judges import as_generation

# The final line must be the score and nothing else, e.g. "[Score: 7]", "**[Score: 7]**", "**Score: 4**".
SCORE_LINE_RE = re.compile(r"\[?\s*score:\s*(\d+)\s*\]?", re.IGNORECASE)
_TAG_IN_SYSTEM = re.compile(r"between <([^<>\s]+)> and </\1>")
FAILED = -1


def parse_score(text: str, *, max_score: int = 10) -> int | None:
    """The judgment's score, or None when its last non-empty line is not a score in range."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    match = SCORE_LINE_RE.fullmatch(lines[-1].strip().strip("*").strip())
    if match is None:
        return None
    score = int(match.group(1))
    return score if score <= max_score else None


@dataclass(frozen=True)
class Judgment:
    judge: str
    text: str
    score: int | None


@dataclass(frozen=True)
class Vote:
    chosen: Judgment | None  # None: no majority
    rejected: tuple[Judgment, ...]
    vote_counts: tuple[int, ...]
    judge_scores: dict[str, int]


def majority_vote(judgments: list[Judgment], *, majority: str = "plurality", rejected: str = "dissent") -> Vote:
    """Group judgments by score and pick the winning group (see the module docstring)."""
    if majority not in ("plurality", "strict"):
        raise ValueError(f"majority must be 'plurality' or 'strict', got {majority!r}")
    if rejected not in ("dissent", "others"):
        raise ValueError(f"rejected must be 'dissent' or 'others', got {rejected!r}")
    scores = [FAILED if j.score is None else j.score for j in judgments]
    vote_counts = tuple(sorted(Counter(scores).values(), reverse=True))
    judge_scores = {j.judge: s for j, s in zip(judgments, scores)}
    groups = Counter(s for s in scores if s != FAILED).most_common()
    winner = None
    if groups and groups[0][1] >= 2 and (len(groups) == 1 or groups[0][1] > groups[1][1]):
        score, size = groups[0]
        if majority == "plurality" or size * 2 > len(judgments):
            winner = score
    if winner is None:
        return Vote(None, (), vote_counts, judge_scores)
    chosen = next(j for j, s in zip(judgments, scores) if s == winner)
    losers = tuple(j for j, s in zip(judgments, scores)
                   if j is not chosen and (rejected == "others" or s != winner))
    return Vote(chosen, losers, vote_counts, judge_scores)


def key_tag(record: dict) -> str | None:
    """The record's key-passage tag: ``key_tag`` (ours) or the one the system prompt names (authors')."""
    if isinstance(record.get("key_tag"), str):
        return record["key_tag"]
    system = next((m["content"] for m in record["messages"] if m.get("role") == "system"), "")
    match = _TAG_IN_SYSTEM.search(system)
    return match.group(1) if match else None


def short_messages(record: dict) -> list[dict] | None:
    """The judge prompt with only the tagged key passage(s) left in ``<context>``; None when the
    record has no recognisable tag or context."""
    tag = key_tag(record)
    if tag is None:
        return None
    span = re.compile(rf"<{re.escape(tag)}>\n.*?\n</{re.escape(tag)}>\n", re.DOTALL)
    out = []
    found = False
    for message in record["messages"]:
        content = message["content"]
        if message.get("role") == "user" and "<context>\n" in content and "</context>" in content:
            head, rest = content.split("<context>\n", 1)
            context, tail = rest.split("</context>", 1)
            keys = span.findall(context)
            if keys:
                found = True
                content = f"{head}<context>\n{''.join(keys)}</context>{tail}"
        out.append({**message, "content": content})
    return out if found else None


def validate_messages(record: dict, *, path: str, line: int) -> list[dict]:
    messages = record.get("messages")
    if (not isinstance(messages, list) or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                       for m in messages)):
        raise InputError("expected a non-empty list of {role, content} messages", path=path, line=line,
                         field="messages")
    return messages


@dataclass
class VoteSummary:
    items: int = 0
    written: int = 0
    no_majority: int = 0
    unanimous: int = 0  # a majority but nobody dissented: nothing to reject (``dissent`` mode only)
    parse_failures: int = 0  # complete judgments without a usable score
    cut_at_length: int = 0  # judgments cut at the token limit (finish_reason "length"): vote as failures
    too_long: int = 0  # records longer than some judge's context: skipped, not judged
    judged_full_context: int = 0  # no key-passage tag found: judges saw the whole prompt
    judgments: int = 0
    # judge requests that failed (HTTP 5xx/429, malformed or empty reply, stall, dropped connection) and
    # were retried: the run went on, but a server that fails often shows here
    failed_attempts: int = 0
    dropped_ids: list[str] = field(default_factory=list)

    def drop(self, reason: str, label: str) -> None:
        """One record left out: counted under its reason (a declared field), named while the list is short."""
        if reason == "too_long":
            self.too_long += 1
        elif reason == "no_majority":
            self.no_majority += 1
        elif reason == "unanimous":
            self.unanimous += 1
        else:
            raise ValueError(f"unknown drop reason {reason!r}")
        if len(self.dropped_ids) < MAX_LISTED_IDS:
            self.dropped_ids.append(label)

    def as_dict(self) -> dict:
        return asdict(self)


def voted_record(record: dict, vote: Vote) -> dict:
    """The input record plus the authors' Stage II fields."""
    return {
        **record,
        "chosen": vote.chosen.text,
        "rejected": [j.text for j in vote.rejected],
        "chosen_model": vote.chosen.judge,
        "rejected_models": [j.judge for j in vote.rejected],
        "judge_scores": vote.judge_scores,
        "vote_counts": list(vote.vote_counts),
    }


class ConsistencyVoter:
    """Runs every judge on a batch of records and keeps the records with a majority."""

    def __init__(self, judges, *, majority: str = "plurality", rejected: str = "dissent",
                 judge_context: str = "short"):
        names = [j.name for j in judges]
        if len(judges) < 2:
            raise InputError("consistency voting needs at least two judges", field="judge")
        if len(set(names)) != len(names):
            raise InputError(f"judge names must be unique, got {names}", field="judge")
        if judge_context not in ("short", "full"):
            raise ValueError(f"judge_context must be 'short' or 'full', got {judge_context!r}")
        self.judges = list(judges)
        self.majority = majority
        self.rejected = rejected
        self.judge_context = judge_context
        self.summary = VoteSummary()

    def _prompt(self, record: dict) -> list[dict]:
        if self.judge_context == "short":
            short = short_messages(record)
            if short is not None:
                return short
            self.summary.judged_full_context += 1
        return record["messages"]

    def _drop(self, record: dict, i: int, reason: str, why: str) -> None:
        self.summary.drop(reason, f"{record.get('id', f'record {i + 1}')} ({why})")

    def run(self, records: list[dict], first: int = 0) -> list[dict]:
        """Voted records, in input order, for those with a majority (and a dissent, in ``dissent`` mode).

        ``first``: the input position of ``records[0]``, to name records without an ``id``."""
        prompts = [self._prompt(r) for r in records]
        s = self.summary
        answers = []
        for judge in self.judges:
            failed_before = getattr(judge, "failed_attempts", 0)
            answers.append([as_generation(g) for g in judge.generate(prompts)])
            s.failed_attempts += getattr(judge, "failed_attempts", 0) - failed_before
        out = []
        for i, record in enumerate(records):
            s.items += 1
            generations = [a[i] for a in answers]
            over = [judge.name for judge, g in zip(self.judges, generations) if g.too_long]
            if over:
                self._drop(record, first + i, "too_long", f"longer than the context of {', '.join(over)}")
                continue
            judgments = [Judgment(judge.name, g.text, None if g.cut else parse_score(g.text))
                         for judge, g in zip(self.judges, generations)]
            s.judgments += len(judgments)
            s.cut_at_length += sum(g.cut for g in generations)
            s.parse_failures += sum(j.score is None and not g.cut for j, g in zip(judgments, generations))
            vote = majority_vote(judgments, majority=self.majority, rejected=self.rejected)
            reason = ("no_majority" if vote.chosen is None else "unanimous" if not vote.rejected else None)
            if reason is not None:
                self._drop(record, first + i, reason, reason.replace("_", " "))
                continue
            out.append(voted_record(record, vote))
            s.written += 1
        return out
