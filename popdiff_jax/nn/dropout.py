"""Dropout with an explicit key: the only dropout of the library."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["dropout"]


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout: zeroes each entry with probability ``rate`` and scales the rest by
  ``1 / (1 - rate)``, so the expectation is unchanged.

  Args:
    x: float array of any shape.
    rate: drop probability in [0, 1).
    key: a PRNG key (training), or None for evaluation.

  Returns:
    An array like ``x``; ``x`` itself when ``key`` is None or ``rate`` is 0.
  """
  if key is None or rate <= 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
