"""Recipe YAML -> dataclasses: the stages of a LongRM training run, in order.

A recipe names a base model and a list of stages. Each stage has a ``kind``
(``sft``, ``alignment`` or ``reward``), training data, the model it starts
from (the previous stage's output by default) and ``args``: fields of the
stage's TRL-style config (`trl.SFTConfig`, `AlignmentConfig`,
`trl.RewardConfig`), on top of the recipe's ``defaults``.

Paths: ``data``/``eval_data`` and a ``./`` or ``../`` ``base_model`` in the
YAML are relative to the recipe file; ``output_dir`` is relative to the
working directory; paths given with ``--set`` are relative to the working
directory. ``$VARS`` and ``~`` are expanded.

Errors name the recipe file and the key (``stages[1].kind``).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrm_tasks.errors import InputError

KINDS = ("sft", "alignment", "reward")
TOP_KEYS = {"name", "description", "base_model", "output_dir", "defaults", "stages"}
STAGE_KEYS = {"name", "kind", "data", "eval_data", "model_from", "lora", "global_batch_size", "args"}
PATH_KEYS = ("data", "eval_data")
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
        raise InputError(f"no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}",
                         path=str(self.path), field="stages")


def config_class(kind: str):
    """The config dataclass whose fields a stage's ``args`` may set."""
    if kind == "sft":
        from trl import SFTConfig

        return SFTConfig
    if kind == "reward":
        from trl import RewardConfig

        return RewardConfig
    from longrm_tasks.train.alignment_config import AlignmentConfig

    return AlignmentConfig


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
                raise InputError(f"no stage named {key!r}", path=str(path), field="--set " + ".".join(keys))
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


def _check_args(args: dict, kind: str, path: Path, where: str) -> dict:
    names = {f.name for f in dataclasses.fields(config_class(kind))}
    for key in args:
        if key == "output_dir":
            raise InputError("is set by `longrm train` (use --output-dir or the recipe's output_dir)",
                             path=str(path), field=f"{where}{key}")
        if key not in names:
            close = [n for n in names if n.startswith(key[:4])][:5]
            hint = f" (similar: {', '.join(sorted(close))})" if close else ""
            raise InputError(f"is not a field of {config_class(kind).__name__}{hint}", path=str(path),
                             field=f"{where}{key}")
    return {key: _number(value) for key, value in args.items()}


def _stage(raw: Any, index: int, defaults: dict, base_dir: Path, path: Path, seen: list[str]) -> Stage:
    where = f"stages[{index}]."
    if not isinstance(raw, dict):
        raise InputError("must be a mapping", path=str(path), field=f"stages[{index}]")
    unknown = set(raw) - STAGE_KEYS
    if unknown:
        raise InputError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(STAGE_KEYS)}", path=str(path),
                         field=f"stages[{index}]")
    name = _require(raw, "name", str, path, where)
    where = f"stages[{index}] ({name})."
    if name in seen:
        raise InputError("duplicate stage name", path=str(path), field=where + "name")
    kind = _require(raw, "kind", str, path, where)
    if kind not in KINDS:
        raise InputError(f"must be one of {', '.join(KINDS)}, got {kind!r}", path=str(path), field=where + "kind")
    paths = {}
    for key in PATH_KEYS:
        if raw.get(key) not in (None, ""):
            value = Path(_expand(str(raw[key])))
            paths[key] = value if value.is_absolute() else (base_dir / value).resolve()
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
    merged = _check_args({**defaults, **args}, kind, path, where + "args.")
    gbs = raw.get("global_batch_size")
    if gbs is not None and (isinstance(gbs, bool) or not isinstance(gbs, int) or gbs < 1):
        raise InputError("must be a positive integer", path=str(path), field=where + "global_batch_size")
    return Stage(name=name, kind=kind, data=paths["data"], eval_data=paths.get("eval_data"),
                 model_from=model_from, args=merged, lora=lora, global_batch_size=gbs)


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read, override (``--set key=value``) and validate a recipe."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("recipe not found", path=str(path))
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
        if keys[-1] in PATH_KEYS + ("output_dir", "base_model") and isinstance(value, str) and value:
            candidate = Path(_expand(value))
            if keys[-1] != "base_model" or candidate.exists():
                value = str(candidate.resolve())
        apply_override(raw, keys, value, path)
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise InputError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}", path=str(path))
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
    output_dir = Path(_expand(str(raw.get("output_dir") or Path("runs") / name)))
    return Recipe(path=path.resolve(), name=name, base_model=base_model, output_dir=output_dir.resolve(),
                  stages=stages, description=str(raw.get("description") or ""))
