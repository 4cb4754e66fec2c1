"""The popularity floor of next-user prediction: rank users by their training frequency.

Every user's score is ``log(1 + count)`` of its infections in the training cascades (Terminate
counts once per cascade), the same at every step; already-infected users are masked as for any
next-user model. NDM's Sec. 5.2 does not list it; FOREST and MS-HGAT use it as the floor a model
must beat, and on small sets (Irvine, Android) it is hard to beat.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.data.cascades import Cascade
from popdiff_jax.types import PAD, TERMINATE

__all__ = ["PopularityConfig", "popularity_scores", "popularity_logits", "log_frequency_prior"]


@dataclasses.dataclass(frozen=True)
class PopularityConfig:
  """The popularity floor has no hyperparameters; the config names it in a next-user config."""

  name: ClassVar[str] = "popularity"


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


def log_frequency_prior(cascades: Sequence[Cascade], num_items: int) -> np.ndarray:
  """``log((count_u + 1) / Σ (count + 1))`` over training cascades: a log-probability per user.

  The output bias of a next-user model initialised to this (``bias_init="log_frequency"``)
  starts the model at the popularity floor's ranking.

  Returns:
    float32 [U].
  """
  counts = np.expm1(np.nan_to_num(popularity_scores(cascades, num_items), neginf=0.0)) + 1.0
  return np.log(counts / counts.sum()).astype(np.float32)


def popularity_eval_step(ks=(10, 50, 100), unknown: int | None = None):
  """The jitted ``eval_step(scores, state, batch) -> sums`` of the floor on a ``CascadeBatch``
  (the signature of ``training.make_eval_step``'s steps; ``state`` is unused; ``unknown``: the
  id of the users unseen in training, as ``metrics.ranking.next_user_sums``)."""
  from popdiff_jax.metrics.ranking import next_user_sums

  @jax.jit
  def eval_step(scores, state, batch):
    del state
    return next_user_sums(popularity_logits(scores, batch.users), batch.users, batch.mask,
                          tuple(ks), unknown)

  return eval_step
