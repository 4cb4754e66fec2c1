"""The library's own error type: every reader raises it with the file and line at fault."""

from __future__ import annotations


class DataError(ValueError):
  """Bad input data, reported with the file and line (1-based) where it was found.

  Attributes:
    path: the file being read, or None when the data did not come from a file.
    line: 1-based line number, or None when the problem is not tied to one line.
  """

  def __init__(self, message: str, path: str | None = None, line: int | None = None):
    self.path = None if path is None else str(path)
    self.line = line
    where = ""
    if self.path is not None:
      where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
    super().__init__(f"{where}{message}")
