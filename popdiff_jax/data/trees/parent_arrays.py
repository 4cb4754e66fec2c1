"""A plain parent-array format, one tree per line (always strict).

``name<TAB>p_0 p_1 ... p_{n-1}[<TAB>u_0 ... u_{n-1}]`` with ``-1`` for the root and ``p_i`` a
0-based node index (optional user ids after a second tab). A cycle, a parent index out of range
(missing parent), several roots or none, or an empty line raise
:class:`~popdiff_jax.DataError` naming the tree, the file and the line.
"""

from __future__ import annotations

import os

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import read_bytes, text_lines
from popdiff_jax.data.trees.tree import Tree, tree_from_parents

__all__ = ["read_parent_arrays"]


def read_parent_arrays(path: str | os.PathLike) -> list[Tree]:
  """Reads the plain parent-array format (strict; see the module docstring)."""
  path = os.fspath(path)
  trees = []
  for ln, raw in text_lines(read_bytes(path), path):
    if not raw.strip():
      continue
    cols = raw.split("\t")
    name = cols[0]
    if len(cols) < 2 or not cols[1].strip():
      raise DataError(f"tree {name!r} is empty", path, ln)
    try:
      parent = [int(t) for t in cols[1].split()]
    except ValueError:
      raise DataError(f"tree {name!r}: parent indices must be integers", path, ln) from None
    for i, p in enumerate(parent):  # checked here too: an index beyond int64 cannot reach NumPy
      if not -1 <= p < len(parent):
        raise DataError(f"tree {name!r}: node {i} has parent {p}, which is missing (valid "
                        f"indices 0..{len(parent) - 1})", path, ln)
    users = cols[2].split() if len(cols) > 2 else None
    trees.append(tree_from_parents(parent, name=name, user=users, path=path, line=ln))
  return trees
