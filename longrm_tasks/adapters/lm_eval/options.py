"""Options of our lm-eval tasks, read from what lm-eval hands a ``custom_dataset`` function.

lm-eval 0.4.13 calls ``custom_dataset(**metadata, **dataset_kwargs)`` where
``metadata`` is ``--model_args`` merged with ``--metadata`` (the CLI's
``EvaluatorConfig`` does ``model_args | metadata``; ``simple_evaluate`` does the
same when it builds the TaskManager) plus the task YAML's own ``metadata``
(``version``, ``config_source``). So one keyword bag carries:

- our options from ``--metadata``: ``protocol`` (``paper`` default, the
  reference evaluator's prompts; ``fit``, see `longrm_tasks.context.fitting`),
  ``data_dir`` (``hub`` default, ``sample``, or a folder of
  ``{Config}.jsonl``; relative to the working directory), ``order``
  (``paper`` | ``both`` | ``hash:SEED``), ``max_length``, ``overlong``
  (``truncate`` | ``skip``, ``fit`` only), ``tokenizer``, ``parser``
  (``reference`` | ``strict``), ``max_gen_toks`` (``fit``: the generation
  budget to leave free; default: the task's), ``data_revision`` of the hub
  dataset;
- the model's arguments (``pretrained``, ``tokenizer``, ``max_length``,
  ``max_model_len`` (vLLM), ``base_url`` / ``tokenized_requests`` (API
  models), ``revision``, ``trust_remote_code``), used to measure prompts with
  the tokenizer the model will use and to know its context;
- the slice from the task YAML's ``dataset_kwargs`` (``longrm_judge``,
  ``longrm_configs``, ``longrm_tasktypes``), prefixed so they never collide
  with a user's metadata key.

Every bad value raises `InputError` naming the option. A key that is neither
ours nor a model argument lm-eval knows, but is close to one of ours (a typo:
``data_dri``), is refused with the closest name; keys far from ours are left
alone, since backends pass arbitrary engine arguments (``gpu_memory_utilization``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import difflib
import inspect
from functools import lru_cache

from longrm_tasks.data.schema import CONFIGS, TASKTYPES
from longrm_tasks.errors import InputError, unknown_key_error
from longrm_tasks.requests.options import RunOptions, positive_int
from longrm_tasks.requests.presentation import JUDGES

# Our --metadata keys, the slice keys of the task YAMLs' dataset_kwargs, and what lm-eval adds itself.
OUR_KEYS = ("protocol", "data_dir", "data_revision", "order", "max_length", "overlong", "tokenizer", "parser",
            "max_gen_toks")
SLICE_KEYS = ("longrm_judge", "longrm_configs", "longrm_tasktypes")
LM_EVAL_KEYS = ("version", "config_source", "num_fewshot", "task", "pretrained", "model")
# Model backends whose constructor arguments arrive merged into the same keyword bag.
MODEL_BACKENDS = ("hf", "vllm", "local-completions", "local-chat-completions", "openai-completions",
                  "openai-chat-completions", "hf-rm")


@dataclass(frozen=True)
class TaskOptions:
    """lm-eval's view of a run: the run's options (`RunOptions`, what the stages read), the task's slice,
    the data source and what the model arguments say about tokenizer and context."""

    judge: str
    configs: tuple[str, ...] | None
    tasktypes: tuple[str, ...] | None
    run: RunOptions = RunOptions()
    data_dir: str = "hub"
    revision: str | None = None
    max_length: int | None = None
    tokenizer: str | None = None  # a name or path for AutoTokenizer; None = do not measure
    tokenizer_kwargs: tuple[tuple[str, Any], ...] = ()
    model: str | None = None  # where to read the model's context length from (its config)
    max_model_len: int | None = None  # vLLM's context argument
    base_url: str | None = None  # an API model's server
    tokenized_requests: bool | None = None  # API: lm-eval tokenizes (True) or sends text (False); None: unset
    add_bos_token: bool | None = None


def _names(value, known: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    if value in (None, "", "all"):
        return None
    names = [v for v in value.split(",") if v] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown {', '.join(map(str, unknown))} (known: {', '.join(known)})", field=option)
    return tuple(names)


# JSON types a --metadata value can have; a Python object handed over by simple_evaluate is not judged here.
_JSON_TYPES = (bool, int, float, list, dict)
STRING_KEYS = ("protocol", "data_dir", "data_revision", "order", "overlong", "parser", "tokenizer")


def check_types(kwargs: dict[str, Any]) -> None:
    """Our string options must be strings: ``"order": 3`` or ``"data_dir": []`` (which would fall back to
    the hub in silence) is refused naming the key."""
    for key in STRING_KEYS:
        value = kwargs.get(key)
        if isinstance(value, _JSON_TYPES):
            raise InputError(f"expected a string, got {type(value).__name__} {value!r}", field=key)


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes")


@lru_cache(maxsize=1)
def known_model_args() -> frozenset[str]:
    """Constructor arguments of lm-eval's model backends (the keys ``--model_args`` may bring)."""
    names: set[str] = set()
    try:
        from lm_eval.api.registry import get_model
    except ImportError:  # pragma: no cover - lm-eval missing: nothing to merge
        return frozenset()
    for backend in MODEL_BACKENDS:
        try:
            cls = get_model(backend)
        except Exception:  # a backend whose engine is not installed here (vllm): read its source instead
            names.update(_init_args_in_source(backend))
            continue
        for klass in getattr(cls, "__mro__", (cls,)):
            init = klass.__dict__.get("__init__")
            if init is not None:
                names.update(p for p in inspect.signature(init).parameters if p not in ("self", "kwargs"))
    return frozenset(names)


_SOURCES = {"vllm": ("lm_eval.models.vllm_causallms", "VLLM")}


def _init_args_in_source(backend: str) -> set[str]:
    """A backend's ``__init__`` arguments read from lm-eval's source, without importing its engine."""
    import ast
    import importlib.util

    module, cls_name = _SOURCES.get(backend, (None, None))
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.origin:
        return set()
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                    args = fn.args.args + fn.args.kwonlyargs
                    return {a.arg for a in args if a.arg != "self"}
    return set()


def check_keys(kwargs: dict[str, Any]) -> None:
    """Refuse a key that looks like a typo of one of ours (``data_dri``) and is no model argument."""
    ours = set(OUR_KEYS) | set(SLICE_KEYS)
    for key in kwargs:
        if key in ours or key in LM_EVAL_KEYS:
            continue
        if difflib.get_close_matches(str(key), OUR_KEYS, n=1, cutoff=0.75) and key not in known_model_args():
            raise unknown_key_error(key, OUR_KEYS, "--metadata")


def _optional_bool(value) -> bool | None:
    return None if value in (None, "", "None", "none") else _truthy(value)


def parse_options(kwargs: dict[str, Any]) -> TaskOptions:
    """Options from the keyword arguments lm-eval passes to ``custom_dataset``."""
    check_keys(kwargs)
    check_types(kwargs)
    run = RunOptions.parse(protocol=kwargs.get("protocol"), order=kwargs.get("order"),
                           overlong=kwargs.get("overlong"), parser=kwargs.get("parser"),
                           gen_tokens=kwargs.get("max_gen_toks"))
    judge = kwargs.get("longrm_judge", "generative")
    if judge not in JUDGES:
        raise InputError(f"unknown judge {judge!r} ({', '.join(JUDGES)})", field="longrm_judge")

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
        run=run,
        data_dir=str(kwargs.get("data_dir") or "hub"),
        revision=kwargs.get("data_revision"),
        max_length=positive_int(kwargs.get("max_length"), "max_length"),
        tokenizer=tokenizer,
        tokenizer_kwargs=tuple(sorted(tok_kwargs.items())),
        model=pretrained if isinstance(pretrained, str) else None,
        max_model_len=positive_int(kwargs.get("max_model_len"), "max_model_len"),
        base_url=str(kwargs["base_url"]) if kwargs.get("base_url") else None,
        tokenized_requests=_optional_bool(kwargs.get("tokenized_requests")),
        add_bos_token=_optional_bool(kwargs.get("add_bos_token")),
    )
