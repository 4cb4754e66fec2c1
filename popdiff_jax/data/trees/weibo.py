"""The Weibo path format of CasFlow / DeepHawkes, one cascade per line.

``cascade_id<TAB>origin_uid<TAB>pub_time<TAB>n<TAB>paths``, where each path ``a/b/c:dt`` says c
retweeted via b (from a) dt seconds after publication. A node is a uid; delays are converted to
minutes. Every path starts at the origin uid.

Bad input raises :class:`~popdiff_jax.DataError` naming the file and the line: an empty file; a
line without exactly five tab-separated columns (a truncated line); a publication time that is not
a number or a participant count that is not an integer; a cascade with no paths; a path without
``:dt``, with an empty uid, or not starting at the origin; a time that is not a finite number; a
cascade id used twice. A uid whose parent never retweeted is dropped with its descendants by the
cleaning rule (``tree.py``; counted as ``unreachable_nodes``) or, with ``strict=True``, raises.
"""

from __future__ import annotations

import math
import os

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import FLOAT32_MAX, finite, read_bytes, require_trees, text_lines
from popdiff_jax.data.trees.tree import CleaningReport, Tree, tree_from_edges

__all__ = ["read_weibo"]


def read_weibo(path: str | os.PathLike, *, strict: bool = False
               ) -> tuple[list[Tree], CleaningReport]:
  """Reads the CasFlow / DeepHawkes Weibo path format (delays converted to minutes).

  A node is a uid; path ``a/b/c:dt`` gives c the parent b. A uid that retweets twice is a node with
  several parents: the cleaning rule keeps its earliest retweet (smallest dt).
  """
  path = os.fspath(path)
  trees, report, first_line = [], CleaningReport(), {}
  for ln, raw in text_lines(read_bytes(path), path):
    if not raw.strip():
      continue
    cols = raw.split("\t")
    if len(cols) != 5:
      name = cols[0] if cols else "?"
      if len(cols) == 4:
        raise DataError(f"cascade {name!r} is empty (no paths)", path, ln)
      raise DataError(f"cascade {name!r}: expected 5 tab-separated columns (cascade_id, "
                      f"origin_uid, pub_time, n, paths), got {len(cols)}", path, ln)
    name, origin = cols[0], cols[1]
    if name in first_line:
      raise DataError(f"cascade id {name!r} is used twice (lines {first_line[name]} and {ln})",
                      path, ln)
    first_line[name] = ln
    finite(cols[2], "pub_time", name, path, ln)
    if not cols[3].strip().isdigit():
      raise DataError(f"cascade {name!r}: the participant count is not an integer: "
                      f"{cols[3][:40]!r}", path, ln)
    toks = cols[4].split()
    if not toks:
      raise DataError(f"cascade {name!r} is empty (no paths)", path, ln)
    edges, first_time = [], {}
    root = None
    for tok in toks:
      if ":" not in tok:
        raise DataError(f"cascade {name!r}: path {tok!r} lacks ':dt'", path, ln)
      pth, dt = tok.rsplit(":", 1)
      try:
        t = float(dt) / 60.0
      except ValueError:
        raise DataError(f"cascade {name!r}: the time is not a number in {tok!r}", path,
                        ln) from None
      if not math.isfinite(t) or abs(t) > FLOAT32_MAX:  # stored as float32 minutes
        raise DataError(f"cascade {name!r}: time is not finite in float32 in {tok!r}", path, ln)
      us = pth.split("/")
      if any(not u for u in us):
        raise DataError(f"cascade {name!r}: empty uid in path {tok!r}", path, ln)
      if us[0] != origin:
        raise DataError(f"cascade {name!r}: path {tok!r} does not start at the origin uid "
                        f"{origin!r}", path, ln)
      if len(us) == 1:
        if root is None:
          root = us[0]
        first_time[us[0]] = min(first_time.get(us[0], t), t)
        continue
      first_time[us[-1]] = min(first_time.get(us[-1], t), t)
      edges.append((us[-2], us[-1], t))
    if root is None:
      root = origin
      first_time.setdefault(root, 0.0)
    # A node's parent choice uses the child's own retweet time: order the edges by it so that
    # "earliest" picks the first retweet of a uid that retweeted twice.
    edges.sort(key=lambda e: e[2])
    tree, rep = tree_from_edges([(p, c) for p, c, _ in edges], root, name=name, strict=strict,
                                delay_of=lambda k: 0.0, user_of=str,
                                path=path, lines=[ln] * len(edges))
    tree = tree._replace(delay=np.asarray([first_time.get(u, 0.0) for u in tree.user],
                                          np.float32))
    trees.append(tree)
    report.add(rep)
  return require_trees(trees, path), report
