"""The tree container and the cleaning rule: :class:`Tree`, :func:`tree_from_parents`,
:func:`tree_from_edges`.

A :class:`Tree` is one propagation tree on the host (NumPy) in breadth-first order: node 0 is
the root and ``parent[i] < i``. Every reader of ``popdiff_jax.data.trees`` builds its trees with
the two functions here.

**Cleaning rule** (:func:`tree_from_edges` with ``strict=False``, the default for the two real
datasets, whose originals have known quirks; every removal is counted in a
:class:`CleaningReport`):

1. a self-loop line (parent == child) is dropped;
2. an exact duplicate edge line is dropped;
3. an edge into the root is dropped (the root has no parent);
4. a node with several distinct parents keeps the **earliest** parent (smallest delay of the
   parent node; ties go to the parent listed first in the file) and its other parent edges are
   dropped;
5. a node that is then not reachable from the root (its parent never appears, or it sits on a
   cycle) is dropped with its descendants.

With ``strict=True`` each of these raises :class:`~popdiff_jax.DataError` naming the tree, the
file and the line instead. An empty tree is always an error. :func:`tree_from_parents` is always
strict: a cycle, a parent index out of range (missing parent), several roots or none raise.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from popdiff_jax._errors import DataError

__all__ = ["Tree", "CleaningReport", "tree_from_parents", "tree_from_edges"]


class Tree(NamedTuple):
  """One propagation tree in breadth-first order (host-side NumPy).

  Attributes:
    name: the tree's name (Twitter15: root tweet id; Weibo: cascade id).
    parent: (n,) int32, ``-1`` for the root (node 0), else the parent's index (< own index).
    depth: (n,) int32, 0 for the root.
    user: (n,) str, user id of each node.
    delay: (n,) float32, time of the node after the root (minutes; 0 for the root).
    label: the tree's label (Twitter15 veracity) or None.
  """
  name: str
  parent: np.ndarray
  depth: np.ndarray
  user: np.ndarray
  delay: np.ndarray
  label: str | None = None

  @property
  def size(self) -> int:
    """The number of nodes, root included."""
    return int(self.parent.shape[0])


@dataclasses.dataclass
class CleaningReport:
  """What the cleaning rule removed, summed over the trees read (see the module docstring)."""
  trees: int = 0
  edge_lines: int = 0
  self_loops: int = 0
  duplicate_edges: int = 0
  edges_into_root: int = 0
  roots_with_parent_edges: int = 0
  multi_parent_nodes: int = 0
  dropped_parent_edges: int = 0
  unreachable_nodes: int = 0
  kept_nodes: int = 0

  def add(self, other: "CleaningReport") -> None:
    """Adds another report's counts to this one."""
    for f in dataclasses.fields(self):
      setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

  def as_dict(self) -> dict:
    """The counts as a plain dict (for result files)."""
    return dataclasses.asdict(self)



def tree_from_parents(parent: Sequence[int] | np.ndarray, *, name: str, user=None, delay=None,
                      label: str | None = None, path: str | None = None,
                      line: int | None = None) -> Tree:
  """Validates a parent array and returns the tree in breadth-first order.

  Args:
    parent: (n,) ints, ``-1`` for the single root, else a node index in ``[0, n)``.
    name: tree name, used in error messages.
    user: optional (n,) user ids (default: the node indices as strings).
    delay: optional (n,) delays (default: zeros).
    label: optional tree label.
    path, line: where the tree was read from (for errors).

  Returns:
    The :class:`Tree`, nodes reordered breadth first (stable: by depth, then original index).

  Raises:
    DataError: empty tree, no root or several roots, a parent index out of range (missing
      parent), a self-parent, or a cycle (nodes not reachable from the root). The message names
      the tree and the offending node.
  """
  parent = np.asarray(parent, dtype=np.int64)
  n = parent.shape[0]
  if n == 0:
    raise DataError(f"tree {name!r} is empty", path, line)
  roots = np.flatnonzero(parent == -1)
  if roots.size != 1:
    raise DataError(f"tree {name!r} has {roots.size} roots (nodes with parent -1), expected 1",
                    path, line)
  bad = np.flatnonzero((parent < -1) | (parent >= n))
  if bad.size:
    raise DataError(f"tree {name!r}: node {int(bad[0])} has parent {int(parent[bad[0]])}, which is "
                    f"missing (valid indices 0..{n - 1})", path, line)
  selfp = np.flatnonzero(parent == np.arange(n))
  if selfp.size:
    raise DataError(f"tree {name!r}: node {int(selfp[0])} is its own parent (cycle)", path, line)
  root = int(roots[0])
  children = [[] for _ in range(n)]
  for i, p in enumerate(parent.tolist()):
    if p >= 0:
      children[p].append(i)
  order = [root]
  depth_of = np.full(n, -1, np.int64)
  depth_of[root] = 0
  head = 0
  while head < len(order):
    u = order[head]
    head += 1
    for v in children[u]:
      depth_of[v] = depth_of[u] + 1
      order.append(v)
  if len(order) != n:
    lost = np.flatnonzero(depth_of < 0)
    raise DataError(f"tree {name!r}: nodes {lost[:5].tolist()} are not reachable from the root "
                    "(they form a cycle)", path, line)
  order = np.asarray(sorted(order, key=lambda i: (depth_of[i], i)), np.int64)
  new_index = np.empty(n, np.int64)
  new_index[order] = np.arange(n)
  old_parent = parent[order]
  new_parent = np.where(old_parent >= 0, new_index[np.maximum(old_parent, 0)], -1)
  users = np.asarray([str(i) for i in range(n)] if user is None else [str(u) for u in user])
  if users.shape[0] != n:
    raise DataError(f"tree {name!r}: {users.shape[0]} user ids for {n} nodes", path, line)
  delays = np.zeros(n, np.float32) if delay is None else np.asarray(delay, np.float32)
  return Tree(name=str(name), parent=new_parent.astype(np.int32),
              depth=depth_of[order].astype(np.int32), user=users[order],
              delay=delays[order], label=label)


def tree_from_edges(edges: Sequence[tuple], root, *, name: str, strict: bool = False,
                    delay_of=None, user_of=None, label: str | None = None,
                    path: str | None = None, lines: Sequence[int] | None = None
                    ) -> tuple[Tree, CleaningReport]:
  """Builds a tree from (parent_key, child_key) edges with the cleaning rule of the module docstring.

  Args:
    edges: the edge list in file order; keys are hashable node identities.
    root: the root's key.
    name: tree name (errors and the result).
    strict: raise DataError instead of applying the cleaning rule.
    delay_of: key -> float time of the node (for "earliest parent wins"); default: 0.
    user_of: key -> user id string; default: ``str(key)``.
    label: optional tree label.
    path: file the edges came from; lines: (len(edges),) 1-based line numbers.

  Returns:
    (tree, report): the cleaned tree and the counts of what was removed.
  """
  delay_of = delay_of or (lambda k: 0.0)
  user_of = user_of or str
  rep = CleaningReport(trees=1, edge_lines=len(edges))
  line_of = (lambda j: None) if lines is None else (lambda j: lines[j])
  parents: dict = collections.OrderedDict()
  parent_line: dict = {}
  seen_edges = set()
  root_has_parent = False
  for j, (p, c) in enumerate(edges):
    if p == c:
      if strict:
        raise DataError(f"tree {name!r}: self-loop edge {p!r} -> itself", path, line_of(j))
      rep.self_loops += 1
      continue
    if (p, c) in seen_edges:
      rep.duplicate_edges += 1
      continue
    seen_edges.add((p, c))
    if c == root:
      if strict:
        raise DataError(f"tree {name!r}: an edge leads into the root {root!r}", path, line_of(j))
      rep.edges_into_root += 1
      root_has_parent = True
      continue
    if c in parents:
      if strict:
        raise DataError(f"tree {name!r}: node {c!r} has two parents ({parents[c][0]!r} on line "
                        f"{parent_line[c]} and {p!r})", path, line_of(j))
      parents[c].append(p)
    else:
      parents[c] = [p]
      parent_line[c] = line_of(j)
  rep.roots_with_parent_edges += int(root_has_parent)
  chosen = {}
  for c, ps in parents.items():
    if len(ps) > 1:
      rep.multi_parent_nodes += 1
      rep.dropped_parent_edges += len(ps) - 1
      # Earliest parent wins; min() keeps the first listed among equal delays.
      chosen[c] = min(ps, key=lambda q: float(delay_of(q)))
    else:
      chosen[c] = ps[0]
  children = collections.defaultdict(list)
  for c, p in chosen.items():
    children[p].append(c)
  order = [root]
  index = {root: 0}
  head = 0
  while head < len(order):
    u = order[head]
    head += 1
    for v in children.get(u, ()):
      if v not in index:
        index[v] = len(order)
        order.append(v)
  unreachable = [c for c in chosen if c not in index]
  if unreachable:
    if strict:
      missing = chosen[unreachable[0]]
      raise DataError(f"tree {name!r}: node {unreachable[0]!r} is not reachable from the root "
                      f"(its parent {missing!r} is missing or it lies on a cycle)", path,
                      parent_line.get(unreachable[0]))
    rep.unreachable_nodes += len(unreachable)
  parent_arr = [-1] + [index[chosen[k]] for k in order[1:]]
  tree = tree_from_parents(parent_arr, name=name, user=[user_of(k) for k in order],
                           delay=[float(delay_of(k)) for k in order], label=label, path=path)
  rep.kept_nodes = tree.size
  return tree, rep
