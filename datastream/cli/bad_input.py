"""The error for a malformed input file: one line naming file, line (or row) and column."""

from __future__ import annotations

# Exit codes: 1 for errors reported by datastream (and verify mismatches), 2 for bad input and
# bad usage (click uses 2 for usage errors too).
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


class BadInput(ValueError):
    """A file cannot be imported as given; raised before anything is written.

    ``where`` is ``file:line`` (text formats) or ``file:row N`` (Parquet)."""

    def __init__(self, where: str, problem: str, column: str | None = None) -> None:
        self.where = where
        self.column = column
        self.problem = problem
        prefix = f"{where}: column {column!r}: " if column else f"{where}: "
        super().__init__(prefix + problem)


class Positions:
    """Turns a 0-based row of a file into the ``where`` of a message.

    Text formats count lines: CSV rows start after the header (``first_line`` 2), JSON lines at
    1; line protocol gives each row's line explicitly (``lines``). Parquet has no lines, so
    rows are numbered from 1."""

    def __init__(self, source: str, first_line: int | None = 1, lines=None) -> None:
        self.source = source
        self.first_line = first_line
        self.lines = lines

    def describe(self, row: int) -> str:
        if self.lines is not None:
            return f"{self.source}:{int(self.lines[row])}"
        if self.first_line is None:
            return f"{self.source}:row {row + 1}"
        return f"{self.source}:{row + self.first_line}"
