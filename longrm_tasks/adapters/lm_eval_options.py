"""Options of our lm-eval tasks, read from what lm-eval hands a ``custom_dataset`` function.

lm-eval 0.4.13 calls ``custom_dataset(**metadata, **dataset_kwargs)`` where
``metadata`` is ``--model_args`` merged with ``--metadata`` (the CLI's
``EvaluatorConfig`` does ``model_args | metadata``; ``simple_evaluate`` does the
same when it builds the TaskManager) plus the task YAML's own ``metadata``
(``version``, ``config_source``). So one keyword bag carries:

- our options from ``--metadata``: ``data_dir`` (``hub`` default, ``sample``,
  or a folder of ``{Config}.jsonl``; relative to the working directory),
  ``order`` (``paper`` | ``both`` | ``hash:SEED``), ``max_length``,
  ``overlong`` (``truncate`` | ``skip``), ``tokenizer``, ``parser``
  (``reference`` | ``strict``), ``max_gen_toks`` (the generation budget to
  leave free), ``data_revision`` of the hub dataset;
- the model's arguments (``pretrained``, ``tokenizer``, ``max_length``,
  ``revision``, ``trust_remote_code``), used to measure prompts with the
  tokenizer the model will use;
- the slice from the task YAML's ``dataset_kwargs`` (``longrm_judge``,
  ``longrm_configs``, ``longrm_tasktypes``), prefixed so they never collide
  with a user's metadata key.

Every bad value raises `InputError` naming the option.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from longrm_tasks.data.schema import CONFIGS, TASKTYPES
from longrm_tasks.errors import InputError
from longrm_tasks.orders import OrderScheme
from longrm_tasks.verdicts import PARSERS

JUDGES = ("generative", "loglikelihood", "reward")
OVERLONG = ("truncate", "skip")
GENERATION_TOKENS = 2048  # the benchmark's decoding budget (max_gen_toks in the generative YAML)


@dataclass(frozen=True)
class TaskOptions:
    judge: str
    configs: tuple[str, ...] | None
    tasktypes: tuple[str, ...] | None
    data_dir: str = "hub"
    revision: str | None = None
    order: OrderScheme = OrderScheme("paper")
    max_length: int | None = None
    overlong: str = "truncate"
    parser: str = "reference"
    tokenizer: str | None = None  # a name or path for AutoTokenizer; None = do not measure
    tokenizer_kwargs: tuple[tuple[str, Any], ...] = ()
    model: str | None = None  # where to read the model's context length from (its config)
    gen_tokens: int = GENERATION_TOKENS


def _names(value, known: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    if value in (None, "", "all"):
        return None
    names = [v for v in value.split(",") if v] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown {', '.join(map(str, unknown))} (known: {', '.join(known)})", field=option)
    return tuple(names)


def _positive_int(value, option: str) -> int | None:
    if value in (None, "", "none", "None"):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a positive integer, got {value!r}", field=option) from None
    if number <= 0:
        raise InputError(f"expected a positive integer, got {number}", field=option)
    return number


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def parse_options(kwargs: dict[str, Any]) -> TaskOptions:
    """Options from the keyword arguments lm-eval passes to ``custom_dataset``."""
    judge = kwargs.get("longrm_judge", "generative")
    if judge not in JUDGES:
        raise InputError(f"unknown judge {judge!r} ({', '.join(JUDGES)})", field="longrm_judge")
    try:
        order = OrderScheme.parse(str(kwargs.get("order") or "paper"))
    except ValueError as err:
        raise InputError(str(err), field="order") from None
    overlong = str(kwargs.get("overlong") or "truncate")
    if overlong not in OVERLONG:
        raise InputError(f"unknown value {overlong!r} ({', '.join(OVERLONG)})", field="overlong")
    parser = str(kwargs.get("parser") or "reference")
    if parser not in PARSERS:
        raise InputError(f"unknown parser {parser!r} ({', '.join(PARSERS)})", field="parser")

    # The tokenizer the model will use: explicit --metadata tokenizer, else the
    # model's own (hf/vllm: `tokenizer` or `pretrained` model argument).
    tokenizer = kwargs.get("tokenizer") or kwargs.get("pretrained")
    if tokenizer is not None and not isinstance(tokenizer, str):
        tokenizer = None  # e.g. a model object passed to simple_evaluate
    tok_kwargs = {}
    if kwargs.get("trust_remote_code") is not None:
        tok_kwargs["trust_remote_code"] = _truthy(kwargs["trust_remote_code"])
    if kwargs.get("tokenizer_revision") or (kwargs.get("revision") and not kwargs.get("tokenizer")):
        tok_kwargs["revision"] = str(kwargs.get("tokenizer_revision") or kwargs["revision"])
    pretrained = kwargs.get("pretrained")
    return TaskOptions(
        judge=judge,
        configs=_names(kwargs.get("longrm_configs"), CONFIGS, "longrm_configs"),
        tasktypes=_names(kwargs.get("longrm_tasktypes"), TASKTYPES, "longrm_tasktypes"),
        data_dir=str(kwargs.get("data_dir") or "hub"),
        revision=kwargs.get("data_revision"),
        order=order,
        max_length=_positive_int(kwargs.get("max_length"), "max_length"),
        overlong=overlong,
        parser=parser,
        tokenizer=tokenizer,
        tokenizer_kwargs=tuple(sorted(tok_kwargs.items())),
        model=pretrained if isinstance(pretrained, str) else None,
        gen_tokens=_positive_int(kwargs.get("max_gen_toks"), "max_gen_toks") or GENERATION_TOKENS,
    )
