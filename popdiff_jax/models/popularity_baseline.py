"""The popularity floor: rank users by how often they were infected in the training cascades."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.data.cascades import PAD, TERMINATE, Cascade


def popularity_scores(cascades: Sequence[Cascade], num_items: int) -> np.ndarray:
  """``log(1 + count)`` per user over training cascades; Terminate counts one per cascade.

  Returns:
    float32 [U] scores; padding gets ``-inf``.
  """
  counts = np.zeros(num_items, np.float64)
  for c in cascades:
    np.add.at(counts, c.users, 1.0)
  counts[TERMINATE] = len(cascades)
  scores = np.log1p(counts).astype(np.float32)
  scores[PAD] = -np.inf
  return scores


def popularity_logits(scores: jax.Array, users: jax.Array) -> jax.Array:
  """The same scores at every step: float [B, L, U] (masking of infected users is the caller's)."""
  return jnp.broadcast_to(scores, (*users.shape, scores.shape[0]))
