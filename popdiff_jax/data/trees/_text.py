"""Text helpers of the tree readers: UTF-8 lines with their numbers, finite float32 numbers."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from popdiff_jax._errors import DataError

__all__ = ["FLOAT32_MAX", "text_lines", "read_bytes", "finite", "require_trees"]

#: Largest finite float32 (delays and times are stored as float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def text_lines(raw: bytes, path: str) -> Iterable[tuple[int, str]]:
  """``(1-based line number, text)`` of every line of UTF-8 ``raw``; only ``\n`` ends a line (a
  trailing ``\r`` is dropped). Bytes that are not UTF-8 raise DataError naming the line."""
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"not UTF-8 text (byte {e.start})", path,
                    raw[: e.start].count(b"\n") + 1) from None
  for ln, line in enumerate(text.split("\n"), 1):
    yield ln, line[:-1] if line.endswith("\r") else line


def read_bytes(path: str) -> bytes:
  """The bytes of a file; an unreadable file raises DataError naming it."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise DataError(f"cannot read file: {e.strerror or e}", path) from None


def finite(token: str, what: str, name: str, path: str, line: int) -> float:
  """``float(token)``, or DataError naming tree ``name`` when it is not a finite float32."""
  try:
    value = float(token)
  except ValueError:
    raise DataError(f"tree {name!r}: {what} is not a number: {token[:40]!r}", path, line) from None
  if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
    raise DataError(f"tree {name!r}: {what} is not finite in float32: {token[:40]!r}", path, line)
  return value


def require_trees(trees: list, path: str) -> list:
  """``trees``, or DataError naming the file when it held no tree at all (an empty file)."""
  if not trees:
    raise DataError("empty file: no trees", path)
  return trees
