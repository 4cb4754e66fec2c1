"""Level-wise batches of trees: :func:`make_tree_batch`, :func:`bucket_tree_batches`.

The nodes of a batch of trees are laid out depth by depth (all nodes of depth 0 of all trees, then
depth 1, ...), each depth padded to a multiple of a static chunk width ``C``, into a
:class:`~popdiff_jax.types.TreeBatch`. One scan step of the model computes one chunk, i.e. ``C``
nodes of a single depth whose parents all sit in earlier chunks; with ``C`` at least the widest
level, this is exactly one step per depth. The work is ``K * C <= num_nodes + depth * C`` node
updates, proportional to the number of nodes, not nodes times depth. Batches are bucketed to a few
static numbers of chunks ``K`` (one compile per bucket).

The nodes with children (the *parents*) are listed once more, in ``S`` chunks of a static width
``W`` (``TreeBatch.parent_chunks``): the sequential steps of the model's tree LSTM
(``nn.tree_lstm.tree_lstm_by_parents``), which computes the parents in order and then every node
at once. A parent goes to the first chunk after its own parent's that has room (in slot order),
so a chunk may hold parents of several depths and ``S`` is about the depth of the deepest parent
when ``W`` is at least the widest level of parents. ``S`` is bucketed too (``parent_buckets``).
"""

from __future__ import annotations

import collections
import math
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees.tree import tree_from_parents
from popdiff_jax.types import TreeBatch

__all__ = ["TreeExample", "node_targets", "num_chunks_needed", "make_tree_batch", "tree_batch",
           "bucket_tree_batches", "schedule_parents"]


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


def num_chunks_needed(depths: Iterable[np.ndarray], chunk: int) -> int:
  """Scan steps K for a group of trees: sum over depths of ceil(level width / chunk)."""
  counts = collections.Counter()
  for d in depths:
    for lvl, c in enumerate(np.bincount(d)):
      counts[lvl] += int(c)
  return sum(math.ceil(c / chunk) for c in counts.values() if c)


def schedule_parents(own_parent: Sequence[int], width: int) -> np.ndarray:
  """Host-side: the chunk of each parent in the sequential steps of the tree LSTM.

  The parents are given in slot order (depth by depth, so a parent's own parent comes first);
  each goes to the current chunk if that chunk lies after its own parent's and has room, else to
  the next chunk that does (a chunk is never revisited).

  Args:
    own_parent: for each parent, the index in this list of its own parent (-1: a root).
    width: W, parents per chunk.

  Returns:
    int64 [P] chunk of each parent; chunk numbers increase along the list.
  """
  chunk = [0] * len(own_parent)
  cur = fill = 0
  for i, q in enumerate(own_parent):
    earliest = 0 if q < 0 else chunk[q] + 1
    if earliest > cur:
      cur, fill = earliest, 0
    elif fill == width:
      cur, fill = cur + 1, 0
    chunk[i] = cur
    fill += 1
  return np.asarray(chunk, np.int64)


def _bucket(need: int, buckets: Sequence[int] | None) -> int:
  """The smallest bucket >= need (None: need itself; beyond the largest: a multiple of it)."""
  if not buckets:
    return need
  fits = [b for b in sorted(buckets) if b >= need]
  return fits[0] if fits else -(-need // max(buckets)) * max(buckets)


def make_tree_batch(examples: Sequence[TreeExample], *, num_protos: int, chunk: int,
                    num_chunks: int, batch_trees: int, parent_chunk: int | None = None,
                    parent_buckets: Sequence[int] | None = None) -> TreeBatch:
  """Lays out trees level by level into one padded :class:`TreeBatch`.

  Args:
    examples: at most ``batch_trees`` trees.
    num_protos: k (targets have k + 1 columns).
    chunk: C, static chunk width.
    num_chunks: K, static number of chunks (a bucket size); must be >= num_chunks_needed.
    batch_trees: B, static number of tree slots.
    parent_chunk: W, parents per sequential step (default: C).
    parent_buckets: allowed numbers S of parent chunks: the smallest that fits (beyond the
      largest, a multiple of it); None: exactly the number needed.

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
  width = chunk if parent_chunk is None else parent_chunk
  if width < 1:
    raise ValueError(f"parent_chunk must be >= 1, got {width}")
  par_slots = np.zeros(0, np.int64)
  par_chunk = np.zeros(0, np.int64)
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
    # The parents in slot order, each with the index of its own parent in that list.
    is_par = np.zeros(offs[-1], bool)
    is_par[glob_parent[glob_parent >= 0]] = True
    par_glob = np.flatnonzero(is_par)
    par_glob = par_glob[np.argsort(slot[par_glob], kind="stable")]
    index_of = np.full(offs[-1], -1, np.int64)
    index_of[par_glob] = np.arange(par_glob.size)
    own = glob_parent[par_glob]
    own_idx = np.where(own >= 0, index_of[np.maximum(own, 0)], -1)
    par_slots = slot[par_glob]
    par_chunk = schedule_parents(own_idx.tolist(), width)
  s_need = int(par_chunk[-1]) + 1 if par_chunk.size else 1
  parent_chunks = np.full((_bucket(s_need, parent_buckets), width), n_slots, np.int32)
  if par_chunk.size:
    first = np.searchsorted(par_chunk, par_chunk, side="left")
    parent_chunks[par_chunk, np.arange(par_chunk.size) - first] = par_slots
  return TreeBatch(x, parent, tree, depth, proto, targets, node_mask, content, tree_mask,
                   chunk_depth, parent_chunks)


def bucket_tree_batches(examples: Sequence[TreeExample], *, num_protos: int, batch_trees: int,
                        chunk: int, buckets: Sequence[int], parent_chunk: int | None = None,
                        parent_buckets: Sequence[int] | None = None) -> list[TreeBatch]:
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
    parent_chunk: W, parents per sequential step of the tree LSTM (default: C).
    parent_buckets: allowed numbers S of parent chunks (``make_tree_batch``; default:
      ``buckets``); they do not change which trees go together.

  Returns:
    The batches; every batch's K is one of ``buckets``.
  """
  buckets = sorted(buckets)
  parent_buckets = buckets if parent_buckets is None else sorted(parent_buckets)
  out, cur, cur_levels = [], [], collections.Counter()

  def need(levels):
    return sum(math.ceil(c / chunk) for c in levels.values() if c)

  def flush():
    if cur:
      k = need(cur_levels)
      nk = next(b for b in buckets if b >= k)
      out.append(make_tree_batch(cur, num_protos=num_protos, chunk=chunk, num_chunks=nk,
                                 batch_trees=batch_trees, parent_chunk=parent_chunk,
                                 parent_buckets=parent_buckets))

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


def tree_batch(parents: Sequence[Sequence[int]], *, node_features: Sequence[Any] | None = None,
               content: Sequence[Any] | None = None, protos: Sequence[Sequence[int]] | None = None,
               num_protos: int = 1, chunk: int | None = None,
               parent_chunk: int | None = None) -> TreeBatch:
  """A level-wise :class:`TreeBatch` from plain parent arrays.

  Args:
    parents: one parent array per tree (``-1`` for the root, else a node index), any node order.
    node_features: per tree, float [n, D] node inputs (default: ones, D = 1).
    content: per tree, float [F] content feature (default: ones, F = 1).
    protos: per tree, int [n] prototype ids in [0, num_protos) (default: zeros).
    num_protos: k; targets get k + 1 columns (the last is terminal).
    chunk: chunk width C (default: the widest level, i.e. one scan step per depth).
    parent_chunk: W, parents per sequential step (default: the widest level of parents, i.e.
      one step per depth of parents).

  Returns:
    The ``TreeBatch`` (nodes in breadth-first order, so features are reordered with the nodes).

  Raises:
    DataError: a malformed parent array (no or several roots, a missing parent, a cycle).
  """
  examples = []
  for i, par in enumerate(parents):
    try:
      par = [int(p) for p in par]
    except (TypeError, ValueError):
      raise DataError(f"tree {i}: parent indices must be integers") from None
    for j, p in enumerate(par):
      if not -1 <= p < len(par):
        raise DataError(f"tree {i}: node {j} has parent {p}, which is missing")
    tree = tree_from_parents(par, name=str(i))
    order = tree.user.astype(np.int64)  # user ids default to the original node indices
    n = tree.size
    x = (np.ones((n, 1), np.float32) if node_features is None
         else np.asarray(node_features[i], np.float32)[order])
    if x.shape[0] != n:
      raise DataError(f"tree {i}: {x.shape[0]} feature rows for {n} nodes")
    pr = np.zeros(n, np.int32) if protos is None else np.asarray(protos[i], np.int32)[order]
    if pr.shape != (n,) or (pr < 0).any() or (pr >= num_protos).any():
      raise DataError(f"tree {i}: prototypes must be {n} ids in [0, {num_protos})")
    cont = np.ones(1, np.float32) if content is None else np.asarray(content[i], np.float32)
    examples.append(TreeExample(name=str(i), parent=tree.parent, depth=tree.depth, x=x,
                                proto=pr, content=cont))
  if not examples:
    raise DataError("no trees")
  if chunk is None:
    chunk = max(int(np.bincount(e.depth).max()) for e in examples)
  if parent_chunk is None:
    widths = collections.Counter()
    for e in examples:
      has_child = np.zeros(e.parent.shape[0], bool)
      has_child[e.parent[e.parent >= 0]] = True
      widths.update(e.depth[has_child].tolist())
    parent_chunk = max(widths.values(), default=1)
  k = num_chunks_needed([e.depth for e in examples], chunk)
  return make_tree_batch(examples, num_protos=num_protos, chunk=chunk, num_chunks=k,
                         batch_trees=len(examples), parent_chunk=parent_chunk)
