"""One exception type for bad user input.

Every message names where the problem is (file, line, field) so a user can fix
the input without reading a traceback; the CLI prints it on one line.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

DEBUG_ENV = "LONGRM_DEBUG"  # set (not 0) to get tracebacks instead of one-line errors
EXIT_INPUT = 2  # bad input or usage, as `longrm` exits (see `longrm_tasks.cli`)


class InputError(ValueError):
    """Bad input data: carries the file, 1-based line (or record id) and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | str | None = None,
                 field: str | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"record {self.line}: "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"


def closest_name(key: str, known, cutoff: float = 0.6) -> str | None:
    """The known name a mistyped ``key`` most likely meant (difflib), or None when nothing is close."""
    import difflib

    names = [str(k) for k in known]
    match = difflib.get_close_matches(str(key), names, n=1, cutoff=cutoff)
    if not match:  # case slips ("Data_Dir") are not always close enough for difflib's ratio
        match = [n for n in names if n.lower() == str(key).lower()]
    return match[0] if match else None


def unknown_key_error(key: str, known, where: str | None = None, *, path: str | None = None,
                      line: int | str | None = None) -> InputError:
    """An `InputError` for an option/config key nobody reads, naming the closest known key.

    ``where`` names the option or section the key was given in (``--metadata``,
    ``--set``, ``defaults``); the caller raises the result::

        if key not in KNOWN:
            raise unknown_key_error(key, KNOWN, "--metadata")
    """
    known = sorted(str(k) for k in known)
    guess = closest_name(key, known)
    hint = f"did you mean '{guess}'? " if guess else ""
    listing = ", ".join(known) if len(known) <= 20 else ", ".join(known[:20]) + ", ..."
    return InputError(f"unknown key '{key}'; {hint}known keys: {listing}", path=path, line=line, field=where)


@contextlib.contextmanager
def announced(prog: str) -> Iterator[None]:
    """For entry points whose top level we do not own (plain ``lm_eval``, RewardBench's scripts).

    An `InputError` raised inside is printed once as one line on stderr (``prog: error: ...``),
    then propagates, so the host tool still decides the exit code but the user sees our message
    first instead of at the bottom of a long traceback. ``longrm`` itself uses `cli.guarded`.
    """
    try:
        yield
    except InputError as err:
        if not getattr(err, "announced", False):
            err.announced = True
            print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        raise


def debugging() -> bool:
    """``LONGRM_DEBUG`` is set: show tracebacks, do not shorten errors to one line."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def our_input_error(err: BaseException | None) -> InputError | None:
    """``err`` itself, or the error it was raised from, when that is one of our `InputError` errors."""
    seen = 0
    while err is not None and seen < 5:  # a host tool may re-raise ours ``from`` it; look a few links down
        if isinstance(err, InputError):
            return err
        err, seen = err.__cause__, seen + 1
    return None


def install_one_line_exit(prog: str) -> None:
    """For a host command line we do not own (plain ``lm_eval``): our uncaught `InputError` ends as one line.

    Installs a ``sys.excepthook``: when the program dies of one of our `InputError` errors, it prints
    ``prog: error: ...`` (unless `announced` or our task loader already said it) and exits with
    code 2, as ``longrm`` does, instead of a traceback and exit code 1. Every other exception goes
    to the previous hook untouched, so the host's own errors look exactly as before; with
    ``LONGRM_DEBUG=1`` ours do too. Installed once per process.
    """
    previous = sys.excepthook
    if getattr(previous, "_longrm_one_line", False):
        return

    def hook(kind, value, tb):
        ours = our_input_error(value)
        if ours is None or debugging():
            return previous(kind, value, tb)
        if not getattr(ours, "announced", False):
            print(f"{prog}: error: {' '.join(str(ours).splitlines())}", file=sys.stderr)
        _exit_now(EXIT_INPUT)

    hook._longrm_one_line = True
    sys.excepthook = hook


def _exit_now(code: int) -> None:
    # An excepthook cannot choose the exit code (the interpreter exits 1 after it), so flush what
    # was written (streams, logging handlers) and leave with our code.
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
