"""The Twitter15 / Twitter16 propagation trees (rumdetect2017 release), read from the tarball.

Tree files are read straight from ``twitter15_tree.tar.gz`` with :mod:`tarfile`, or from the
extracted ``tree/`` folder: one edge per line,
``['uid', 'tweet_id', 'delay_min']->['uid', 'tweet_id', 'delay_min']``, first line
``['ROOT', 'ROOT', '0.0']->root``. A node is the whole (uid, tweet_id, delay) triple; the edges go
through the cleaning rule of ``popdiff_jax.data.trees.tree`` (earliest parent wins). Labels come
from ``label.txt`` (``label:root_tweet_id`` per line).

Bad input raises :class:`~popdiff_jax.DataError` naming the member (or file) and the line: an
archive or folder without tree files, an empty tree file, a line that is not
``[uid, tweet_id, delay]->[uid, tweet_id, delay]`` (a truncated line, a node of another number of
fields), a delay that is not a finite number, a tree without its ROOT line. A node whose parent
never appears is dropped with its descendants by the cleaning rule (counted as
``unreachable_nodes``) or, with ``strict=True``, raises.
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import finite, read_bytes, text_lines
from popdiff_jax.data.trees.tree import CleaningReport, Tree, tree_from_edges

__all__ = ["read_twitter15", "read_twitter15_labels", "label_rows", "default_label_path"]

_TW_NODE = r"\[\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*'([^']*)'\s*\]"
_TW_LINE = re.compile(r"^\s*" + _TW_NODE + r"\s*->\s*" + _TW_NODE + r"\s*$")


def _parse_twitter_tree(text: str, name: str, path: str, strict: bool, label: str | None):
  edges, lines = [], []
  root = None
  for ln, raw in text:
    if not raw.strip():
      continue
    m = _TW_LINE.match(raw)
    if m is None:
      raise DataError(f"tree {name!r}: cannot parse edge line {raw[:80]!r}", path, ln)
    g = m.groups()
    pa, ch = g[:3], g[3:]
    finite(pa[2], "parent delay", name, path, ln)
    finite(ch[2], "delay", name, path, ln)
    if pa[0] == "ROOT":
      if root is not None:
        if strict:
          raise DataError(f"tree {name!r}: second ROOT line", path, ln)
        continue
      root = ch
      continue
    edges.append((pa, ch))
    lines.append(ln)
  if root is None:
    if not edges:
      raise DataError(f"tree {name!r} is empty", path)
    raise DataError(f"tree {name!r} has no ['ROOT', 'ROOT', ...] line", path)
  return tree_from_edges(edges, root, name=name, strict=strict, delay_of=lambda k: float(k[2]),
                         user_of=lambda k: k[0], label=label, path=path, lines=lines)


def label_rows(path: str | os.PathLike) -> list[tuple[str, str, int]]:
  """``(root_tweet_id, label, line)`` of every line of a ``label.txt`` (``label:root_tweet_id``)."""
  out = []
  path = os.fspath(path)
  for ln, raw in text_lines(read_bytes(path), path):
    if not raw.strip():
      continue
    if ":" not in raw:
      raise DataError(f"expected 'label:tweet_id', got {raw.strip()[:60]!r}", path, ln)
    lab, tid = raw.strip().split(":", 1)
    out.append((tid.strip(), lab.strip(), ln))
  return out


def read_twitter15_labels(path: str | os.PathLike) -> dict[str, str]:
  """Reads ``label.txt`` (``label:root_tweet_id`` per line) into {root_id: label}."""
  return {tid: lab for tid, lab, _ in label_rows(path)}


def default_label_path(path: str | os.PathLike) -> str | None:
  """The ``label.txt`` of the release beside a tarball (``twitter15/label.txt``) or a folder
  (``label.txt`` beside ``tree/``), if there is one."""
  path = os.fspath(path)
  if os.path.isdir(path):
    folder = path if os.path.isdir(os.path.join(path, "tree")) else os.path.dirname(
        os.path.normpath(path))
    cand = os.path.join(folder, "label.txt")
  else:
    cand = os.path.join(os.path.dirname(path), "twitter15", "label.txt")
  return cand if os.path.exists(cand) else None


def read_twitter15(path: str | os.PathLike, *, label_path: str | os.PathLike | None = None,
                   strict: bool = False, max_trees: int | None = None
                   ) -> tuple[list[Tree], CleaningReport]:
  """Reads the Twitter15 trees from the ``.tar.gz`` (members ``*/tree/<root_id>.txt``), or from
  the extracted ``tree/`` folder (or the folder holding it).

  Args:
    path: ``twitter15_tree.tar.gz`` (shared/data/twitter15_16_trees), read with :mod:`tarfile`
      without extracting, or a folder of ``<root_id>.txt`` files.
    label_path: optional ``label.txt``; default: :func:`default_label_path` (``twitter15/label.txt``
      beside the tarball, ``label.txt`` beside ``tree/``) if present.
    strict: raise on every quirk instead of applying the cleaning rule.
    max_trees: read only the first trees by name (tests).

  Returns:
    (trees sorted by name, summed CleaningReport). On the full release the report counts the
    documented quirks: 1,218 self-loop lines and 5,791 nodes with several parents.

  Raises:
    DataError: an unreadable archive, no tree files in it, or a malformed tree file (naming the
      member or file and the line).
  """
  path = os.fspath(path)
  if label_path is None:
    label_path = default_label_path(path)
  labels = read_twitter15_labels(label_path) if label_path else {}
  trees, report = [], CleaningReport()

  def add(name: str, where: str, raw: bytes):
    tree, rep = _parse_twitter_tree(text_lines(raw, where), name, where, strict, labels.get(name))
    trees.append(tree)
    report.add(rep)

  if os.path.isdir(path):
    folder = os.path.join(path, "tree") if os.path.isdir(os.path.join(path, "tree")) else path
    files = sorted(f for f in os.listdir(folder) if f.endswith(".txt")
                   and os.path.isfile(os.path.join(folder, f)))
    for f in files[:max_trees]:
      add(f[:-4], os.path.join(folder, f), read_bytes(os.path.join(folder, f)))
    if not files:
      raise DataError("no tree files (<root_id>.txt) in the folder", folder)
    return trees, report
  try:
    with tarfile.open(path, "r:gz") as tf:
      members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".txt")
                        and "/tree/" in m.name), key=lambda m: m.name)
      if not members:
        raise DataError("no tree files (*/tree/<root_id>.txt) in the archive", path)
      for m in members[:max_trees]:
        add(os.path.basename(m.name)[:-4], f"{path}:{m.name}", tf.extractfile(m).read())
  except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
    # A missing, truncated or non-gzip archive: one line naming it, not a tarfile traceback.
    raise DataError(f"cannot read the tree archive: {e}", path) from None
  return trees, report
