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
slot ``j``). The functions here compute the same states in four ways:

* :func:`levelwise_tree_lstm`: a ``lax.scan`` with one step per chunk; ``W x + b`` of all nodes
  is given (one ``(N, D)·(D, 4H)`` product before the scan), a step gathers its parents' rows,
  applies the cell to its ``C`` nodes and writes them back in place. ``impl="vjp"`` (default)
  has a hand-written backward pass (``jax.custom_vjp``): a reverse scan whose steps scatter-add
  each chunk's ``(dh_p, dc_p)`` into its parents' rows of one cotangent buffer, ``O(C·H)`` per
  step; ``impl="scan"`` is autodiff through the scan, whose transpose copies the ``(B + N, H)``
  cotangent buffers in every step on CPU (``O(N·H)``; ``benchmarks/tree_lstm_scaling.py``) but
  supports forward-mode differentiation.
* :func:`levelwise_tree_lstm_inputs`: the same given ``x``, ``W``, ``b`` (``W x + b`` chunk by
  chunk inside the scan; no ``(N, 4H)`` buffer).
* :func:`levelwise_tree_lstm_by_level` and :func:`levelwise_tree_lstm_inputs_by_level`: one
  step per level of static width (no scan), the level boundaries from :func:`chunk_runs`; one
  compile per level profile, for fixed batches.

All four agree with the node-by-node recursion (``popdiff_jax.baselines.tree_lstm``) in values
and gradients (``tests/test_trees_model.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.nn.lstm import lstm_cell

__all__ = ["LEVELWISE_IMPLS", "levelwise_tree_lstm", "levelwise_tree_lstm_inputs",
           "levelwise_tree_lstm_by_level", "levelwise_tree_lstm_inputs_by_level", "chunk_runs"]

#: The implementations of the scan's backward pass (``impl=`` of the scan functions).
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
