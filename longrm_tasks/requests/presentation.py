"""One presentation of one item to a judge, and the record its verdict becomes.

A `Presentation` is an (item, order) pair made ready to send: the prompt as
text (rendered, measured and fitted by `longrm_tasks.requests.build`), the judge's
system prompt and where the user content sits in the text (for backends that
take chat messages), and what fitting did. Adapters store it as a flat dict
(`to_doc` / `from_doc`: lm-eval datasets hold dicts of plain columns) and only
translate it into their own request objects.

A `record` is what one presentation contributes to the metrics: the `Judged`
fields as a small named dict (lm-eval logs it once per metric of a task), read
back with `judged`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

from longrm_tasks.metrics.benchmark import Judged

JUDGES = ("generative", "loglikelihood", "reward")


@dataclass
class Presentation:
    """The schema of every Long-RewardBench document (lm-eval ``doc``).

    Identity: ``key`` (``"<config>/<id>"``), ``config``, ``id``, ``tasktype``,
    ``subtype``, ``length`` (context bucket), ``kind`` (``pair`` | ``rank``),
    ``n`` (answers), ``order`` (true rank of each shown position), ``target``
    (shown position of the best answer), ``presentation`` (index among the
    item's orders).
    Run: ``judge`` (`JUDGES`), ``parser``, ``orders`` (order scheme),
    ``protocol`` (``paper`` | ``fit``), ``max_length`` (the model's context the
    decisions were made for, -1 unknown).
    Request: ``prompt`` (the text sent; for ``rendered=False`` the user content
    only; for reward models a JSON request context, see ``requests.reward``),
    ``system`` (judge system prompt), ``user_span`` (character span of the user
    content inside ``prompt``, ``[0, 0]`` when it cannot be recovered),
    ``choices`` (log-likelihood verdicts / reward-model answers).
    Fitting: ``prompt_tokens`` (tokens the model sees, -1 not measured),
    ``truncated_tokens``, ``skipped`` + ``skip_reason`` (removed from scoring by
    ``fit`` + ``overlong=skip``), ``overlong`` + the same reason (beyond the
    model's context under ``paper``: scored wrong).
    """

    key: str
    config: str
    id: str
    tasktype: str
    subtype: str
    length: str
    kind: str
    n: int
    order: list[int]
    target: int
    presentation: int
    judge: str
    parser: str = "reference"
    orders: str = "paper"
    protocol: str = "paper"
    max_length: int = -1
    prompt: str = ""
    rendered: bool = False
    system: str = ""
    user_span: list[int] = field(default_factory=lambda: [0, 0])
    choices: list[str] = field(default_factory=list)
    prompt_tokens: int = -1
    truncated_tokens: int = 0
    skipped: bool = False
    overlong: bool = False
    skip_reason: str = ""

    @property
    def scored(self) -> bool:
        """Whether the model's output is read (skipped and over-long presentations are not)."""
        return not (self.skipped or self.overlong)

    @property
    def user_content(self) -> str:
        start, end = self.user_span
        return self.prompt[start:end]

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> "Presentation":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


# ------------------------------------------------------------------ the per-presentation record

RECORD_FIELDS = ("config", "id", "tasktype", "subtype", "length", "order", "predicted", "truncated_tokens",
                 "skipped", "overlong", "short_budget", "thinking")


def record(doc: Mapping[str, Any], predicted: Sequence[int] | None, *, short_budget: bool = False,
           thinking: bool = False) -> dict[str, Any]:
    """What one presentation contributes to the metrics (``doc``: a `Presentation` dict)."""
    return {"config": doc["config"], "id": doc["id"], "tasktype": doc["tasktype"], "subtype": doc["subtype"],
            "length": doc["length"], "order": list(doc["order"]),
            "predicted": None if predicted is None else list(predicted),
            "truncated_tokens": int(doc["truncated_tokens"]), "skipped": bool(doc["skipped"]),
            "overlong": bool(doc.get("overlong", False)), "short_budget": bool(short_budget),
            "thinking": bool(thinking)}


def judged(rec: Mapping[str, Any] | Sequence) -> Judged:
    """A `record` back as the core's `Judged` row (also reads the positional lists of earlier versions)."""
    if not isinstance(rec, Mapping):
        config, item_id, tasktype, subtype, length, order, predicted, truncated, skipped = rec
        rec = {"config": config, "id": item_id, "tasktype": tasktype, "subtype": subtype, "length": length,
               "order": order, "predicted": predicted, "truncated_tokens": truncated, "skipped": skipped}
    predicted = rec.get("predicted")
    return Judged(config=rec["config"], item_id=str(rec["id"]), tasktype=rec["tasktype"], subtype=str(rec["subtype"]),
                  length=rec["length"], true_ranks=list(rec["order"]),
                  predicted=None if predicted is None else list(predicted),
                  truncated_tokens=int(rec.get("truncated_tokens", 0)), skipped=bool(rec.get("skipped", False)),
                  overlong=bool(rec.get("overlong", False)), short_budget=bool(rec.get("short_budget", False)),
                  thinking=bool(rec.get("thinking", False)))
