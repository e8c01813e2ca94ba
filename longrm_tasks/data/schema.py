"""Long-RewardBench record schema: validation of raw hub records into `Item`s.

The hub data has missing or null fields here and there, so only what the
protocol needs is required; everything else is optional and kept as given.
Every rejection names the file, the line and the field.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from longrm_tasks.errors import InputError

CONFIGS = ("LongQA", "Summ", "Safety", "ICL", "Cite", "Code", "Math")  # the reference's TASKS order
TASKTYPES = ("PairWise", "BestOfN")
LENGTH_BUCKETS = ("4k", "8k", "16k", "32k", "64k", "128k")
BON_SUBTYPES = ("2", "3", "4")


@dataclass
class Item:
    """One benchmark record, validated. ``answers`` are stored best -> worst."""

    config: str
    id: str
    tasktype: str  # PairWise | BestOfN
    subtype: str  # PairWise: "same", a model-pair tag or "None" (null: Diff, as the reference); BestOfN: "2"-"4"
    length: str  # ctx_length_for_length bucket
    prompt_template: list[dict[str, str]]
    answers: list[str]
    index: int  # 0-based position in its config file
    question: str | None = None
    source: str | None = None
    task: str | None = None
    subtask: str | None = None
    answer_models: list[str | None] = field(default_factory=list)
    answer_scores: list[float] | None = None
    # The reference evaluator's permutation for this record (needs the whole file: see prompts/orders.py).
    paper_order: list[int] | None = None

    @property
    def n(self) -> int:
        return len(self.answers)

    @property
    def judge_question(self) -> str:
        """The reference's judge question: every prompt_template content, blank-line joined."""
        return "\n\n".join(m["content"] for m in self.prompt_template)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Item":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _require(raw: dict, name: str, where: dict, kinds: type | tuple[type, ...], what: str):
    if name not in raw or raw[name] is None:
        raise InputError("missing required field", field=name, **where)
    value = raw[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise InputError(f"expected {what}, got {type(value).__name__}", field=name, **where)
    return value


def _string_list(raw: dict, name: str, where: dict) -> list[str]:
    value = _require(raw, name, where, list, "a list of strings")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise InputError(f"element {i} is {type(v).__name__}, expected a string", field=name, **where)
    return value


def _messages(raw: dict, where: dict) -> list[dict[str, str]]:
    value = _require(raw, "prompt_template", where, list, "a list of {role, content} messages")
    if not value:
        raise InputError("empty message list", field="prompt_template", **where)
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
            raise InputError(f"message {i} needs string 'role' and 'content'", field="prompt_template", **where)
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _optional_str(raw: dict, name: str) -> str | None:
    v = raw.get(name)
    return None if v is None else str(v)


def validate_record(raw: Any, *, config: str, index: int, path: str | None = None,
                    line: int | None = None, warnings: list[str] | None = None) -> Item:
    """Turn one raw record into an `Item` or raise `InputError` naming file:line and field.

    ``warnings`` collects non-fatal findings (e.g. candidates not sorted best -> worst
    by ``candidates_score``), so the caller can report them.
    """
    where = {"path": path, "line": line if line is not None else index + 1}
    if not isinstance(raw, dict):
        raise InputError(f"expected a JSON object, got {type(raw).__name__}", **where)
    rid = raw.get("id")
    rid = str(rid) if rid is not None else f"{config}-{index}"
    tasktype = _require(raw, "tasktype", where, str, "a string")
    if tasktype not in TASKTYPES:
        raise InputError(f"unknown tasktype {tasktype!r} (expected one of {', '.join(TASKTYPES)})",
                         field="tasktype", **where)
    length = _require(raw, "ctx_length_for_length", where, str, "a length bucket string")
    if length not in LENGTH_BUCKETS:
        raise InputError(f"unknown length bucket {length!r} (expected one of {', '.join(LENGTH_BUCKETS)})",
                         field="ctx_length_for_length", **where)
    messages = _messages(raw, where)
    scores = None
    if tasktype == "PairWise":
        answers = [_require(raw, "chosen", where, str, "a string"),
                   _require(raw, "rejected", where, str, "a string")]
        models = [raw.get("chosen_model"), raw.get("rejected_model")]
        # As the reference evaluator: ``str(record.get("subtype"))``, so a null or missing subtype is
        # "None", which is not "same" and therefore counts in Diff (LCM-Lab/Long-RM evaluator.py).
        subtype = str(raw.get("subtype"))
    else:
        answers = _string_list(raw, "candidates", where)
        if len(answers) < 2:
            raise InputError(f"BestOfN needs at least 2 candidates, got {len(answers)}", field="candidates", **where)
        subtype = str(raw.get("subtype") if raw.get("subtype") is not None else len(answers))
        if subtype != str(len(answers)):
            raise InputError(f"subtype {subtype!r} disagrees with {len(answers)} candidates",
                             field="subtype", **where)
        models = raw.get("candidates_model")
        if models is None or models == []:  # absent: the candidates' models are unknown
            models = [None] * len(answers)
        elif (not isinstance(models, list) or len(models) != len(answers)
              or not all(m is None or isinstance(m, str) for m in models)):
            got = type(models).__name__ if not isinstance(models, list) else f"{len(models)} entries"
            raise InputError(f"expected a list of {len(answers)} model names (or null), got {got}",
                             field="candidates_model", **where)
        scores = raw.get("candidates_score")
        if scores is not None:
            if (not isinstance(scores, list) or len(scores) != len(answers)
                    or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)):
                raise InputError(f"expected {len(answers)} numbers", field="candidates_score", **where)
            if any(a < b for a, b in zip(scores, scores[1:])) and warnings is not None:
                warnings.append(f"{path or config}:{where['line']}: candidates are not ordered best -> worst "
                                f"by candidates_score {scores}; the benchmark treats list order as the truth")
    return Item(
        config=config, id=rid, tasktype=tasktype, subtype=subtype, length=length,
        prompt_template=messages, answers=answers, index=index,
        question=_optional_str(raw, "question"), source=_optional_str(raw, "source"),
        task=_optional_str(raw, "task"), subtask=_optional_str(raw, "subtask"),
        answer_models=[None if m is None else str(m) for m in models],
        answer_scores=None if scores is None else [float(s) for s in scores],
    )
