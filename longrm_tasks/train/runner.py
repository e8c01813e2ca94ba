"""Run a recipe's stages in order: each starts from the previous stage's saved model.

Layout: ``OUTPUT_DIR/<stage>/`` holds the Trainer's ``checkpoint-N`` folders
while a stage runs, then the final model, tokenizer, model card (README.md)
and ``longrm_stage.json``, the completion marker. A stage with the marker is
finished: ``--resume`` skips it and restarts an unfinished one from its last
*complete* checkpoint (Trainer's ``resume_from_checkpoint``): the Trainer writes
``trainer_state.json`` last, so a ``checkpoint-N`` without it was cut short
by a kill during the save; it is set aside (renamed ``incomplete-checkpoint-N``)
and the run says so. Progress bars are the Trainer's tqdm bars.

Which config class, trainer and LoRA task type a stage uses comes from the
stage table (`longrm_tasks.train.stages`). Everything that can fail fast is
checked in `preflight` before the first stage spends hours.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from longrm_tasks.atomic import check_writable, out_of_space, write_text
from longrm_tasks.errors import InputError
from longrm_tasks.paths import contained, file_problem
from longrm_tasks.train.records import DataFile
from longrm_tasks.train.recipe import TINY_RANDOM, Recipe, Stage, config_class
from longrm_tasks.train.stages import STAGES

logger = logging.getLogger(__name__)

MARKER = "longrm_stage.json"
TRAINER_STATE = "trainer_state.json"  # written last in a Trainer checkpoint: its presence marks a complete save
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Config values worth showing in a model card even when the recipe leaves them at their default.
CARD_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
               "gradient_accumulation_steps", "max_length", "bf16", "activation_checkpointing",
               "adam_beta1", "adam_beta2", "weight_decay", "max_grad_norm", "lr_scheduler_type",
               "lr_scheduler_kwargs", "warmup_steps", "seed", "beta", "gamma", "num_rejected", "nll_weight",
               "share_context", "completion_only_loss", "center_rewards_coefficient", "rejected_aggregation")


def stage_dir(recipe: Recipe, stage: Stage) -> Path:
    """OUTPUT_DIR/<stage>; refused when it would resolve outside OUTPUT_DIR (a symlink planted there)."""
    return contained(recipe.output_dir, stage.name, field="--output-dir")


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

    task = TaskType[STAGES.get(stage.kind).peft_task]
    try:
        return LoraConfig(task_type=task, **stage.lora)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid LoRA options: {err}", field=f"stages.{stage.name}.lora") from None


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
    path = contained(recipe.output_dir, "base-model", field="--output-dir")
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


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(out: Path) -> tuple[Path | None, list[Path]]:
    """(newest checkpoint with a readable trainer_state.json, newer ones without it)."""
    if not out.is_dir():
        return None, []
    found = sorted((int(m.group(1)), p) for p in out.iterdir()
                   if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    incomplete = []
    for _, path in reversed(found):
        if _complete(path):
            return path, incomplete
        incomplete.append(path)
    return None, incomplete


def _set_aside(incomplete: list[Path], resume_from: Path | None, stage: Stage) -> list[str]:
    """Rename cut-short checkpoints out of the Trainer's way (it would resume from or rotate them)."""
    names = []
    for path in incomplete:
        target = path.with_name(f"incomplete-{path.name}")
        if target.exists():
            shutil.rmtree(target)
        path.rename(target)
        names.append(path.name)
        logger.warning("stage %s: %s is incomplete (no %s: its save was interrupted); set aside as %s, "
                       "resuming from %s", stage.name, path.name, TRAINER_STATE, target.name,
                       resume_from.name if resume_from else "the start of the stage")
    return names


def run_stage(recipe: Recipe, stage: Stage, *, resume: bool = False, callbacks=()) -> dict:
    out = stage_dir(recipe, stage)
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise InputError(f"{out} already holds a run of stage {stage.name!r}; pass --resume to continue it or "
                         "choose another --output-dir", path=str(recipe.path))
    last, incomplete = last_complete_checkpoint(out)
    set_aside = _set_aside(incomplete, last, stage)
    last = str(last) if last else None
    model_path = input_model(recipe, stage)
    args = build_config(stage, out)
    counter = _step_counter()
    train_file = DataFile(stage.data, stage.max_records) if stage.max_records else stage.data
    trainer, data_report = STAGES.get(stage.kind).trainer_factory()(
        model_path, args, train_file, stage.eval_data, peft_config(stage), [counter, *callbacks])
    logger.info("stage %s (%s) from %s%s", stage.name, stage.kind, model_path,
                f", resuming from {last}" if last else "")
    try:
        result = trainer.train(resume_from_checkpoint=last)
        _save_final(trainer, out)
    except Exception as err:  # a full disk while a checkpoint is saved: torch/safetensors name no file
        full = out_of_space(err, out, hint="the last complete checkpoint is kept: free space, then rerun with "
                                           "--resume")
        if full is None:
            raise
        raise full from err
    summary = {
        "recipe": str(recipe.path), "stage": stage.name, "kind": stage.kind, "input_model": model_path,
        "global_step": trainer.state.global_step, "resumed_from": last and Path(last).name,
        "incomplete_checkpoints_set_aside": set_aside,
        "steps_this_run": counter.steps, "data": data_report, "metrics": result.metrics,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if trainer.is_world_process_zero():
        from longrm_tasks.train.model_card import write_card

        config_values = {k: getattr(args, k) for k in CARD_FIELDS if hasattr(args, k)}
        write_card(out, recipe=recipe, stage=stage, input_model=model_path, config_values=config_values,
                   data_report=data_report, metrics=result.metrics)
        write_text(out / MARKER, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def check_data(recipe: Recipe, stages: list[Stage]) -> None:
    """Fail before any training when a stage's data file is missing (not after hours of stage 1)."""
    for stage in stages:
        for key in ("data", "eval_data"):
            path = getattr(stage, key)
            problem = None if path is None else file_problem(path)  # stat only: never opens a FIFO
            if problem is None:
                continue
            if problem != "file not found":  # a folder, FIFO, broken link... named for what it is
                raise InputError(f"data file {path} {problem}", path=str(recipe.path),
                                 field=f"stages.{stage.name}.{key}")
            hint = " (an environment variable in it is not set)" if "$" in str(path) else ""
            raise InputError(f"data file not found: {path}{hint}", path=str(recipe.path),
                             field=f"stages.{stage.name}.{key}")


def preflight(recipe: Recipe, stages: list[Stage]) -> None:
    """Checks that need no training, for every stage about to run, before the first one starts.

    Data files must exist and the output folders be writable; then each stage kind's own check from the stage table
    (``StageKind.preflight``, e.g. whether the model supports an option such as
    shared-context attention) runs with the stage and the recipe's base model, and may
    refuse in one line (``InputError``) or adjust ``stage.args`` and say so.
    """
    check_data(recipe, stages)
    for stage in stages:  # an output folder under a file or in a read-only place: one line, before training
        check_writable(stage_dir(recipe, stage) / MARKER, "--output-dir", make_parents=True)
    for stage in stages:
        check = STAGES.get(stage.kind).preflight_check()
        if check is not None:
            check(stage, _base_model(recipe))


def run_recipe(recipe: Recipe, *, only: str | None = None, resume: bool = False, callbacks=()) -> list[dict]:
    """Run every stage (or only ``only``), skipping finished ones when resuming."""
    stages = [recipe.stage(only)] if only else recipe.stages
    preflight(recipe, [s for s in stages if not is_finished(recipe, s)])
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
