"""`longrm eval ...`: lm-eval's own CLI with our tasks and ``hf-rm`` / ``vllm-rm`` added explicitly.

For people who run without the start-up hook (``LONGRM_TASKS_NO_HOOK=1``) or
who prefer to see where the tasks come from: it registers our models, puts our
task folder into every ``TaskManager`` of this process, then hands the
arguments, untouched, to lm-eval's command line. Anything ``lm_eval`` accepts
works here, subcommands included:

    longrm eval --model hf --model_args pretrained=Qwen/Qwen3-8B --tasks long_rewardbench
    longrm eval ls tasks

``longrm eval`` alone, ``-h`` or ``--help`` print what is ours (the tasks and
the ``--metadata`` options) and point to lm-eval's own help. Failures (a bad
option, a bad record, an lm-eval outside the supported versions) reach the user
as one line through ``longrm_tasks.cli``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from pathlib import Path

HELP = "run lm-eval (same arguments as `lm_eval`) with the Long-RewardBench tasks and the hf-rm/vllm-rm models"

# Our `--metadata` keys (`adapters.lm_eval.options.OUR_KEYS`; a test keeps the two in step) -> (default, meaning).
METADATA_OPTIONS = {
    "data_dir": ("hub", "'hub' (LCM-Lab/LongRewardBench), 'sample' (bundled synthetic sample) or a folder of "
                        "{Config}.jsonl, relative to the working directory"),
    "data_revision": ("-", "revision of the hub dataset"),
    "protocol": ("paper", "'paper': the reference evaluator's prompts and 128K head+tail cut, prompts the model "
                          "cannot hold scored wrong; 'fit': drop the middle of the context so prompt + generation "
                          "fit the model, instructions and answers whole"),
    "order": ("paper", "'paper' (the reference's permutations), 'both' (every item also reversed), 'hash:SEED'"),
    "max_length": ("the model's", "context length to fit/check against (else model argument max_length or the "
                                  "model config)"),
    "overlong": ("truncate", "protocol=fit only: 'truncate' (drop the middle of the context) or 'skip' the item "
                             "(counted in extra/skipped)"),
    "tokenizer": ("the model's", "tokenizer that renders and measures prompts (needed for API models)"),
    "parser": ("reference", "verdict parser: 'reference' (the evaluator's first match) or 'strict' (final verdict)"),
    "max_gen_toks": ("2048", "generation budget the prompts leave room for (protocol=fit)"),
}

EXAMPLES = """\
examples:
  longrm eval --model hf --model_args pretrained=Qwen/Qwen3-8B,dtype=bfloat16 --tasks long_rewardbench \\
      --output_path out/ --log_samples
  longrm eval --model hf-rm --model_args pretrained=Skywork/Skywork-Reward-V2-Llama-3.1-8B \\
      --tasks long_rewardbench_rm
  longrm eval ... --tasks long_rewardbench_pairwise_longqa --metadata '{"data_dir": "sample", "order": "both"}'
  longrm report out/                 # the paper's tables from lm-eval's output folder"""


def add_arguments(p) -> None:
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER, metavar="LM_EVAL_ARGS",
                   help="arguments for lm_eval, e.g. --model hf --tasks long_rewardbench (`longrm eval --help`: "
                        "our tasks and --metadata options; `lm_eval run --help`: lm-eval's own)")


def run(args) -> int:
    return main(args.lm_eval_args)


def wants_our_help(argv: list[str]) -> bool:
    """``longrm eval``, ``longrm eval -h``, ``longrm eval --help`` (not ``longrm eval ls -h``: that is lm-eval's)."""
    return not argv or (argv[0] in ("-h", "--help"))


def help_text() -> str:
    from longrm_tasks.commands.tasks import read_tasks

    entries = read_tasks()
    groups = [e for e in entries if e.is_group]
    width = max(len(e.name) for e in groups)
    lines = ["usage: longrm eval LM_EVAL_ARGS   (the same arguments as `lm_eval`)", "", HELP + ".", "",
             "task groups (each the whole benchmark, reported with the paper's metrics):"]
    lines += [f"  {e.name:<{width}}  {e.line.split(': ', 1)[0].removeprefix('GROUP ')}" for e in groups]
    lines += ["  names: long_rewardbench[_ll|_rm][_pairwise|_bon][_longqa|_summ|_safety|_icl|_cite|_code|_math];",
              f"  `longrm tasks` lists all {len(entries)} with one line each.", "",
              "--metadata options (a JSON object, e.g. --metadata '{\"data_dir\": \"sample\"}'):"]
    key_width = max(len(k) for k in METADATA_OPTIONS)
    width = max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
    for key, (default, meaning) in METADATA_OPTIONS.items():
        lines.append(textwrap.fill(f"{meaning} [default: {default}]", width=width,
                                   initial_indent=f"  {key:<{key_width}}  ",
                                   subsequent_indent=" " * (key_width + 4)))
    lines += ["", EXAMPLES, "",
              textwrap.fill("lm-eval's own options (--model, --model_args, --batch_size, --limit, ...): "
                            "`longrm eval run --help` or `lm_eval run --help`.", width=width)]
    return "\n".join(lines)


# Set to 1 to make `longrm eval` index lm-eval's own tasks even when every requested task is ours.
FULL_INDEX_ENV = "LONGRM_TASKS_FULL_INDEX"


def task_index():
    """Index only our folder for runs of our tasks alone (`adapters.lm_eval.index`), unless switched off.

    Outside the lm-eval versions that code was written for it steps aside: the full index
    gives the same results, only slower.
    """
    import contextlib
    import os

    from longrm_tasks.adapters.lm_eval.index import narrow_task_index
    from longrm_tasks.adapters.lm_eval.plugin import TASK_DIR
    from longrm_tasks.compat import IncompatibleVersion

    if os.environ.get(FULL_INDEX_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return contextlib.nullcontext()
    try:
        return narrow_task_index(Path(TASK_DIR))
    except IncompatibleVersion:
        return contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI on ``argv``; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_our_help(argv):
        print(help_text())
        return 0
    from lm_eval.__main__ import cli_evaluate

    from longrm_tasks.adapters.lm_eval.plugin import activate
    from longrm_tasks.compat import IncompatibleVersion
    from longrm_tasks.errors import InputError

    try:
        activate()
    except IncompatibleVersion as err:
        raise InputError(str(err)) from None
    # lm-eval's parser reads sys.argv itself (it inserts the implicit `run` there).
    saved, sys.argv = sys.argv, ["lm_eval", *argv]
    try:
        with task_index():
            cli_evaluate()
    except SystemExit as done:  # argparse errors, --help, sys.exit("message")
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
