"""Recipe YAML -> dataclasses: the stages of a LongRM training run, in order.

A recipe names a base model and a list of stages. Each stage has a ``kind``
(``sft``, ``alignment`` or ``reward``), training data, the model it starts
from (the previous stage's output by default) and ``args``: fields of the
stage's TRL-style config (`trl.SFTConfig`, `AlignmentConfig`,
`trl.RewardConfig`), on top of the recipe's ``defaults``.

Paths: ``data``/``eval_data`` and a ``./`` or ``../`` ``base_model`` in the
YAML are relative to the recipe file; ``output_dir`` is relative to the
working directory; paths given with ``--set`` are relative to the working
directory. ``$VARS`` and ``~`` are expanded. ``sample:NAME`` names a data file
bundled with the package (`longrm_tasks.train.sample.generate`: ``sample:sft``,
``sample:alignment``), so a recipe runs from a clean clone or a wheel.

The stage kinds and their config classes come from one table
(`longrm_tasks.train.stages`). Errors name the recipe file and the key
(``stages[1].kind``); a misspelt key names the closest known one, a value of
the wrong type names the type its config field expects.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrm_tasks.errors import InputError, closest_name
from longrm_tasks.jsonl import non_finite_field
from longrm_tasks.paths import check_name, file_problem
from longrm_tasks.train.stages import STAGES

KINDS = STAGES.names()
TOP_KEYS = {"name", "description", "base_model", "output_dir", "defaults", "stages"}
STAGE_KEYS = {"name", "kind", "data", "eval_data", "max_records", "model_from", "lora", "global_batch_size", "args"}
PATH_KEYS = ("data", "eval_data")
SAMPLE_SCHEME = "sample:"  # data: sample:alignment -> the Stage II sample shipped in the package
# Marks a base model that is built on the spot (random weights, for plumbing checks on CPU).
TINY_RANDOM = "tiny-random"
# PyYAML reads 2e-6 (no dot) as a string; hyper-parameters that look like numbers are numbers.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Stage:
    name: str
    kind: str
    data: Path
    eval_data: Path | None = None
    model_from: str = "previous"  # "previous", "base" or the name of an earlier stage
    args: dict[str, Any] = field(default_factory=dict)  # recipe defaults + stage args (config fields)
    lora: dict[str, Any] | None = None  # peft LoraConfig fields; None = full fine-tuning
    global_batch_size: int | None = None  # sets gradient_accumulation_steps from the world size
    max_records: int | None = None  # train on the first N records of ``data`` only (None: all)


@dataclass
class Recipe:
    path: Path
    name: str
    base_model: str
    output_dir: Path
    stages: list[Stage]
    description: str = ""

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        names = [s.name for s in self.stages]
        raise InputError(f"no stage {name!r}{did_you_mean(name, names)}; stages: {', '.join(names)}",
                         path=str(self.path), field="stages")


def config_class(kind: str):
    """The config dataclass whose fields a stage's ``args`` may set."""
    return STAGES.get(kind).config_class()


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = closest_name(name, [k for k in known if k is not None])
    return f" (did you mean {close!r}?)" if close else ""


def _number(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and not re.search(r"[.eE]", value) else number
    return value


def _expand(value: str) -> str:
    return os.path.expanduser(os.path.expandvars(value))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``stages.sft.args.max_steps=3`` -> (["stages", "sft", "args", "max_steps"], 3)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects KEY=VALUE, got {text!r}", field="--set")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise InputError(f"value is not valid YAML: {err}", field=f"--set {key}") from None
    return key.strip().split("."), parsed


def apply_override(raw: dict, keys: list[str], value: Any, path: Path) -> None:
    """Set ``value`` at ``keys`` in the raw recipe; stages are addressed by name (or index)."""
    node: Any = raw
    for key in keys[:-1]:
        if isinstance(node, list):  # the stages list
            matches = [s for s in node if isinstance(s, dict) and s.get("name") == key]
            if not matches and key.isdigit() and int(key) < len(node):
                matches = [node[int(key)]]
            if not matches:
                names = [s.get("name") for s in node if isinstance(s, dict)]
                raise InputError(f"no stage named {key!r}{did_you_mean(key, names)}", path=str(path),
                                 field="--set " + ".".join(keys))
            node = matches[0]
            continue
        if not isinstance(node, dict):
            raise InputError("does not lead to a mapping", path=str(path), field="--set " + ".".join(keys))
        node = node.setdefault(key, [] if key == "stages" else {})
    if not isinstance(node, dict):
        raise InputError("does not lead to a mapping", path=str(path), field="--set " + ".".join(keys))
    node[keys[-1]] = value


def _require(mapping: dict, key: str, kind: type, path: Path, where: str) -> Any:
    if key not in mapping or mapping[key] in (None, ""):
        raise InputError("is required", path=str(path), field=where + key)
    if not isinstance(mapping[key], kind):
        raise InputError(f"must be a {kind.__name__}, got {type(mapping[key]).__name__}", path=str(path),
                         field=where + key)
    return mapping[key]


def _type_name(tp) -> str:
    """A field type in words: ``float``, ``int or null``, ``one of 'linear', 'cosine', ...``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        names, args = [], typing.get_args(tp)
        if str in args and any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args):
            args = tuple(a for a in args if a is not str)
        for arg in args:
            name = _type_name(arg)
            if name not in names:
                names.append(name)
        return " or ".join(names)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is not None:
        tp = origin
    if tp is dict:
        return "a mapping"
    if tp is list:
        return "a list"
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp) -> bool:
    """Whether a YAML value fits a config field's annotation (unknown annotations accept anything)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and str in args:  # `SchedulerType | str`: the string must still name a member
            args = tuple(a for a in args if a is not str)
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp}
    if origin is not None:
        tp = origin
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp in (str, dict, list):
        return isinstance(value, tp)
    return True  # classes such as accelerate's ParallelismConfig: the config itself checks them


def _field_types(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be evaluated: fall back to what the dataclass holds
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _check_args(args: dict, kind: str, path: Path, where: str, from_defaults=frozenset()) -> dict:
    """Known fields with values of the type the config class declares; anything else names its key."""
    cls = config_class(kind)
    types_ = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    checked = {}
    for key, value in args.items():
        field = f"defaults.{key}" if key in from_defaults else f"{where}{key}"
        if key == "output_dir":
            raise InputError("is set by `longrm train` (use --output-dir or the recipe's output_dir)",
                             path=str(path), field=field)
        if key not in names:
            raise InputError(f"is not a field of {cls.__name__}{did_you_mean(key, names)}", path=str(path),
                             field=field)
        value = _number(value)
        if isinstance(value, float) and not math.isfinite(value):  # "1e999" read as a number is inf
            raise InputError(f"must be a finite number, got {value!r}", path=str(path), field=field)
        tp = types_.get(key, Any)
        if not _matches(value, tp):
            raise InputError(f"must be {_type_name(tp)} ({cls.__name__}.{key}), got {value!r}", path=str(path),
                             field=field)
        checked[key] = value
    return checked


def _stage(raw: Any, index: int, defaults: dict, base_dir: Path, path: Path, seen: list[str]) -> Stage:
    where = f"stages[{index}]."
    if not isinstance(raw, dict):
        raise InputError("must be a mapping", path=str(path), field=f"stages[{index}]")
    unknown = sorted(set(raw) - STAGE_KEYS)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], STAGE_KEYS)}; allowed: "
                         f"{', '.join(sorted(STAGE_KEYS))}", path=str(path), field=f"stages[{index}]")
    name = _require(raw, "name", str, path, where)
    # The stage name becomes OUTPUT_DIR/<name>: one safe path component, refused here, before any work.
    check_name(name, path=path, field=where + "name")
    where = f"stages[{index}] ({name})."
    if name in seen:
        raise InputError("duplicate stage name", path=str(path), field=where + "name")
    kind = _require(raw, "kind", str, path, where)
    if kind not in STAGES:
        raise InputError(f"must be one of {', '.join(KINDS)}, got {kind!r}{did_you_mean(kind, KINDS)}",
                         path=str(path), field=where + "kind")
    paths = {}
    for key in PATH_KEYS:
        if raw.get(key) not in (None, ""):
            paths[key] = _data_path(str(raw[key]), base_dir, path, where + key)
    if "data" not in paths:
        raise InputError("is required", path=str(path), field=where + "data")
    model_from = raw.get("model_from", "previous")
    if model_from not in ("previous", "base") and model_from not in seen:
        raise InputError(f"must be 'previous', 'base' or an earlier stage ({', '.join(seen) or 'none'})",
                         path=str(path), field=where + "model_from")
    args = raw.get("args") or {}
    lora = raw.get("lora")
    for key, value in (("args", args), ("lora", lora)):
        if value is not None and not isinstance(value, dict):
            raise InputError("must be a mapping", path=str(path), field=where + key)
    merged = _check_args({**defaults, **args}, kind, path, where + "args.", frozenset(set(defaults) - set(args)))
    gbs = raw.get("global_batch_size")
    if gbs is not None and (isinstance(gbs, bool) or not isinstance(gbs, int) or gbs < 1):
        raise InputError("must be a positive integer", path=str(path), field=where + "global_batch_size")
    max_records = raw.get("max_records")
    if max_records is not None and (isinstance(max_records, bool) or not isinstance(max_records, int)
                                    or max_records < 1):
        raise InputError("must be a positive integer", path=str(path), field=where + "max_records")
    return Stage(name=name, kind=kind, data=paths["data"], eval_data=paths.get("eval_data"),
                 model_from=model_from, args=merged, lora=lora, global_batch_size=gbs, max_records=max_records)


def _data_path(text: str, base_dir: Path, path: Path, field: str) -> Path:
    """A bundled ``sample:NAME``, an absolute path, or a path relative to the recipe's folder."""
    if text.startswith(SAMPLE_SCHEME):
        from longrm_tasks.train.sample.generate import SAMPLES, sample_path

        name = text[len(SAMPLE_SCHEME):]
        if name not in SAMPLES:
            raise InputError(f"no bundled sample {name!r}{did_you_mean(name, SAMPLES)}; bundled: "
                             f"{', '.join(SAMPLE_SCHEME + n for n in SAMPLES)}", path=str(path), field=field)
        return sample_path(name)
    value = Path(_expand(text))
    return value if value.is_absolute() else (base_dir / value).resolve()


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read, override (``--set key=value``) and validate a recipe."""
    import yaml

    path = Path(path)
    problem = file_problem(path)  # stat only: a FIFO given as the recipe must not block the read
    if problem is not None:
        raise InputError("recipe not found" if problem == "file not found" else problem, path=str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"invalid YAML: {getattr(err, 'problem', err)}", path=str(path),
                         line=mark.line + 1 if mark else None) from None
    if not isinstance(raw, dict):
        raise InputError("a recipe must be a YAML mapping", path=str(path))
    base_dir = path.resolve().parent
    for text in overrides:
        keys, value = parse_override(text)
        # Paths typed on the command line are relative to where the user is, not to the recipe.
        if (keys[-1] in PATH_KEYS + ("output_dir", "base_model") and isinstance(value, str) and value
                and not value.startswith(SAMPLE_SCHEME)):
            candidate = Path(_expand(value))
            if keys[-1] != "base_model" or candidate.exists():
                value = str(candidate.resolve())
        apply_override(raw, keys, value, path)
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], TOP_KEYS)}; allowed: "
                         f"{', '.join(sorted(TOP_KEYS))}", path=str(path))
    # YAML's .nan / .inf (and --set values) are numbers no hyper-parameter can take.
    bad = non_finite_field(raw)
    if bad is not None:
        raise InputError(f"must be a finite number, got {bad[1]!r}", path=str(path), field=bad[0])
    base_model = _expand(str(_require(raw, "base_model", str, path, "")))
    if base_model.startswith(("./", "../")):
        base_model = str((base_dir / base_model).resolve())
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError("must be a mapping of config fields", path=str(path), field="defaults")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise InputError("must be a non-empty list of stages", path=str(path), field="stages")
    stages: list[Stage] = []
    for index, item in enumerate(stages_raw):
        stages.append(_stage(item, index, defaults, base_dir, path, [s.name for s in stages]))
    name = str(raw.get("name") or path.stem)
    # The default output folder is runs/<name>: the same one-component rule as stage names.
    check_name(name, path=path, field="name" if raw.get("name") else "name (taken from the file name: set name:)")
    output_dir = Path(_expand(str(raw.get("output_dir") or Path("runs") / name)))
    return Recipe(path=path.resolve(), name=name, base_model=base_model, output_dir=output_dir.resolve(),
                  stages=stages, description=str(raw.get("description") or ""))
