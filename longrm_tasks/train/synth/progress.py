"""Synthesis output that is written as it goes and can be resumed exactly.

A synthesis run can take hours against remote judges; losing it to one dropped
connection or a Ctrl-C is not acceptable. So records are appended to the output
JSONL as they are produced (flushed each time), and after each unit of work a
small progress file ``OUT.progress.json`` (written atomically) records how many
input records are done, how many bytes of the output they account for, the
running summary counts, and the options that shape the output. ``--resume``
cuts the output back to that byte count (dropping a half-written line a kill may
have left), restores the counts and continues with the next input record, so a
resumed run writes the same bytes as an uninterrupted one. On success the
progress file is removed.

A progress file next to the output means an unfinished run: starting again
without ``--resume`` is refused rather than silently throwing that work away.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from longrm_tasks.atomic import check_writable, write_json
from longrm_tasks.errors import InputError

FORMAT = 1


def _lock(fd: int, path: Path) -> None:
    """An exclusive lock on the output for as long as this run holds it open (POSIX; skipped elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError("another `longrm synth` run is writing this output right now; wait for it or choose "
                         "another --output", path=str(path)) from None


def progress_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".progress.json")


class ResumableOutput:
    """Append-as-you-go JSONL with a progress file (see the module docstring).

    ``settings`` are the options that shape the output (seed, lengths, judges, ...):
    resuming with different ones is refused, naming the first that differs.
    """

    def __init__(self, output: str | os.PathLike, *, command: str, settings: dict[str, Any], resume: bool):
        self.output = check_writable(output, "--output", make_parents=True)
        self.progress = progress_path(self.output)
        self.command = command
        self.settings = json.loads(json.dumps(settings))  # as it will read back
        self.resume = resume
        self.done = 0  # input records finished (written or counted as skipped)
        self.resumed_from = 0
        self.summary: dict[str, Any] | None = None  # counts restored by a resume
        self._handle: BinaryIO | None = None

    def _saved(self) -> dict | None:
        if not self.progress.exists():
            return None
        try:
            saved = json.loads(self.progress.read_text(encoding="utf-8"))
            if saved.get("format") != FORMAT:
                raise ValueError("unknown format")
            return saved
        except (OSError, ValueError, AttributeError) as err:
            raise InputError(f"unreadable progress file ({err}); delete it and the output to start again",
                             path=str(self.progress)) from None

    def check(self, output_exists: bool | None = None) -> None:
        """Everything that can refuse the run, before anything is written (validate before destroy)."""
        saved = self._saved()
        if output_exists is None:
            output_exists = self.output.exists()
        if saved is None:
            if self.resume and output_exists:
                raise InputError(f"nothing to resume: {self.output} has no {self.progress.name} (the run that "
                                 "wrote it finished); delete it or choose another --output to start again",
                                 field="--resume")
            return
        if not self.resume:
            raise InputError(f"holds an unfinished `longrm synth {saved.get('command')}` run "
                             f"({saved.get('done', 0)} input records done); continue it with --resume, or delete "
                             f"it and {self.progress.name} to start again", path=str(self.output))
        if saved.get("command") != self.command:
            raise InputError(f"was written by `longrm synth {saved.get('command')}`, not {self.command}",
                             path=str(self.output), field="--resume")
        for key in sorted(set(saved["settings"]) | set(self.settings)):
            before, now = saved["settings"].get(key), self.settings.get(key)
            if before != now:
                raise InputError(f"cannot resume with different options: {key} was {before!r}, now {now!r}",
                                 path=str(self.output), field="--resume")
        size = self.output.stat().st_size if self.output.exists() else -1
        if size < saved["bytes"]:
            raise InputError(f"is shorter ({max(size, 0)} bytes) than its progress file records ({saved['bytes']}); "
                             "it was changed since: cannot resume", path=str(self.output), field="--resume")

    def open(self) -> "ResumableOutput":
        # Lock before looking at (or cutting) anything: a second run on the same output must not
        # interleave its records with this one's.
        existed = self.output.exists()
        fd = os.open(self.output, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock(fd, self.output)
            self.check(existed)
            saved = self._saved()
            if saved is not None:  # resume: drop whatever follows the last complete unit of work
                os.ftruncate(fd, saved["bytes"])
                self.done = self.resumed_from = saved["done"]
                self.summary = saved["summary"]
            else:
                os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_END)
            self._handle = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            if not existed:  # refused: leave no empty file behind
                self.output.unlink(missing_ok=True)
            raise
        self.checkpoint(self.done, self.summary or {})
        return self

    def _write_failed(self, err: OSError, path: Path) -> InputError:
        # A full disk or file-size limit: the progress file still records the last complete unit of
        # work, so the caller can say how far the run got and that --resume continues it.
        return InputError(f"cannot write: {err.strerror or err}", path=str(path))

    def write(self, line: str) -> None:
        try:
            self._handle.write(line.encode("utf-8"))
            self._handle.flush()  # readers (tail -f, a second process) see each record as soon as it exists
        except OSError as err:
            raise self._write_failed(err, self.output) from None

    def checkpoint(self, done: int, summary: dict) -> None:
        """``done`` input records are finished and their output is written: make that durable."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:
            raise self._write_failed(err, self.output) from None
        try:
            write_json(self.progress, {"format": FORMAT, "command": self.command, "done": done,
                                       "bytes": self._handle.tell(), "summary": summary, "settings": self.settings})
        except OSError as err:
            raise self._write_failed(err, self.progress) from None
        self.done = done  # only once the progress file says so

    def finish(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self.progress.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop without finishing (error, interrupt): the progress file stays for --resume."""
        if self._handle is not None and not self._handle.closed:
            try:
                self._handle.close()
            except OSError:  # the disk is still full: what is unflushed is past the last checkpoint anyway
                pass
