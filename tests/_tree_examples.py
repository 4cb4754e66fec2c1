"""Random trees and level-wise batches shared by the tree tests."""

import numpy as np

from popdiff_jax.data import trees as T


def random_parents(rng, n, max_branch=None):
  """Random BFS-ordered parent array of n nodes (parent[i] < i)."""
  par = [-1]
  for i in range(1, n):
    lo = 0 if max_branch is None else max(0, i - max_branch)
    par.append(int(rng.integers(lo, i)))
  return T.tree_from_parents(par, name=f"r{n}").parent


def make_examples(rng, parents_list, d=5, f=3, k=4):
  """One TreeExample per parent array: random inputs (n, d), prototypes in [0, k), content (f,)."""
  out = []
  for j, par in enumerate(parents_list):
    t = T.tree_from_parents(par, name=f"t{j}")
    n = t.size
    out.append(T.TreeExample(t.name, t.parent, t.depth, rng.normal(size=(n, d)).astype(np.float32),
                             rng.integers(0, k, n).astype(np.int32),
                             rng.normal(size=f).astype(np.float32)))
  return out


def tree_slots(batch, j):
  """Node slots of tree j of a TreeBatch, in the tree's BFS order."""
  tree = np.asarray(batch.tree)
  slots = np.flatnonzero(np.asarray(batch.node_mask) & (tree == j))
  # Within a tree, slots are ordered by (depth, BFS index): BFS order itself.
  return slots[np.argsort(np.asarray(batch.depth)[slots], kind="stable")]


def gather_nodes(batch, arr, ex_list):
  """Per-tree (n_i, ...) rows of a node-slot array, in each tree's BFS order."""
  return [arr[tree_slots(batch, j)] for j in range(len(ex_list))]
