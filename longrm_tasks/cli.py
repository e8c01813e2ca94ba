"""`longrm` console script: a thin dispatcher over one module per subcommand.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; heavy imports live inside ``run`` so ``longrm --help``
stays fast.

This module is the one place that decides how a failure reaches the user
(`guarded`): bad input, missing files, unusable output paths, a missing optional
package and Ctrl-C each end as ONE line on stderr and a non-zero exit code,
never a traceback. ``LONGRM_DEBUG=1`` re-raises instead, for developers.

Exit codes: 0 ok, 1 internal error (a bug: please report it), 2 bad input or
usage, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
from typing import Callable

from longrm_tasks.errors import DEBUG_ENV, EXIT_INPUT, InputError, closest_name, debugging

# name -> module implementing it. Modules are imported when the parser is built; one that
# cannot be imported (an optional extra not installed, a part not shipped) is still listed,
# and running it says why in one line instead of breaking every other command.
SUBCOMMANDS = {
    "score": "longrm_tasks.commands.score",
    "report": "longrm_tasks.commands.report",
    "validate": "longrm_tasks.commands.validate",
    "render": "longrm_tasks.commands.render",
    "tasks": "longrm_tasks.commands.tasks",
    "eval": "longrm_tasks.commands.eval",
    "demo": "longrm_tasks.commands.demo",
    "train": "longrm_tasks.train.cli",
    "synth": "longrm_tasks.train.synth.cli",
    "rewardbench": "longrm_tasks.adapters.rewardbench.cli",
}

# Top-level package of an optional dependency -> the extra that installs it.
EXTRAS = {
    "transformers": "hf", "datasets": "hf", "accelerate": "hf", "lm_eval": "hf", "huggingface_hub": "hf",
    "safetensors": "hf", "sentencepiece": "hf", "torch": "hf", "vllm": "vllm", "trl": "train", "peft": "train",
}

EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 130  # EXIT_INPUT (2) and DEBUG_ENV come from errors.py


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to find help), like every other error."""

    def error(self, message: str):
        typo = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if typo:  # `longrm scroe` -> did you mean 'score'?
            guess = closest_name(typo.group(1), re.findall(r"'([^']*)'", typo.group(2)))
            if guess:
                message += f"; did you mean '{guess}'?"
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:  # `--preditions` -> did you mean '--predictions'?
            known = _option_strings(self)
            for token in unknown.group(1).split():
                # "--" is shared by every option: a stricter cutoff keeps the guesses sensible
                guess = closest_name(token.split("=")[0], known, cutoff=0.75) if token.startswith("--") else None
                if guess:
                    message += f"; did you mean '{guess}' for '{token}'?"
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every long option of ``parser`` and of its subcommands (unrecognized ones are reported at the top)."""
    out = [o for o in parser._option_string_actions if o.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _option_strings(sub)
    return sorted(set(out))


def missing_package_message(err: ModuleNotFoundError) -> str:
    """'needs the optional package X: pip install longrm-tasks[extra]' for a missing third-party import."""
    top = (err.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    how = f"pip install 'longrm-tasks[{extra}]'" if extra else f"pip install {top}"
    return f"needs the optional package '{top}', which is not installed: {how}"


def _load(module_name: str):
    """The subcommand module, or the one-line reason it cannot be used here."""
    try:
        return importlib.import_module(module_name), None
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            return None, f"not part of this installation ({module_name} is missing)"
        if err.name and err.name.split(".")[0] == "longrm_tasks":
            return None, f"broken installation: {err}"
        return None, missing_package_message(err)
    except Exception as err:  # a broken module must not take every other command down with it
        return None, f"cannot be loaded ({type(err).__name__}: {err})"


def _unavailable(reason: str) -> Callable:
    def run(args) -> int:
        raise InputError(f"this command is unavailable: {reason}")

    return run


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that subcommand's module is imported (faster start-up,
    and one broken module elsewhere cannot matter)."""
    parser = _Parser(prog="longrm", description="Long-RewardBench tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        module, reason = _load(module_name)
        if module is None:
            sp = sub.add_parser(name, help=f"(unavailable: {reason})", add_help=False)
            sp.add_argument("rest", nargs=argparse.REMAINDER)
            sp.set_defaults(_run=_unavailable(reason))
            continue
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def _oserror_line(err: OSError) -> tuple[str, int]:
    """One line for an OS error: which path, and what is wrong with it in plain words."""
    name = err.filename if err.filename is not None else ""
    plain = {
        errno.ENOENT: "file or folder not found",
        errno.EISDIR: "is a folder, expected a file",
        errno.ENOTDIR: "a part of this path is a file, not a folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EEXIST: "already exists",
    }.get(err.errno, err.strerror or str(err))
    where = f"{name}: " if name else ""
    if err.filename2:
        where = f"{name} -> {err.filename2}: "
    return f"{where}{plain}", EXIT_INPUT


def guarded(command: str, fn: Callable[[], int | None]) -> int:
    """Run ``fn`` and turn every failure into one stderr line and an exit code (see module docstring)."""
    prefix = f"longrm {command}: " if command else "longrm: "
    try:
        return int(fn() or 0)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - this is the one place that reports failures
        if debugging():
            raise
        if isinstance(err, KeyboardInterrupt):
            # A command may re-raise KeyboardInterrupt("... resume with --resume") to say more.
            line, code = (str(err) or "interrupted"), EXIT_INTERRUPTED
            if not str(err):
                line = "interrupted (Ctrl-C)"
        elif isinstance(err, InputError):
            if getattr(err, "announced", False):
                # Already printed as one line by `errors.announced` (a model or task inside `longrm eval`'s
                # lm-eval run): saying it again would only repeat it.
                _flush_quietly(sys.stdout)
                return EXIT_INPUT
            line, code = f"error: {err}", EXIT_INPUT
        elif isinstance(err, BrokenPipeError):  # `longrm ... | head`: the reader left; nothing to say
            _silence_stdout()
            return 0
        elif isinstance(err, ModuleNotFoundError):
            line, code = f"error: {missing_package_message(err)}", EXIT_INPUT
        elif isinstance(err, OSError):
            text, code = _oserror_line(err)
            line = f"error: {text}"
        elif isinstance(err, MemoryError):
            line, code = "error: out of memory", EXIT_INTERNAL
        else:
            detail = str(err).splitlines()[0] if str(err) else ""
            origin = _raised_in(err)
            if origin and origin != "longrm_tasks":  # lm-eval, transformers, ... refused something
                line = (f"error: {origin}: {type(err).__name__}: {detail} "
                        f"(rerun with {DEBUG_ENV}=1 for the traceback)")
            else:
                line = (f"internal error: {type(err).__name__}: {detail} "
                        f"(a bug; rerun with {DEBUG_ENV}=1 for the traceback and please report it)")
            code = EXIT_INTERNAL
        _flush_quietly(sys.stdout)
        print(prefix + " ".join(line.split("\n")), file=sys.stderr)
        return code


def _raised_in(err: BaseException) -> str | None:
    """Top-level package of the innermost frame that raised ``err`` (None when unknown)."""
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_globals.get("__name__") or ""
    return name.split(".")[0] or None


def _flush_quietly(stream) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    # Python flushes stdout again at exit, which would raise BrokenPipeError once more.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _dispatch(argv: list[str], command: str | None) -> int | None:
    if command is not None:
        module, reason = _load(SUBCOMMANDS[command])
        if module is None:  # say why in one line, whatever options were given
            return _unavailable(reason)(None)
        if command == "eval":  # `longrm eval` forwards its arguments to lm_eval untouched
            return module.main(argv[1:])
    args = build_parser(only=command).parse_args(argv)
    return args._run(args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    # Parsing and imports run under the guard too: Ctrl-C during a slow import is one line as well.
    return guarded(command or "", lambda: _dispatch(argv, command))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
