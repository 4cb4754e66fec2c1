"""The level-wise top-down tree LSTM: Diffusion-LSTM's Eq. 1 over many trees at once.

Eq. 1 of Hu et al. (2018) is :func:`popdiff_jax.nn.lstm.lstm_cell` applied to a child ``ch`` of
parent ``p``, with the *parent's* states as the previous states (gate blocks ``(i, f, g, o)``)::

  z_ch = W x_ch + U h_p + b       (h_ch, c_ch) = lstm_cell(z_ch, c_p)

A parent's ``(h, c)`` goes to every child, so in back-propagation the parent's gradient is the
sum over its children. The roots' parents are virtual rows whose states the caller gives
(Diffusion-LSTM: ``h = 0``, ``c = FC(content)``).

**Layout** (``popdiff_jax.types.TreeBatch``): the ``N`` node slots of a batch are ordered depth
by depth in ``K`` chunks of ``C`` same-depth slots, each chunk's parents in earlier chunks; the
states live in buffers of ``B + N`` rows (rows ``< B``: the virtual root parents, row ``B + j``:
slot ``j``). Besides, ``parent_chunks`` lists the slots that have children (the *parents*) in
``S`` chunks of ``W``, each parent's own parent in an earlier chunk. The functions here compute
the same states in five ways:

* :func:`tree_lstm_by_parents` (the model's): only the parents are computed in sequence, one
  ``lax.scan`` step per chunk of ``W`` parents, each step giving its parents' ``U h`` (one
  ``(W, H)·(H, 4H)`` product) and ``c``; then every node slot at once, from its parent's ``U h``
  and ``c``. Leaves (nine in ten nodes of a Twitter15 tree) never enter the sequential part,
  and ``U h`` is computed once per parent instead of once per child. A hand-written backward pass
  (``jax.custom_vjp``) mirrors it: all node slots at once, then a reverse scan over the parent
  chunks, ``O(W·H)`` per step.
* :func:`levelwise_tree_lstm`: a ``lax.scan`` with one step per chunk of all nodes; ``W x + b``
  of all nodes is given (one ``(N, D)·(D, 4H)`` product before the scan), a step gathers its
  parents' rows, applies the cell to its ``C`` nodes and writes them back in place. ``impl="vjp"``
  (default) has a hand-written backward pass: a reverse scan whose steps scatter-add each chunk's
  ``(dh_p, dc_p)`` into its parents' rows of one cotangent buffer, ``O(C·H)`` per step;
  ``impl="scan"`` is autodiff through the scan, whose transpose copies the ``(B + N, H)``
  cotangent buffers in every step on CPU (``O(N·H)``; ``benchmarks/tree_lstm_scaling.py``) but
  supports forward-mode differentiation.
* :func:`levelwise_tree_lstm_inputs`: the same given ``x``, ``W``, ``b`` (``W x + b`` chunk by
  chunk inside the scan; no ``(N, 4H)`` buffer).
* :func:`levelwise_tree_lstm_by_level` and :func:`levelwise_tree_lstm_inputs_by_level`: one
  step per level of static width (no scan), the level boundaries from :func:`chunk_runs`; one
  compile per level profile, for fixed batches.

All agree with the node-by-node recursion (``popdiff_jax.baselines.tree_lstm``) in values and
gradients (``tests/test_trees_lstm.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.nn.lstm import lstm_cell

__all__ = ["LEVELWISE_IMPLS", "tree_lstm_by_parents", "parent_rows", "levelwise_tree_lstm",
           "levelwise_tree_lstm_inputs", "levelwise_tree_lstm_by_level",
           "levelwise_tree_lstm_inputs_by_level", "chunk_runs"]

#: The implementations of the backward pass (``impl=`` of the scan functions): ``"vjp"`` the
#: hand-written one, ``"scan"`` autodiff through the scan.
LEVELWISE_IMPLS = ("vjp", "scan")


def _check_levelwise_shapes(xw, parent, h_root, c_root, u, num_chunks):
  n, g = xw.shape
  if g % 4 or u.shape != (g // 4, g):
    raise ValueError(f"xw (N, 4H) and u (H, 4H) disagree: {xw.shape}, {u.shape}")
  if num_chunks < 1 or n % num_chunks:
    raise ValueError(f"N = {n} node slots is not a multiple of num_chunks = {num_chunks}")
  if parent.shape != (n,) or h_root.shape != c_root.shape or h_root.shape[1:] != (g // 4,):
    raise ValueError(f"bad shapes: parent {parent.shape}, h_root {h_root.shape}, "
                     f"c_root {c_root.shape} for N = {n}, H = {g // 4}")


def _check_input_shapes(x, w, b, parent, h_root, c_root, u, num_chunks):
  """``_check_levelwise_shapes`` for the raw-input form: x (N, D), w (D, 4H), b (4H,)."""
  if w.shape[0] != x.shape[1] or b.shape != (w.shape[1],):
    raise ValueError(f"x {x.shape}, w {w.shape}, b {b.shape} disagree")
  _check_levelwise_shapes(jax.ShapeDtypeStruct((x.shape[0], w.shape[1]), x.dtype), parent,
                          h_root, c_root, u, num_chunks)


def _input_term(inp_k, w, b):
  """The chunk's ``W x + b``: ``inp_k`` itself (xw given) or ``x_k @ w + b`` (inputs given)."""
  if w is None:
    return inp_k
  return inp_k @ w + b[None, :]


def _forward_buffers(inp, w, b_in, parent, h_root, c_root, u, num_chunks, unroll):
  """The forward scan; returns the final (B + N, H) h and c buffers (rows < B: virtual roots).

  ``inp`` is xw (N, 4H) with ``w = b_in = None``, or the raw inputs x (N, D) with (w, b_in).
  """
  n = inp.shape[0]
  hid = u.shape[0]
  b = h_root.shape[0]
  c_w = n // num_chunks
  h_buf = jnp.concatenate([h_root, jnp.zeros((n, hid), h_root.dtype)], axis=0)
  c_buf = jnp.concatenate([c_root, jnp.zeros((n, hid), c_root.dtype)], axis=0)

  def step(carry, xs):
    h_buf, c_buf = carry
    k, inp_k, par_k = xs
    # Parents always sit in earlier chunks (or the virtual root rows), already final.
    h, c = lstm_cell(_input_term(inp_k, w, b_in) + h_buf[par_k] @ u, c_buf[par_k])
    start = b + k * c_w
    h_buf = jax.lax.dynamic_update_slice_in_dim(h_buf, h, start, axis=0)
    c_buf = jax.lax.dynamic_update_slice_in_dim(c_buf, c, start, axis=0)
    return (h_buf, c_buf), None

  ks = jnp.arange(num_chunks, dtype=jnp.int32)
  (h_buf, c_buf), _ = jax.lax.scan(
      step, (h_buf, c_buf),
      (ks, inp.reshape(num_chunks, c_w, inp.shape[1]), parent.reshape(num_chunks, c_w)),
      unroll=unroll)
  return h_buf, c_buf


def _scan_autodiff(inp, w, b_in, parent, h_root, c_root, u, num_chunks, unroll):
  """``impl="scan"``: JAX autodiff through the forward scan.

  Its gradient is XLA's transpose of the scan, whose while body carries two (B + N, H)
  cotangent buffers; on CPU XLA copies both buffers in every iteration (benchmarks/tree_lstm.py
  records the copies it finds in the optimized HLO), so a backward step costs O(N·H), not O(C·H).
  """
  b = h_root.shape[0]
  h_buf, c_buf = _forward_buffers(inp, w, b_in, parent, h_root, c_root, u, num_chunks, unroll)
  return h_buf[b:], c_buf[b:]


def _backward(inp, w, b_in, h_buf, c_buf, parent, u, g_h, g_c, num_chunks, unroll):
  """Reverse scan over the chunks, O(C·H) per step; returns dz (N, 4H), d h_root, d c_root, dU.

  The cotangent buffer ``[dh | dc]`` (B + N, 2H) starts as the output cotangents; chunk k
  (visited last to first) reads its rows, which are complete since all its children lie in
  later chunks, recomputes its gates (one (C, H)·(H, 4H) product), back-propagates the cell and
  scatter-adds (dh_p, dc_p) into its parents' rows (earlier chunks or virtual roots): a
  parent's gradient is the sum over its children. dU = Σ_nodes h_pᵀ dz is one (H, N)·(N, 4H)
  product after the scan; dz = d(W x + b) is the scan's stacked output, gate blocks
  ``(i, f, g, o)`` as the cell's.
  """
  n = inp.shape[0]
  hid = u.shape[0]
  g = 4 * hid
  b = h_buf.shape[0] - n
  c_w = n // num_chunks
  ct = jnp.concatenate([jnp.zeros((b, 2 * hid), g_h.dtype),
                        jnp.concatenate([g_h, g_c], axis=1)], axis=0)
  u_t = u.T

  def step(ct, xs):
    k, inp_k, par_k = xs
    h_p, c_p = h_buf[par_k], c_buf[par_k]
    z = _input_term(inp_k, w, b_in) + h_p @ u
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    i, f, tg, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
    c = f * c_p + i * tg
    tc = jnp.tanh(c)
    d = jax.lax.dynamic_slice_in_dim(ct, b + k * c_w, c_w, axis=0)
    dh, dc = d[:, :hid], d[:, hid:]
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate([dc * tg * i * (1.0 - i), dc * c_p * f * (1.0 - f),
                          dc * i * (1.0 - tg * tg), dh * tc * o * (1.0 - o)], axis=1)
    d_par = jnp.concatenate([dz @ u_t, dc * f], axis=1)
    ct = ct.at[par_k].add(d_par)
    return ct, dz

  ks = jnp.arange(num_chunks, dtype=jnp.int32)
  ct, dz = jax.lax.scan(step, ct, (ks, inp.reshape(num_chunks, c_w, inp.shape[1]),
                                   parent.reshape(num_chunks, c_w)), reverse=True, unroll=unroll)
  dz = dz.reshape(n, g)
  du = h_buf[parent].T @ dz
  return dz, ct[:b, :hid], ct[:b, hid:], du


def _float0_like(parent):
  return np.zeros(parent.shape, jax.dtypes.float0)


# impl="vjp" given xw = W x + b.
@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _levelwise_vjp(xw, parent, h_root, c_root, u, num_chunks, unroll, precision):
  return _scan_autodiff(xw, None, None, parent, h_root, c_root, u, num_chunks, unroll)


def _levelwise_vjp_fwd(xw, parent, h_root, c_root, u, num_chunks, unroll, precision):
  h_buf, c_buf = _forward_buffers(xw, None, None, parent, h_root, c_root, u, num_chunks, unroll)
  b = h_root.shape[0]
  # Residuals: the final state buffers (every node's and virtual root's (h, c)) and the inputs;
  # the gates are recomputed chunk by chunk in the backward pass.
  return (h_buf[b:], c_buf[b:]), (h_buf, c_buf, xw, parent, u)


def _levelwise_vjp_bwd(num_chunks, unroll, precision, res, cts):
  # The products run at the matmul precision in force when the forward pass was traced, as
  # autodiff's transposed products would.
  h_buf, c_buf, xw, parent, u = res
  with jax.default_matmul_precision(precision):
    dz, dh0, dc0, du = _backward(xw, None, None, h_buf, c_buf, parent, u, *cts, num_chunks,
                                 unroll)
  return dz, _float0_like(parent), dh0, dc0, du


_levelwise_vjp.defvjp(_levelwise_vjp_fwd, _levelwise_vjp_bwd)


# impl="vjp" given the raw inputs x and (W, b): W x + b computed chunk by chunk inside the scan.
@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _levelwise_x_vjp(x, w, b_in, parent, h_root, c_root, u, num_chunks, unroll, precision):
  return _scan_autodiff(x, w, b_in, parent, h_root, c_root, u, num_chunks, unroll)


def _levelwise_x_vjp_fwd(x, w, b_in, parent, h_root, c_root, u, num_chunks, unroll, precision):
  h_buf, c_buf = _forward_buffers(x, w, b_in, parent, h_root, c_root, u, num_chunks, unroll)
  b = h_root.shape[0]
  return (h_buf[b:], c_buf[b:]), (h_buf, c_buf, x, w, b_in, parent, u)


def _levelwise_x_vjp_bwd(num_chunks, unroll, precision, res, cts):
  h_buf, c_buf, x, w, b_in, parent, u = res
  with jax.default_matmul_precision(precision):
    dz, dh0, dc0, du = _backward(x, w, b_in, h_buf, c_buf, parent, u, *cts, num_chunks, unroll)
    return (dz @ w.T, x.T @ dz, dz.sum(0), _float0_like(parent), dh0, dc0, du)


_levelwise_x_vjp.defvjp(_levelwise_x_vjp_fwd, _levelwise_x_vjp_bwd)


def levelwise_tree_lstm(xw: jax.Array, parent: jax.Array, h_root: jax.Array, c_root: jax.Array,
                        u: jax.Array, num_chunks: int, *, unroll: int | bool = 1,
                        impl: str = "vjp") -> tuple[jax.Array, jax.Array]:
  """Runs Eq. 1 over a level-wise batch: one scan step per chunk of same-depth nodes.

  Each step gathers the chunk's parents' (h, c) from two state buffers of B + N rows, applies
  the cell to the C nodes of the chunk and writes their states back in place; the work of a step
  is O(C·H) in the forward and, with ``impl="vjp"``, in the backward pass too.

  Args:
    xw: float [N, 4H] ``W x + b`` per node slot (gate blocks ``(i, f, g, o)``), N = num_chunks *
      C, slots ordered as in ``TreeBatch``.
    parent: int32 [N] row of each node's parent in the (B + N)-row state buffer (rows < B are
      the roots' virtual parents). Each chunk's parents must lie in earlier chunks or in rows < B.
    h_root: float [B, H] hidden state of each root's virtual parent (zeros in the paper).
    c_root: float [B, H] memory of each root's virtual parent (the content embedding).
    u: float [H, 4H] recurrent weights.
    num_chunks: K (static).
    unroll: ``lax.scan`` unroll factor (static; True = all K steps unrolled, no loop).
    impl: ``"vjp"`` (default): the hand-written backward pass (reverse scan; cotangents
      scatter-added into the parents' rows of one (B + N, 2H) buffer; gates recomputed per chunk;
      dU as one product after the scan); ``"scan"``: JAX autodiff through the scan (its backward
      steps copy O(N·H) buffers on CPU; supports forward-mode AD). Same forward pass, same values
      and gradients.

  Returns:
    ``(h, c)``: float [N, H] states of every node slot (padding slots hold finite junk).
  """
  _check_levelwise_shapes(xw, parent, h_root, c_root, u, num_chunks)
  if impl == "scan":
    return _scan_autodiff(xw, None, None, parent, h_root, c_root, u, num_chunks, unroll)
  if impl != "vjp":
    raise ValueError(f"impl must be one of {LEVELWISE_IMPLS}, got {impl!r}")
  # The matmul precision in force now (e.g. a jax.default_matmul_precision block around the
  # forward only) also governs the hand-written backward products.
  precision = jax.config.jax_default_matmul_precision
  return _levelwise_vjp(xw, parent, h_root, c_root, u, num_chunks, unroll, precision)


def levelwise_tree_lstm_inputs(x: jax.Array, w: jax.Array, b: jax.Array, parent: jax.Array,
                               h_root: jax.Array, c_root: jax.Array, u: jax.Array,
                               num_chunks: int, *, unroll: int | bool = 1,
                               impl: str = "vjp") -> tuple[jax.Array, jax.Array]:
  """:func:`levelwise_tree_lstm` of ``xw = x @ w + b``, the product done chunk by chunk in the scan.

  Same math; it never writes the (N, 4H) ``xw`` to memory (each step reads the chunk's (C, D)
  inputs instead of its (C, 4H) ``xw`` rows), which saves memory traffic when D << 4H.

  Args:
    x: float [N, D] node inputs; w: float [D, 4H]; b: float [4H]. The other arguments as
      :func:`levelwise_tree_lstm`.

  Returns:
    ``(h, c)``: float [N, H] states of every node slot.
  """
  _check_input_shapes(x, w, b, parent, h_root, c_root, u, num_chunks)
  if impl == "scan":
    return _scan_autodiff(x, w, b, parent, h_root, c_root, u, num_chunks, unroll)
  if impl != "vjp":
    raise ValueError(f"impl must be one of {LEVELWISE_IMPLS}, got {impl!r}")
  precision = jax.config.jax_default_matmul_precision
  return _levelwise_x_vjp(x, w, b, parent, h_root, c_root, u, num_chunks, unroll, precision)


def chunk_runs(chunk_depth) -> tuple[int, ...]:
  """Host-side: lengths of the runs of equal consecutive values of a TreeBatch's ``chunk_depth``.

  Each depth's chunks are contiguous, so this is the number of chunks of each level in order
  (a trailing run of unused bucket chunks, depth 0, counts as one more run). The static
  ``level_chunks`` argument of :func:`levelwise_tree_lstm_by_level`.

  Args:
    chunk_depth: int [K] depth of each chunk (a NumPy array, not a traced value).
  """
  d = np.asarray(chunk_depth)
  if d.ndim != 1 or d.size == 0:
    raise ValueError(f"chunk_depth must be a non-empty 1-D array, got shape {d.shape}")
  cuts = np.flatnonzero(np.diff(d)) + 1
  return tuple(int(x) for x in np.diff(np.concatenate([[0], cuts, [d.size]])))


def _by_level(input_term, parent, h_root, c_root, level_chunks, c_w):
  """The level loop of the two ``*_by_level`` functions; ``input_term(start, rows, h_par)`` is
  the level's pre-activation ``W x + b + U h_par`` (rows ``start:start + rows``)."""
  b = h_root.shape[0]
  hs, cs = [], []
  h_prev, c_prev, off_prev = h_root, c_root, 0
  start = 0
  for nc in level_chunks:
    rows = nc * c_w
    # Row of the parent within the previous level (padding slots fall outside: clipped).
    par = jnp.clip(parent[start:start + rows] - off_prev, 0, h_prev.shape[0] - 1)
    h_par, c_par = h_prev[par], c_prev[par]
    h, c = lstm_cell(input_term(start, rows, h_par), c_par)
    hs.append(h)
    cs.append(c)
    h_prev, c_prev, off_prev = h, c, b + start
    start += rows
  return jnp.concatenate(hs, axis=0), jnp.concatenate(cs, axis=0)


def levelwise_tree_lstm_by_level(xw: jax.Array, parent: jax.Array, h_root: jax.Array,
                                 c_root: jax.Array, u: jax.Array, level_chunks: tuple[int, ...]
                                 ) -> tuple[jax.Array, jax.Array]:
  """:func:`levelwise_tree_lstm` with one step per level of static width (no scan, no buffers).

  The level-ordered layout of a TreeBatch is cut at static level boundaries (``level_chunks``,
  from :func:`chunk_runs` on the host); each level is one application of Eq. 1 to all its rows
  (one (rows, H)·(H, 4H) product), its parents gathered from the previous level's states. Steps =
  levels (no per-chunk overhead, no padding beyond each level's last chunk), but the shapes depend
  on the level profile: one compile per profile, so this suits a fixed batch (benchmarks, large
  evaluation batches) rather than bucketed training. Gradients by autodiff (each level's
  transpose scatter-adds into the previous level only).

  Args:
    xw, parent, h_root, c_root, u: as :func:`levelwise_tree_lstm`. Every node of run r >= 1 must
      have its parent in run r - 1 and every node of run 0 a parent row < B (TreeBatch guarantees
      both for real nodes; padding slots, which point at row 0, get finite junk).
    level_chunks: static chunks per run, summing to K = N / C.

  Returns:
    ``(h, c)``: float [N, H] states of every node slot.
  """
  k = sum(level_chunks)
  _check_levelwise_shapes(xw, parent, h_root, c_root, u, k)
  return _by_level(lambda start, rows, h_par: xw[start:start + rows] + h_par @ u,
                   parent, h_root, c_root, level_chunks, xw.shape[0] // k)


def levelwise_tree_lstm_inputs_by_level(x: jax.Array, w: jax.Array, b: jax.Array,
                                        parent: jax.Array, h_root: jax.Array, c_root: jax.Array,
                                        u: jax.Array, level_chunks: tuple[int, ...]
                                        ) -> tuple[jax.Array, jax.Array]:
  """:func:`levelwise_tree_lstm_by_level` of ``xw = x @ w + b``, one product per level.

  Each level computes its pre-activations as ``[x_l, h_parent] @ [W; U] + b``: one
  (rows, D + H)·(D + H, 4H) product instead of a separate (N, 4H) ``xw`` written to memory first
  and read back per level (the backward pass likewise gives ``[dx, dh_parent]`` and ``d[W; U]`` as
  one product each). Same math as Eq. 1.

  Args:
    x: float [N, D] node inputs; w: float [D, 4H]; b: float [4H]. The other arguments as
      :func:`levelwise_tree_lstm_by_level`.

  Returns:
    ``(h, c)``: float [N, H] states of every node slot.
  """
  k = sum(level_chunks)
  _check_input_shapes(x, w, b, parent, h_root, c_root, u, k)
  wu = jnp.concatenate([w, u], axis=0)

  def input_term(start, rows, h_par):
    return jnp.concatenate([x[start:start + rows], h_par], axis=-1) @ wu + b[None, :]

  return _by_level(input_term, parent, h_root, c_root, level_chunks, x.shape[0] // k)


# -- the recursion over parents only ------------------------------------------------------------


def _cell_backward(z, c_prev, dh, dc):
  """Back-propagates ``(h, c) = lstm_cell(z, c_prev)``, its gates recomputed: ``(dz, dc_prev)``."""
  zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
  i, f, tg, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
  c = f * c_prev + i * tg
  tc = jnp.tanh(c)
  dc = dc + dh * o * (1.0 - tc * tc)
  dz = jnp.concatenate([dc * tg * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                        dc * i * (1.0 - tg * tg), dh * tc * o * (1.0 - o)], axis=-1)
  return dz, dc * f


def parent_rows(parent: jax.Array, parent_chunks: jax.Array, num_roots: int) -> jax.Array:
  """Row of each node slot's parent in the ``(B + S·W)``-row state buffer of the parents.

  Rows ``< B`` are the virtual root parents (as in ``parent``), row ``B + s·W + i`` the parent in
  entry ``i`` of chunk ``s`` of ``parent_chunks``.

  Args:
    parent: int32 [N] row of each slot's parent in the ``(B + N)``-row buffer (``TreeBatch``).
    parent_chunks: int32 [S, W] node slots of the parents (``N`` = unused entry).
    num_roots: B.

  Returns:
    int32 [N]; a slot whose parent is not listed in ``parent_chunks`` gets row ``B`` (junk).
  """
  n = parent.shape[0]
  s, w = parent_chunks.shape
  row_of_slot = jnp.zeros((n,), jnp.int32).at[parent_chunks.reshape(-1)].set(
      num_roots + jnp.arange(s * w, dtype=jnp.int32), mode="drop")
  return jnp.where(parent < num_roots, parent,
                   row_of_slot[jnp.clip(parent - num_roots, 0, n - 1)])


def _by_parents(xw, parent, parent_chunks, h_root, c_root, u, unroll):
  """The forward pass of :func:`tree_lstm_by_parents`: ``(h, c)`` and the residuals of the
  hand-written backward pass (arrays the forward pass makes anyway; the gates are recomputed).

  The sequential part is one scan step per chunk of parents; it fills buffers of ``B + S·W``
  rows with ``U h`` [.., 4H] and ``c`` [.., H] of the virtual roots and the parents. Then every
  node slot at once.
  """
  n, g = xw.shape
  s, w = parent_chunks.shape
  b, hid = h_root.shape
  rows = parent_rows(parent, parent_chunks, b)
  flat = parent_chunks.reshape(-1)
  # Unused entries (slot N) read zeros and the first virtual root: finite junk, never read.
  xw_p = jnp.take(xw, flat, axis=0, mode="fill", fill_value=0).reshape(s, w, g)
  par_p = jnp.take(rows, flat, mode="fill", fill_value=0).reshape(s, w)
  hu_buf = jnp.concatenate([h_root @ u, jnp.zeros((s * w, g), xw.dtype)], axis=0)
  c_buf = jnp.concatenate([c_root, jnp.zeros((s * w, hid), c_root.dtype)], axis=0)

  def step(carry, xs):
    hu_buf, c_buf = carry
    k, xw_k, par_k = xs
    # The chunk's own parents sit in earlier chunks (or are virtual roots): already final.
    h, c = lstm_cell(xw_k + hu_buf[par_k], c_buf[par_k])
    start = b + k * w
    hu_buf = jax.lax.dynamic_update_slice_in_dim(hu_buf, h @ u, start, axis=0)
    c_buf = jax.lax.dynamic_update_slice_in_dim(c_buf, c, start, axis=0)
    return (hu_buf, c_buf), h

  ks = jnp.arange(s, dtype=jnp.int32)
  (hu_buf, c_buf), h_p = jax.lax.scan(step, (hu_buf, c_buf), (ks, xw_p, par_p), unroll=unroll)
  # Every node slot at once (the parents again, with the same inputs: the same states).
  h, c = lstm_cell(xw + hu_buf[rows], c_buf[rows])
  return (h, c), (xw, rows, xw_p, par_p, hu_buf, c_buf, h_p, h_root, u, parent_chunks)


def _by_parents_backward(res, g_h, g_c, unroll):
  """The backward pass: all node slots at once, then a reverse scan over the parent chunks.

  The cotangents of the parents' ``U h`` and ``c`` rows, ``(B + S·W, 4H)`` and ``(B + S·W, H)``,
  start as the sums over each parent's children of ``dz`` and ``dc·f`` (one scatter-add over
  all slots); chunk ``s`` (last to first) reads its rows, complete since its children are node
  slots or later chunks, turns ``d(U h)`` into ``dh = d(U h) Uᵀ``, back-propagates the cell and
  scatter-adds into its own parents' rows. ``dU = Σ hᵀ d(U h)`` over the roots and the parents is
  one product after the scan; a parent's ``xw`` gets both its passes' ``dz``.

  Returns:
    ``(dxw, dh_root, dc_root, du)``.
  """
  xw, rows, xw_p, par_p, hu_buf, c_buf, h_p, h_root, u, parent_chunks = res
  s, w = par_p.shape
  b, hid = h_root.shape
  g = 4 * hid
  dz, dc_par = _cell_backward(xw + hu_buf[rows], c_buf[rows], g_h, g_c)
  d_hu = jnp.zeros((b + s * w, g), dz.dtype).at[rows].add(dz)
  d_c = jnp.zeros((b + s * w, hid), dz.dtype).at[rows].add(dc_par)
  u_t = u.T

  def step(carry, xs):
    d_hu, d_c = carry
    k, xw_k, par_k = xs
    start = b + k * w
    d_hu_k = jax.lax.dynamic_slice_in_dim(d_hu, start, w, axis=0)
    d_c_k = jax.lax.dynamic_slice_in_dim(d_c, start, w, axis=0)
    dz_k, dc_par_k = _cell_backward(xw_k + hu_buf[par_k], c_buf[par_k], d_hu_k @ u_t, d_c_k)
    d_hu = d_hu.at[par_k].add(dz_k)
    d_c = d_c.at[par_k].add(dc_par_k)
    return (d_hu, d_c), dz_k

  ks = jnp.arange(s, dtype=jnp.int32)
  (d_hu, d_c), dz_p = jax.lax.scan(step, (d_hu, d_c), (ks, xw_p, par_p), reverse=True,
                                   unroll=unroll)
  # A chunk's rows are final once it is visited (only earlier rows are added to afterwards), so
  # the final buffer holds every row's d(U h).
  d_hu_root = d_hu[:b]
  du = jnp.concatenate([h_root, h_p.reshape(s * w, hid)], axis=0).T @ d_hu
  dxw = dz.at[parent_chunks.reshape(-1)].add(dz_p.reshape(s * w, g), mode="drop")
  return dxw, d_hu_root @ u_t, d_c[:b], du


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _by_parents_vjp(xw, parent, parent_chunks, h_root, c_root, u, unroll, precision):
  return _by_parents(xw, parent, parent_chunks, h_root, c_root, u, unroll)[0]


def _by_parents_vjp_fwd(xw, parent, parent_chunks, h_root, c_root, u, unroll, precision):
  return _by_parents(xw, parent, parent_chunks, h_root, c_root, u, unroll)


def _by_parents_vjp_bwd(unroll, precision, res, cts):
  # The products run at the matmul precision in force when the forward pass was traced.
  with jax.default_matmul_precision(precision):
    dxw, dh0, dc0, du = _by_parents_backward(res, *cts, unroll)
  rows, parent_chunks = res[1], res[-1]
  return (dxw, _float0_like(rows), _float0_like(parent_chunks), dh0, dc0, du)


_by_parents_vjp.defvjp(_by_parents_vjp_fwd, _by_parents_vjp_bwd)


def tree_lstm_by_parents(xw: jax.Array, parent: jax.Array, parent_chunks: jax.Array,
                         h_root: jax.Array, c_root: jax.Array, u: jax.Array, *,
                         unroll: int | bool = 1, impl: str = "vjp"
                         ) -> tuple[jax.Array, jax.Array]:
  """Runs Eq. 1 over a batch of trees: the parents in sequence, then every node at once.

  Only a node with children has states that other nodes read, and it gives every child the same
  ``U h`` and ``c``. So the sequential part runs over the parents alone: one ``lax.scan`` step
  per chunk of ``W`` parents (``parent_chunks``, each parent's own parent in an earlier chunk or
  a virtual root) computes their states and stores ``U h`` (one ``(W, H)·(H, 4H)`` product per
  step) and ``c`` in buffers of ``B + S·W`` rows. Then all ``N`` node slots (parents again,
  leaves, padding) get ``lstm_cell(xw + (U h)_parent, c_parent)`` in one parallel pass. The
  product ``U h`` is done once per parent rather than once per child (a tenth of the nodes of a
  Twitter15 tree are parents), and the number of sequential steps is ``S``, about the depth,
  not the number of chunks of all nodes.

  Args:
    xw: float [N, 4H] ``W x + b`` per node slot (gate blocks ``(i, f, g, o)``).
    parent: int32 [N] row of each slot's parent in the ``(B + N)``-row buffer of a
      ``TreeBatch`` (rows < B: the roots' virtual parents; padding slots: row 0).
    parent_chunks: int32 [S, W] the node slots of every node with children (``TreeBatch``),
      unused entries ``N``; every listed slot's parent is a virtual root or listed in an
      earlier chunk, and every slot whose parent is a node has its parent listed.
    h_root: float [B, H] hidden state of each root's virtual parent (zeros in the paper).
    c_root: float [B, H] memory of each root's virtual parent (the content embedding).
    u: float [H, 4H] recurrent weights.
    unroll: ``lax.scan`` unroll factor of the sequential part (static; True: no loop).
    impl: ``"vjp"`` (default): the hand-written backward pass (all slots at once, then a reverse
      scan over the parent chunks, cotangents scatter-added into the parents' rows, the gates
      recomputed); ``"scan"``: JAX autodiff (supports forward-mode AD). Same values and
      gradients.

  Returns:
    ``(h, c)``: float [N, H] states of every node slot (padding slots hold finite junk).
  """
  n, g = xw.shape
  if g % 4 or u.shape != (g // 4, g):
    raise ValueError(f"xw (N, 4H) and u (H, 4H) disagree: {xw.shape}, {u.shape}")
  if (parent.shape != (n,) or parent_chunks.ndim != 2 or min(parent_chunks.shape) < 1
      or h_root.shape != c_root.shape or h_root.shape[1:] != (g // 4,)):
    raise ValueError(f"bad shapes: parent {parent.shape}, parent_chunks {parent_chunks.shape}, "
                     f"h_root {h_root.shape}, c_root {c_root.shape} for N = {n}, H = {g // 4}")
  if impl == "scan":
    return _by_parents(xw, parent, parent_chunks, h_root, c_root, u, unroll)[0]
  if impl != "vjp":
    raise ValueError(f"impl must be one of {LEVELWISE_IMPLS}, got {impl!r}")
  precision = jax.config.jax_default_matmul_precision
  return _by_parents_vjp(xw, parent, parent_chunks, h_root, c_root, u, unroll, precision)
