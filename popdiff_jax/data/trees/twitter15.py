"""The Twitter15 / Twitter16 propagation trees (rumdetect2017 release), read from the tarball.

Tree files are read straight from ``twitter15_tree.tar.gz`` with :mod:`tarfile`: one edge per
line, ``['uid', 'tweet_id', 'delay_min']->['uid', 'tweet_id', 'delay_min']``, first line
``['ROOT', 'ROOT', '0.0']->root``. A node is the whole (uid, tweet_id, delay) triple; the edges go
through the cleaning rule of ``popdiff_jax.data.trees.tree`` (earliest parent wins). Labels come
from ``label.txt`` (``label:root_tweet_id`` per line).
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import finite, read_bytes, text_lines
from popdiff_jax.data.trees.tree import CleaningReport, Tree, tree_from_edges

__all__ = ["read_twitter15", "read_twitter15_labels"]

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


def read_twitter15_labels(path: str | os.PathLike) -> dict[str, str]:
  """Reads ``label.txt`` (``label:root_tweet_id`` per line) into {root_id: label}."""
  out = {}
  path = os.fspath(path)
  for ln, raw in text_lines(read_bytes(path), path):
    if not raw.strip():
      continue
    if ":" not in raw:
      raise DataError(f"expected 'label:tweet_id', got {raw.strip()[:60]!r}", path, ln)
    lab, tid = raw.strip().split(":", 1)
    out[tid.strip()] = lab.strip()
  return out


def read_twitter15(tar_path: str | os.PathLike, *, label_path: str | os.PathLike | None = None,
                   strict: bool = False, max_trees: int | None = None
                   ) -> tuple[list[Tree], CleaningReport]:
  """Reads the Twitter15 trees straight from the ``.tar.gz`` (members ``*/tree/<root_id>.txt``).

  Args:
    tar_path: ``twitter15_tree.tar.gz`` (shared/data/twitter15_16_trees).
    label_path: optional ``label.txt``; default: ``twitter15/label.txt`` beside the tarball if present.
    strict: raise on every quirk instead of applying the cleaning rule.
    max_trees: read only the first trees (tests).

  Returns:
    (trees sorted by name, summed CleaningReport). On the full release the report counts the
    documented quirks: 1,218 self-loop lines and 5,791 nodes with several parents.
  """
  tar_path = os.fspath(tar_path)
  if label_path is None:
    cand = os.path.join(os.path.dirname(tar_path), "twitter15", "label.txt")
    label_path = cand if os.path.exists(cand) else None
  labels = read_twitter15_labels(label_path) if label_path else {}
  trees, report = [], CleaningReport()
  try:
    with tarfile.open(tar_path, "r:gz") as tf:
      members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".txt")
                        and "/tree/" in m.name), key=lambda m: m.name)
      if max_trees is not None:
        members = members[:max_trees]
      for m in members:
        name = os.path.basename(m.name)[:-4]
        where = f"{tar_path}:{m.name}"
        text = text_lines(tf.extractfile(m).read(), where)
        tree, rep = _parse_twitter_tree(text, name, where, strict, labels.get(name))
        trees.append(tree)
        report.add(rep)
  except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
    # A missing, truncated or non-gzip archive: one line naming it, not a tarfile traceback.
    raise DataError(f"cannot read the tree archive: {e}", tar_path) from None
  return trees, report
