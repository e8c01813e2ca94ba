"""One exception type for bad user input.

Every message names where the problem is (file, line, field) so a user can fix
the input without reading a traceback; the CLI prints it on one line.
"""
from __future__ import annotations


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
