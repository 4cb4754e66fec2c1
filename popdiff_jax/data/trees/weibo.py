"""The Weibo path format of CasFlow / DeepHawkes, one cascade per line.

``cascade_id<TAB>origin_uid<TAB>pub_time<TAB>n<TAB>paths``, where each path ``a/b/c:dt`` says c
retweeted via b (from a) dt seconds after publication. A node is a uid; delays are converted to
minutes.
"""

from __future__ import annotations

import math
import os

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees._text import FLOAT32_MAX, read_bytes, text_lines
from popdiff_jax.data.trees.tree import CleaningReport, Tree, tree_from_edges

__all__ = ["read_weibo"]


def read_weibo(path: str | os.PathLike, *, strict: bool = False
               ) -> tuple[list[Tree], CleaningReport]:
  """Reads the CasFlow / DeepHawkes Weibo path format (delays converted to minutes).

  A node is a uid; path ``a/b/c:dt`` gives c the parent b. A uid that retweets twice is a node with
  several parents: the cleaning rule keeps its earliest retweet (smallest dt).
  """
  path = os.fspath(path)
  trees, report = [], CleaningReport()
  for ln, raw in text_lines(read_bytes(path), path):
    if not raw.strip():
      continue
    cols = raw.split("\t")
    if len(cols) < 5:
      name = cols[0] if cols else "?"
      if len(cols) == 4:
        raise DataError(f"cascade {name!r} is empty (no paths)", path, ln)
      raise DataError(f"cascade {name!r}: expected 5 tab-separated columns, got {len(cols)}",
                      path, ln)
    name, origin = cols[0], cols[1]
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
        raise DataError(f"cascade {name!r}: bad time in {tok!r}", path, ln) from None
      if not math.isfinite(t) or abs(t) > FLOAT32_MAX:  # stored as float32 minutes
        raise DataError(f"cascade {name!r}: time is not finite in float32 in {tok!r}", path, ln)
      us = pth.split("/")
      if any(not u for u in us):
        raise DataError(f"cascade {name!r}: empty uid in path {tok!r}", path, ln)
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
    if root != origin:
      raise DataError(f"cascade {name!r}: root path {root!r} differs from origin uid {origin!r}",
                      path, ln)
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
  return trees, report
