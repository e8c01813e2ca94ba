"""`longrm train`: run a training recipe (SFT -> alignment, or a Bradley-Terry reward model).

    longrm train --config recipes/tiny_cpu.yaml
    longrm train --config recipes/generative_longrm.yaml --stage alignment --resume \\
        --set base_model=Qwen/Qwen3-8B --set stages.alignment.args.beta=2.0

Multi-GPU: ``accelerate launch --config_file recipes/accelerate/zero3.yaml -m longrm_tasks.cli train ...``
(see recipes/README.md).
"""
from __future__ import annotations

HELP = "train a long-context reward model with a recipe (SFT, alignment, reward stages on TRL)"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, metavar="RECIPE", help="recipe YAML (see recipes/)")
    parser.add_argument("--stage", metavar="NAME",
                        help="run only this stage (it starts from the previous stage's finished output)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where stage outputs go (default: the recipe's output_dir, else runs/<recipe name>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a recipe value, e.g. stages.sft.args.max_steps=10 or "
                             "defaults.learning_rate=1e-5 (repeatable; VALUE is YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="skip finished stages and continue an unfinished one from its last checkpoint")


def resume_command(args) -> str:
    """The command that continues this run: the same options plus ``--resume``."""
    import shlex

    words = ["longrm", "train", "--config", args.config]
    for override in args.overrides:
        words += ["--set", override]
    if args.output_dir:
        words += ["--output-dir", args.output_dir]
    if args.stage:
        words += ["--stage", args.stage]
    return shlex.join(words + ["--resume"])


def run(args) -> int:
    import json
    import logging

    from longrm_tasks.train.recipe import load_recipe
    from longrm_tasks.train.runner import run_recipe

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe(args.config, overrides)
    if args.stage:
        recipe.stage(args.stage)  # fail on a typo before any work
    try:
        results = run_recipe(recipe, only=args.stage, resume=args.resume)
    except KeyboardInterrupt:
        # `longrm` prints this one line and exits 130 (cli.guarded); the checkpoints on disk stay.
        raise KeyboardInterrupt(f"interrupted; finished stages and saved checkpoints in {recipe.output_dir} are "
                                f"kept. Resume with: {resume_command(args)}") from None
    for result in results:
        print(json.dumps({"stage": result["stage"], "kind": result["kind"],
                          "output": str(recipe.output_dir / result["stage"]),
                          "global_step": result["global_step"], "resumed_from": result["resumed_from"],
                          "train_loss": result["metrics"].get("train_loss"), "data": result["data"]},
                         default=str))
    return 0
