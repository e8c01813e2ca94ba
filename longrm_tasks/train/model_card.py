"""The README.md model card written next to each stage's saved model.

It records what a checkpoint is: the recipe and stage that made it, the model
it started from, the data files (with their SHA-256, so a card can be matched
to its data later), the hyper-parameters, and what the data preparation did,
in sentences written from the counts themselves (a card never claims a key
passage was kept when none was). A card travels with the model, so it names
no path of the machine that trained it: files by name (a bundled sample as
``sample:NAME``), stages of the same run by their folder next to this one.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from longrm_tasks.train.stages import STAGES


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_hub_id(model: str) -> bool:
    return not Path(model).exists() and model.count("/") == 1 and not model.startswith((".", "/", "~"))


def portable_name(value: str | Path, *, run_dir: Path | None = None, stage_dir: Path | None = None) -> str:
    """A name for a file or model that holds no machine path.

    Hub ids stay as they are; a bundled sample is ``sample:NAME``; a folder of the
    same run is named relative to this stage's folder (``../sft``); anything else
    is its base name.
    """
    from longrm_tasks.train.sample.generate import SAMPLE_DIR, SAMPLES

    text = str(value)
    if _is_hub_id(text):
        return text
    path = Path(text).resolve()
    for name, file in SAMPLES.items():
        if path == (SAMPLE_DIR / file).resolve():
            return f"sample:{name}"
    if run_dir is not None and stage_dir is not None:
        try:
            path.relative_to(run_dir.resolve())
        except ValueError:
            pass
        else:
            return Path("..", path.relative_to(run_dir.resolve())).as_posix() if path != stage_dir.resolve() \
                else "."
    return path.name


def _first(stage, split: str) -> str:
    limit = getattr(stage, "max_records", None)
    return f" (first {limit} records)" if split == "train" and limit else ""


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def fitting_sentences(split: str, stats: dict) -> str:
    """What fitting did to one split, in words taken from its counts."""
    examples = stats.get("examples", 0)
    truncated = stats.get("truncated", 0)
    if not truncated:
        return (f"- {split}: {_count(examples, 'example')}, none longer than `max_length`: nothing was cut, "
                "nothing dropped.")
    kept, cut = stats.get("key_passages_kept", 0), stats.get("key_passages_cut", 0)
    untagged = truncated - kept - cut
    parts = [f"{_count(truncated, 'example')} of {examples} cut in the middle of the context "
             f"({stats.get('tokens_dropped', 0)} tokens dropped; longest input before the cut "
             f"{stats.get('longest_input', 0)} tokens)"]
    key = []
    if kept:
        key.append(f"kept whole in {kept}")
    if cut:
        key.append(f"longer than the room left and cut in {cut}")
    if untagged:
        key.append(f"not tagged in {untagged}")
    parts.append("key passage " + ", ".join(key))
    tails = stats.get("tails_cut", 0)
    parts.append("the question/response after `</context>` kept whole in all" if not tails else
                 f"the question/response after `</context>` too long to keep whole and cut in {tails}")
    extra = []
    if stats.get("extra_rejected_ignored"):
        extra.append(f"{stats['extra_rejected_ignored']} with more than V rejected judgments used the first V")
    if stats.get("padded_rejected"):
        extra.append(f"{stats['padded_rejected']} padded to V rejected judgments by repetition")
    text = f"- {split}: " + "; ".join(parts) + "; none dropped, responses never cut."
    if extra:
        sentence = "; ".join(extra)
        text += " " + sentence[0].upper() + sentence[1:] + "."
    return text


def render_card(*, recipe, stage, input_model: str, config_values: dict, data_report: dict,
                metrics: dict) -> str:
    """Markdown with a YAML header (``huggingface_hub.ModelCardData``)."""
    from huggingface_hub import ModelCardData

    kind = STAGES.get(stage.kind)
    run_dir = Path(recipe.output_dir)
    here = run_dir / stage.name
    data = ModelCardData(
        library_name="transformers",
        base_model=recipe.base_model if _is_hub_id(recipe.base_model) else None,
        tags=["longrm", "trl", "long-context", *kind.tags],
    )
    files = [("train", stage.data)] + ([("eval", stage.eval_data)] if stage.eval_data else [])
    base = "tiny-random (a tiny random model built on the spot)" if recipe.base_model == "tiny-random" else \
        f"`{portable_name(recipe.base_model)}`"
    started = portable_name(input_model, run_dir=run_dir, stage_dir=here)
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {recipe.name} / {stage.name}", "",
        f"{kind.title}, trained with `longrm train` (longrm-tasks).", "",
        "| | |", "|---|---|",
        f"| recipe | `{Path(recipe.path).name}` (name `{recipe.name}`) |",
        f"| stage | `{stage.name}` (kind `{stage.kind}`, stage "
        f"{recipe.stages.index(stage) + 1} of {len(recipe.stages)}) |",
        f"| base model of the recipe | {base} |",
        f"| this stage started from | `{started}` |",
        f"| fine-tuning | {'LoRA ' + str(stage.lora) + ' (merged into the saved weights)' if stage.lora else 'full'} |",
        "", "## Data", "",
        "| split | file | sha256 |", "|---|---|---|",
        *(f"| {split} | `{portable_name(path)}`{_first(stage, split)} | `{file_sha256(path)}` |"
          for split, path in files),
        "",
        "What fitting to `max_length` did (prompts longer than `max_length` minus the response are cut in the "
        "middle of the context, around a tagged key passage and before the question/response tail):", "",
        *(fitting_sentences(split, stats) for split, stats in data_report.items()), "",
        "```json", _json(data_report), "```", "",
        "## Hyper-parameters", "",
        "Set by the recipe (everything else is the config class default):", "",
        "```json", _json(stage.args), "```", "",
        "Effective values of the main ones:", "",
        "```json", _json(config_values), "```", "",
        "## Training result", "",
        "```json", _json(metrics), "```", "",
    ]
    return "\n".join(lines)


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)


def write_card(directory: str | Path, **kwargs) -> Path:
    from longrm_tasks.atomic import write_text

    path = Path(directory) / "README.md"
    write_text(path, render_card(**kwargs))
    return path
