"""`longrm` console script: a thin dispatcher over one module per subcommand.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; heavy imports live inside ``run`` so ``longrm --help``
stays fast. Bad input (``InputError``) becomes one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from longrm_tasks.errors import InputError

# name -> module implementing it. A module that is not installed (an optional
# part of the package) is simply not offered.
SUBCOMMANDS = {
    "score": "longrm_tasks.commands.score",
    "report": "longrm_tasks.commands.report",
    "validate": "longrm_tasks.commands.validate",
    "eval": "longrm_tasks.commands.eval",
    "demo": "longrm_tasks.commands.demo",
    "train": "longrm_tasks.train.cli",
    "synth": "longrm_tasks.train.synth_cli",
    "rewardbench": "longrm_tasks.adapters.rewardbench.cli",
}


def _available() -> dict[str, str]:
    out = {}
    for name, module in SUBCOMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                out[name] = module
        except ModuleNotFoundError:
            continue
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longrm", description="Long-RewardBench tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in _available().items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `longrm eval` forwards its arguments to lm_eval untouched.
    if argv[:1] == ["eval"] and "eval" in _available():
        module = importlib.import_module(SUBCOMMANDS["eval"])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except InputError as err:
        print(f"longrm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"longrm {args.command}: error: {err.filename or err}: file not found", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
