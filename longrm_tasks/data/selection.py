"""Pick a slice of the benchmark by config, task type, subtype and length bucket."""
from __future__ import annotations

from typing import Iterable

from longrm_tasks.data.schema import Item


def _as_set(values: Iterable[str] | str | None) -> set[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [v for v in values.split(",") if v]
    return {str(v) for v in values}


def select(items: Iterable[Item], *, configs=None, tasktypes=None, subtypes=None, lengths=None) -> list[Item]:
    """Keep items matching every given filter (each a collection or a comma-separated string).

    Subtype ``diff`` stands for every PairWise subtype other than ``same``, as
    the benchmark's Same/Diff split does.
    """
    configs, tasktypes, subtypes, lengths = map(_as_set, (configs, tasktypes, subtypes, lengths))

    def keep(it: Item) -> bool:
        if configs is not None and it.config not in configs:
            return False
        if tasktypes is not None and it.tasktype not in tasktypes:
            return False
        if lengths is not None and it.length not in lengths:
            return False
        if subtypes is not None:
            is_diff = it.tasktype == "PairWise" and it.subtype != "same"
            if it.subtype not in subtypes and not ("diff" in subtypes and is_diff):
                return False
        return True

    return [it for it in items if keep(it)]
