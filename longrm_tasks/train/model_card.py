"""The README.md model card written next to each stage's saved model.

It records what a checkpoint is: the recipe and stage that made it, the model
it started from, the data files (with their SHA-256, so a card can be matched
to its data later), the hyper-parameters, and what the data preparation cut.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

KIND_TITLES = {
    "sft": "Stage I SFT (generative judge cold start, TRL SFTTrainer, loss on the assistant turn)",
    "alignment": "Stage II alignment (reference-free multi-reject SimPO-style loss)",
    "reward": "Discriminative reward model (TRL RewardTrainer, Bradley-Terry)",
}
KIND_TAGS = {"sft": ["sft"], "alignment": ["simpo", "alignment"], "reward": ["reward-model", "bradley-terry"]}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_hub_id(model: str) -> bool:
    return not Path(model).exists() and model.count("/") == 1


def render_card(*, recipe, stage, input_model: str, config_values: dict, data_report: dict,
                metrics: dict) -> str:
    """Markdown with a YAML header (``huggingface_hub.ModelCardData``)."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        library_name="transformers",
        base_model=recipe.base_model if _is_hub_id(recipe.base_model) else None,
        tags=["longrm", "trl", "long-context", *KIND_TAGS[stage.kind]],
    )
    files = [("train", stage.data)] + ([("eval", stage.eval_data)] if stage.eval_data else [])
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {recipe.name} / {stage.name}", "",
        f"{KIND_TITLES[stage.kind]}, trained with `longrm train` (longrm-tasks).", "",
        "| | |", "|---|---|",
        f"| recipe | `{recipe.path}` |",
        f"| stage | `{stage.name}` (kind `{stage.kind}`, stage "
        f"{recipe.stages.index(stage) + 1} of {len(recipe.stages)}) |",
        f"| base model of the recipe | `{recipe.base_model}` |",
        f"| this stage started from | `{input_model}` |",
        f"| fine-tuning | {'LoRA ' + str(stage.lora) + ' (merged into the saved weights)' if stage.lora else 'full'} |",
        "", "## Data", "",
        "| split | file | sha256 |", "|---|---|---|",
        *(f"| {split} | `{path}` | `{file_sha256(path)}` |" for split, path in files),
        "",
        "Long examples were cut in the middle of the context (head and tail kept, key passage and "
        "response kept), never dropped:", "",
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
    from huggingface_hub import ModelCard

    card = ModelCard(render_card(**kwargs))
    path = Path(directory) / "README.md"
    card.save(path)
    return path
