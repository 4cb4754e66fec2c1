"""Propagation trees: readers, validation, cleaning, and the level-wise batch layout.

Three on-disk formats are read into one host-side container, :class:`Tree` (NumPy, breadth-first
order, node 0 is the root, ``parent[i] < i``):

* Twitter15 (rumdetect2017 release) tree files, read straight from ``twitter15_tree.tar.gz`` with
  :mod:`tarfile`: one edge per line, ``['uid', 'tweet_id', 'delay_min']->['uid', 'tweet_id', 'delay_min']``,
  first line ``['ROOT', 'ROOT', '0.0']->root``. A node is the whole (uid, tweet_id, delay) triple.
* The Weibo path format of CasFlow / DeepHawkes: ``cascade_id<TAB>origin_uid<TAB>pub_time<TAB>n<TAB>paths``
  where each path ``a/b/c:dt`` says c retweeted via b (from a) dt seconds after publication. A node is a uid.
* A plain parent-array format, one tree per line: ``name<TAB>p_0 p_1 ... p_{n-1}[<TAB>u_0 ... u_{n-1}]``
  with ``-1`` for the root and ``p_i`` a 0-based node index (optional user ids after a second tab).

**Cleaning rule** (:func:`tree_from_edges` with ``strict=False``, the default for the two real
datasets, whose originals have known quirks; every removal is counted in a :class:`CleaningReport`):

1. a self-loop line (parent == child) is dropped;
2. an exact duplicate edge line is dropped;
3. an edge into the root is dropped (the root has no parent);
4. a node with several distinct parents keeps the **earliest** parent (smallest delay of the
   parent node; ties go to the parent listed first in the file) and its other parent edges are dropped;
5. a node that is then not reachable from the root (its parent never appears, or it sits on a cycle)
   is dropped with its descendants.

With ``strict=True`` each of these raises :class:`~popdiff_jax.DataError` naming the tree, the file and
the line instead. An empty tree is always an error. The parent-array format is always strict: a cycle,
a parent index out of range (missing parent), several roots or none, or an empty line raise.

**Level-wise batches** (:class:`TreeBatch`): the nodes of a batch of trees are laid out depth by depth
(all nodes of depth 0 of all trees, then depth 1, ...), each depth padded to a multiple of a static
chunk width ``C``. One scan step of the model computes one chunk, i.e. ``C`` nodes of a single depth
whose parents all sit in earlier chunks; with ``C`` at least the widest level, this is exactly one step
per depth. The work is ``K * C <= num_nodes + depth * C`` node updates, proportional to the number of
nodes, not nodes times depth. Batches are bucketed to a few static numbers of chunks ``K``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
import tarfile
import zlib
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from popdiff_jax._errors import DataError

__all__ = [
  "Tree", "CleaningReport", "TreeExample", "TreeBatch",
  "tree_from_parents", "tree_from_edges", "read_twitter15", "read_twitter15_labels", "read_weibo",
  "read_parent_arrays", "tree_stats", "node_targets", "num_chunks_needed", "make_tree_batch",
  "bucket_tree_batches", "truncate_tree",
]


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
    for f in dataclasses.fields(self):
      setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# Building and validating one tree.


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


# ----------------------------------------------------------------------------------------------
# Readers.

def _text_lines(raw: bytes, path: str) -> Iterable[tuple[int, str]]:
  """``(1-based line number, text)`` of every line of UTF-8 ``raw``; only ``\n`` ends a line (a
  trailing ``\r`` is dropped). Bytes that are not UTF-8 raise DataError naming the line."""
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"not UTF-8 text (byte {e.start})", path,
                    raw[: e.start].count(b"\n") + 1) from None
  for ln, line in enumerate(text.split("\n"), 1):
    yield ln, line[:-1] if line.endswith("\r") else line


def _read_bytes(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise DataError(f"cannot read file: {e.strerror or e}", path) from None


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite(token: str, what: str, name: str, path: str, line: int) -> float:
  try:
    value = float(token)
  except ValueError:
    raise DataError(f"tree {name!r}: {what} is not a number: {token[:40]!r}", path, line) from None
  if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:  # delays are stored as float32
    raise DataError(f"tree {name!r}: {what} is not finite in float32: {token[:40]!r}", path, line)
  return value


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
    _finite(pa[2], "parent delay", name, path, ln)
    _finite(ch[2], "delay", name, path, ln)
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
  for ln, raw in _text_lines(_read_bytes(path), path):
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
        text = _text_lines(tf.extractfile(m).read(), where)
        tree, rep = _parse_twitter_tree(text, name, where, strict, labels.get(name))
        trees.append(tree)
        report.add(rep)
  except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
    # A missing, truncated or non-gzip archive: one line naming it, not a tarfile traceback.
    raise DataError(f"cannot read the tree archive: {e}", tar_path) from None
  return trees, report


def read_weibo(path: str | os.PathLike, *, strict: bool = False
               ) -> tuple[list[Tree], CleaningReport]:
  """Reads the CasFlow / DeepHawkes Weibo path format (delays converted to minutes).

  A node is a uid; path ``a/b/c:dt`` gives c the parent b. A uid that retweets twice is a node with
  several parents: the cleaning rule keeps its earliest retweet (smallest dt).
  """
  path = os.fspath(path)
  trees, report = [], CleaningReport()
  for ln, raw in _text_lines(_read_bytes(path), path):
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
      if not math.isfinite(t) or abs(t) > _FLOAT32_MAX:  # stored as float32 minutes
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


def read_parent_arrays(path: str | os.PathLike) -> list[Tree]:
  """Reads the plain parent-array format (strict; see the module docstring)."""
  path = os.fspath(path)
  trees = []
  for ln, raw in _text_lines(_read_bytes(path), path):
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


# ----------------------------------------------------------------------------------------------
# Statistics, truncation, targets.


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


def node_targets(parent: np.ndarray, proto: np.ndarray, num_protos: int) -> np.ndarray:
  """Multi-hot targets of the paper: prototypes of a node's children, plus terminal.

  Args:
    parent: (n,) int, -1 for the root.
    proto: (n,) int in [0, num_protos), each node's prototype.
    num_protos: k.

  Returns:
    (n, k + 1) float32: column u < k is 1 iff some child of the node has prototype u; column k
    (terminal) is 1 iff the node is a leaf.
  """
  n = parent.shape[0]
  t = np.zeros((n, num_protos + 1), np.float32)
  child = np.flatnonzero(parent >= 0)
  t[parent[child], proto[child]] = 1.0
  has_child = np.zeros(n, bool)
  has_child[parent[child]] = True
  t[:, num_protos] = (~has_child).astype(np.float32)
  return t


# ----------------------------------------------------------------------------------------------
# Level-wise batches.


class TreeExample(NamedTuple):
  """One tree ready for the model (host NumPy).

  Attributes:
    name: tree name.
    parent: (n,) int32 breadth-first parent array (-1 root).
    depth: (n,) int32.
    x: (n, D) float32 node input features (the user's social / behavioural feature).
    proto: (n,) int32 prototype id of each node's user, in [0, k).
    content: (F,) float32 content feature of the tree (the paper's image feature).
  """
  name: str
  parent: np.ndarray
  depth: np.ndarray
  x: np.ndarray
  proto: np.ndarray
  content: np.ndarray


class TreeBatch(NamedTuple):
  """A level-wise batch of B tree slots and N = K * C node slots (static shapes, masks).

  Node slots are ordered depth by depth; each depth is padded to a multiple of the chunk width C,
  so chunk k (slots ``k*C .. k*C+C-1``) holds nodes of a single depth whose parents lie in earlier
  chunks. Model states live in a buffer of B + N rows: rows ``0..B-1`` are the virtual parents of
  the roots (h = 0, c = content embedding), row ``B + j`` is node slot j. Padding nodes point at row
  0, belong to tree 0 and are masked; padding trees have ``tree_mask`` False.

  Attributes:
    x: (N, D) float32 node inputs.
    parent: (N,) int32 row of the parent state in the (B + N)-row state buffer.
    tree: (N,) int32 tree slot of each node, in [0, B).
    depth: (N,) int32 depth of each node (0 for roots and padding).
    proto: (N,) int32 prototype of each node's user (0 for padding).
    targets: (N, k + 1) float32 multi-hot children prototypes + terminal (see node_targets).
    node_mask: (N,) bool, True for real nodes.
    content: (B, F) float32 content feature of each tree.
    tree_mask: (B,) bool, True for real trees.
    chunk_depth: (K,) int32 depth of each chunk (K scan steps; C = N // K).
  """
  x: np.ndarray
  parent: np.ndarray
  tree: np.ndarray
  depth: np.ndarray
  proto: np.ndarray
  targets: np.ndarray
  node_mask: np.ndarray
  content: np.ndarray
  tree_mask: np.ndarray
  chunk_depth: np.ndarray


def num_chunks_needed(depths: Iterable[np.ndarray], chunk: int) -> int:
  """Scan steps K for a group of trees: sum over depths of ceil(level width / chunk)."""
  counts = collections.Counter()
  for d in depths:
    for lvl, c in enumerate(np.bincount(d)):
      counts[lvl] += int(c)
  return sum(math.ceil(c / chunk) for c in counts.values() if c)


def make_tree_batch(examples: Sequence[TreeExample], *, num_protos: int, chunk: int,
                    num_chunks: int, batch_trees: int) -> TreeBatch:
  """Lays out trees level by level into one padded :class:`TreeBatch`.

  Args:
    examples: at most ``batch_trees`` trees.
    num_protos: k (targets have k + 1 columns).
    chunk: C, static chunk width.
    num_chunks: K, static number of chunks (a bucket size); must be >= num_chunks_needed.
    batch_trees: B, static number of tree slots.

  Raises:
    ValueError: the trees do not fit the static shape.
  """
  if len(examples) > batch_trees:
    raise ValueError(f"{len(examples)} trees exceed batch_trees={batch_trees}")
  need = num_chunks_needed([e.depth for e in examples], chunk)
  if need > num_chunks:
    raise ValueError(f"trees need {need} chunks of {chunk}, bucket has {num_chunks}")
  dim = examples[0].x.shape[1] if examples else 1
  fdim = examples[0].content.shape[0] if examples else 1
  n_slots = num_chunks * chunk
  x = np.zeros((n_slots, dim), np.float32)
  parent = np.zeros(n_slots, np.int32)
  tree = np.zeros(n_slots, np.int32)
  depth = np.zeros(n_slots, np.int32)
  proto = np.zeros(n_slots, np.int32)
  targets = np.zeros((n_slots, num_protos + 1), np.float32)
  node_mask = np.zeros(n_slots, bool)
  content = np.zeros((batch_trees, fdim), np.float32)
  tree_mask = np.zeros(batch_trees, bool)
  chunk_depth = np.zeros(num_chunks, np.int32)
  if examples:
    sizes = np.asarray([e.parent.shape[0] for e in examples])
    offs = np.concatenate([[0], np.cumsum(sizes)])
    all_depth = np.concatenate([e.depth for e in examples]).astype(np.int64)
    all_tree = np.repeat(np.arange(len(examples)), sizes)
    # Stable sort by depth keeps tree order, then breadth-first order, inside each level.
    order = np.argsort(all_depth, kind="stable")
    widths = np.bincount(all_depth)
    nchunks = -(-widths // chunk)
    level_start = np.concatenate([[0], np.cumsum(nchunks)[:-1]]) * chunk
    first_of_level = np.concatenate([[0], np.cumsum(widths)[:-1]])
    sorted_depth = all_depth[order]
    slot_sorted = level_start[sorted_depth] + (np.arange(order.size) - first_of_level[sorted_depth])
    slot = np.empty_like(slot_sorted)
    slot[order] = slot_sorted
    all_parent = np.concatenate([e.parent for e in examples]).astype(np.int64)
    glob_parent = np.where(all_parent >= 0, all_parent + np.repeat(offs[:-1], sizes), -1)
    parent_row = np.where(glob_parent >= 0, batch_trees + slot[np.maximum(glob_parent, 0)],
                          all_tree)
    x[slot] = np.concatenate([e.x for e in examples])
    parent[slot] = parent_row
    tree[slot] = all_tree
    depth[slot] = all_depth
    all_proto = np.concatenate([e.proto for e in examples])
    proto[slot] = all_proto
    targets[slot] = np.concatenate([node_targets(e.parent, e.proto, num_protos)
                                    for e in examples])
    node_mask[slot] = True
    content[:len(examples)] = np.stack([e.content for e in examples])
    tree_mask[:len(examples)] = True
    for lvl, (start, nc) in enumerate(zip(level_start // chunk, nchunks)):
      chunk_depth[start:start + nc] = lvl
  return TreeBatch(x, parent, tree, depth, proto, targets, node_mask, content, tree_mask,
                   chunk_depth)


def bucket_tree_batches(examples: Sequence[TreeExample], *, num_protos: int, batch_trees: int,
                        chunk: int, buckets: Sequence[int]) -> list[TreeBatch]:
  """Packs trees greedily, in the given order, into batches of static bucketed shapes.

  A batch takes trees until ``batch_trees`` or until the next tree would need more chunks than
  the largest bucket; its K is then the smallest bucket that fits. No tree is dropped: a single
  tree larger than the largest bucket raises.

  Args:
    examples: the trees (sort them by size first for tighter packing, shuffle for training).
    num_protos: k.
    batch_trees: B.
    chunk: C.
    buckets: allowed numbers of chunks K, e.g. (8, 16, 32, 64).

  Returns:
    The batches; every batch's K is one of ``buckets``.
  """
  buckets = sorted(buckets)
  out, cur, cur_levels = [], [], collections.Counter()

  def need(levels):
    return sum(math.ceil(c / chunk) for c in levels.values() if c)

  def flush():
    if cur:
      k = need(cur_levels)
      nk = next(b for b in buckets if b >= k)
      out.append(make_tree_batch(cur, num_protos=num_protos, chunk=chunk, num_chunks=nk,
                                 batch_trees=batch_trees))

  for e in examples:
    lv = collections.Counter(dict(enumerate(np.bincount(e.depth).tolist())))
    if need(lv) > buckets[-1]:
      raise ValueError(f"tree {e.name!r} needs {need(lv)} chunks of {chunk} > largest bucket "
                       f"{buckets[-1]}; raise the bucket or the chunk width")
    trial = cur_levels + lv
    if len(cur) == batch_trees or need(trial) > buckets[-1]:
      flush()
      cur, cur_levels = [], collections.Counter()
      trial = lv
    cur.append(e)
    cur_levels = trial
  flush()
  return out
