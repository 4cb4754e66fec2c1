"""Diffusion-LSTM (Hu et al., WSDM 2018): a top-down tree LSTM over re-share trees, and its baselines.

The cell is Eq. 1 of the paper, for a child ``ch`` of parent ``p`` with input ``x_ch`` (the child's
social feature)::

  f = σ(W_f x + U_f h_p + b_f)    i = σ(W_i x + U_i h_p + b_i)    o = σ(W_o x + U_o h_p + b_o)
  c_ch = f ⊙ c_p + i ⊙ tanh(W_c x + U_c h_p + b_c)                h_ch = o ⊙ tanh(c_ch)

A parent's (h, c) goes to every child, so in back-propagation the parent's gradient is the sum over
its children (automatic here: the parent row is gathered once per child). The root's parent state is
``h = 0`` and ``c = FC(content feature)`` (Sec. 3.4: "we project the image features into the initial
root parent memory through an FC layer"). The head is dropout → FC → ReLU → dropout → FC → sigmoid
over k + 1 classes (k prototypes and the terminal class); the loss is Eq. 2, the class-balanced
binary cross-entropy.

Level-wise computation (beyond the paper, same function): nodes are laid out depth by depth in
chunks (:class:`popdiff_jax.data.trees.TreeBatch`); a ``lax.scan`` runs one step per chunk, gathering
the parents' states from a state buffer and writing the chunk's states back. ``W x + b`` of every node
is one matrix product before the scan, so each step does only the ``U h_p`` product and the gates.
The backward pass is hand-written (``jax.custom_vjp``, :func:`levelwise_tree_lstm` ``impl="vjp"``):
a reverse scan whose steps scatter-add each chunk's (dh_p, dc_p) into its parents' rows of a
cotangent buffer, O(C·H) per step; autodiff through the scan (``impl="scan"``) made XLA copy its
(B + N, H) cotangent buffers in every step (O(N·H); measured on CPU by
benchmarks/tree_lstm_scaling.py).

Variants (``variant=``), the paper's Sec. 4.3 baselines:
  * ``"full"``: social input, c0 = FC(content).
  * ``"social"``: social input, c0 = 0 (no content).
  * ``"content"``: the content feature is the input at every node, c0 = 0.
  * ``"fc"``: no memory: FC → ReLU → dropout → FC → ReLU → dropout → FC → sigmoid on
    [node social feature, content feature].
  * The "random weights" baseline is ``"full"`` left at its initialisation.

Unstated in the paper and chosen here: hidden size 128 and head width 128 by default, dropout 0.5,
Glorot-uniform input weights, orthogonal recurrent weights, zero biases.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
  "DiffusionLSTM", "VARIANTS", "LEVELWISE_IMPLS", "levelwise_tree_lstm",
  "levelwise_tree_lstm_inputs", "levelwise_tree_lstm_by_level",
  "levelwise_tree_lstm_inputs_by_level", "chunk_runs", "lstm_cell", "cell_from_preactivation",
  "weighted_bce", "class_weights", "dropout", "GeneratedTrees", "init_model", "apply_model",
  "generate_trees",
]

VARIANTS = ("full", "social", "content", "fc")


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout with an explicit key; identity when ``key`` is None or ``rate`` is 0."""
  if key is None or rate <= 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def lstm_cell(xw: jax.Array, h_p: jax.Array, c_p: jax.Array, u: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """Eq. 1 given the precomputed input term.

  Args:
    xw: (..., 4H) ``W x + b`` of the children, gate blocks in the order f, i, o, c.
    h_p: (..., H) parent hidden state.
    c_p: (..., H) parent memory.
    u: (H, 4H) recurrent weights ``[U_f, U_i, U_o, U_c]``.

  Returns:
    (h_ch, c_ch), each (..., H).
  """
  return cell_from_preactivation(xw + h_p @ u, c_p)


def cell_from_preactivation(z: jax.Array, c_p: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eq. 1 given ``z = W x + U h_parent + b``, (..., 4H) in gate order f, i, o, c."""
  f, i, o, g = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c_p + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


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
    h, c = lstm_cell(_input_term(inp_k, w, b_in), h_buf[par_k], c_buf[par_k], u)
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
  """The first formulation (``impl="scan"``): JAX autodiff through the forward scan.

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
  later chunks, recomputes its gates (one (C, H)·(H, 4H) product), back-propagates Eq. 1 and
  scatter-adds (dh_p, dc_p) into its parents' rows (earlier chunks or virtual roots): a
  parent's gradient is the sum over its children. dU = Σ_nodes h_pᵀ dz is one (H, N)·(N, 4H)
  product after the scan; dz = d(W x + b) is the scan's stacked output.
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
    zf, zi, zo, zg = jnp.split(z, 4, axis=-1)
    f, i, o, tg = jax.nn.sigmoid(zf), jax.nn.sigmoid(zi), jax.nn.sigmoid(zo), jnp.tanh(zg)
    c = f * c_p + i * tg
    tc = jnp.tanh(c)
    d = jax.lax.dynamic_slice_in_dim(ct, b + k * c_w, c_w, axis=0)
    dh, dc = d[:, :hid], d[:, hid:]
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate([dc * c_p * f * (1.0 - f), dc * tg * i * (1.0 - i),
                          dh * tc * o * (1.0 - o), dc * i * (1.0 - tg * tg)], axis=1)
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
    xw: (N, 4H) ``W x + b`` per node slot, N = num_chunks * C, slots ordered as in TreeBatch.
    parent: (N,) int32 row of each node's parent in the (B + N)-row state buffer (rows < B are the
      roots' virtual parents). Each chunk's parents must lie in earlier chunks or in rows < B.
    h_root: (B, H) hidden state of each root's virtual parent (zeros in the paper).
    c_root: (B, H) memory of each root's virtual parent (the content embedding).
    u: (H, 4H) recurrent weights.
    num_chunks: K (static).
    unroll: ``lax.scan`` unroll factor (static; True = all K steps unrolled, no loop).
    impl: ``"vjp"`` (default): a hand-written backward pass (reverse scan; cotangents
      scatter-added into the parents' rows of one (B + N, 2H) buffer; gates recomputed per chunk;
      dU as one product after the scan); ``"scan"``: the first formulation, JAX autodiff through
      the scan (its backward steps copy O(N·H) buffers on CPU; supports forward-mode AD). Same
      forward pass, same values and gradients.

  Returns:
    (h, c): (N, H) states of every node slot (padding slots hold finite junk).
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
    x: (N, D) node inputs; w: (D, 4H); b: (4H,). The other arguments as levelwise_tree_lstm.

  Returns:
    (h, c): (N, H) states of every node slot.
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
    chunk_depth: (K,) int depth of each chunk (a NumPy array, not a traced value).
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
    h, c = cell_from_preactivation(input_term(start, rows, h_par), c_par)
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
    xw, parent, h_root, c_root, u: as levelwise_tree_lstm. Every node of run r >= 1 must have its
      parent in run r - 1 and every node of run 0 a parent row < B (TreeBatch guarantees both for
      real nodes; padding slots, which point at row 0, get finite junk).
    level_chunks: static chunks per run, summing to K = N / C.

  Returns:
    (h, c): (N, H) states of every node slot.
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
    x: (N, D) node inputs; w: (D, 4H); b: (4H,). The other arguments as
      levelwise_tree_lstm_by_level.

  Returns:
    (h, c): (N, H) states of every node slot.
  """
  k = sum(level_chunks)
  _check_input_shapes(x, w, b, parent, h_root, c_root, u, k)
  wu = jnp.concatenate([w, u], axis=0)

  def input_term(start, rows, h_par):
    return jnp.concatenate([x[start:start + rows], h_par], axis=-1) @ wu + b[None, :]

  return _by_level(input_term, parent, h_root, c_root, level_chunks, x.shape[0] // k)


def weighted_bce(logits: jax.Array, targets: jax.Array, mask: jax.Array, w_pos: jax.Array,
                 w_neg: jax.Array) -> jax.Array:
  """Eq. 2: Σ_u −(1/N) Σ_n [w⁺_u t log o + w⁻_u (1 − t) log(1 − o)], o = σ(logits).

  Args:
    logits: (N, K1) pre-sigmoid scores.
    targets: (N, K1) {0, 1}.
    mask: (N,) bool real nodes; N in the formula is sum(mask) (at least 1).
    w_pos, w_neg: (K1,) class weights from :func:`class_weights`.

  Returns:
    Scalar loss (finite for an all-padding batch).
  """
  logp = jax.nn.log_sigmoid(logits)
  log1mp = jax.nn.log_sigmoid(-logits)
  per = -(w_pos[None, :] * targets * logp + w_neg[None, :] * (1.0 - targets) * log1mp)
  per_node = jnp.where(mask, per.sum(-1), jnp.zeros((), per.dtype))
  denom = jnp.maximum(mask.sum(), 1).astype(per.dtype)
  return per_node.sum() / denom


def class_weights(pos_counts, neg_counts) -> tuple[jax.Array, jax.Array]:
  """Balancing weights of Eq. 2: w⁺ = N⁻ / (N⁻ + N⁺), w⁻ = N⁺ / (N⁻ + N⁺), per class.

  Args:
    pos_counts, neg_counts: (K1,) training counts of positive / negative node targets.
  """
  pos = jnp.asarray(pos_counts, jnp.float32)
  neg = jnp.asarray(neg_counts, jnp.float32)
  tot = jnp.maximum(pos + neg, 1.0)
  return neg / tot, pos / tot


class GeneratedTrees(NamedTuple):
  """Trees generated from their roots (leading batch axes as vmapped).

  Attributes:
    depth: (...,) int32 depth of the generated tree (0 = root only).
    size: (...,) int32 number of nodes, root included.
    widths: (..., max_depth + 1) int32 nodes per level.
    proto_counts: (..., k) float32 non-root nodes per prototype.
  """
  depth: jax.Array
  size: jax.Array
  widths: jax.Array
  proto_counts: jax.Array


def _glorot(key, shape):
  lim = jnp.sqrt(6.0 / (shape[0] + shape[1]))
  return jax.random.uniform(key, shape, jnp.float32, -lim, lim)


class DiffusionLSTM(nnx.Module):
  """Diffusion-LSTM and its baselines (see the module docstring).

  Args:
    input_dim: D, size of a node's social feature.
    content_dim: F, size of the content (image) feature.
    num_protos: k; the head outputs k + 1 classes (the last is terminal).
    hidden: H, LSTM size.
    head_hidden: width of the head's hidden FC layer.
    dropout_rate: rate of both dropout layers.
    variant: one of VARIANTS.
    scan_unroll: ``lax.scan`` unroll factor of the level-wise pass (see levelwise_tree_lstm).
    scan_impl: ``"vjp"`` (hand-written backward pass) or ``"scan"`` (autodiff through the scan;
      use it for forward-mode differentiation, which a custom VJP does not support).
    scan_fuse_input: compute ``W x + b`` chunk by chunk inside the scan
      (levelwise_tree_lstm_inputs) instead of one (N, 4H) product before it. Same math.
    rngs: nnx.Rngs for initialisation only (dropout keys are call arguments).
  """

  def __init__(self, input_dim: int, content_dim: int, num_protos: int, *, hidden: int = 128,
               head_hidden: int = 128, dropout_rate: float = 0.5, variant: str = "full",
               scan_unroll: int = 1, scan_impl: str = "vjp", scan_fuse_input: bool = False,
               rngs: nnx.Rngs):
    if variant not in VARIANTS:
      raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if scan_impl not in LEVELWISE_IMPLS:
      raise ValueError(f"scan_impl must be one of {LEVELWISE_IMPLS}, got {scan_impl!r}")
    self.scan_unroll = scan_unroll
    self.scan_impl = scan_impl
    self.scan_fuse_input = scan_fuse_input
    self.variant = variant
    self.num_protos = num_protos
    self.hidden = hidden
    self.dropout_rate = dropout_rate
    k1 = num_protos + 1
    if variant == "fc":
      self.fc1 = nnx.Linear(input_dim + content_dim, head_hidden, rngs=rngs)
      self.fc2 = nnx.Linear(head_hidden, head_hidden, rngs=rngs)
      self.fc3 = nnx.Linear(head_hidden, k1, rngs=rngs)
      return
    in_dim = content_dim if variant == "content" else input_dim
    kw, ku = jax.random.split(rngs.params())
    self.w = nnx.Param(_glorot(kw, (in_dim, 4 * hidden)))
    self.u = nnx.Param(jnp.concatenate(
        [jax.nn.initializers.orthogonal()(k, (hidden, hidden), jnp.float32)
         for k in jax.random.split(ku, 4)], axis=1))
    self.b = nnx.Param(jnp.zeros((4 * hidden,), jnp.float32))
    if variant == "full":
      self.content_fc = nnx.Linear(content_dim, hidden, rngs=rngs)
    self.head1 = nnx.Linear(hidden, head_hidden, rngs=rngs)
    self.head2 = nnx.Linear(head_hidden, k1, rngs=rngs)

  # -- pieces ---------------------------------------------------------------------------------

  def node_input(self, x: jax.Array, content_rows: jax.Array) -> jax.Array:
    """The LSTM input at a node: its social feature, or the content for ``"content"``."""
    return content_rows if self.variant == "content" else x

  def input_term(self, x_in: jax.Array) -> jax.Array:
    """``W x + b``: (..., D) -> (..., 4H)."""
    b = self.b[...]
    return x_in @ self.w[...] + b.reshape((1,) * (x_in.ndim - 1) + b.shape)

  def root_state(self, content: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(h0, c0) of the roots' virtual parents: h0 = 0, c0 = FC(content) (or 0). content: (B, F)."""
    h0 = jnp.zeros((content.shape[0], self.hidden), content.dtype)
    if self.variant == "full":
      return h0, self.content_fc(content)
    return h0, h0

  def head(self, h: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """dropout → FC → ReLU → dropout → FC: (..., H) -> (..., k + 1) logits."""
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    z = jax.nn.relu(self.head1(dropout(h, self.dropout_rate, k1)))
    return self.head2(dropout(z, self.dropout_rate, k2))

  def fc_logits(self, x: jax.Array, content_rows: jax.Array,
                key: jax.Array | None = None) -> jax.Array:
    """The FC baseline: three FC layers, ReLU + dropout after the first two. -> logits."""
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    z = jnp.concatenate([x, content_rows], axis=-1)
    z = dropout(jax.nn.relu(self.fc1(z)), self.dropout_rate, k1)
    z = dropout(jax.nn.relu(self.fc2(z)), self.dropout_rate, k2)
    return self.fc3(z)

  # -- teacher-forced pass over a level-wise batch -----------------------------------------------

  def states(self, batch) -> tuple[jax.Array, jax.Array]:
    """(h, c): (N, H) states of every node slot of a TreeBatch (level-wise scan)."""
    content_rows = batch.content[batch.tree]
    x_in = self.node_input(batch.x, content_rows)
    h0, c0 = self.root_state(batch.content)
    kw = dict(unroll=self.scan_unroll, impl=self.scan_impl)
    if self.scan_fuse_input:
      return levelwise_tree_lstm_inputs(x_in, self.w[...], self.b[...], batch.parent, h0, c0,
                                        self.u[...], batch.chunk_depth.shape[0], **kw)
    return levelwise_tree_lstm(self.input_term(x_in), batch.parent, h0, c0, self.u[...],
                               batch.chunk_depth.shape[0], **kw)

  def __call__(self, batch, key: jax.Array | None = None) -> jax.Array:
    """(N, k + 1) logits of every node slot; ``key`` enables dropout (training)."""
    if self.variant == "fc":
      return self.fc_logits(batch.x, batch.content[batch.tree], key)
    h, _ = self.states(batch)
    return self.head(h, key)

  # -- generation --------------------------------------------------------------------------------

  def generate(self, content: jax.Array, root_x: jax.Array, proto_x: jax.Array,
               proto_threshold: jax.Array, key: jax.Array | None = None, *,
               terminal_threshold: float = 0.5, max_depth: int = 10, max_width: int = 100,
               max_size: int = 150) -> GeneratedTrees:
    """Generates one tree from its root (Sec. 4.5), level by level with static shapes.

    A live node is terminal if p(terminal) > terminal_threshold; otherwise it gets one child for
    each prototype u with p_u > proto_threshold[u] (or, with ``key``, with probability p_u: the
    sampling variant). A child's input is its prototype's feature. Growth stops at max_depth
    levels below the root, max_width nodes per level and max_size nodes in all (the paper's
    truncation, depth > 10, width > 100, size > 150); children beyond a cap are cut in
    parent-major order.

    Args:
      content: (F,) content feature.
      root_x: (D,) the root user's feature.
      proto_x: (k, D) prototype features.
      proto_threshold: (k,) thresholds.
      key: optional PRNG key for sampled generation.

    Returns:
      GeneratedTrees for this one tree.
    """
    k = proto_x.shape[0]
    w_cap = max_width
    dt = proto_x.dtype
    cont = content[None]
    fc = self.variant == "fc"

    def node_state(x, h_p, c_p):
      if fc:
        return h_p, c_p
      xin = self.node_input(x, jnp.broadcast_to(cont, (x.shape[0], cont.shape[1])))
      return lstm_cell(self.input_term(xin), h_p, c_p, self.u[...])

    def probs(x, h):
      if fc:
        logits = self.fc_logits(x, jnp.broadcast_to(cont, (x.shape[0], cont.shape[1])))
      else:
        logits = self.head(h)
      return jax.nn.sigmoid(logits)

    hid = 1 if fc else self.hidden
    if fc:
      h0 = c0 = jnp.zeros((1, hid), dt)
    else:
      h0, c0 = self.root_state(cont)
    h_r, c_r = node_state(root_x[None], h0, c0)
    h = jnp.zeros((w_cap, hid), dt).at[0].set(h_r[0])
    c = jnp.zeros((w_cap, hid), dt).at[0].set(c_r[0])
    x = jnp.zeros((w_cap, proto_x.shape[1]), dt).at[0].set(root_x)
    alive = jnp.arange(w_cap) == 0
    keys = (jnp.zeros((max_depth, 2), jnp.uint32) if key is None
            else jax.random.split(key, max_depth))
    src_parent = jnp.arange(w_cap * k, dtype=jnp.int32) // k
    src_proto = jnp.arange(w_cap * k, dtype=jnp.int32) % k

    def level(carry, kd):
      h, c, x, alive, size = carry
      p = probs(x, h)
      expand = alive & (p[:, k] <= terminal_threshold)
      if key is None:
        child = p[:, :k] > proto_threshold[None, :]
      else:
        child = jax.random.uniform(kd, (w_cap, k), p.dtype) < p[:, :k]
      flat = (child & expand[:, None]).reshape(-1)
      csum = jnp.cumsum(flat.astype(jnp.int32))
      budget = jnp.minimum(w_cap, max_size - size)
      n_new = jnp.minimum(csum[-1], budget).astype(jnp.int32)
      # Compaction without a scatter: output slot s takes the (s+1)-th selected (parent, proto)
      # pair in parent-major order, found by binary search in the running count.
      slots = jnp.arange(w_cap, dtype=jnp.int32)
      src = jnp.minimum(jnp.searchsorted(csum, slots + 1, side="left"), w_cap * k - 1)
      new_par = src_parent[src]
      new_proto = src_proto[src]
      new_alive = slots < n_new
      x_new = proto_x[new_proto]
      h_new, c_new = node_state(x_new, h[new_par], c[new_par])
      counts = jnp.zeros(k, dt).at[new_proto].add(new_alive.astype(dt))
      return (h_new, c_new, x_new, new_alive, size + n_new), (n_new, counts)

    # A while loop, not a scan: generation stops as soon as no node is alive (under vmap, when
    # no tree of the batch has a live node), which is most levels for realistic thresholds.
    def cond(st):
      d, carry, _, _ = st
      return (d < max_depth) & carry[3].any()

    def body(st):
      d, carry, widths, counts = st
      carry, (n_new, cnt) = level(carry, keys[d])
      return d + 1, carry, widths.at[d].set(n_new), counts + cnt

    init = (jnp.zeros((), jnp.int32), (h, c, x, alive, jnp.ones((), jnp.int32)),
            jnp.zeros((max_depth,), jnp.int32), jnp.zeros((k,), dt))
    _, (_, _, _, _, size), widths, counts = jax.lax.while_loop(cond, body, init)
    depth = (widths > 0).sum().astype(jnp.int32)
    return GeneratedTrees(depth=depth, size=size,
                          widths=jnp.concatenate([jnp.ones((1,), jnp.int32), widths]),
                          proto_counts=counts)


# ------------------------------------------------------------------------------------------------
# Functional entry points (the rest of the package sees graphdef + params pytrees only).


def init_model(key: jax.Array, *, input_dim: int, content_dim: int, num_protos: int,
               variant: str = "full", hidden: int = 128, head_hidden: int = 128,
               dropout_rate: float = 0.5, scan_unroll: int = 1, scan_impl: str = "vjp",
               scan_fuse_input: bool = False):
  """Builds a model and splits it: returns (graphdef, params) with params an nnx.State pytree."""
  model = DiffusionLSTM(input_dim, content_dim, num_protos, hidden=hidden,
                        head_hidden=head_hidden, dropout_rate=dropout_rate, variant=variant,
                        scan_unroll=scan_unroll, scan_impl=scan_impl,
                        scan_fuse_input=scan_fuse_input, rngs=nnx.Rngs(params=key))
  return nnx.split(model)


def apply_model(graphdef, params, batch, key: jax.Array | None = None) -> jax.Array:
  """(N, k + 1) logits of a TreeBatch: ``nnx.merge`` then call (pure; jit it outside)."""
  return nnx.merge(graphdef, params)(batch, key)


def generate_trees(graphdef, params, content: jax.Array, root_x: jax.Array, proto_x: jax.Array,
                   proto_threshold: jax.Array, keys: jax.Array | None = None,
                   **kw) -> GeneratedTrees:
  """Generation vmapped over trees and (with ``keys``) over samples.

  Args:
    content: (T, F); root_x: (T, D); proto_x: (k, D); proto_threshold: (k,).
    keys: optional (S, 2) keys: S sampled trees per root (Bernoulli children); None: the
      paper's deterministic thresholding.
    **kw: terminal_threshold, max_depth, max_width, max_size.

  Returns:
    GeneratedTrees with leading axes (T,) or (S, T).
  """
  model = nnx.merge(graphdef, params)

  def one(cont, rx, key):
    return model.generate(cont, rx, proto_x, proto_threshold, key, **kw)

  if keys is None:
    return jax.vmap(lambda cont, rx: one(cont, rx, None))(content, root_x)
  idx = jnp.arange(content.shape[0], dtype=jnp.int32)
  # Each (sample, tree) pair draws from its own key: fold the tree index into the sample's key.
  per_sample = jax.vmap(lambda cont, rx, i, kk: one(cont, rx, jax.random.fold_in(kk, i)),
                        in_axes=(0, 0, 0, None))
  return jax.vmap(lambda kk: per_sample(content, root_x, idx, kk))(keys)
