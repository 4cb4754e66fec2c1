"""The node-by-node top-down tree LSTM: the plain recursion the level-wise kernels must equal.

The common way to run a tree LSTM: one node at a time in breadth-first order, each node's
parent state read from the states computed so far, Eq. 1 of Diffusion-LSTM (Hu et al. 2018) as
:func:`popdiff_jax.nn.lstm.lstm_cell` on ``W x + U h_parent + b`` (gate blocks ``(i, f, g, o)``).
It is the reference of ``popdiff_jax.nn.tree_lstm`` (same values and gradients, tested) and
the anchor a benchmark can time against it: its cost is one ``(1, D)·(D, 4H)`` and one
``(1, H)·(H, 4H)`` product per node, whatever the batch.

Two forms of the same recursion:

* :func:`tree_lstm_states`: one tree, a ``lax.fori_loop`` over its nodes writing into ``(n, H)``
  buffers (jittable and differentiable; :func:`tree_lstm_states_jit` is it jitted).
* :func:`forest_states`: several trees, a Python loop over trees and nodes whose parent states
  come from Python lists (no loop primitive; every node is traced separately under ``jax.jit``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from popdiff_jax.nn.lstm import lstm_cell

__all__ = ["tree_lstm_states", "tree_lstm_states_jit", "forest_states"]


def tree_lstm_states(x: jax.Array, parent: jax.Array, w: jax.Array, u: jax.Array, b: jax.Array,
                     h_root: jax.Array, c_root: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The states of one tree, node by node in breadth-first order (a ``lax.fori_loop``).

  Args:
    x: float [n, D] node inputs, breadth-first order (node 0 is the root).
    parent: int32 [n] parent index of each node (``-1`` for the root, else ``< own index``).
    w: float [D, 4H]; u: float [H, 4H]; b: float [4H] (gate blocks ``(i, f, g, o)``).
    h_root, c_root: float [H] the root's virtual parent state (Diffusion-LSTM: 0 and the
      content embedding).

  Returns:
    ``(h, c)``, float [n, H] each.
  """
  n = x.shape[0]
  hid = u.shape[0]
  h = jnp.zeros((n, hid), x.dtype)
  c = jnp.zeros((n, hid), x.dtype)

  def node(i, carry):
    h, c = carry
    p = parent[i]
    # The root reads the virtual parent; every other node a row already computed.
    h_p = jnp.where(p < 0, h_root, h[jnp.maximum(p, 0)])
    c_p = jnp.where(p < 0, c_root, c[jnp.maximum(p, 0)])
    h_i, c_i = lstm_cell(x[i] @ w + h_p @ u + b, c_p)
    return h.at[i].set(h_i), c.at[i].set(c_i)

  return jax.lax.fori_loop(0, n, node, (h, c))


@jax.jit
def tree_lstm_states_jit(x: jax.Array, parent: jax.Array, w: jax.Array, u: jax.Array,
                         b: jax.Array, h_root: jax.Array, c_root: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
  """:func:`tree_lstm_states`, jitted (one compile per tree size)."""
  return tree_lstm_states(x, parent, w, u, b, h_root, c_root)


def forest_states(xs: Sequence[jax.Array], parents: Sequence[Sequence[int]], w: jax.Array,
                  u: jax.Array, b: jax.Array, h_roots: Sequence[jax.Array],
                  c_roots: Sequence[jax.Array]) -> list[tuple[jax.Array, jax.Array]]:
  """The states of several trees, one node at a time, parent states from Python lists.

  Args:
    xs: per tree, float [n_t, D] node inputs in breadth-first order.
    parents: per tree, ``n_t`` parent indices (``-1`` for the root); host integers.
    w, u, b: as :func:`tree_lstm_states`.
    h_roots, c_roots: per tree, float [H] the root's virtual parent state.

  Returns:
    Per tree, ``(h, c)`` float [n_t, H] each.
  """
  out = []
  for x, par, h0, c0 in zip(xs, parents, h_roots, c_roots):
    hs, cs = [], []
    for i, p in enumerate(par):
      p = int(p)
      h_p, c_p = (h0, c0) if p < 0 else (hs[p], cs[p])
      h_i, c_i = lstm_cell(x[i] @ w + h_p @ u + b, c_p)
      hs.append(h_i)
      cs.append(c_i)
    out.append((jnp.stack(hs), jnp.stack(cs)))
  return out

