"""Run a recipe's stages in order: each starts from the previous stage's saved model.

Layout: ``OUTPUT_DIR/<stage>/`` holds the Trainer's ``checkpoint-N`` folders
while a stage runs, then the final model, tokenizer, model card (README.md)
and ``longrm_stage.json``, the completion marker. A stage with the marker is
finished: ``--resume`` skips it and restarts an unfinished one from its last
checkpoint (Trainer's ``resume_from_checkpoint``). Progress bars are the
Trainer's tqdm bars.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from longrm_tasks.errors import InputError
from longrm_tasks.train.recipe import TINY_RANDOM, Recipe, Stage, config_class

logger = logging.getLogger(__name__)

MARKER = "longrm_stage.json"
# Config values worth showing in a model card even when the recipe leaves them at their default.
CARD_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
               "gradient_accumulation_steps", "max_length", "bf16", "gradient_checkpointing", "lr_scheduler_type",
               "seed", "beta", "gamma", "num_rejected", "nll_weight", "share_context",
               "completion_only_loss", "center_rewards_coefficient")


def stage_dir(recipe: Recipe, stage: Stage) -> Path:
    return recipe.output_dir / stage.name


def is_finished(recipe: Recipe, stage: Stage) -> bool:
    return (stage_dir(recipe, stage) / MARKER).is_file()


def data_parallel_size() -> int:
    """Processes that see different batches: the world size over context/tensor/sequence parallel groups."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    split = 1
    for name in ("CP", "TP", "SP"):
        split *= int(os.environ.get(f"PARALLELISM_CONFIG_{name}_SIZE", "1") or 1)
    return max(1, world // split)


def accumulation_steps(global_batch_size: int, per_device: int, dp_size: int, stage_name: str) -> int:
    """Gradient accumulation that keeps ``global_batch_size`` on any number of GPUs."""
    per_step = per_device * dp_size
    if global_batch_size % per_step:
        raise InputError(f"global_batch_size {global_batch_size} is not a multiple of "
                         f"per_device_train_batch_size x data-parallel processes = {per_step}",
                         field=f"stages.{stage_name}.global_batch_size")
    return global_batch_size // per_step


def build_config(stage: Stage, output_dir: Path):
    """The stage's TRL-style config: recipe args on top of the class defaults, logging to nowhere by default."""
    cls = config_class(stage.kind)
    values = {"report_to": "none", **stage.args, "output_dir": str(output_dir)}
    if stage.global_batch_size is not None:
        per_device = values.get("per_device_train_batch_size", 8)  # TrainingArguments' default
        values["gradient_accumulation_steps"] = accumulation_steps(
            stage.global_batch_size, per_device, data_parallel_size(), stage.name)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise InputError(f"invalid hyper-parameters for {cls.__name__}: {err}",
                         field=f"stages.{stage.name}.args") from None


def peft_config(stage: Stage):
    if not stage.lora:
        return None
    from peft import LoraConfig, TaskType

    task = TaskType.SEQ_CLS if stage.kind == "reward" else TaskType.CAUSAL_LM
    try:
        return LoraConfig(task_type=task, **stage.lora)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid LoRA options: {err}", field=f"stages.{stage.name}.lora") from None


def alignment_trainer(model_path: str, args, train_file, eval_file=None, peft_config=None, callbacks=None):
    """Stage II: the multi-reject alignment trainer on its tokenised data; returns (trainer, data report)."""
    from transformers import AutoTokenizer

    from longrm_tasks.train.alignment_data import load_alignment_dataset
    from longrm_tasks.train.alignment_trainer import AlignmentTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def load(path):
        return load_alignment_dataset(str(path), tokenizer, max_length=args.max_length,
                                      num_rejected=args.num_rejected, pad_rejected=args.pad_rejected,
                                      return_stats=True)

    train, stats = load(train_file)
    report = {"train": vars(stats)}
    eval_dataset = None
    if eval_file is not None:
        eval_dataset, eval_stats = load(eval_file)
        report["eval"] = vars(eval_stats)
    trainer = AlignmentTrainer(model_path, args=args, train_dataset=train, eval_dataset=eval_dataset,
                               processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    return trainer, report


def _trainer_factory(kind: str):
    if kind == "sft":
        from longrm_tasks.train.sft import sft_trainer

        return sft_trainer
    if kind == "reward":
        from longrm_tasks.train.reward import reward_trainer

        return reward_trainer
    return alignment_trainer


def _step_counter():
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        """Counts optimiser steps run in this invocation (a resumed stage runs only the rest)."""

        def __init__(self):
            self.steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return StepCounter()


def _save_final(trainer, output_dir: Path) -> None:
    """Save a plain model (LoRA merged in) so the next stage and users load it with from_pretrained."""
    from accelerate.utils import is_peft_model

    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model):
        trainer.save_model(str(output_dir / "adapter"))
        if trainer.is_world_process_zero():
            model.merge_and_unload().save_pretrained(str(output_dir))
            trainer.processing_class.save_pretrained(str(output_dir))
    else:
        trainer.save_model(str(output_dir))


def _base_model(recipe: Recipe) -> str:
    if recipe.base_model != TINY_RANDOM:
        return recipe.base_model
    path = recipe.output_dir / "base-model"
    if not (path / "config.json").is_file():
        from longrm_tasks.testing import save_tiny_model

        save_tiny_model(path, hidden=32, layers=2)
    return str(path)


def input_model(recipe: Recipe, stage: Stage) -> str:
    index = recipe.stages.index(stage)
    source = stage.model_from
    if source == "base" or (source == "previous" and index == 0):
        return _base_model(recipe)
    previous = recipe.stages[index - 1] if source == "previous" else recipe.stage(source)
    if not is_finished(recipe, previous):
        raise InputError(f"stage {stage.name!r} starts from stage {previous.name!r}, which has not finished "
                         f"(no {stage_dir(recipe, previous) / MARKER}); run it first",
                         path=str(recipe.path), field=f"stages.{stage.name}.model_from")
    return str(stage_dir(recipe, previous))


def run_stage(recipe: Recipe, stage: Stage, *, resume: bool = False, callbacks=()) -> dict:
    from transformers.trainer_utils import get_last_checkpoint

    out = stage_dir(recipe, stage)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise InputError(f"{out} already holds a run of stage {stage.name!r}; pass --resume to continue it or "
                         "choose another --output-dir", path=str(recipe.path))
    model_path = input_model(recipe, stage)
    args = build_config(stage, out)
    counter = _step_counter()
    trainer, data_report = _trainer_factory(stage.kind)(
        model_path, args, stage.data, stage.eval_data, peft_config(stage), [counter, *callbacks])
    logger.info("stage %s (%s) from %s%s", stage.name, stage.kind, model_path,
                f", resuming from {last}" if last else "")
    result = trainer.train(resume_from_checkpoint=last)
    _save_final(trainer, out)
    summary = {
        "recipe": str(recipe.path), "stage": stage.name, "kind": stage.kind, "input_model": model_path,
        "global_step": trainer.state.global_step, "resumed_from": last and Path(last).name,
        "steps_this_run": counter.steps, "data": data_report, "metrics": result.metrics,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if trainer.is_world_process_zero():
        from longrm_tasks.train.model_card import write_card

        config_values = {k: getattr(args, k) for k in CARD_FIELDS if hasattr(args, k)}
        write_card(out, recipe=recipe, stage=stage, input_model=model_path, config_values=config_values,
                   data_report=data_report, metrics=result.metrics)
        (out / MARKER).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def check_data(recipe: Recipe, stages: list[Stage]) -> None:
    """Fail before any training when a stage's data file is missing (not after hours of stage 1)."""
    for stage in stages:
        for key in ("data", "eval_data"):
            path = getattr(stage, key)
            if path is None or path.is_file():
                continue
            hint = " (an environment variable in it is not set)" if "$" in str(path) else ""
            raise InputError(f"data file not found: {path}{hint}", path=str(recipe.path),
                             field=f"stages.{stage.name}.{key}")


def run_recipe(recipe: Recipe, *, only: str | None = None, resume: bool = False, callbacks=()) -> list[dict]:
    """Run every stage (or only ``only``), skipping finished ones when resuming."""
    stages = [recipe.stage(only)] if only else recipe.stages
    check_data(recipe, [s for s in stages if not is_finished(recipe, s)])
    results = []
    for stage in stages:
        if is_finished(recipe, stage):
            if not resume:
                raise InputError(f"stage {stage.name!r} already finished in {stage_dir(recipe, stage)}; pass "
                                 "--resume to skip it or choose another --output-dir", path=str(recipe.path))
            logger.info("stage %s already finished, skipping", stage.name)
            results.append(json.loads((stage_dir(recipe, stage) / MARKER).read_text(encoding="utf-8")))
            continue
        results.append(run_stage(recipe, stage, resume=resume, callbacks=callbacks))
    return results
