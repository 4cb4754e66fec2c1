"""Monte Carlo Independent Cascade simulation in one jitted call: a dense and a frontier engine.

Formulation (live-edge worlds, Kempe et al. 2003): an IC run from seed set A activates exactly the
nodes reachable from A in a random subgraph that keeps each edge e independently with probability
p_e. Both engines keep the activation state as bits: bit j of word w is run 32 w + j (the runs of
seed set b occupy words b * ceil(S / 32) onwards; the last word of a set may be partly used).

Randomness (counter-based, nothing of size E x S is stored). Edge e is live in run r iff

    h(e, r) = mix(a_e ^ b_r) satisfies (h >> 1) < q_e,   q_e = round(p_e * 2^31),
    a_e = mix(e * 0x9E3779B9 ^ k0),   b_r = mix(r * 0x85EBCA6B + k1),

where mix is lowbias32 (C. Wellons' two-multiply integer finaliser, a bijection of uint32), (k0, k1)
are two words drawn from `key`, e is the edge's id (its row in `ICGraph.senders`) and r the run's
bit index above. The liveness of an edge in a run is computed at the moment the edge is tested, by
one hash of the two labels (the labels cost one mix each per slot, word or item, not per test), and
is a pure function of (key, e, r): the same key gives the same samples whatever the chunking, and
the two engines, which test edges in different orders, return identical samples (a live-edge world
has one reachable set). Probabilities are quantised to multiples of 2^-31 (p = 0 and p = 1 exactly;
0.01 becomes 0.0099999998).

Dense engine (`method="dense"`). Pull: active[v, w] |= OR over in-edges (u -> v) of
active[u, w] & live[e, w], iterated with `lax.while_loop` to the fixpoint, over the degree-bucketed
padded in-neighbour blocks of `popdiff_jax.simulate.graph` (a gather and a bitwise-OR reduction, no
scatter). The 32 live bits of (slot, word) are 32 hashes computed inside the same fusion, every
round. Work per round: E' x S edge tests (E' padded in-edge slots), about 14 integer operations each
(the hash, the threshold compare and the bit insert), so it is bound by integer throughput; it
suits supercritical cascades, where most (edge, run) pairs are tested anyway and the number of rounds
is small. Runs are processed `words_per_chunk` words at a time (`lax.map`), each chunk to its own
fixpoint.

Frontier engine (`method="frontier"`). Push from a work queue of (node, run) activations shared by
all runs: each loop iteration pops a batch of pending activations whose out-degrees add up to at
most `item_cap`, expands their out-edges (one item per (edge, run)), hashes each item once, keeps the
live ones whose target is not yet active in that run, removes duplicates (two parents activating the
same (node, run) in one batch) with a hash table claimed by scatter-max (a second pass, with another
hash, for the rare slot collisions), sets the winners' bits and appends them to the queue. Runs at
different depths share a batch, so the work is proportional to the edges the runs actually test
(about spread x out-degree per run) and the loop does not wait for the slowest run level by level.
When few activations are pending the iteration switches to a batch 1/64 the size, so that the long
tail of a near-critical cascade costs little. The seeds are implicit queue entries (seed k of set b
in every run of b). If the queue would overflow (`queue_cap`; a supercritical cascade), the engine
hands the state over to the dense engine, which finishes the same fixpoint; `rounds` then counts
both.

`method="auto"` (the default) picks one by `choose_method` (see there: a cost model in the graph
size, the branching factor that p implies, the number of runs and the device).

Deviation from a plain IC sampler: probabilities are quantised to 31 bits (see above).
"""

from __future__ import annotations

import functools
import math
import weakref
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
_SLOT = np.uint32(0xC2B2AE35)
_Q_SCALE = np.float32(2.0 ** 31)
_ALL = np.uint32(0xFFFFFFFF)

# Integer operations per edge test of the dense engine: xor with the run label, lowbias32 (3
# xorshifts = 6, 2 multiplies), shift, compare, and the select / shift / or that inserts the bit.
DENSE_OPS_PER_TEST = 14


class ICResult(NamedTuple):
  """Output of `simulate_ic`.

  Attributes:
    spread: int32 [B, S]; number of active nodes at the end of each run (seeds included).
    activation_prob: float32 [B, N]; fraction of the S runs of each seed set that activate each node
      (seeds have probability 1).
    rounds: int32 []; dense: propagation rounds (the largest over word chunks); frontier: loop
      iterations (plus the dense rounds after a hand-over).
    edge_tests: float32 []; (edge, run) liveness tests the engine evaluated (dense: padded slots x
      32 x words x rounds, summed over chunks; frontier: expanded out-edge items).
  """
  spread: jax.Array
  activation_prob: jax.Array
  rounds: jax.Array
  edge_tests: jax.Array


def _mix(x):
  """lowbias32 (C. Wellons): a bijective uint32 hash with good avalanche."""
  x = x ^ (x >> np.uint32(16))
  x = x * _M1
  x = x ^ (x >> np.uint32(15))
  x = x * _M2
  return x ^ (x >> np.uint32(16))


def _edge_label(edge_id, k0):
  return _mix(edge_id.astype(jnp.uint32) * _GOLD ^ k0)


def _run_label(run, k1):
  return _mix(run.astype(jnp.uint32) * _ODD + k1)


def _live(a, b, q):
  """Edge test: bool, True iff the edge with label a is live in the run with label b."""
  return (_mix(a ^ b) >> np.uint32(1)) < q


def _threshold(p):
  """q = round(p 2^31) as uint32, in [0, 2^31]."""
  return jnp.round(p.astype(jnp.float32) * _Q_SCALE).astype(jnp.uint32)


def _keys(key):
  kw = jax.random.bits(key, (2,), jnp.uint32)
  return kw[0], kw[1]


class _Layout(NamedTuple):
  """Static word layout of B seed sets x S runs."""
  b_sets: int
  wb: int  # words per seed set
  w_total: int
  set_valid: np.ndarray  # uint32 [wb]


def _layout(b_sets, num_sims):
  wb = -(-num_sims // 32)
  last = num_sims - 32 * (wb - 1)
  set_valid = np.full(wb, 0xFFFFFFFF, np.uint32)
  set_valid[-1] = np.uint32(0xFFFFFFFF) if last == 32 else np.uint32((1 << last) - 1)
  return _Layout(b_sets, wb, b_sets * wb, set_valid)


def _seed_state(graph, seeds, lay):
  """Seed positions int32 [B, K] (-1 padding) and the initial state uint32 [N, W] (position order)."""
  n = graph.perm.shape[0]
  pos = jnp.where(seeds >= 0, graph.rank[jnp.clip(seeds, 0, n - 1)], -1)
  rows = jnp.broadcast_to(jnp.arange(lay.b_sets)[:, None], pos.shape)
  is_seed = jnp.zeros((lay.b_sets, n), bool).at[rows, jnp.where(pos >= 0, pos, n)].set(True,
                                                                                       mode="drop")
  valid = jnp.asarray(np.tile(lay.set_valid, lay.b_sets))
  owner = jnp.asarray(np.repeat(np.arange(lay.b_sets), lay.wb).astype(np.int32))
  active0 = jnp.where(is_seed[owner].T, valid[None, :], jnp.uint32(0))
  return pos, is_seed, active0


def _spread_bits(active, valid):
  """Per-run active counts: int32 [W, 32] from active uint32 [N, W] and valid uint32 [W]."""
  shifts = jnp.arange(32, dtype=jnp.uint32)
  a = active & valid[None, :]
  bits = (a[:, :, None] >> shifts[None, None, :]) & np.uint32(1)
  return jnp.sum(bits.astype(jnp.int32), axis=0)


def _readout(graph, active, lay, num_sims):
  """(spread int32 [B, S], activation_prob float32 [B, N]) from the final state [N, W]."""
  n = graph.perm.shape[0]
  valid = jnp.asarray(np.tile(lay.set_valid, lay.b_sets))
  active = active & valid[None, :]
  per_node = jax.lax.population_count(active).astype(jnp.int32).reshape(n, lay.b_sets, lay.wb)
  counts = jnp.sum(per_node, axis=2).T  # [B, N], position order
  probs = counts[:, graph.rank].astype(jnp.float32) / np.float32(num_sims)
  spread = _spread_bits(active, valid).reshape(lay.b_sets, lay.wb * 32)[:, :num_sims]
  return spread, probs


# ------------------------------------------------------------------------------------ dense engine

def _dense_tables(graph, k0):
  """Per bucket: (src [Nb, Db], edge label [Nb, Db], threshold [Nb, Db]); padding has q = 0."""
  return [(b.src, _edge_label(b.edge, k0), _threshold(b.prob)) for b in graph.buckets]


def _dense_fixpoint(tables, n_in, active0, words, valid, k1, *, limit, cap=None):
  """Pull rounds to the fixpoint (or `limit` rounds) for one chunk of words.

  Args:
    tables: `_dense_tables`.
    n_in: number of positions with in-edges (the buckets' rows).
    active0: uint32 [N, wc]; initial state.
    words: int32 [wc]; global word index of each column (keys the run labels).
    valid: uint32 [wc]; valid bits of each column.
    k1: run-label key.
    limit: round cap.
    cap: None, or (max_active int32 [wc], per column) for `simulate_ic`'s max_active.

  Returns:
    (state uint32 [N, wc], rounds int32 []).
  """
  j = jnp.arange(32, dtype=jnp.uint32)
  # Run labels, [32, wc]: row j holds run 32 w + j of each column (coalesced along words).
  labels = _run_label(words.astype(jnp.uint32)[None, :] * np.uint32(32) + j[:, None], k1)

  def pull(active):
    # Tie the edge tables to this round's state: otherwise XLA hoists the live bits, which depend
    # on the key and the edges only, out of the loop and stores all E' x wc of them.
    tabs, active = jax.lax.optimization_barrier(([(a, q) for _, a, q in tables], active))
    parts = []
    for (src, _, _), (a, q) in zip(tables, tabs):
      # contrib[v, w] = OR over slots d and bits j of (bit j of the source's word) & live(d, 32 w + j):
      # one reduction over (d, j) whose operand is computed in the same fusion (32 hashes per
      # (slot, word), nothing stored).
      hit = _live(a[:, :, None, None], labels.T[None, None, :, :], q[:, :, None, None])
      src_bits = (active[src][:, :, :, None] >> j[None, None, None, :]) & np.uint32(1)
      val = jnp.where(hit, src_bits << j[None, None, None, :], jnp.uint32(0))
      parts.append(jax.lax.reduce(val, np.uint32(0), jax.lax.bitwise_or, (1, 3)))
    return jnp.concatenate(parts, axis=0)

  def body(state):
    active, _, r = state
    if not tables:
      return active, jnp.array(False), r + 1
    pulled = pull(active)
    if cap is not None:
      # Runs that reached their cap stop growing (round granularity; see simulate_ic).
      counts = _spread_bits(active, valid)
      bit = (jnp.uint32(1) << jnp.arange(32, dtype=jnp.uint32))[None, :]
      running = jnp.sum(jnp.where(counts < cap[:, None], bit, jnp.uint32(0)), axis=1,
                        dtype=jnp.uint32)
      pulled = pulled & running[None, :]
    new = jnp.concatenate([active[:n_in] | pulled, active[n_in:]], axis=0)
    return new, jnp.any(new != active), r + 1

  active, _, rounds = jax.lax.while_loop(lambda s: s[1] & (s[2] < limit), body,
                                         (active0, jnp.array(True), jnp.int32(0)))
  return active & valid[None, :], rounds


def _dense_chunks(graph, active0, lay, k0, k1, *, words_per_chunk, limit, max_active=None):
  """Runs `_dense_fixpoint` over chunks of `words_per_chunk` words of the state [N, W].

  Returns:
    (state uint32 [N, W], rounds int32 [] (largest over chunks), edge tests float32 []).
  """
  n = graph.perm.shape[0]
  w_total = lay.w_total
  wc = max(1, min(words_per_chunk, w_total))
  n_chunks = -(-w_total // wc)
  w_pad = n_chunks * wc
  valid = np.concatenate([np.tile(lay.set_valid, lay.b_sets), np.zeros(w_pad - w_total, np.uint32)])
  owner = np.concatenate([np.repeat(np.arange(lay.b_sets), lay.wb),
                          np.zeros(w_pad - w_total, np.int64)]).astype(np.int32)
  tables = _dense_tables(graph, k0)
  n_in = sum(b.src.shape[0] for b in graph.buckets)
  slots = float(graph.padded_edges)
  state = active0 if w_pad == w_total else jnp.pad(active0, ((0, 0), (0, w_pad - w_total)))
  valid = jnp.asarray(valid)
  owner = jnp.asarray(owner)

  # One chunk at a time, read from and written back into the one state array (no copies of the
  # whole state beyond the chunk's own).
  def run_chunk(c, carry):
    state, rounds, tests = carry
    w0 = c * wc
    a0 = jax.lax.dynamic_slice_in_dim(state, w0, wc, axis=1)
    words = w0 + jnp.arange(wc, dtype=jnp.int32)
    valid_c = jax.lax.dynamic_slice_in_dim(valid, w0, wc)
    cap = None if max_active is None else max_active[jax.lax.dynamic_slice_in_dim(owner, w0, wc)]
    out, r = _dense_fixpoint(tables, n_in, a0, words, valid_c, k1, limit=limit, cap=cap)
    state = jax.lax.dynamic_update_slice_in_dim(state, out, w0, axis=1)
    return state, jnp.maximum(rounds, r), tests + r.astype(jnp.float32)

  state, rounds, r_sum = jax.lax.fori_loop(0, n_chunks, run_chunk,
                                           (state, jnp.int32(0), jnp.float32(0)))
  active = state if w_pad == w_total else state[:, :w_total]
  return active, rounds, r_sum * np.float32(slots * 32 * wc)


@functools.partial(jax.jit, static_argnames=("num_sims", "words_per_chunk", "max_rounds"))
def _simulate_dense(graph: ICGraph, seeds, key, max_active, *, num_sims, words_per_chunk,
                    max_rounds):
  n = graph.perm.shape[0]
  lay = _layout(seeds.shape[0], num_sims)
  k0, k1 = _keys(key)
  _, _, active0 = _seed_state(graph, seeds, lay)
  limit = n if max_rounds is None else max_rounds
  active, rounds, tests = _dense_chunks(graph, active0, lay, k0, k1, words_per_chunk=words_per_chunk,
                                        limit=limit, max_active=max_active)
  spread, probs = _readout(graph, active, lay, num_sims)
  return ICResult(spread=spread, activation_prob=probs, rounds=rounds, edge_tests=tests)


# --------------------------------------------------------------------------------- frontier engine

class _Queue(NamedTuple):
  """Loop state of the frontier engine.

  Attributes:
    visited: uint32 [N, W]; active bits (position order).
    ring_v: int32 [Q]; queued activations: node position...
    ring_r: int32 [Q]; ... and run (bit index 32 w + j).
    head: int32 []; ring index of the oldest queued entry.
    count: int32 []; queued entries.
    vpos: int32 []; implicit seed entries consumed so far.
    counts: int32 [B, N]; activations per (seed set, position), seeds included.
    spread: int32 [W * 32]; activations per run, seeds included.
    iters: int32 []; loop iterations.
    tests: float32 []; expanded (edge, run) items.
  """
  visited: jax.Array
  ring_v: jax.Array
  ring_r: jax.Array
  head: jax.Array
  count: jax.Array
  vpos: jax.Array
  counts: jax.Array
  spread: jax.Array
  iters: jax.Array
  tests: jax.Array


def _dedupe(cand, v, rr, label, m):
  """Marks one item per distinct (v, rr) among the items where `cand` holds.

  Each pass hashes the unresolved items into a table of 2m slots, claims each slot by scatter-max of
  the item index, and resolves the items that won (the representative) or that lost to an item with
  the same key (a duplicate). Items that lost to another key (a slot collision) go to the next pass
  with another hash; every pass resolves at least one key per claimed slot.
  """
  size = 1 << max(1, (2 * m - 1).bit_length())
  idx = jnp.arange(m, dtype=jnp.int32)
  base = _mix(label ^ (v.astype(jnp.uint32) * _SLOT))

  def body(c):
    unresolved, win, salt = c
    slot = (_mix(base + salt) & np.uint32(size - 1)).astype(jnp.int32)
    table = jnp.full((size,), -1, jnp.int32).at[jnp.where(unresolved, slot, size)].max(idx,
                                                                                         mode="drop")
    owner = table[slot]
    mine = unresolved & (owner == idx)
    o = jnp.clip(owner, 0, m - 1)
    dup = unresolved & ~mine & (v[o] == v) & (rr[o] == rr)
    return unresolved & ~mine & ~dup, win | mine, salt + _GOLD

  _, win, _ = jax.lax.while_loop(lambda c: jnp.any(c[0]), body,
                                 (cand, jnp.zeros_like(cand), jnp.uint32(0)))
  return win


def _frontier_step(graph, st, seed_pos, owner, set_valid_bits, q_csr, k0, k1, *, m, c, n_v,
                   r_total, q_cap):
  """One iteration of the push loop with batch caps m (edge items) and c (popped entries)."""
  n = graph.perm.shape[0]
  b_sets, _ = seed_pos.shape
  n_edges = graph.out_edges.shape[0]
  rem_v = n_v - st.vpos
  i = jnp.arange(c, dtype=jnp.int32)
  # Popped entries: the implicit seed entries first (seed k in run rho), then the ring.
  from_v = i < rem_v
  vi = jnp.minimum(st.vpos + i, max(n_v - 1, 0))
  v_rho = vi % r_total
  v_node = seed_pos[owner[v_rho // 32], vi // r_total]
  v_node = jnp.where(((set_valid_bits[v_rho // 32] >> (v_rho % 32).astype(jnp.uint32)) & 1) != 0,
                     v_node, -1)
  ri = jnp.remainder(st.head + i - rem_v, q_cap)
  node = jnp.where(from_v, v_node, st.ring_v[ri])
  rho = jnp.where(from_v, v_rho, st.ring_r[ri])
  avail = i < rem_v + st.count
  nd = jnp.clip(node, 0, n - 1)
  deg = jnp.where(avail & (node >= 0), graph.out_offsets[nd + 1] - graph.out_offsets[nd], 0)
  cum = jnp.cumsum(deg)
  take = avail & (cum <= m)  # a prefix: avail is one and cum is nondecreasing
  n_pop = jnp.sum(take.astype(jnp.int32))
  total = jnp.sum(jnp.where(take, deg, 0))
  start = cum - deg
  # Item j belongs to the last popped entry with items whose first item is at or before j: count
  # the entries with items up to j (a scan over markers), then map that ordinal to the entry.
  has = take & (deg > 0)
  ordinal = jnp.cumsum(has.astype(jnp.int32)) - 1
  entry = jnp.zeros((c,), jnp.int32).at[jnp.where(has, ordinal, c)].set(i, mode="drop")
  marker = jnp.zeros((m,), jnp.int32).at[jnp.where(has, start, m)].add(1, mode="drop")
  src = entry[jnp.clip(jnp.cumsum(marker) - 1, 0, c - 1)]
  j = jnp.arange(m, dtype=jnp.int32)
  item_ok = j < total
  slot = jnp.where(item_ok, graph.out_offsets[nd[src]] + j - start[src], 0)
  slot = jnp.clip(slot, 0, max(n_edges - 1, 0))
  e = graph.out_edges[slot]
  v = graph.out_dst[slot]
  rr = rho[src]
  label = _run_label(rr, k1)
  live = item_ok & _live(_edge_label(e, k0), label, q_csr[slot])
  w = rr // 32
  bit = jnp.uint32(1) << (rr % 32).astype(jnp.uint32)
  cand = live & ((st.visited[v, w] & bit) == 0)
  win = _dedupe(cand, v, rr, label, m)
  visited = st.visited.at[jnp.where(win, v, n), w].add(bit, mode="drop")
  # Pop, then append the winners behind the remaining entries.
  v_pop = jnp.minimum(n_pop, rem_v)
  q_pop = n_pop - v_pop
  head = jnp.remainder(st.head + q_pop, q_cap)
  count = st.count - q_pop
  rank = jnp.cumsum(win.astype(jnp.int32)) - 1
  dest = jnp.where(win, jnp.remainder(head + count + rank, q_cap), q_cap)
  ring_v = st.ring_v.at[dest].set(v, mode="drop")
  ring_r = st.ring_r.at[dest].set(rr, mode="drop")
  n_win = jnp.sum(win.astype(jnp.int32))
  counts = st.counts.at[jnp.where(win, owner[w], b_sets), v].add(1, mode="drop")
  spread = st.spread.at[jnp.where(win, rr, r_total)].add(1, mode="drop")
  return _Queue(visited, ring_v, ring_r, head, count + n_win, st.vpos + v_pop, counts, spread,
                st.iters + 1, st.tests + total.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("num_sims", "item_cap", "frontier_cap", "queue_cap",
                                             "max_degree", "words_per_chunk"))
def _simulate_frontier(graph: ICGraph, seeds, key, *, num_sims, item_cap, frontier_cap, queue_cap,
                       max_degree, words_per_chunk):
  n = graph.perm.shape[0]
  lay = _layout(seeds.shape[0], num_sims)
  b_sets, k_seeds = seeds.shape
  k0, k1 = _keys(key)
  seed_pos, is_seed, active0 = _seed_state(graph, seeds, lay)
  r_total = 32 * lay.w_total
  n_v = k_seeds * r_total
  owner = jnp.asarray(np.repeat(np.arange(b_sets), lay.wb).astype(np.int32))
  set_valid_bits = jnp.asarray(np.tile(lay.set_valid, b_sets))
  q_csr = _threshold(graph.probs[graph.out_edges]) if graph.out_edges.shape[0] else \
      jnp.zeros((0,), jnp.uint32)
  m_big, c_big = item_cap, frontier_cap
  m_small, c_small = max(item_cap // 64, 1), max(frontier_cap // 64, 1)
  m_small = max(m_small, max_degree, 1)  # the tail tier must still fit the largest out-degree

  n_seeds = jnp.sum(is_seed, axis=1).astype(jnp.int32)  # distinct seeds per set
  rho_all = jnp.arange(r_total, dtype=jnp.int32)
  valid_run = ((set_valid_bits[rho_all // 32] >> (rho_all % 32).astype(jnp.uint32)) & 1) != 0
  st0 = _Queue(visited=active0, ring_v=jnp.zeros((queue_cap,), jnp.int32),
               ring_r=jnp.zeros((queue_cap,), jnp.int32), head=jnp.int32(0), count=jnp.int32(0),
               vpos=jnp.int32(0), counts=is_seed.astype(jnp.int32) * np.int32(num_sims),
               spread=jnp.where(valid_run, n_seeds[owner[rho_all // 32]], 0),
               iters=jnp.int32(0), tests=jnp.float32(0))
  step = functools.partial(_frontier_step, graph, seed_pos=seed_pos, owner=owner,
                           set_valid_bits=set_valid_bits, q_csr=q_csr, k0=k0, k1=k1, n_v=n_v,
                           r_total=r_total, q_cap=queue_cap)

  def pending(st):
    return (n_v - st.vpos) + st.count

  def room(st):
    return st.count + m_big <= queue_cap

  # Big batches while more than a small batch is pending, small ones for the tail; the outer loop
  # returns to big batches when the pending work grows again. (Two loops rather than a cond in one
  # loop: a cond would copy the state, bitset included, every iteration.)
  def big(st):
    return jax.lax.while_loop(lambda s: (pending(s) > c_small) & room(s),
                              lambda s: step(s, m=m_big, c=c_big), st)

  def small(st):
    return jax.lax.while_loop(lambda s: (pending(s) > 0) & (pending(s) <= c_small) & room(s),
                              lambda s: step(s, m=m_small, c=c_small), st)

  if graph.out_edges.shape[0]:
    st = jax.lax.while_loop(lambda s: (pending(s) > 0) & room(s), lambda s: small(big(s)), st0)
  else:
    st = st0._replace(vpos=jnp.int32(n_v))
  overflow = pending(st) > 0

  def finish_dense(st):
    active, rounds, tests = _dense_chunks(graph, st.visited, lay, k0, k1,
                                          words_per_chunk=words_per_chunk, limit=n)
    spread, probs = _readout(graph, active, lay, num_sims)
    return spread, probs, st.iters + rounds, st.tests + tests

  def finish_queue(st):
    spread = st.spread.reshape(b_sets, lay.wb * 32)[:, :num_sims]
    probs = st.counts[:, graph.rank].astype(jnp.float32) / np.float32(num_sims)
    return spread, probs, st.iters, st.tests

  spread, probs, rounds, tests = jax.lax.cond(overflow, finish_dense, finish_queue, st)
  return ICResult(spread=spread, activation_prob=probs, rounds=rounds, edge_tests=tests)


# ---------------------------------------------------------------------------------- method choice

# Seconds per unit of work, by platform: a dense edge test (one hash in a fused round), a frontier
# item (expanded (edge, run) pair: gathers, hash, claim, append), and the fixed cost of one loop
# iteration / round (launches and the loop's host synchronisation). GPU figures: one H100/H200
# (dense: 14 integer ops a test at 64 int32 ops/clock/SM; frontier: about 100 bytes of traffic an
# item at ~3 TB/s plus the scans); CPU figures: measured on a 2-core x86 machine.
COST = {"gpu": {"dense_test": 1.0e-12, "frontier_item": 3.0e-10, "iteration": 1.5e-4},
        "cpu": {"dense_test": 6.0e-10, "frontier_item": 1.0e-7, "iteration": 1.0e-3}}


_STATS: dict = {}


def _graph_stats(graph: ICGraph) -> tuple[float, int]:
  """(branching factor, largest out-degree), remembered per graph (by the identity of its arrays;
  graphs are immutable) so that repeated calls do not pay O(E) host work."""
  arrays = (graph.probs, graph.senders, graph.receivers, graph.out_offsets)
  key = tuple(id(a) for a in arrays)
  hit = _STATS.get(key)
  if hit is not None and all(r() is a for r, a in zip(hit[0], arrays)):
    return hit[1]
  out = (branching_factor(graph), int(np.max(np.diff(np.asarray(graph.out_offsets)), initial=0)))
  try:
    refs = tuple(weakref.ref(a) for a in arrays)
  except TypeError:  # not weak-referenceable: do not remember
    return out
  if len(_STATS) > 64:
    _STATS.clear()
  _STATS[key] = (refs, out)
  return out


def branching_factor(graph: ICGraph) -> float:
  """R: expected live out-edges of a node reached along a uniformly chosen live edge.

  R = sum_e p_e P(recv(e)) / sum_e p_e with P(v) = sum of p over v's out-edges; R < 1 is a
  subcritical cascade (small spreads), R > 1 a supercritical one (a giant fraction is reached).
  """
  p = np.asarray(graph.probs, np.float64)
  if p.size == 0 or p.sum() == 0:
    return 0.0
  out_mass = np.bincount(np.asarray(graph.senders), weights=p, minlength=graph.num_nodes)
  return float(np.sum(p * out_mass[np.asarray(graph.receivers)]) / p.sum())


def _final_size(r):
  """Fraction z reached by a supercritical cascade: z = 1 - exp(-R z) (0 for R <= 1)."""
  if r <= 1.0:
    return 0.0
  z = 1.0
  for _ in range(200):
    z = 1.0 - math.exp(-r * z)
  return z


def estimate_costs(graph: ICGraph, num_sims: int, num_seeds: int = 1, num_sets: int = 1,
                   platform: str | None = None) -> dict:
  """The cost model behind `method="auto"`: estimated seconds of each engine.

  With R = `branching_factor(graph)`, N nodes, E edges, E' padded in-edge slots, K seeds and S runs
  (x B seed sets):

  * reach f: the mean fraction of nodes a run activates: K / ((1 - R) N) for R <= 0.9 (a
    branching process), K N^(-2/3) in the critical window 0.9 < R < 1.25 (spreads ~ K N^(1/3)),
    the final size z = 1 - exp(-R z) above it;
  * rounds d: 2 + log(K S B) / -log(R) for R <= 0.9 (the deepest of the S B runs), 6 N^(1/3) in
    the critical window (the deepest of many runs), 2 + 2 ln(N) / ln(R) above (growth and
    saturation);
  * dense = S B E' d x dense_test + d x iteration (every slot of every run is tested every round);
  * frontier = S B (f N + K) d_out x frontier_item + d x iteration, d_out = E / N (each activation
    expands its out-edges once).

  Per-unit costs are in `COST` by platform (default: JAX's default backend).
  """
  plat = platform or jax.default_backend()
  c = COST["gpu" if plat in ("gpu", "cuda", "rocm") else "cpu"]
  n, e = graph.num_nodes, graph.num_edges
  slots = graph.padded_edges
  r = _graph_stats(graph)[0]
  runs = float(num_sims) * num_sets
  k = float(max(num_seeds, 1))
  if r <= 0.9:  # subcritical: a branching process
    f = k / ((1.0 - r) * n)
    depth = 2.0 + math.log(max(k * runs, 2.0)) / -math.log(max(r, 1e-6))
  elif r < 1.25:  # critical window: spreads ~ K N^(1/3), depths ~ N^(1/3) (the deepest run: ~6x)
    f = max(k * n ** (-2.0 / 3.0), _final_size(r))
    depth = 6.0 * n ** (1.0 / 3.0)
  else:  # supercritical: the final size, reached in ~ log N / log R rounds each way
    f = _final_size(r)
    depth = 2.0 + 2.0 * math.log(max(n, 2)) / math.log(r)
  f = min(f, 1.0)
  d_out = e / max(n, 1)
  dense = runs * slots * depth * c["dense_test"] + depth * c["iteration"]
  frontier = runs * (f * n + k) * d_out * c["frontier_item"] + depth * c["iteration"]
  return {"branching_factor": r, "reach": f, "rounds": depth, "dense_s": dense,
          "frontier_s": frontier, "platform": plat}


def choose_method(graph: ICGraph, num_sims: int, num_seeds: int = 1, num_sets: int = 1,
                  platform: str | None = None) -> str:
  """The engine `method="auto"` runs: the cheaper one under `estimate_costs`.

  In words: the frontier engine for subcritical and near-critical cascades (on graphs of 1e3 to 1e6
  nodes and mean degree 10, on either device: R below about 1.25), whose runs test a small share of
  the edges over many rounds; the dense engine for supercritical ones (R of 1.5 and more), where
  most (edge, run) pairs are tested anyway within a few rounds and a fused dense test is about 300
  (GPU) / 170 (CPU) times cheaper than a frontier item. A wrong guess costs time, never samples: both give the same samples, and the frontier engine
  hands over to the dense one when its queue overflows.
  """
  est = estimate_costs(graph, num_sims, num_seeds, num_sets, platform)
  return "frontier" if est["frontier_s"] <= est["dense_s"] else "dense"


def default_caps(platform: str | None = None) -> dict:
  """Default frontier batch sizes: item_cap (edge items an iteration), frontier_cap (popped
  entries), queue_cap (queue length); larger on a GPU, where an iteration's fixed cost is higher."""
  plat = platform or jax.default_backend()
  if plat in ("gpu", "cuda", "rocm"):
    return {"item_cap": 1 << 22, "frontier_cap": 1 << 20, "queue_cap": 1 << 24}
  return {"item_cap": 1 << 15, "frontier_cap": 1 << 13, "queue_cap": 1 << 17}


# ------------------------------------------------------------------------------------- public API

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


def resolve_method(graph: ICGraph, num_sims: int, seeds_shape, method: str = "auto", *,
                   max_rounds=None, max_active=None) -> str:
  """The engine `simulate_ic` runs for these arguments ("dense" or "frontier")."""
  if method not in ("auto", "dense", "frontier"):
    raise ValueError(f"method must be 'auto', 'dense' or 'frontier', got {method!r}")
  if method == "frontier" and (max_active is not None or max_rounds is not None):
    raise ValueError("max_active and max_rounds need method='dense' (or 'auto')")
  if method != "auto":
    return method
  if max_active is not None or max_rounds is not None:
    return "dense"
  b_sets, k = (1, seeds_shape[0]) if len(seeds_shape) == 1 else seeds_shape
  return choose_method(graph, num_sims, num_seeds=k, num_sets=b_sets)


def simulate_ic(graph: ICGraph, seeds, key: jax.Array, num_sims: int, *, method: str = "auto",
                words_per_chunk: int = 4096, max_rounds: int | None = None, max_active=None,
                item_cap: int | None = None, frontier_cap: int | None = None,
                queue_cap: int | None = None) -> ICResult:
  """Runs `num_sims` Independent Cascade simulations per seed set in one jitted call.

  Args:
    graph: from `popdiff_jax.simulate.build_graph`.
    seeds: int [K] (one seed set) or [B, K] (a batch; -1 pads shorter sets). Validated on the host
      when concrete (`check_seeds`); under an outer jit the caller must validate.
    key: PRNG key; the same key gives the same samples, whatever the method and the chunking.
    num_sims: S, runs per seed set (any positive integer; rounded up to a multiple of 32
      internally, the extra bits are ignored).
    method: "auto" (`choose_method`), "dense" (pull over all edges each round, hashes fused into
      the rounds; for supercritical cascades) or "frontier" (push from a queue of activations; work
      proportional to the tested edges; for subcritical and near-critical cascades). All give
      identical samples (see the module docstring).
    words_per_chunk: dense rounds run over 32 x words_per_chunk runs at a time (`lax.map`), each
      chunk to its own fixpoint; does not change the samples.
    max_rounds: optional cap on propagation rounds (IC with a horizon); None = to the fixpoint.
      Dense only ("auto" then runs dense).
    max_active: optional int [B]; a run stops growing after the first round in which it has at least
      this many active nodes (seeds included). Activations of that last round are all kept (IC
      activates a round's nodes together), so a run can overshoot the cap within one round. Used by
      the NDM evaluation protocol ("stop at |G| infected users"). Dense only.
    item_cap: frontier: (edge, run) items expanded per iteration (raised to the largest
      out-degree); default `default_caps()`.
    frontier_cap: frontier: queued activations popped per iteration.
    queue_cap: frontier: queue length (default: the larger of `default_caps()` and 64 entries a
      run, at most 2^28); past it the engine finishes with dense rounds.

  Returns:
    `ICResult` with spread [B, S], activation_prob [B, N], rounds and edge_tests.

  Memory: the state is N x B x S / 8 bytes; the frontier engine adds about 8 queue_cap bytes and
  some 60 item_cap bytes of temporaries.

  Raises:
    DataError: on bad seeds (see `check_seeds`).
  """
  if not isinstance(num_sims, (int, np.integer)) or num_sims <= 0:
    raise DataError(f"num_sims must be a positive integer, got {num_sims!r}")
  try:
    seeds = check_seeds(np.asarray(seeds), graph.num_nodes)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    pass  # under an outer jit the caller validates
  seeds = jnp.asarray(seeds, jnp.int32)
  if seeds.ndim == 1:
    seeds = seeds[None, :]
  method = resolve_method(graph, int(num_sims), seeds.shape, method, max_rounds=max_rounds,
                          max_active=max_active)
  if max_active is not None:
    max_active = jnp.broadcast_to(jnp.asarray(max_active, jnp.int32), (seeds.shape[0],))
  if method == "frontier":
    caps = default_caps()
    max_deg = _graph_stats(graph)[1]
    m = max(int(item_cap or caps["item_cap"]), max_deg, 1)
    c = max(1, min(int(frontier_cap or caps["frontier_cap"]), (2 ** 31 - 1) // max(max_deg, 1)))
    # Room for 64 pending activations a run: a near-critical cascade stays far below it, a
    # supercritical one overflows and is finished by dense rounds.
    runs = seeds.shape[0] * 32 * (-(-int(num_sims) // 32))
    q = max(int(queue_cap or max(caps["queue_cap"], min(64 * runs, 1 << 28))), 2 * m)
    return _simulate_frontier(graph, seeds, key, num_sims=int(num_sims), item_cap=m,
                              frontier_cap=c, queue_cap=q, max_degree=max_deg,
                              words_per_chunk=int(words_per_chunk))
  return _simulate_dense(graph, seeds, key, max_active, num_sims=int(num_sims),
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
