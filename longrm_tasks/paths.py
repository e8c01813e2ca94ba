"""Names that become paths, outputs that stay inside their folder, inputs that are regular files.

Three rules, each in one place, so every reader and writer applies the same one:

- `check_name`: a name that a recipe, a data file or the command line gives and that we
  join to a folder (a stage name, a recipe name, a config or judge name in an exported file
  name) is ONE safe path component: 1-100 characters from letters, digits and ``. _ - + =``,
  not starting with ``.`` or ``-``. That refuses ``../x``, ``/abs``, ``a/b``, ``..``, the
  empty name, NUL and control characters, and names past a file system's limits. It is
  checked where the name is read (recipe load), so a bad name fails before any work, in one
  line naming the field (``recipe.yaml: field 'stages[1].name': ...``).
- `contained`: join names to the folder the user named and refuse a result that resolves
  outside it (symlinks included: ``os.path.realpath`` on both sides). Every writer that joins a
  name under a user's folder goes through it, so a name that slipped past `check_name` or a
  symlink planted inside the folder still cannot move an output elsewhere.
- `require_regular_file`: a file we read must be a regular file (symlinks to one are fine).
  A FIFO would block the reader (or, skipped, silently lose a config), a folder or a socket is
  a mistake; each is named in one line. It looks with ``stat`` only, so it never opens a FIFO.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from longrm_tasks.errors import InputError

NAME_MAX = 100  # well under every file system's 255-byte component limit, with room for suffixes
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=-]*")
SAFE_NAME_RULE = f"1-{NAME_MAX} characters from letters, digits and . _ - + =, not starting with . or -"


def name_problem(name) -> str | None:
    """Why ``name`` cannot be one path component, or None when it can (see module docstring)."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL character"
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator"
    if name in (".", ".."):
        return f"{name!r} names a folder, not a new one inside it"
    if len(name) > NAME_MAX:
        return f"is {len(name)} characters long (at most {NAME_MAX})"
    if not _SAFE_NAME.fullmatch(name):
        return f"{name!r} has a character that is not allowed"
    return None


def check_name(name, *, path: str | os.PathLike | None = None, field: str | None = None,
               line: int | str | None = None) -> str:
    """``name`` unchanged, or an `InputError` naming the file and field that gave it."""
    problem = name_problem(name)
    if problem is not None:
        raise InputError(f"{problem}: a name used as a folder or file name must be one safe path component "
                         f"({SAFE_NAME_RULE})", path=None if path is None else os.fspath(path), line=line,
                         field=field)
    return name


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or somewhere below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def contained(root: str | os.PathLike, *parts: str, field: str | None = None) -> Path:
    """``root / part / ...``, refused in one line when it would resolve outside ``root``.

    Returns the joined path as written (not resolved), so messages show the user's own
    folder. ``field`` names the option or recipe key the root came from (``--output-dir``).
    """
    target = Path(root).joinpath(*parts)
    if not is_inside(target, root):
        raise InputError(f"resolves to {os.path.realpath(target)}, outside the folder {root} it must stay in "
                         "(an absolute or '..' name, or a symbolic link pointing elsewhere)", path=str(target),
                         field=field)
    return target


_KINDS = ((stat.S_ISDIR, "is a folder"), (stat.S_ISFIFO, "is a named pipe (FIFO)"),
          (stat.S_ISSOCK, "is a socket"), (stat.S_ISCHR, "is a character device"),
          (stat.S_ISBLK, "is a block device"))


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable regular file (symlinks followed), or None. Never opens it."""
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if os.path.islink(path):
            return f"is a symbolic link to a missing file ({os.readlink(path)})"
        if err.errno == errno.ENOENT:
            return "file not found"
        if err.errno == errno.ENOTDIR:
            return "a part of this path is a file, not a folder"
        if err.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return err.strerror or str(err)
    for test, words in _KINDS:
        if test(info.st_mode):
            return f"{words}, expected a regular file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied (the file is not readable)"
    return None


def require_regular_file(path: str | os.PathLike, *, field: str | None = None) -> str:
    """``path`` as a string, or an `InputError` naming it and what it is instead of a readable file."""
    path = os.fspath(path)
    problem = file_problem(path)
    if problem is not None:
        raise InputError(problem, path=path, field=field)
    return path
