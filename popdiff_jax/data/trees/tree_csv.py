"""The plain tree CSV a person can write from a spreadsheet: :func:`read_tree_csv`,
:func:`read_label_csv`, :func:`write_tree_csv`.

Trees: a header line ``tree,parent,child,time``, then one row per node, in any order::

  tree,parent,child,time
  post1,,alice,0
  post1,alice,bob,2.5
  post1,alice,carol,4
  post1,bob,dave,7

* ``child`` is the node, and its user: a user appears at most once per tree, in any number of
  trees (the same id in two trees is the same user);
* the root's row has an empty ``parent`` (exactly one such row per tree); every other ``parent``
  is the ``child`` of another row of the same tree;
* ``time`` is the node's time, in minutes (any origin: a node's delay is its time minus the
  root's), never earlier than its parent's.

Trees come in the order of their first row; within a depth, nodes keep the order of their rows.
No quoting: ids must not contain commas. Labels (optional): a header line ``tree,label``, then
one row per tree.

Bad input raises :class:`~popdiff_jax.DataError` naming the file, the line and what was expected:
an empty file or one with only the header; another header; a row without exactly four fields (a
truncated line, a wrong number of columns); an empty ``tree``, ``child`` or ``time`` field; a time
that is not a finite number; a tree with no root row or two; a node listed twice or its own
parent; a parent that is no node of the tree (never appears as a ``child``); a cycle; a node
earlier than its parent. In a label file: another header, a row without exactly two fields, an
empty field, a tree labelled twice.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import finite, read_bytes, require_trees, text_lines
from popdiff_jax.data.trees.tree import Tree, tree_from_parents

__all__ = ["TREE_CSV_HEADER", "LABEL_CSV_HEADER", "read_tree_csv", "read_label_csv",
           "write_tree_csv"]

TREE_CSV_HEADER = ("tree", "parent", "child", "time")
LABEL_CSV_HEADER = ("tree", "label")


def _rows(path: str, header: tuple[str, ...], what: str, may_be_empty: Sequence[str] = ()
          ) -> Iterable[tuple[int, list[str]]]:
  """``(line, fields)`` of the rows of a comma-separated file whose first line is ``header``."""
  lines = [(ln, text) for ln, text in text_lines(read_bytes(path), path) if text.strip()]
  if not lines:
    raise DataError(f"empty file: no {what}", path)
  ln, first = lines[0]
  if tuple(f.strip().lower() for f in first.split(",")) != header:
    raise DataError(f"the first line must be the header {','.join(header)!r}, got "
                    f"{first[:80]!r}", path, ln)
  if len(lines) == 1:
    raise DataError("no rows after the header", path)
  for ln, text in lines[1:]:
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != len(header):
      raise DataError(f"expected {len(header)} comma-separated fields ({','.join(header)}), got "
                      f"{len(fields)}: {text[:80]!r}", path, ln)
    for name, value in zip(header, fields):
      if not value and name not in may_be_empty:
        raise DataError(f"empty {name!r} field (a truncated line?)", path, ln)
    yield ln, fields


def _build(name: str, rows: list[tuple[int, str, str, float]], path: str) -> Tree:
  """One tree from its ``(line, parent, child, time)`` rows (checked; see the module docstring)."""
  roots = [r for r in rows if not r[1]]
  if not roots:
    raise DataError(f"tree {name!r} has no root row (a row with an empty parent)", path,
                    rows[0][0])
  if len(roots) > 1:
    raise DataError(f"tree {name!r} has a second root row (the first is on line "
                    f"{roots[0][0]})", path, roots[1][0])
  ordered = roots + [r for r in rows if r[1]]
  index: dict[str, int] = {}
  for i, (ln, _, child, _) in enumerate(ordered):
    if child in index:
      raise DataError(f"tree {name!r}: node {child!r} is listed twice (lines "
                      f"{ordered[index[child]][0]} and {ln}); a user is one node per tree",
                      path, ln)
    index[child] = i
  parent = [-1]
  for ln, par, child, _ in ordered[1:]:
    if par == child:
      raise DataError(f"tree {name!r}: node {child!r} is its own parent", path, ln)
    if par not in index:
      raise DataError(f"tree {name!r}: parent {par!r} of {child!r} is no node of the tree (no "
                      f"row has child {par!r})", path, ln)
    parent.append(index[par])
  # Walk up from every node: a node whose chain never reaches the root lies on a cycle.
  reaches = {0}
  for i in range(1, len(ordered)):
    chain, j = [], i
    on_chain = set()
    while j not in reaches and j not in on_chain:
      chain.append(j)
      on_chain.add(j)
      j = parent[j]
    if j not in reaches:
      raise DataError(f"tree {name!r}: node {ordered[i][2]!r} is not reachable from the root "
                      "(its parents form a cycle)", path, ordered[i][0])
    reaches.update(chain)
  for (ln, par, child, t), p in zip(ordered[1:], parent[1:]):
    if t < ordered[p][3]:
      raise DataError(f"tree {name!r}: node {child!r} at time {t:g} is earlier than its parent "
                      f"{par!r} at {ordered[p][3]:g}", path, ln)
  t0 = ordered[0][3]
  return tree_from_parents(parent, name=name, user=[r[2] for r in ordered],
                           delay=[r[3] - t0 for r in ordered], path=path, line=ordered[0][0])


def read_tree_csv(path: str | os.PathLike) -> list[Tree]:
  """Reads the plain tree CSV (header ``tree,parent,child,time``; the module docstring).

  Returns:
    The trees in the order of their first row, without labels.
  """
  path = os.fspath(path)
  groups: dict[str, list[tuple[int, str, str, float]]] = {}
  for ln, (tree, parent, child, time) in _rows(path, TREE_CSV_HEADER, "trees",
                                               may_be_empty=("parent",)):
    groups.setdefault(tree, []).append((ln, parent, child,
                                        finite(time, "time", tree, path, ln)))
  return require_trees([_build(name, rows, path) for name, rows in groups.items()], path)


def read_label_csv(path: str | os.PathLike) -> list[tuple[str, str, int]]:
  """Reads a label CSV (header ``tree,label``): ``(tree, label, line)`` per row."""
  path = os.fspath(path)
  out, first = [], {}
  for ln, (tree, label) in _rows(path, LABEL_CSV_HEADER, "labels"):
    if tree in first:
      raise DataError(f"tree {tree!r} is labelled twice (lines {first[tree]} and {ln})", path, ln)
    first[tree] = ln
    out.append((tree, label, ln))
  return out


def write_tree_csv(trees: Sequence[Tree], path: str | os.PathLike,
                   labels_path: str | os.PathLike | None = None) -> None:
  """Writes trees in the plain CSV (times = delays), and their labels to ``labels_path``.

  :func:`read_tree_csv` reads the file back to equal trees (labels aside).

  Raises:
    ValueError: a name or user id with a comma or a line break, or a user twice in one tree.
  """
  rows, labels = [",".join(TREE_CSV_HEADER)], [",".join(LABEL_CSV_HEADER)]
  for t in trees:
    ids = [t.name, *map(str, t.user)] + ([] if t.label is None else [t.label])
    if any(not s.strip() or s != s.strip() or "," in s or "\n" in s or "\r" in s for s in ids):
      raise ValueError(f"tree {t.name!r}: names, user ids and labels must be non-empty, without "
                       "commas, line breaks or surrounding spaces")
    if len(set(map(str, t.user))) != t.size:
      raise ValueError(f"tree {t.name!r}: a user appears twice; the CSV's nodes are its users")
    for i in range(t.size):
      par = "" if t.parent[i] < 0 else str(t.user[t.parent[i]])
      rows.append(f"{t.name},{par},{t.user[i]},{float(t.delay[i])!r}")
    if t.label is not None:
      labels.append(f"{t.name},{t.label}")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(rows) + "\n")
  if labels_path is not None:
    with open(labels_path, "w", encoding="utf-8") as f:
      f.write("\n".join(labels) + "\n")
