"""The library's own error types, each reported by the command line as one line."""

from __future__ import annotations

__all__ = ["DataError", "ConfigError", "MissingExtraError", "require_extra"]

#: The extras of pyproject.toml that commands need, with the modules each provides.
EXTRAS = {"popularity": (("sklearn", "scikit-learn"), ("vaderSentiment", "vaderSentiment"))}


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


class ConfigError(ValueError):
  """A configuration field with a value outside what it allows.

  The message names the config, the field, the value and what is allowed, e.g.
  ``NDMConfig.dropout_rate = 1.5: must be in [0, 1)``.

  Attributes:
    field: the field's name.
    value: the offending value.
  """

  def __init__(self, config: str, field: str, value, allowed: str):
    self.field = field
    self.value = value
    super().__init__(f"{config}.{field} = {value!r}: {allowed}")


class MissingExtraError(ImportError):
  """An optional dependency is not installed; the message names the extra that installs it.

  Attributes:
    extra: the ``pyproject.toml`` extra (``pip install "popdiff_jax[<extra>]"``).
  """

  def __init__(self, what: str, packages: list[str], extra: str):
    self.extra = extra
    super().__init__(f"{what} need(s) {', '.join(packages)}, which is not installed: "
                     f'pip install "popdiff_jax[{extra}]"')


def require_extra(extra: str, what: str) -> None:
  """Raises :class:`MissingExtraError` unless every module of ``EXTRAS[extra]`` imports.

  Args:
    extra: a key of ``EXTRAS`` (``popularity``: scikit-learn and VADER).
    what: what needs them, for the message (``"the popularity models"``).
  """
  import importlib

  missing = []
  for module, package in EXTRAS[extra]:
    try:
      importlib.import_module(module)
    except ImportError:
      missing.append(package)
  if missing:
    raise MissingExtraError(what, missing, extra)
