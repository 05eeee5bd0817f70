"""The error raised by every reader when a data file does not follow its format."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file is malformed.

    The message reads ``"<file>:<line>: <what was wrong / what was expected>"`` (``<file>: ...`` when
    the problem concerns the file as a whole), so that editors and terminals can jump to the spot.

    Args:
        file: the offending file.
        message: what was found and what was expected there.
        line: 1-based line number, or ``None`` when the problem is not tied to one line.

    Attributes:
        file, line, message: as given.
    """

    def __init__(self, file: str | Path, message: str, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.message = message
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # keep the exception picklable across worker processes
        return (type(self), (self.file, self.message, self.line))
