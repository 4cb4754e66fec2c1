"""Directed graphs with per-edge transmission probabilities for the Independent Cascade engine.

The dense engine (`popdiff_jax.simulate.ic`) pulls activations along in-edges, so the graph is stored as a
degree-bucketed padded in-neighbour layout ("sliced ELL"): nodes are renumbered by decreasing
in-degree, consecutive nodes whose in-degrees are within a factor `bucket_ratio` of each other share a
bucket, and each bucket is a dense `[nodes, max in-degree]` block. Padding slots carry probability 0,
so they are never live and need no mask. Compared with one block padded to the largest in-degree this
keeps the padded edge count near E (within `bucket_ratio`), which matters because every round of the
bit-parallel engine reads every padded slot. The frontier engine pushes along out-edges and uses an
out-edge CSR over the same positions (`out_offsets`, `out_edges`, `out_dst`), so that both engines
share one activation state.

Input handling (documented choices, each tested in tests/test_ic.py):
  * node ids outside [0, num_nodes), non-finite probabilities, probabilities outside [0, 1], and
    edge arrays of mismatched or wrong shape raise `DataError`;
  * self-loops are dropped (in IC a node can never re-activate itself), and their number is reported
    in `GraphReport.self_loops`; pass `self_loops="error"` to reject them instead;
  * duplicate (u, v) edges are merged into one edge with probability 1 - prod(1 - p_i), which is the
    exact IC semantics of several independent chances along the same pair; their number is reported in
    `GraphReport.merged_duplicates`; pass `duplicates="error"` to reject them instead.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from popdiff_jax._errors import DataError


class InBucket(NamedTuple):
  """One block of the padded in-neighbour layout.

  Attributes:
    src: int32 [Nb, Db]; position (in the renumbered order) of each in-neighbour; 0 in padding slots.
    edge: int32 [Nb, Db]; id of the edge in `ICGraph.senders`, used to key the random stream so that
      samples do not depend on the layout; 0 in padding slots.
    prob: float32 [Nb, Db]; transmission probability of the edge; 0 in padding slots.
  """
  src: np.ndarray
  edge: np.ndarray
  prob: np.ndarray


class ICGraph(NamedTuple):
  """A directed graph with per-edge probabilities, in edge-list and bucketed in-neighbour form.

  Positions: nodes are renumbered by decreasing in-degree; bucket b covers positions
  [sum(Nb for earlier buckets), + Nb); nodes with in-degree 0 come last and belong to no bucket.

  Attributes:
    senders: int32 [E]; source node id of each (deduplicated, loop-free) edge.
    receivers: int32 [E]; target node id of each edge.
    probs: float32 [E]; transmission probability of each edge, in [0, 1].
    perm: int32 [N]; perm[position] = original node id.
    rank: int32 [N]; rank[node id] = position (inverse of perm).
    buckets: tuple of `InBucket`; the padded in-neighbour blocks, in position order.
    out_offsets: int32 [N + 1]; out-edge CSR over positions: the out-edges of the node at position u
      are out_edges[out_offsets[u]:out_offsets[u + 1]] (used by the frontier engine).
    out_edges: int32 [E]; edge ids sorted by the sender's position (ties in edge-id order).
    out_dst: int32 [E]; position of the receiver of out_edges[i].
  """
  senders: np.ndarray
  receivers: np.ndarray
  probs: np.ndarray
  perm: np.ndarray
  rank: np.ndarray
  buckets: tuple
  out_offsets: np.ndarray
  out_edges: np.ndarray
  out_dst: np.ndarray

  @property
  def num_nodes(self) -> int:
    """N, the number of nodes."""
    return int(self.perm.shape[0])

  @property
  def num_edges(self) -> int:
    """The number of real (unpadded) edges."""
    return int(self.senders.shape[0])

  @property
  def padded_edges(self) -> int:
    """Number of padded in-neighbour slots the engine reads per round (>= num_edges)."""
    return int(sum(b.src.shape[0] * b.src.shape[1] for b in self.buckets))


class GraphReport(NamedTuple):
  """What `build_graph` did to the input edge list.

  Attributes:
    input_edges: number of rows given.
    self_loops: number of (u, u) rows dropped.
    merged_duplicates: number of rows merged into an earlier row with the same (u, v).
  """
  input_edges: int
  self_loops: int
  merged_duplicates: int


def _check_edges(edges, probs, num_nodes):
  if not isinstance(num_nodes, (int, np.integer)) or num_nodes <= 0:
    raise DataError(f"num_nodes must be a positive integer, got {num_nodes!r}")
  edges = np.asarray(edges)
  if edges.size == 0:
    edges = edges.reshape(0, 2)
  if edges.ndim != 2 or edges.shape[1] != 2:
    raise DataError(f"edges must have shape [E, 2], got {edges.shape}")
  if not np.issubdtype(edges.dtype, np.integer):
    if edges.size and not np.all(np.equal(np.mod(edges, 1), 0)):
      raise DataError("edges must hold integer node ids")
  edges = edges.astype(np.int64)
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim == 0:
    probs = np.full(edges.shape[0], float(probs))
  if probs.shape != (edges.shape[0],):
    raise DataError(f"probs must have shape [E] = [{edges.shape[0]}] (or be a scalar), got {probs.shape}")
  bad = np.flatnonzero((edges < 0).any(1) | (edges >= num_nodes).any(1))
  if bad.size:
    raise DataError(f"{bad.size} edge(s) have node ids outside [0, {num_nodes}); first is row {bad[0]}: "
                    f"{edges[bad[0]].tolist()}")
  bad = np.flatnonzero(~np.isfinite(probs) | (probs < 0) | (probs > 1))
  if bad.size:
    raise DataError(f"{bad.size} edge probabilit(ies) outside [0, 1]; first is row {bad[0]}: {probs[bad[0]]}")
  return edges, probs


def _merge(edges, probs, num_nodes, self_loops, duplicates):
  loops = edges[:, 0] == edges[:, 1]
  n_loops = int(loops.sum())
  if n_loops and self_loops == "error":
    raise DataError(f"{n_loops} self-loop(s); first is row {int(np.flatnonzero(loops)[0])}")
  edges, probs = edges[~loops], probs[~loops]
  key = edges[:, 0] * num_nodes + edges[:, 1]
  sorted_key = np.sort(key)
  if not np.any(sorted_key[1:] == sorted_key[:-1]):  # no duplicates: nothing to merge
    return edges, probs, n_loops, 0
  uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
  n_dup = int(edges.shape[0] - uniq.shape[0])
  if n_dup and duplicates == "error":
    counts = np.bincount(inverse)
    row = int(np.flatnonzero(counts[inverse] > 1)[1])
    raise DataError(f"{n_dup} duplicate edge(s); e.g. row {row}: {edges[row].tolist()}")
  # Several independent chances along one pair: P(live) = 1 - prod(1 - p_i). log1p keeps tiny p exact.
  log_fail = np.zeros(uniq.shape[0])
  np.add.at(log_fail, inverse, np.log1p(-np.where(probs < 1.0, probs, 0.0)))
  has_one = np.zeros(uniq.shape[0], bool)
  np.logical_or.at(has_one, inverse, probs >= 1.0)
  merged = np.where(has_one, 1.0, -np.expm1(log_fail))
  # Keep edges in order of first appearance so that edge ids follow the input.
  order = np.argsort(first, kind="stable")
  return edges[first[order]], merged[order], n_loops, n_dup


def _buckets(senders, receivers, probs, num_nodes, bucket_ratio):
  indeg = np.bincount(receivers, minlength=num_nodes)
  perm = np.argsort(-indeg, kind="stable").astype(np.int32)
  rank = np.empty(num_nodes, np.int32)
  rank[perm] = np.arange(num_nodes, dtype=np.int32)
  # In-edges grouped by receiver position (ties in edge-id order).
  order = np.lexsort((np.arange(senders.shape[0]), rank[receivers]))
  r_pos = rank[receivers][order]
  starts = np.searchsorted(r_pos, np.arange(num_nodes + 1))
  col = np.arange(order.shape[0]) - starts[r_pos]  # slot of each in-edge within its node's row
  deg_sorted = indeg[perm]
  neg = -deg_sorted  # ascending, for searchsorted
  n_in = int(np.count_nonzero(deg_sorted))
  buckets = []
  pos = 0
  while pos < n_in:
    top = int(deg_sorted[pos])
    # The bucket runs to the first node whose in-degree is below top / bucket_ratio.
    end = min(int(np.searchsorted(neg, -top / bucket_ratio, side="right")), n_in)
    end = max(end, pos + 1)
    nb = end - pos
    lo, hi = starts[pos], starts[end]
    rows, cols, sl = r_pos[lo:hi] - pos, col[lo:hi], order[lo:hi]
    src = np.zeros((nb, top), np.int32)
    eid = np.zeros((nb, top), np.int32)
    pr = np.zeros((nb, top), np.float32)
    src[rows, cols] = rank[senders[sl]]
    eid[rows, cols] = sl
    pr[rows, cols] = probs[sl]
    buckets.append(InBucket(src=src, edge=eid, prob=pr))
    pos = end
  return perm, rank, tuple(buckets)


def build_graph(edges, probs, num_nodes: int, *, self_loops: str = "drop", duplicates: str = "merge",
                bucket_ratio: float = 1.25) -> tuple[ICGraph, GraphReport]:
  """Builds an `ICGraph` from an edge list, validating it (see the module docstring for the rules).

  Args:
    edges: int [E, 2]; (source, target) node ids in [0, num_nodes).
    probs: float [E] or a scalar; transmission probability of each edge, in [0, 1].
    num_nodes: N, the number of nodes (ids 0..N-1; isolated nodes are allowed).
    self_loops: "drop" (default; counted in the report) or "error".
    duplicates: "merge" (default; p = 1 - prod(1 - p_i), counted in the report) or "error".
    bucket_ratio: nodes whose in-degree is within this factor of the bucket's largest share a padded
      block; the padded slot count stays below bucket_ratio * E.

  Returns:
    (graph, report).

  Raises:
    DataError: on ids out of range, probabilities outside [0, 1] or NaN, malformed arrays, or
      self-loops / duplicates when asked to reject them.
  """
  if self_loops not in ("drop", "error") or duplicates not in ("merge", "error"):
    raise ValueError("self_loops must be 'drop' or 'error'; duplicates 'merge' or 'error'")
  if not bucket_ratio >= 1.0:
    raise ValueError(f"bucket_ratio must be >= 1, got {bucket_ratio}")
  edges, probs = _check_edges(edges, probs, num_nodes)
  n_in = int(edges.shape[0])
  edges, probs, n_loops, n_dup = _merge(edges, probs, int(num_nodes), self_loops, duplicates)
  senders = edges[:, 0].astype(np.int32)
  receivers = edges[:, 1].astype(np.int32)
  perm, rank, buckets = _buckets(senders, receivers, probs, int(num_nodes), bucket_ratio)
  src_pos = rank[senders]
  out_edges = np.argsort(src_pos, kind="stable").astype(np.int32)
  out_offsets = np.searchsorted(src_pos[out_edges], np.arange(int(num_nodes) + 1)).astype(np.int32)
  out_dst = rank[receivers[out_edges]].astype(np.int32)
  graph = ICGraph(senders=senders, receivers=receivers, probs=probs.astype(np.float32), perm=perm,
                  rank=rank, buckets=buckets, out_offsets=out_offsets, out_edges=out_edges,
                  out_dst=out_dst)
  return graph, GraphReport(input_edges=n_in, self_loops=n_loops, merged_duplicates=n_dup)


def random_graph(num_nodes: int, num_edges: int, p: float, seed: int) -> tuple[ICGraph, np.ndarray]:
  """A seeded random directed graph with E distinct loop-free edges drawn uniformly, all with prob p.

  The graphs of benchmarks/simulation.py (e.g. 10k nodes, 100k edges); cynetdiff and ndlib get the
  same edge list.

  Returns:
    (graph, edges int32 [E, 2]).
  """
  rng = np.random.default_rng(seed)
  if num_edges > num_nodes * (num_nodes - 1):
    raise DataError(f"cannot draw {num_edges} distinct edges on {num_nodes} nodes")
  keys = np.empty(0, np.int64)
  while keys.shape[0] < num_edges:
    need = num_edges - keys.shape[0]
    u = rng.integers(0, num_nodes, size=need + need // 8 + 16)
    v = rng.integers(0, num_nodes, size=u.shape[0])
    keys = np.sort(np.concatenate([keys, (u * num_nodes + v)[u != v]]))
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
  # A uniform subset in random order (edge ids do not follow the node ids).
  keys = rng.permutation(keys)[:num_edges]
  edges = np.stack([keys // num_nodes, keys % num_nodes], 1).astype(np.int32)
  graph, _ = build_graph(edges, np.float32(p), num_nodes)
  return graph, edges
