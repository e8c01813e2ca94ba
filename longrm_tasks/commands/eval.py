"""`longrm eval ...`: lm-eval's own CLI with our tasks and ``hf-rm`` added explicitly.

For people who run without the start-up hook (``LONGRM_TASKS_NO_HOOK=1``) or
who prefer to see where the tasks come from: it registers ``hf-rm``, puts our
task folder into every ``TaskManager`` of this process, then hands the
arguments, untouched, to lm-eval's command line. Anything ``lm_eval`` accepts
works here, subcommands included:

    longrm eval --model hf --model_args pretrained=Qwen/Qwen3-8B --tasks long_rewardbench
    longrm eval ls tasks
"""
from __future__ import annotations

import argparse
import sys

HELP = "run lm-eval (same arguments as `lm_eval`) with the Long-RewardBench tasks and the hf-rm model"


def add_arguments(p) -> None:
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER, metavar="LM_EVAL_ARGS",
                   help="arguments for lm_eval, e.g. --model hf --tasks long_rewardbench (see `lm_eval -h`)")


def run(args) -> int:
    return main(args.lm_eval_args)


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's CLI on ``argv``; returns its exit status."""
    from lm_eval.__main__ import cli_evaluate

    from longrm_tasks.adapters.lm_eval_plugin import activate

    activate()
    argv = list(sys.argv[1:] if argv is None else argv)
    # lm-eval's parser reads sys.argv itself (it inserts the implicit `run` there).
    saved, sys.argv = sys.argv, ["lm_eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as done:  # argparse errors, --help, sys.exit("message")
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
