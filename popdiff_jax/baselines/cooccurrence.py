"""A counting baseline of next-user prediction: popularity plus windowed co-occurrence, no training.

After the users ``u_0 .. u_j`` of a cascade, every user ``v`` scores::

  score(v) = log pop(v) + lam * log(1 + sum_{n < window} C[u_{j-n}, v])

where ``log pop`` is the popularity floor's ``log(1 + count)`` (``baselines.popularity``) and
``C[u, v]`` counts the training cascades in which ``v`` comes at most ``window`` steps after
``u`` (Terminate, appended to every cascade, included as a ``v``). Already-infected users are
masked as for every next-user model. ``lam = 0`` is the popularity floor exactly. It measures how
much next-user signal a held-out cascade carries beyond popularity, for a model that can only
count.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.baselines.popularity import popularity_scores
from popdiff_jax.data.cascades import Cascade
from popdiff_jax.metrics.ranking import next_user_sums
from popdiff_jax.types import TERMINATE

__all__ = ["Cooccurrence", "cooccurrence_counts", "fit_cooccurrence", "window_counts",
           "cooccurrence_logits", "cooccurrence_eval_step"]


class Cooccurrence(NamedTuple):
  """A fitted counting model (the ``params`` of its eval step).

  Attributes:
    log_pop: float32 [U] popularity scores (``-inf`` at padding).
    counts: float32 [U, U] windowed co-occurrence counts ``C[u, v]``.
    lam: float32 [] weight of the co-occurrence term.
  """

  log_pop: jax.Array
  counts: jax.Array
  lam: jax.Array


def cooccurrence_counts(cascades: Sequence[Cascade], num_items: int, window: int) -> np.ndarray:
  """float32 [U, U]: ``C[u, v]`` = pairs ``(u, v)`` with ``v`` at most ``window`` steps after ``u``
  in a training cascade (Terminate appended to each cascade)."""
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  counts = np.zeros((num_items, num_items), np.float32)
  for c in cascades:
    seq = np.append(np.asarray(c.users, np.int64), TERMINATE)
    for n in range(1, window + 1):
      if len(seq) > n:
        np.add.at(counts, (seq[:-n], seq[n:]), 1.0)
  return counts


def fit_cooccurrence(cascades: Sequence[Cascade], num_items: int, window: int,
                     lam: float) -> Cooccurrence:
  """The counting model of the training ``cascades``."""
  return Cooccurrence(jnp.asarray(popularity_scores(cascades, num_items)),
                      jnp.asarray(cooccurrence_counts(cascades, num_items, window)),
                      jnp.float32(lam))


def window_counts(counts: jax.Array, users: jax.Array, mask: jax.Array, window: int) -> jax.Array:
  """float [B, L, U]: at step ``j``, the sum of the rows ``C[u_{j-n}]`` over ``n < window``
  (positions before the start or outside ``mask`` add nothing)."""
  total = jnp.zeros((*users.shape, counts.shape[1]), counts.dtype)
  length = users.shape[1]
  for n in range(window):
    prev = jnp.pad(users, ((0, 0), (n, 0)))[:, :length]
    pmask = jnp.pad(mask, ((0, 0), (n, 0)))[:, :length]
    total = total + jnp.where(pmask[..., None], counts[prev], 0.0)
  return total


def cooccurrence_logits(model: Cooccurrence, users: jax.Array, mask: jax.Array,
                        window: int) -> jax.Array:
  """The raw scores float [B, L, U] of a batch (masking of infected users is the caller's)."""
  acc = window_counts(model.counts, users, mask, window)
  return model.log_pop[None, None, :] + model.lam * jnp.log1p(acc)


def cooccurrence_eval_step(window: int, ks: Sequence[int] = (10, 50, 100)):
  """The jitted ``eval_step(model, state, batch) -> sums`` (``metrics.ranking.next_user_sums``:
  both ranking conventions and the NLL of the scores' softmax) for ``training.evaluate``;
  ``state`` is unused. ``lam`` is an argument, so a grid over it compiles once per shape."""

  @jax.jit
  def eval_step(model: Cooccurrence, state, batch):
    del state
    logits = cooccurrence_logits(model, batch.users, batch.mask, window)
    return next_user_sums(logits, batch.users, batch.mask, tuple(ks))

  return eval_step
