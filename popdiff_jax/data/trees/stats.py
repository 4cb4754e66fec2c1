"""Statistics and truncation of one tree (host NumPy)."""

from __future__ import annotations

import numpy as np

from popdiff_jax.data.trees.tree import Tree

__all__ = ["tree_stats", "truncate_tree"]


def tree_stats(tree: Tree) -> dict:
  """Size, depth (edges on the longest root path) and width (largest level) of one tree."""
  counts = np.bincount(tree.depth)
  return {"size": tree.size, "depth": int(tree.depth.max()), "width": int(counts.max())}


def truncate_tree(tree: Tree, *, max_depth: int | None = None, max_size: int | None = None) -> Tree:
  """Keeps nodes of depth <= max_depth and then the first max_size nodes in breadth-first order.

  Breadth-first order makes both cuts keep a valid tree (parents come before children).
  """
  keep = np.ones(tree.size, bool)
  if max_depth is not None:
    keep &= tree.depth <= max_depth
  idx = np.flatnonzero(keep)
  if max_size is not None:
    idx = idx[:max_size]
  remap = np.full(tree.size, -1, np.int64)
  remap[idx] = np.arange(idx.size)
  par = tree.parent[idx]
  par = np.where(par >= 0, remap[np.maximum(par, 0)], -1).astype(np.int32)
  return Tree(tree.name, par, tree.depth[idx], tree.user[idx], tree.delay[idx], tree.label)
