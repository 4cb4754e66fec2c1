"""Bit-parallel Monte Carlo Independent Cascade simulation in one jitted call.

Formulation (live-edge worlds, Kempe et al. 2003): an IC run from seed set A activates exactly the
nodes reachable from A in a random subgraph that keeps each edge e independently with probability
p_e. We simulate 32 runs per uint32 word: bit j of word w is run 32 w + j.

  1. Live edges. For every (padded in-edge slot e, word w) we draw one 32-bit mask whose bits are
     independently 1 with probability q_e / 2^k, q_e = round(p_e 2^k), k = `prob_bits` (default 16,
     so p is quantised to multiples of 2^-16: 0.01 becomes 0.0099945). The mask comes from k random
     words by Knuth's binary-expansion method (process the bits of q_e from least significant:
     r <- b ? (x | r) : (x & r)); the random words are a counter-based hash of (key, edge id, global
     word, step), so nothing random is stored beyond the masks of the current chunk and the same key
     gives the same samples whatever the layout or chunking.
  2. Propagation. active[v, w] |= OR over in-edges (u -> v) of active[u, w] & live[e, w], iterated
     with `lax.while_loop` to the fixpoint (at most the longest shortest live path, <= N - 1 rounds).
     This is a gather and a bitwise-OR reduction over the padded in-neighbour blocks of
     `popdiff_jax.simulate.graph`: no scatter, so nothing collapses as the number of runs grows.
  3. Readout. Per-node activation probabilities are popcounts over words; per-run spreads sum bit j
     of each word over nodes.

Cost and floor (documented in the README with measured numbers): with E' padded in-edge slots,
N nodes and W = S / 32 words per chunk, mask generation costs E' W k hash evaluations (compute bound)
and each round reads the masks and gathers the sources' words, about 2 E' W 4 bytes, plus N W 8 bytes
for the state. For the 10k-node benchmark graph (E' ~ 1.1e5, S = 1e5, W = 3125) that is ~2.8 GB per
round: ~1 ms at the H100's ~3 TB/s, so the floor is rounds x 1 ms + generation. The work is
proportional to E' x rounds, not to the number of edges the runs actually touch; at p = 0.01 the runs
touch ~1e-3 of the edges, which is why a single CPU core is far behind cynetdiff (which does work
proportional to touched edges); on a GPU the bandwidth makes up for it.

A second engine (`method="frontier"`, `_simulate_frontier`) pushes from the (node, word) pairs with
newly active bits along an out-edge CSR, so its work follows the touched edges; it draws the same
masks (same hash inputs) and returns bit-identical samples for the same key.

Deviation from a plain IC sampler: probabilities are quantised to `prob_bits` bits (see above).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.simulate.graph import ICGraph

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLD = np.uint32(0x9E3779B9)
_ODD = np.uint32(0x85EBCA6B)


class ICResult(NamedTuple):
  """Output of `simulate_ic`.

  Attributes:
    spread: int32 [B, S]; number of active nodes at the end of each run (seeds included).
    activation_prob: float32 [B, N]; fraction of the S runs of each seed set that activate each node
      (seeds have probability 1).
    rounds: int32 []; propagation rounds done (the largest over word chunks).
  """
  spread: jax.Array
  activation_prob: jax.Array
  rounds: jax.Array


def _mix(x):
  """lowbias32 (C. Wellons): a bijective uint32 hash with good avalanche."""
  x = x ^ (x >> np.uint32(16))
  x = x * _M1
  x = x ^ (x >> np.uint32(15))
  x = x * _M2
  return x ^ (x >> np.uint32(16))


def _bernoulli_words(q, draw, prob_bits):
  """Words whose bits are i.i.d. Bernoulli(q / 2^k) (Knuth's binary-expansion method).

  Args:
    q: uint32 [...]; quantised probabilities in [0, 2^k], broadcastable against `draw(i)`.
    draw: i -> uint32 array of fresh random words for step i.
    prob_bits: k.
  """
  r = None
  for i in range(prob_bits):  # i = 0 is the least significant bit of q
    b = (q >> np.uint32(i)) & np.uint32(1)
    m = jnp.uint32(0) - b  # all ones where the bit is set
    x = draw(i)
    r = x & m if r is None else (x & (r | m)) | (r & m)
  return jnp.where(q >= np.uint32(1 << prob_bits), jnp.uint32(0xFFFFFFFF), r)


def _live_masks(q, edge_hash, word_hash, prob_bits):
  """Live-edge masks for every (edge slot, word).

  Args:
    q: uint32 [E']; quantised probabilities, in [0, 2^k].
    edge_hash: uint32 [E', k]; per-edge, per-step hash input.
    word_hash: uint32 [W, k]; per-word, per-step hash input.
    prob_bits: k.

  Returns:
    uint32 [E', W].
  """
  return _bernoulli_words(q[:, None], lambda i: _mix(edge_hash[:, i][:, None] ^ word_hash[:, i][None, :]),
                          prob_bits)


def _live_items(q, edge_hash, word_hash, prob_bits):
  """The same masks as `_live_masks`, for a list of (edge, word) items: all arguments [M] / [M, k]."""
  return _bernoulli_words(q, lambda i: _mix(edge_hash[:, i] ^ word_hash[:, i]), prob_bits)


def _spread_bits(active, valid):
  """Per-run active counts: int32 [W, 32] from active uint32 [N, W] and valid uint32 [W]."""
  shifts = jnp.arange(32, dtype=jnp.uint32)
  a = active & valid[None, :]
  bits = (a[:, :, None] >> shifts[None, None, :]) & np.uint32(1)
  return jnp.sum(bits.astype(jnp.int32), axis=0)


@functools.partial(jax.jit, static_argnames=("num_sims", "prob_bits", "words_per_chunk", "max_rounds"))
def _simulate(graph: ICGraph, seeds, key, max_active, *, num_sims, prob_bits, words_per_chunk,
              max_rounds):
  n = graph.perm.shape[0]
  b_sets, _ = seeds.shape
  wb = -(-num_sims // 32)
  w_total = b_sets * wb
  wc = min(words_per_chunk, w_total)
  n_chunks = -(-w_total // wc)
  w_pad = n_chunks * wc

  # Valid bits of each word (the last word of a seed set may be partly used), and the owning set.
  last = num_sims - 32 * (wb - 1)
  last_mask = np.uint32(0xFFFFFFFF) if last == 32 else np.uint32((1 << last) - 1)
  set_valid = np.full(wb, 0xFFFFFFFF, np.uint32)
  set_valid[-1] = last_mask
  valid = np.concatenate([np.tile(set_valid, b_sets), np.zeros(w_pad - w_total, np.uint32)])
  owner = np.concatenate([np.repeat(np.arange(b_sets), wb), np.zeros(w_pad - w_total, np.int64)])
  valid = jnp.asarray(valid).reshape(n_chunks, wc)
  owner = jnp.asarray(owner.astype(np.int32)).reshape(n_chunks, wc)

  # Seed membership in position order, then the initial state.
  pos = jnp.where(seeds >= 0, graph.rank[jnp.clip(seeds, 0, n - 1)], n)
  rows = jnp.broadcast_to(jnp.arange(b_sets)[:, None], pos.shape)
  is_seed = jnp.zeros((b_sets, n), bool).at[rows, pos].set(True, mode="drop")

  kw = jax.random.bits(key, (2,), jnp.uint32)
  steps = jnp.arange(prob_bits, dtype=jnp.uint32)
  scale = np.float32(1 << prob_bits)
  # All padded slots flattened, so the mask generator is one fused computation, not one per bucket.
  shapes = [b.src.shape for b in graph.buckets]
  sizes = [a * d for a, d in shapes]
  offsets = np.cumsum([0] + sizes)
  if graph.buckets:
    q_flat = jnp.concatenate([jnp.round(b.prob.reshape(-1) * scale).astype(jnp.uint32)
                              for b in graph.buckets])
    edge_flat = jnp.concatenate([b.edge.reshape(-1) for b in graph.buckets]).astype(jnp.uint32)
    # Per-edge hash input per step: depends only on (key, edge id, step).
    e_hash = _mix(_mix(edge_flat ^ kw[0])[:, None] + (steps * _GOLD)[None, :])
  n_in = sum(b.src.shape[0] for b in graph.buckets)
  limit = n if max_rounds is None else max_rounds
  capped = max_active is not None

  def run_chunk(args):
    c, valid_c, owner_c = args
    gw = c.astype(jnp.uint32) * np.uint32(wc) + jnp.arange(wc, dtype=jnp.uint32)
    w_hash = _mix(_mix(gw ^ kw[1])[:, None] * _ODD + (steps * _GOLD + kw[0])[None, :])
    live = []
    if graph.buckets:
      flat = _live_masks(q_flat, e_hash, w_hash, prob_bits)
      live = [flat[o:o + sz].reshape(shp + (wc,)) for o, sz, shp in zip(offsets, sizes, shapes)]
    active0 = jnp.where(is_seed[owner_c].T, valid_c[None, :], jnp.uint32(0))
    cap_c = None if not capped else max_active[owner_c]

    def body(state):
      active, _, r = state
      parts = []
      for bk, lv in zip(graph.buckets, live):
        contrib = active[bk.src] & lv
        parts.append(jax.lax.reduce(contrib, np.uint32(0), jax.lax.bitwise_or, (1,)))
      if parts:
        pulled = jnp.concatenate(parts, axis=0)
        if capped:
          # Runs that reached their cap stop growing (round granularity; see simulate_ic).
          counts = _spread_bits(active, valid_c)
          bit = (jnp.uint32(1) << jnp.arange(32, dtype=jnp.uint32))[None, :]
          running = jnp.sum(jnp.where(counts < cap_c[:, None], bit, jnp.uint32(0)), axis=1,
                            dtype=jnp.uint32)
          pulled = pulled & running[None, :]
        new = jnp.concatenate([active[:n_in] | pulled, active[n_in:]], axis=0)
      else:
        new = active
      return new, jnp.any(new != active), r + 1

    active, _, rounds = jax.lax.while_loop(lambda s: s[1] & (s[2] < limit), body,
                                           (active0, jnp.array(True), jnp.int32(0)))
    active = active & valid_c[None, :]
    per_node = jax.lax.population_count(active).astype(jnp.int32)  # [N, wc]
    return per_node, _spread_bits(active, valid_c), rounds

  per_node, spread_bits, rounds = jax.lax.map(
      run_chunk, (jnp.arange(n_chunks, dtype=jnp.int32), valid, owner))
  per_node = jnp.moveaxis(per_node, 0, 1).reshape(n, w_pad)[:, :w_total].reshape(n, b_sets, wb)
  counts = jnp.sum(per_node, axis=2).T  # [B, N] in position order
  probs = counts[:, graph.rank].astype(jnp.float32) / np.float32(num_sims)
  spread = spread_bits.reshape(w_pad * 32)[:w_total * 32].reshape(b_sets, wb * 32)[:, :num_sims]
  return ICResult(spread=spread, activation_prob=probs, rounds=jnp.max(rounds))


@functools.partial(jax.jit, static_argnames=("num_sims", "prob_bits", "frontier_cap", "item_cap"))
def _simulate_frontier(graph: ICGraph, seeds, key, *, num_sims, prob_bits, frontier_cap, item_cap):
  """Frontier (push) engine: expands only (node, word) pairs with newly active bits.

  Same live-edge masks as `_simulate` (same hash of (key, edge id, global word)), so for the same key
  both engines return identical samples; this one does work proportional to the active pairs' out-edges
  instead of to all edges x rounds. Each loop iteration takes up to `frontier_cap` pending pairs (in
  flat order), expands the out-edges of those whose edges fit in `item_cap` slots, and ORs the newly
  live bits into the state. XLA has no OR scatter, so the OR is a short loop of scatter-sets of
  (new | current) by the items whose bits are still missing: each pass strictly grows every target
  written, and it ends when every item's bits are in (usually after one pass).
  """
  n = graph.perm.shape[0]
  n_edges = graph.senders.shape[0]
  b_sets, _ = seeds.shape
  wb = -(-num_sims // 32)
  w_total = b_sets * wb
  last = num_sims - 32 * (wb - 1)
  set_valid = np.full(wb, 0xFFFFFFFF, np.uint32)
  set_valid[-1] = np.uint32(0xFFFFFFFF) if last == 32 else np.uint32((1 << last) - 1)
  valid = jnp.asarray(np.tile(set_valid, b_sets))
  owner = jnp.asarray(np.repeat(np.arange(b_sets), wb).astype(np.int32))
  rows = jnp.broadcast_to(jnp.arange(b_sets)[:, None], seeds.shape)
  is_seed = jnp.zeros((b_sets, n), bool).at[rows, jnp.where(seeds >= 0, seeds, n)].set(True, mode="drop")
  active0 = jnp.where(is_seed[owner].T, valid[None, :], jnp.uint32(0))  # [N, W], node-id order

  kw = jax.random.bits(key, (2,), jnp.uint32)
  steps = jnp.arange(prob_bits, dtype=jnp.uint32)
  q_e = jnp.round(graph.probs * np.float32(1 << prob_bits)).astype(jnp.uint32)
  e_hash = _mix(_mix(jnp.arange(n_edges, dtype=jnp.uint32) ^ kw[0])[:, None] + (steps * _GOLD)[None, :])
  gw = jnp.arange(w_total, dtype=jnp.uint32)
  w_hash = _mix(_mix(gw ^ kw[1])[:, None] * _ODD + (steps * _GOLD + kw[0])[None, :])
  nw = n * w_total
  blk = 64  # pending pairs are found block-wise: a cumsum over NW elements is slow on XLA:CPU
  n_blk = -(-nw // blk)
  k_blk = max(1, frontier_cap // blk)
  f_cap, m_cap = k_blk * blk, item_cap

  def body(state):
    flat_a, flat_p, it, _ = state
    # The first k_blk blocks holding pending bits; every pair in them is a candidate (empty ones
    # expand nothing).
    padded = jnp.pad(flat_p, (0, n_blk * blk - nw)).reshape(n_blk, blk)
    c_blk = jnp.cumsum(jnp.any(padded != 0, axis=1).astype(jnp.int32))
    sel = jnp.searchsorted(c_blk, jnp.arange(1, k_blk + 1, dtype=jnp.int32), side="left")
    idx = (sel[:, None] * blk + jnp.arange(blk)[None, :]).reshape(-1)
    ok = idx < nw
    idx_c = jnp.minimum(idx, nw - 1)
    u, w = idx_c // w_total, idx_c % w_total
    bits = jnp.where(ok, flat_p[idx_c], jnp.uint32(0))
    deg = jnp.where(bits != 0, graph.out_offsets[u + 1] - graph.out_offsets[u], 0)
    cum = jnp.cumsum(deg)
    fits = (bits != 0) & (cum <= m_cap)  # a prefix; item_cap >= max degree ensures progress
    total = jnp.sum(jnp.where(fits, deg, 0))
    flat_p = flat_p.at[jnp.where(fits, idx, nw)].set(jnp.uint32(0), mode="drop")
    j = jnp.arange(m_cap, dtype=cum.dtype)
    pair = jnp.minimum(jnp.searchsorted(cum, j, side="right"), f_cap - 1)
    item_ok = j < total
    slot = graph.out_offsets[u[pair]] + j - (cum[pair] - deg[pair])
    e = graph.out_order[jnp.clip(slot, 0, n_edges - 1)]
    ww = w[pair]
    live = _live_items(q_e[e], e_hash[e], w_hash[ww], prob_bits) & bits[pair]
    t = graph.receivers[e] * w_total + ww
    new = jnp.where(item_ok, live & ~flat_a[t], jnp.uint32(0))

    def or_body(c):
      # Scatter-set of (new | current) by the items whose bits are not all in yet: one writer per
      # target wins, and every winner strictly grows its target, so this ends (usually in one pass).
      fa, fp, _ = c
      fa = fa.at[jnp.where((new & ~fa[t]) != 0, t, nw)].set(new | fa[t], mode="drop")
      fp = fp.at[jnp.where((new & ~fp[t]) != 0, t, nw)].set(new | fp[t], mode="drop")
      missing = jnp.any((new & ~fa[t]) != 0) | jnp.any((new & ~fp[t]) != 0)
      return fa, fp, missing

    flat_a, flat_p, _ = jax.lax.while_loop(lambda c: c[2], or_body, (flat_a, flat_p, jnp.array(True)))
    return flat_a, flat_p, it + 1, c_blk[-1] > 0

  flat0 = active0.reshape(-1)
  if n_edges:
    flat_a, _, iters, _ = jax.lax.while_loop(lambda s: s[3], body,
                                             (flat0, flat0, jnp.int32(0), jnp.array(True)))
  else:
    flat_a, iters = flat0, jnp.int32(0)
  active = flat_a.reshape(n, w_total)
  per_node = jax.lax.population_count(active).astype(jnp.int32).reshape(n, b_sets, wb)
  probs = jnp.sum(per_node, axis=2).T.astype(jnp.float32) / np.float32(num_sims)
  spread = _spread_bits(active, valid).reshape(b_sets, wb * 32)[:, :num_sims]
  return ICResult(spread=spread, activation_prob=probs, rounds=iters)


def check_seeds(seeds, num_nodes: int) -> np.ndarray:
  """Validates seed sets on the host: int [K] or [B, K], -1 = padding, each set non-empty.

  Returns:
    int32 [B, K].

  Raises:
    DataError: on a wrong shape, ids outside [0, N) other than -1 padding, or an empty seed set.
  """
  s = np.asarray(seeds)
  if s.ndim == 1:
    s = s[None, :]
  if s.ndim != 2:
    raise DataError(f"seeds must have shape [K] or [B, K], got {np.asarray(seeds).shape}")
  if s.size and not np.issubdtype(s.dtype, np.integer):
    raise DataError(f"seeds must be integer node ids, got dtype {s.dtype}")
  bad = (s < -1) | (s >= num_nodes)
  if bad.any():
    b, k = np.argwhere(bad)[0]
    raise DataError(f"seed {int(s[b, k])} (set {b}, slot {k}) is outside [0, {num_nodes})")
  if s.shape[1] == 0 or (s < 0).all(axis=1).any():
    b = 0 if s.shape[1] == 0 else int(np.flatnonzero((s < 0).all(axis=1))[0])
    raise DataError(f"seed set {b} is empty: IC needs at least one seed")
  return s.astype(np.int32)


def simulate_ic(graph: ICGraph, seeds, key: jax.Array, num_sims: int, *, method: str = "dense",
                prob_bits: int = 16, words_per_chunk: int = 4096, max_rounds: int | None = None,
                max_active=None, frontier_cap: int = 8192, item_cap: int = 8192) -> ICResult:
  """Runs `num_sims` Independent Cascade simulations per seed set in one jitted call.

  Args:
    graph: from `popdiff_jax.simulate.build_graph`.
    seeds: int [K] (one seed set) or [B, K] (a batch; -1 pads shorter sets). Validated on the host
      when concrete (`check_seeds`); under an outer jit the caller must validate.
    key: PRNG key; the same key gives the same samples (independent of `words_per_chunk`, and the
      same for both methods).
    method: "dense" (bit-parallel pull over all edges each round; best when many runs are active,
      e.g. on a GPU or at high p) or "frontier" (push from newly active (node, word) pairs only; work
      proportional to the touched edges, best at low p and on a CPU). Both give identical samples.
    num_sims: S, runs per seed set (any positive integer; rounded up to a multiple of 32
      internally, the extra bits are ignored).
    prob_bits: k; probabilities are quantised to multiples of 2^-k (1 <= k <= 31); cost is linear in
      k.
    words_per_chunk: runs are processed 32 x words_per_chunk at a time (`lax.map` over chunks):
      bounds memory (E' x words_per_chunk x 4 bytes of live masks) and lets early-finishing chunks
      stop early.
    max_rounds: optional cap on propagation rounds (IC with a horizon); None = to the fixpoint.
    max_active: optional int [B]; a run stops growing after the first round in which it has at least
      this many active nodes (seeds included). Activations of that last round are all kept (IC
      activates a round's nodes together), so a run can overshoot the cap within one round. Used by
      the NDM evaluation protocol ("stop at |G| infected users"). Dense method only.
    frontier_cap: frontier method: pending (node, word) pairs taken per loop iteration.
    item_cap: frontier method: out-edge slots expanded per iteration (raised to the largest
      out-degree if smaller).

  Returns:
    `ICResult` with spread [B, S], activation_prob [B, N] and rounds.

  Raises:
    DataError: on bad seeds (see `check_seeds`).
  """
  if not isinstance(num_sims, (int, np.integer)) or num_sims <= 0:
    raise DataError(f"num_sims must be a positive integer, got {num_sims!r}")
  if not 1 <= prob_bits <= 31:
    raise ValueError(f"prob_bits must be in [1, 31], got {prob_bits}")
  try:
    seeds = check_seeds(np.asarray(seeds), graph.num_nodes)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    pass  # under an outer jit the caller validates
  seeds = jnp.asarray(seeds, jnp.int32)
  if seeds.ndim == 1:
    seeds = seeds[None, :]
  if max_active is not None:
    max_active = jnp.broadcast_to(jnp.asarray(max_active, jnp.int32), (seeds.shape[0],))
  if method == "frontier":
    if max_active is not None or max_rounds is not None:
      raise ValueError("max_active and max_rounds need method='dense'")
    max_deg = int(np.max(np.diff(np.asarray(graph.out_offsets)), initial=0))
    return _simulate_frontier(graph, seeds, key, num_sims=int(num_sims), prob_bits=prob_bits,
                              frontier_cap=int(frontier_cap), item_cap=max(int(item_cap), max_deg, 1))
  if method != "dense":
    raise ValueError(f"method must be 'dense' or 'frontier', got {method!r}")
  return _simulate(graph, seeds, key, max_active, num_sims=int(num_sims), prob_bits=prob_bits,
                   words_per_chunk=int(words_per_chunk), max_rounds=max_rounds)


def exact_ic(graph: ICGraph, seeds) -> tuple[float, np.ndarray, np.ndarray]:
  """Exact IC by enumerating all 2^E live-edge worlds (for tests; E <= ~16).

  Args:
    graph: an `ICGraph` with few edges.
    seeds: int [K]; one seed set.

  Returns:
    (expected spread, activation probabilities float64 [N], spread pmf float64 [N + 1]).
  """
  e = graph.num_edges
  if e > 20:
    raise ValueError(f"exact enumeration over {e} edges is too large")
  n = graph.num_nodes
  p = graph.probs.astype(np.float64)
  seeds = [int(s) for s in np.asarray(seeds).ravel() if s >= 0]
  act = np.zeros(n)
  pmf = np.zeros(n + 1)
  for world in range(1 << e):
    live = np.array([(world >> i) & 1 for i in range(e)], bool)
    w = float(np.prod(np.where(live, p, 1.0 - p)))
    if w == 0.0:
      continue
    reached = np.zeros(n, bool)
    reached[seeds] = True
    stack = list(seeds)
    while stack:
      u = stack.pop()
      for i in np.flatnonzero(live & (graph.senders == u)):
        v = int(graph.receivers[i])
        if not reached[v]:
          reached[v] = True
          stack.append(v)
    act += w * reached
    pmf[int(reached.sum())] += w
  return float(act.sum()), act, pmf
