"""k-means with k-means++ seeding, on device: the prototype users of Diffusion-LSTM.

Hu et al. (2018, Sec. 3.1) map users to k = 100 prototypes by k-means on their social features;
an unseen user goes to the nearest centroid (Euclidean) and a prototype's feature is its members'
mean. :func:`kmeans` is one compiled program (k-means++ seeding, then Lloyd iterations, both
``lax.fori_loop``); :func:`nearest_centroid` assigns new points.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["KMeansResult", "kmeans", "nearest_centroid"]


class KMeansResult(NamedTuple):
  """k-means output.

  Attributes:
    centroids: float32 [k, D].
    assign: int32 [N] cluster of each point.
    inertia: float32 [] sum of squared distances to the assigned centroid.
  """

  centroids: jax.Array
  assign: jax.Array
  inertia: jax.Array


def _sq_dist(x, c):
  return ((x * x).sum(-1)[:, None] - 2.0 * x @ c.T + (c * c).sum(-1)[None, :])


def nearest_centroid(x: jax.Array, centroids: jax.Array) -> jax.Array:
  """int32 [N] index of the nearest centroid (Euclidean) of each row of ``x`` float [N, D]
  (``centroids``: float [k, D])."""
  return jnp.argmin(_sq_dist(x, centroids), axis=-1).astype(jnp.int32)


def kmeans(key: jax.Array, x: jax.Array, k: int, *, iters: int = 50) -> KMeansResult:
  """k-means with k-means++ seeding, on device (jit-compiled; k and iters static).

  Seeding: the first centre uniformly, each next one with probability proportional to the squared
  distance to the nearest chosen centre (Arthur & Vassilvitskii 2007). Lloyd iterations then
  alternate nearest-centre assignment and means; an emptied cluster keeps its previous centre.

  Args:
    key: PRNG key.
    x: float32 [N, D] points (N >= k).
    k: number of clusters.
    iters: Lloyd iterations.

  Returns:
    :class:`KMeansResult`.
  """
  return _kmeans(key, jnp.asarray(x, jnp.float32), k, iters)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _kmeans(key, x, k, iters):
  n = x.shape[0]
  k0, kseq = jax.random.split(key)
  first = jax.random.randint(k0, (), 0, n)
  cents = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
  d2 = ((x - x[first][None, :]) ** 2).sum(-1)

  def seed(j, carry):
    cents, d2 = carry
    kj = jax.random.fold_in(kseq, j)
    logits = jnp.where(d2 > 0, jnp.log(jnp.where(d2 > 0, d2, 1.0)), -jnp.inf)
    # All points coincide with chosen centres: fall back to a uniform draw.
    logits = jnp.where(jnp.isfinite(logits).any(), logits, jnp.zeros_like(logits))
    nxt = jax.random.categorical(kj, logits)
    cents = cents.at[j].set(x[nxt])
    d2 = jnp.minimum(d2, ((x - x[nxt][None, :]) ** 2).sum(-1))
    return cents, d2

  cents, _ = jax.lax.fori_loop(1, k, seed, (cents, d2))

  def lloyd(_, cents):
    a = jnp.argmin(_sq_dist(x, cents), axis=-1)
    sums = jax.ops.segment_sum(x, a, num_segments=k)
    cnt = jax.ops.segment_sum(jnp.ones((n,), x.dtype), a, num_segments=k)
    return jnp.where(cnt[:, None] > 0, sums / jnp.maximum(cnt, 1.0)[:, None], cents)

  cents = jax.lax.fori_loop(0, iters, lloyd, cents)
  d = _sq_dist(x, cents)
  a = jnp.argmin(d, axis=-1).astype(jnp.int32)
  inertia = jnp.maximum(jnp.take_along_axis(d, a[:, None], axis=1)[:, 0], 0.0).sum()
  return KMeansResult(cents, a, inertia)
