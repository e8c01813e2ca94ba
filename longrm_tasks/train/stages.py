"""The stage kinds a recipe can run, in one table: config class, trainer factory, LoRA task, card title.

`recipe.py` (which ``args`` a stage accepts), `runner.py` (which trainer runs
it, which PEFT task type LoRA uses) and `model_card.py` (what the card calls
it) all read this table instead of branching on the kind. Entries name their
classes as ``"module:attr"`` strings resolved on first use, like lm-eval's
`Registry` placeholders, so listing the kinds imports neither TRL nor torch.

A trainer factory is ``factory(model_path, args, train_file, eval_file=None,
peft_config=None, callbacks=None) -> (trainer, data_report)``. A ``preflight``
check, where a kind has one, is ``check(stage, base_model_path) -> None``: it
runs for every stage about to run before the first one starts (`runner.preflight`),
and refuses with an ``InputError`` or adjusts ``stage.args`` and says so.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from longrm_tasks.errors import InputError


def resolve(target: str) -> Any:
    """``"package.module:attr"`` -> the object (imported on demand)."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:attr', got {target!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class StageKind:
    name: str
    config: str  # "module:attr" of the config dataclass whose fields a stage's ``args`` set
    trainer: str  # "module:attr" of the trainer factory
    peft_task: str  # member of `peft.TaskType` a LoRA stage uses
    title: str  # one line for the model card
    tags: tuple[str, ...] = ()  # model card tags besides longrm/trl/long-context
    preflight: str | None = None  # "module:attr" of a check run before any stage trains (see module doc)

    def config_class(self) -> type:
        return resolve(self.config)

    def trainer_factory(self):
        return resolve(self.trainer)

    def preflight_check(self):
        return resolve(self.preflight) if self.preflight else None


class StageTable:
    """Stage kinds by name, in registration order."""

    def __init__(self) -> None:
        self._kinds: dict[str, StageKind] = {}

    def register(self, kind: StageKind) -> StageKind:
        if kind.name in self._kinds:
            raise ValueError(f"stage kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind
        return kind

    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def get(self, name: str) -> StageKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise InputError(f"unknown stage kind {name!r}; known: {', '.join(self._kinds)}",
                             field="kind") from None


STAGES = StageTable()
# name, config class, trainer factory, LoRA task, card title, card tags, preflight check
_KINDS = (
    ("sft", "trl:SFTConfig", "longrm_tasks.train.sft:sft_trainer", "CAUSAL_LM",
     "Stage I SFT (generative judge cold start, TRL SFTTrainer, loss on the assistant turn)", ("sft",), None),
    # a model whose attention cannot be shared (chunked, sink, ...) runs unshared, said before Stage I
    ("alignment", "longrm_tasks.train.alignment.config:AlignmentConfig",
     "longrm_tasks.train.alignment.data:alignment_trainer", "CAUSAL_LM",
     "Stage II alignment (reference-free multi-reject SimPO-style loss)", ("simpo", "alignment"),
     "longrm_tasks.train.alignment.trainer:shared_context_preflight"),
    ("reward", "longrm_tasks.train.reward:RewardStageConfig", "longrm_tasks.train.reward:reward_trainer",
     "SEQ_CLS", "Discriminative reward model (TRL RewardTrainer, Bradley-Terry)", ("reward-model", "bradley-terry"),
     None),
)
for _row in _KINDS:
    STAGES.register(StageKind(*_row))
