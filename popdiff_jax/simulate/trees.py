"""Tree generation with a trained Diffusion-LSTM (Hu et al. Sec. 4.5), vmapped and jitted.

Each tree grows from its root (its content feature and root user) level by level inside the
model (``DiffusionLSTM.generate``: static shapes, a ``lax.while_loop`` over levels that stops
when no node is alive); here it is vmapped over trees and, for the sampled variant, over
samples, in one compiled computation per shape.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from popdiff_jax.models.diffusion_lstm import GeneratedTrees
from popdiff_jax.models.registry import Model

__all__ = ["GeneratedTrees", "generate_trees"]


@functools.partial(jax.jit, static_argnames=("model", "terminal_threshold", "max_depth",
                                              "max_width", "max_size"))
def generate_trees(model: Model, params: Any, content: jax.Array, root_x: jax.Array,
                   proto_x: jax.Array, proto_threshold: jax.Array, keys: jax.Array | None = None,
                   *, terminal_threshold: float = 0.5, max_depth: int = 10, max_width: int = 100,
                   max_size: int = 150) -> GeneratedTrees:
  """Generates one tree per root: the paper's thresholding, or ``S`` sampled trees per root.

  Args:
    model: a ``diffusion_lstm`` model (``popdiff_jax.models.init``); static.
    params: its parameters.
    content: float [T, F] content feature of each tree.
    root_x: float [T, D] the root user's feature of each tree.
    proto_x: float [k, D] prototype features (a child's input is its prototype's feature).
    proto_threshold: float [k] per-prototype thresholds (ignored when sampling).
    keys: None for the paper's deterministic thresholding, or ``S`` keys (a key array [S]):
      ``S`` sampled trees per root, children drawn with probability ``p_u``. Each (sample, tree)
      pair draws from its own key (the tree index folded into the sample's key).
    terminal_threshold: a node is terminal if ``p(terminal)`` exceeds it (paper: 0.5).
    max_depth, max_width, max_size: the caps (paper: 10, 100, 150).

  Returns:
    :class:`GeneratedTrees` with leading axes ``[T]``, or ``[S, T]`` with ``keys``.
  """
  module = model.bind(params)
  caps = dict(terminal_threshold=terminal_threshold, max_depth=max_depth, max_width=max_width,
              max_size=max_size)

  def one(cont, rx, key):
    return module.generate(cont, rx, proto_x, proto_threshold, key, **caps)

  if keys is None:
    return jax.vmap(lambda cont, rx: one(cont, rx, None))(content, root_x)
  idx = jnp.arange(content.shape[0], dtype=jnp.int32)
  per_sample = jax.vmap(lambda cont, rx, i, kk: one(cont, rx, jax.random.fold_in(kk, i)),
                        in_axes=(0, 0, 0, None))
  return jax.vmap(lambda kk: per_sample(content, root_x, idx, kk))(keys)
