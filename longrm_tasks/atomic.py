"""Atomic output files: a reader sees the old file or the new one, never half of either.

Every file the package writes goes through `atomic_write` (or one of its two
shortcuts): the content is written to a temporary file in the destination's own
folder (same file system, so the final ``os.replace`` is atomic), flushed and
fsync'ed, then renamed over the destination. A kill, a full disk or a second
writer racing this one therefore never leaves a 0-byte or half-written file
where a good one was. `check_writable` lets a command refuse a bad output path
*before* it does any work (validate before destroy).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from longrm_tasks.errors import InputError

# What a write() fails with when the disk is full, a quota or file-size limit (RLIMIT_FSIZE) is hit, or
# the device fails: the OS names no file, so `_named` adds the destination's name.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO})


def _named(err: BaseException, path, tmp: str | None = None) -> BaseException | None:
    """``err`` again naming ``path``, when it is a nameless write failure or names our temporary file;
    None otherwise (an input's error raised by the caller's code keeps its own name)."""
    if not isinstance(err, OSError) or err.errno is None:
        return None
    if (err.filename is None and err.errno in _WRITE_ERRNOS) or (tmp is not None and err.filename == tmp):
        return OSError(err.errno, err.strerror, str(path))  # OSError(ENOENT, ...) is a FileNotFoundError
    return None


def check_writable(path: str | os.PathLike, option: str | None = None, *, make_parents: bool = False) -> Path:
    """Fail with one line naming ``option`` when ``path`` cannot become a file; return it as a Path.

    Catches the usual mistakes up front: the path is a folder, its parent is a
    file or does not exist, or the parent is not writable. With ``make_parents``
    missing parent folders are created (after checking that none of the path's
    existing parts is a file), as ``mkdir -p`` would.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError("is a folder, expected a file path", path=str(target), field=option)
    if not parent.exists() and make_parents:
        existing = next(p for p in parent.parents if p.exists()) if parent.parents else Path(".")
        if not existing.is_dir():
            raise InputError(f"{existing} is a file, not a folder", path=str(target), field=option)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"folder {existing} is not writable", path=str(target), field=option)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create folder {parent}: {err.strerror}", path=str(target),
                             field=option) from None
    if not parent.exists():
        raise InputError(f"folder {parent} does not exist", path=str(target), field=option)
    if not parent.is_dir():
        raise InputError(f"{parent} is a file, not a folder", path=str(target), field=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"folder {parent} is not writable", path=str(target), field=option)
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success rename it over ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', got {mode!r}")
    try:
        existing = os.stat(path)  # follows symlinks: what a plain open() would write to
    except (FileNotFoundError, NotADirectoryError):
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode) and not stat.S_ISDIR(existing.st_mode):
        # /dev/null, /dev/stdout, a named pipe: a stream, not a file to replace (renaming over a
        # device node would destroy it). Write to it directly.
        try:
            with open(path, mode, encoding=None if "b" in mode else encoding) as handle:
                yield handle
        except OSError as err:
            named = _named(err, path)
            if named is not None:
                raise named from None
            raise
        return
    # Through a symlink (results/latest.json -> run3.json) the file it points at is replaced, not the link.
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if existing is not None:  # a replaced file keeps its permissions, as with a plain open()
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
        else:  # mkstemp creates 0600 files; give the result the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        named = _named(err, path, tmp)  # the one-line error names the file the user asked for
        if named is not None:
            raise named from None
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, **dumps_kwargs) -> None:
    """Write ``obj`` as JSON (one trailing newline) to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent, **dumps_kwargs) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write one JSON object per line to ``path`` atomically; returns the number of rows."""
    count = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def refuse_overwriting_inputs(output: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                              option: str | None = None) -> None:
    """An output that is one of the command's own input files (``inputs``: files, folders already
    expanded by the caller) would destroy it: refuse in one line, before any work."""
    out = Path(output)
    if not out.exists():
        return
    for f in inputs:
        try:
            same = os.path.samefile(out, f)
        except OSError:
            continue
        if same:
            raise InputError(f"is also an input ({f}); writing there would destroy it: choose another path",
                             path=str(out), field=option)


# How libraries that write with their own code say the disk is full: torch's zip writer and safetensors
# raise RuntimeError / SafetensorError with the OS text ("File too large (os error 27)") or none at all.
_WRITE_FAILURE_TEXT = re.compile(r"no space left|file too large|disk quota|os error (?:27|28|122)\b", re.IGNORECASE)
_PROBE_BYTES = 1 << 20


def _causes(err: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while err is not None and seen < 5:
        yield err
        err, seen = err.__cause__ or err.__context__, seen + 1


def out_of_space(err: BaseException, folder: str | os.PathLike, *,
                 hint: str = "free space, then continue with --resume") -> InputError | None:
    """One line for ``err`` when it means ``folder``'s disk is full (or a file-size limit was hit), else None.

    For writers we do not own (a Trainer checkpoint: torch, safetensors), whose errors carry no errno
    and often no reason either (torch: "unexpected pos 270144 vs 270036"): the error chain is read
    for an errno or the OS's words, and failing that a 1 MiB probe file is written in ``folder``.
    """
    reason = None
    for cause in _causes(err):
        if isinstance(cause, OSError) and cause.errno in _WRITE_ERRNOS:
            reason = cause.strerror or os.strerror(cause.errno)
            break
        found = _WRITE_FAILURE_TEXT.search(str(cause))
        if found:
            reason = found.group(0)
            break
    if reason is None and Path(folder).is_dir():
        try:
            with tempfile.TemporaryFile(dir=folder) as probe:
                probe.write(b"\0" * _PROBE_BYTES)
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as probe_err:
            if probe_err.errno in _WRITE_ERRNOS:
                reason = probe_err.strerror or os.strerror(probe_err.errno)
    if reason is None:
        return None
    return InputError(f"cannot write ({reason}): the disk is full or a file-size limit was reached; {hint}",
                      path=str(folder))
