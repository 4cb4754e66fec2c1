"""A plain parent-array format, one tree per line (always strict): :func:`read_parent_arrays`,
:func:`write_parent_arrays`.

``name<TAB>p_0 p_1 ... p_{n-1}[<TAB>u_0 ... u_{n-1}[<TAB>d_0 ... d_{n-1}]]`` with ``-1`` for the
root and ``p_i`` a 0-based node index, then optionally the nodes' user ids and, after them, their
delays after the root (numbers; default 0). Without user ids a node's user is its index, so the
same index in two trees is the same user. An empty file, an empty tree, more than four columns,
parent indices that are not integers, a cycle, a parent index out of range (missing parent),
several roots or none, user ids or delays that do not count one per node, a delay that is not a
finite number, and a tree name used twice raise :class:`~popdiff_jax.DataError` naming the tree,
the file and the line.
"""

from __future__ import annotations

import os
from typing import Sequence

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import finite, read_bytes, require_trees, text_lines
from popdiff_jax.data.trees.tree import Tree, tree_from_parents

__all__ = ["read_parent_arrays", "write_parent_arrays"]


def read_parent_arrays(path: str | os.PathLike) -> list[Tree]:
  """Reads the plain parent-array format (strict; see the module docstring)."""
  path = os.fspath(path)
  trees, first_line = [], {}
  for ln, raw in text_lines(read_bytes(path), path):
    if not raw.strip():
      continue
    cols = raw.split("\t")
    name = cols[0]
    if len(cols) < 2 or not cols[1].strip():
      raise DataError(f"tree {name!r} is empty", path, ln)
    if len(cols) > 4:
      raise DataError(f"tree {name!r}: expected at most 4 tab-separated columns (name, parents, "
                      f"users, delays), got {len(cols)}", path, ln)
    if name in first_line:
      raise DataError(f"tree name {name!r} is used twice (lines {first_line[name]} and {ln})",
                      path, ln)
    first_line[name] = ln
    try:
      parent = [int(t) for t in cols[1].split()]
    except ValueError:
      raise DataError(f"tree {name!r}: parent indices must be integers", path, ln) from None
    for i, p in enumerate(parent):  # checked here too: an index beyond int64 cannot reach NumPy
      if not -1 <= p < len(parent):
        raise DataError(f"tree {name!r}: node {i} has parent {p}, which is missing (valid "
                        f"indices 0..{len(parent) - 1})", path, ln)
    users = cols[2].split() if len(cols) > 2 else None
    delay = None
    if len(cols) > 3:
      delay = [finite(t, "delay", name, path, ln) for t in cols[3].split()]
      if len(delay) != len(parent):
        raise DataError(f"tree {name!r}: {len(delay)} delays for {len(parent)} nodes (a "
                        "truncated line?)", path, ln)
    trees.append(tree_from_parents(parent, name=name, user=users, delay=delay, path=path,
                                   line=ln))
  return require_trees(trees, path)


def write_parent_arrays(trees: Sequence[Tree], path: str | os.PathLike) -> None:
  """Writes trees in the parent-array format, with user ids and delays (read back equal).

  Raises:
    ValueError: a tree name or user id that contains white space (the format's separators).
  """
  lines = []
  for t in trees:
    if "\t" in t.name or "\n" in t.name or any(len(str(u).split()) != 1 for u in t.user):
      raise ValueError(f"tree {t.name!r}: names and user ids must not contain white space")
    lines.append("\t".join([t.name, " ".join(str(int(p)) for p in t.parent),
                            " ".join(str(u) for u in t.user),
                            " ".join(repr(float(d)) for d in t.delay)]))
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
