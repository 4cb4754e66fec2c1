"""Diffusion-LSTM (Hu et al., WSDM 2018): a top-down tree LSTM over re-share trees.

A node's children are predicted from the node's state: its prototype users (multi-hot over the
``k`` prototypes) and whether it is a leaf (the terminal class).

* Eq. 1, the cell, for a child ``ch`` of parent ``p`` with input ``x_ch`` (the child's social
  feature): the LSTM cell (``nn.lstm_cell``, gate blocks ``(i, f, g, o)``) on
  ``W x_ch + U h_p + b`` with the parent's memory ``c_p``. A parent's ``(h, c)`` goes to every
  child. The computation over many trees is ``nn.tree_lstm.tree_lstm_by_parents``: the nodes
  with children in sequence (one scan step per chunk of them, ``U h`` once per parent), then all
  nodes at once; a hand-written backward pass.
* Sec. 3.4, the root: its virtual parent has ``h = 0`` and ``c = FC(content feature)`` ("we
  project the image features into the initial root parent memory through an FC layer").
* The head: dropout → FC → ReLU → dropout → FC → sigmoid over ``k + 1`` classes (``k``
  prototypes and the terminal class). The loss is Eq. 2 (``losses.weighted_bce``).
* Sec. 4.5, generation (:meth:`DiffusionLSTM.generate`): from a root, a live node is terminal if
  ``p(terminal) > 0.5``, else it gets a child for each prototype above its threshold; recurse,
  with the paper's caps (depth 10, width 100, size 150). ``simulate.trees`` vmaps and jits it.

Variants (``DiffusionLSTMConfig.variant``), the paper's Sec. 4.3 baselines:

* ``"full"``: social input, ``c0 = FC(content)``.
* ``"social"``: social input, ``c0 = 0`` (no content).
* ``"content"``: the content feature is the input at every node, ``c0 = 0``.
* ``"fc"``: no memory: FC → ReLU → dropout → FC → ReLU → dropout → FC → sigmoid on
  ``[node social feature, content feature]``.
* The "random weights" baseline is ``"full"`` left at its initialisation.

Unstated in the paper and chosen here: hidden size 128 and head width 128 by default, dropout
0.5, Glorot-uniform input weights ``W`` (over the whole ``[D, 4H]`` matrix), recurrent weights
``U`` of four orthogonal ``H x H`` blocks, zero biases; the gate blocks of ``W`` and ``U`` are
drawn in Eq. 1's order ``(f, i, o, c)`` and stored in the cell's order ``(i, f, g, o)``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax import _validate as v
from popdiff_jax._errors import ConfigError
from popdiff_jax.nn.dropout import dropout
from popdiff_jax.nn.lstm import lstm_cell
from popdiff_jax.nn.tree_lstm import (LEVELWISE_IMPLS, levelwise_tree_lstm,
                                      levelwise_tree_lstm_inputs, tree_lstm_by_parents)
from popdiff_jax.types import TreeBatch

__all__ = ["VARIANTS", "KERNELS", "DiffusionLSTMConfig", "DiffusionLSTM", "GeneratedTrees"]

VARIANTS = ("full", "social", "content", "fc")
#: The tree-LSTM kernels of ``DiffusionLSTMConfig.kernel`` (``nn.tree_lstm``).
KERNELS = ("parents", "chunks")


@dataclasses.dataclass(frozen=True)
class DiffusionLSTMConfig:
  """Diffusion-LSTM's hyperparameters (Hu et al. Sec. 3-4; unstated ones chosen here).

  Attributes:
    input_dim: D, size of a node's social feature; set from the data.
    content_dim: F, size of the content (image) feature; set from the data.
    num_protos: k, the number of prototype users (paper: 100); the head outputs k + 1 classes
      (the last is terminal); set from the data.
    hidden: H, the LSTM size (unstated; 128).
    head_hidden: width of the head's hidden FC layer (unstated; 128).
    dropout_rate: rate of both dropout layers of the head (unstated; 0.5).
    variant: ``"full"``, ``"social"``, ``"content"`` or ``"fc"`` (see the module docstring).
    kernel: ``"parents"`` (``nn.tree_lstm.tree_lstm_by_parents``: the parents in sequence,
      one step per chunk of ``TreeBatch.parent_chunks``, then all nodes at once) or
      ``"chunks"`` (``levelwise_tree_lstm``: one step per chunk of all nodes). Same function.
    scan_unroll: ``lax.scan`` unroll factor of the kernel's sequential part; same function.
    scan_impl: ``"vjp"`` (the hand-written backward pass) or ``"scan"`` (autodiff through the
      scan; needed for forward-mode differentiation, which a custom VJP does not support).
    scan_fuse_input: with ``kernel="chunks"``, compute ``W x + b`` chunk by chunk inside the
      scan (``levelwise_tree_lstm_inputs``) instead of one ``[N, 4H]`` product before it.
  """

  name: ClassVar[str] = "diffusion_lstm"
  input_dim: int = 0
  content_dim: int = 0
  num_protos: int = 0
  hidden: int = 128
  head_hidden: int = 128
  dropout_rate: float = 0.5
  variant: str = "full"
  kernel: str = "parents"
  scan_unroll: int = 1
  scan_impl: str = "vjp"
  scan_fuse_input: bool = False

  def __post_init__(self):
    v.non_negative(self, "input_dim", "content_dim", "num_protos")
    v.positive(self, "hidden", "head_hidden", "scan_unroll")
    v.probability(self, "dropout_rate")
    v.one_of(self, "variant", VARIANTS)
    v.one_of(self, "kernel", KERNELS)
    v.one_of(self, "scan_impl", LEVELWISE_IMPLS)
    v.one_of(self, "scan_fuse_input", (False, True))


class GeneratedTrees(NamedTuple):
  """Trees generated from their roots (leading batch axes as vmapped: ``[T]`` or ``[S, T]``).

  Attributes:
    depth: int32 [...] depth of the generated tree (0 = root only).
    size: int32 [...] number of nodes, root included.
    widths: int32 [..., max_depth + 1] nodes per level (level 0 is the root).
    proto_counts: float32 [..., k] non-root nodes per prototype.
  """

  depth: jax.Array
  size: jax.Array
  widths: jax.Array
  proto_counts: jax.Array


def _glorot(key, shape):
  lim = jnp.sqrt(6.0 / (shape[0] + shape[1]))
  return jax.random.uniform(key, shape, jnp.float32, -lim, lim)


def _eq1_to_cell_order(a: jax.Array) -> jax.Array:
  """Column blocks ``(f, i, o, c)`` (Eq. 1's order) -> ``(i, f, g, o)`` (``nn.lstm_cell``'s)."""
  f, i, o, g = jnp.split(a, 4, axis=-1)
  return jnp.concatenate([i, f, g, o], axis=-1)


class DiffusionLSTM(nnx.Module):
  """Diffusion-LSTM and its baselines on a :class:`~popdiff_jax.types.TreeBatch`.

  ``__call__(batch)`` gives the logits float [N, k + 1] of every node slot (column ``u < k``:
  some child has prototype ``u``; column ``k``: the node is a leaf); ``states(batch)`` the tree
  LSTM's ``(h, c)``; ``generate(...)`` one tree from its root (Sec. 4.5).

  Args:
    config: :class:`DiffusionLSTMConfig` with ``input_dim``, ``content_dim`` and
      ``num_protos`` set.
    rngs: parameter initialisation keys (dropout keys are call arguments).
  """

  def __init__(self, config: DiffusionLSTMConfig, *, rngs: nnx.Rngs):
    for field in ("input_dim", "content_dim", "num_protos"):
      if getattr(config, field) < 1:
        raise ConfigError("DiffusionLSTMConfig", field, getattr(config, field),
                          "must be set from the data (>= 1) before init")
    self.config = config
    hidden = config.hidden
    k1 = config.num_protos + 1
    if config.variant == "fc":
      self.fc1 = nnx.Linear(config.input_dim + config.content_dim, config.head_hidden,
                            rngs=rngs)
      self.fc2 = nnx.Linear(config.head_hidden, config.head_hidden, rngs=rngs)
      self.fc3 = nnx.Linear(config.head_hidden, k1, rngs=rngs)
      return
    in_dim = config.content_dim if config.variant == "content" else config.input_dim
    kw, ku = jax.random.split(rngs.params())
    self.w = nnx.Param(_eq1_to_cell_order(_glorot(kw, (in_dim, 4 * hidden))))
    self.u = nnx.Param(_eq1_to_cell_order(jnp.concatenate(
        [jax.nn.initializers.orthogonal()(k, (hidden, hidden), jnp.float32)
         for k in jax.random.split(ku, 4)], axis=1)))
    self.b = nnx.Param(jnp.zeros((4 * hidden,), jnp.float32))
    if config.variant == "full":
      self.content_fc = nnx.Linear(config.content_dim, hidden, rngs=rngs)
    self.head1 = nnx.Linear(hidden, config.head_hidden, rngs=rngs)
    self.head2 = nnx.Linear(config.head_hidden, k1, rngs=rngs)

  # -- pieces ---------------------------------------------------------------------------------

  def node_input(self, x: jax.Array, content_rows: jax.Array) -> jax.Array:
    """The LSTM input at a node: its social feature, or the content for ``"content"``."""
    return content_rows if self.config.variant == "content" else x

  def input_term(self, x_in: jax.Array) -> jax.Array:
    """``W x + b``: float [..., D] -> float [..., 4H]."""
    b = self.b[...]
    return x_in @ self.w[...] + b.reshape((1,) * (x_in.ndim - 1) + b.shape)

  def root_state(self, content: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(h0, c0)`` of the roots' virtual parents, float [B, H] each: ``h0 = 0``,
    ``c0 = FC(content)`` (``"full"``) or 0. ``content``: float [B, F]."""
    h0 = jnp.zeros((content.shape[0], self.config.hidden), content.dtype)
    if self.config.variant == "full":
      return h0, self.content_fc(content)
    return h0, h0

  def head(self, h: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """dropout → FC → ReLU → dropout → FC: float [..., H] -> float [..., k + 1] logits."""
    rate = self.config.dropout_rate
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    z = jax.nn.relu(self.head1(dropout(h, rate, k1)))
    return self.head2(dropout(z, rate, k2))

  def fc_logits(self, x: jax.Array, content_rows: jax.Array,
                key: jax.Array | None = None) -> jax.Array:
    """The FC baseline: three FC layers, ReLU + dropout after the first two -> logits."""
    rate = self.config.dropout_rate
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    z = jnp.concatenate([x, content_rows], axis=-1)
    z = dropout(jax.nn.relu(self.fc1(z)), rate, k1)
    z = dropout(jax.nn.relu(self.fc2(z)), rate, k2)
    return self.fc3(z)

  # -- teacher-forced pass over a level-wise batch ---------------------------------------------

  def states(self, batch: TreeBatch, *, key: jax.Array | None = None,
             train: bool = False) -> tuple[jax.Array, jax.Array]:
    """``(h, c)``: float [N, H] states of every node slot (Eq. 1 over the batch's trees).

    ``key`` and ``train`` are unused (the tree LSTM has no dropout); they make ``states`` a
    batch method like ``__call__`` (``Model.apply(..., method="states")``).
    """
    del key, train
    cfg = self.config
    content_rows = batch.content[batch.tree]
    x_in = self.node_input(batch.x, content_rows)
    h0, c0 = self.root_state(batch.content)
    kw = dict(unroll=cfg.scan_unroll, impl=cfg.scan_impl)
    if cfg.kernel == "parents":
      return tree_lstm_by_parents(self.input_term(x_in), batch.parent, batch.parent_chunks, h0,
                                  c0, self.u[...], **kw)
    num_chunks = batch.chunk_depth.shape[0]
    if cfg.scan_fuse_input:
      return levelwise_tree_lstm_inputs(x_in, self.w[...], self.b[...], batch.parent, h0, c0,
                                        self.u[...], num_chunks, **kw)
    return levelwise_tree_lstm(self.input_term(x_in), batch.parent, h0, c0, self.u[...],
                               num_chunks, **kw)

  def __call__(self, batch: TreeBatch, *, key: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Logits float [N, k + 1] of every node slot; ``key`` enables dropout (training).

    ``train`` is unused (no batch statistics).
    """
    del train
    if self.config.variant == "fc":
      return self.fc_logits(batch.x, batch.content[batch.tree], key)
    h, _ = self.states(batch)
    return self.head(h, key)

  # -- generation (Sec. 4.5) -------------------------------------------------------------------

  def generate(self, content: jax.Array, root_x: jax.Array, proto_x: jax.Array,
               proto_threshold: jax.Array, key: jax.Array | None = None, *,
               terminal_threshold: float = 0.5, max_depth: int = 10, max_width: int = 100,
               max_size: int = 150) -> GeneratedTrees:
    """Generates one tree from its root, level by level with static shapes.

    A live node is terminal if ``p(terminal) > terminal_threshold``; otherwise it gets one child
    for each prototype ``u`` with ``p_u > proto_threshold[u]`` (or, with ``key``, with
    probability ``p_u``: the sampling variant). A child's input is its prototype's feature.
    Growth stops at ``max_depth`` levels below the root, ``max_width`` nodes per level and
    ``max_size`` nodes in all (the paper's truncation: depth > 10, width > 100, size > 150);
    children beyond a cap are cut in parent-major order.

    Args:
      content: float [F] content feature.
      root_x: float [D] the root user's feature.
      proto_x: float [k, D] prototype features.
      proto_threshold: float [k] thresholds.
      key: optional PRNG key for sampled generation.
      terminal_threshold, max_depth, max_width, max_size: static settings (above).

    Returns:
      :class:`GeneratedTrees` of this one tree.
    """
    k = proto_x.shape[0]
    w_cap = max_width
    dt = proto_x.dtype
    cont = content[None]
    fc = self.config.variant == "fc"

    def node_state(x, h_p, c_p):
      if fc:
        return h_p, c_p
      xin = self.node_input(x, jnp.broadcast_to(cont, (x.shape[0], cont.shape[1])))
      return lstm_cell(self.input_term(xin) + h_p @ self.u[...], c_p)

    def probs(x, h):
      if fc:
        logits = self.fc_logits(x, jnp.broadcast_to(cont, (x.shape[0], cont.shape[1])))
      else:
        logits = self.head(h)
      return jax.nn.sigmoid(logits)

    hid = 1 if fc else self.config.hidden
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
