"""DeepWalk (Perozzi et al., KDD 2014): node embeddings from truncated random walks, skip-gram.

NDM+SN (Yang et al., Sec. 5.4) fixes half of NDM's user embedding to DeepWalk embeddings of the
social graph. This module is DeepWalk in JAX:

* ``random_walks``: truncated random walks, one per start node, ``vmap``-ed over start nodes and
  ``lax.scan``-ned over steps on a CSR adjacency, seeded by an explicit key (each start node gets
  ``fold_in(key, i)``, so a walk does not depend on which other walks are drawn with it).
* ``skipgram_loss``: skip-gram with negative sampling (Mikolov et al. 2013, as in the reference
  DeepWalk, which calls word2vec): ``-log s(in_c . out_x) - sum_neg log s(-in_c . out_n)``.
* ``deepwalk``: walks from every node, then minibatches of (centre, context) pairs drawn from the
  walks, trained with optax Adam under a linear decay; returns the input ("syn0") vectors.

Choices (the DeepWalk paper leaves them to word2vec; we follow the reference implementation's
command-line defaults where it has them): ``walks_per_node = 10``, ``walk_length = 40``,
``window = 5``, 5 negatives from the unigram distribution of the walks raised to 3/4 (word2vec).
Beyond the reference: Adam instead of word2vec's plain SGD, and pairs drawn at random from the
walks (centre, then an offset uniform in ``1..window`` on a random side, which weights near contexts
more, as word2vec's shrunk window does) instead of a sequential pass. Edges are treated as
undirected (the reference's default). ``gensim`` (the reference's trainer) would work too; this
keeps the project in JAX, seeded and on the GPU, without a new dependency.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class CSRGraph(NamedTuple):
  """A graph's adjacency in compressed sparse rows.

  Attributes:
    indptr: int32 [N + 1]: node ``i``'s neighbours are ``indices[indptr[i]:indptr[i + 1]]``.
    indices: int32 [M] neighbour ids (M = number of directed arcs; 2E for an undirected graph).
  """

  indptr: jax.Array
  indices: jax.Array


def csr_from_edges(edges: np.ndarray, num_nodes: int, undirected: bool = True) -> CSRGraph:
  """Builds a ``CSRGraph`` from an edge list (host side, NumPy).

  Args:
    edges: int [E, 2] ``(u, v)`` pairs with ``0 <= u, v < num_nodes``.
    num_nodes: N.
    undirected: add ``(v, u)`` for every ``(u, v)``; duplicate arcs are merged, self-loops kept.

  Returns:
    The adjacency.
  """
  edges = np.asarray(edges, np.int64).reshape(-1, 2)
  if len(edges) and (edges.min() < 0 or edges.max() >= num_nodes):
    raise ValueError(f"edge endpoints must lie in [0, {num_nodes})")
  if undirected:
    edges = np.concatenate([edges, edges[:, ::-1]])
  edges = np.unique(edges, axis=0)  # sorted by source, then target
  counts = np.bincount(edges[:, 0], minlength=num_nodes)
  indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
  return CSRGraph(jnp.asarray(indptr), jnp.asarray(edges[:, 1].astype(np.int32)))


@functools.partial(jax.jit, static_argnames=("length",))
def random_walks(graph: CSRGraph, starts: jax.Array, key: jax.Array, *, length: int) -> jax.Array:
  """Uniform truncated random walks (DeepWalk's corpus).

  Args:
    graph: the adjacency.
    starts: int32 [W] start nodes.
    key: PRNG key; walk ``i`` uses ``fold_in(key, i)``.
    length: nodes per walk, the start included.

  Returns:
    int32 [W, length]; a walk that reaches a node without neighbours ends there, and its remaining
    entries are -1.
  """

  def one(start, walk_key):
    def step(node, step_key):
      lo = graph.indptr[jnp.maximum(node, 0)]
      degree = graph.indptr[jnp.maximum(node, 0) + 1] - lo
      pick = jax.random.randint(step_key, (), 0, jnp.maximum(degree, 1))
      nxt = jnp.where((node >= 0) & (degree > 0), graph.indices[lo + pick], -1)
      return nxt, nxt

    _, rest = jax.lax.scan(step, start, jax.random.split(walk_key, length - 1))
    return jnp.concatenate([start[None], rest])

  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(starts.shape[0]))
  return jax.vmap(one)(starts.astype(jnp.int32), keys)


class SkipGramParams(NamedTuple):
  """Skip-gram's two tables.

  Attributes:
    inputs: float32 [N, d] node vectors (the embeddings DeepWalk returns).
    outputs: float32 [N, d] context vectors.
  """

  inputs: jax.Array
  outputs: jax.Array


def skipgram_loss(params: SkipGramParams, centers: jax.Array, contexts: jax.Array,
                  negatives: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean negative-sampling loss over the valid pairs of a batch.

  Args:
    params: the tables.
    centers: int32 [B] centre nodes.
    contexts: int32 [B] context nodes (observed within the window of the centre).
    negatives: int32 [B, K] noise nodes.
    mask: bool [B] valid pairs (a context past a walk's end is invalid).

  Returns:
    float32 scalar: ``mean_b -[log s(u_c . v_x) + sum_k log s(-u_c . v_nk)]`` over valid ``b``.
  """
  u = params.inputs[centers]  # [B, d]
  pos = jnp.einsum("bd,bd->b", u, params.outputs[contexts])
  neg = jnp.einsum("bd,bkd->bk", u, params.outputs[negatives])
  per_pair = -(jax.nn.log_sigmoid(pos) + jax.nn.log_sigmoid(-neg).sum(-1))
  per_pair = jnp.where(mask, per_pair, 0.0)
  return per_pair.sum() / jnp.maximum(mask.sum(), 1).astype(per_pair.dtype)


@dataclasses.dataclass(frozen=True)
class DeepWalkConfig:
  """DeepWalk's settings (reference implementation defaults where it has them).

  Attributes:
    dim: embedding size (NDM+SN: 32).
    walks_per_node: walks started from every node (gamma; reference default 10).
    walk_length: nodes per walk (t; reference default 40).
    window: skip-gram window (w; reference default 5).
    negatives: noise samples per pair (word2vec default 5).
    batch_size: pairs per optimiser step.
    epochs: passes over the walk corpus, in expected pairs (word2vec: about ``window + 1``
      contexts per token with its shrunk window); sets the number of steps.
    learning_rate: Adam's initial rate, decayed linearly to 1% of it.
    seed: walks, pairs, negatives and initialisation.
  """

  dim: int = 32
  walks_per_node: int = 10
  walk_length: int = 40
  window: int = 5
  negatives: int = 5
  batch_size: int = 4096
  epochs: float = 1.0
  learning_rate: float = 0.01
  seed: int = 0


def _noise_cdf(walks: jax.Array, num_nodes: int) -> jax.Array:
  """float32 [N] cumulative word2vec noise distribution: node frequency in the walks to the 3/4."""
  valid = walks >= 0
  counts = jnp.zeros(num_nodes, jnp.float32).at[jnp.where(valid, walks, 0)].add(
      valid.astype(jnp.float32))
  cdf = jnp.cumsum(counts ** 0.75)
  return cdf / cdf[-1]


def _sample_pairs(walks: jax.Array, noise_cdf: jax.Array, key: jax.Array, batch: int,
                  window: int, negatives: int):
  """A batch of (centre, context, negatives, mask) drawn uniformly from the walk corpus."""
  k_w, k_p, k_o, k_s, k_n = jax.random.split(key, 5)
  num_walks, length = walks.shape
  w = jax.random.randint(k_w, (batch,), 0, num_walks)
  p = jax.random.randint(k_p, (batch,), 0, length)
  offset = jax.random.randint(k_o, (batch,), 1, window + 1)
  offset = jnp.where(jax.random.bernoulli(k_s, 0.5, (batch,)), offset, -offset)
  q = p + offset
  inside = (q >= 0) & (q < length)
  centers = walks[w, p]
  contexts = walks[w, jnp.clip(q, 0, length - 1)]
  mask = inside & (centers >= 0) & (contexts >= 0)
  # Inverse-CDF draws: O(B K log N), where jax.random.categorical would draw B K N Gumbels.
  noise = jnp.searchsorted(noise_cdf, jax.random.uniform(k_n, (batch, negatives)), side="right")
  noise = jnp.minimum(noise, noise_cdf.shape[0] - 1).astype(jnp.int32)
  return jnp.maximum(centers, 0), jnp.maximum(contexts, 0), noise, mask


def deepwalk(edges: np.ndarray, num_nodes: int, config: DeepWalkConfig = DeepWalkConfig(), *,
             return_loss: bool = False):
  """DeepWalk embeddings of a graph.

  Args:
    edges: int [E, 2] edges (treated as undirected).
    num_nodes: N; nodes without edges get their (untrained) initial vectors.
    config: settings.
    return_loss: also return the mean loss of the first and last tenth of the steps.

  Returns:
    float32 NumPy [N, d] (and ``(first_loss, last_loss)`` if asked).
  """
  graph = csr_from_edges(edges, num_nodes)
  key = jax.random.key(config.seed)
  k_walk, k_init, k_train = jax.random.split(key, 3)
  starts = jnp.tile(jnp.arange(num_nodes, dtype=jnp.int32), config.walks_per_node)
  degree = np.diff(np.asarray(graph.indptr))
  starts = starts[jnp.asarray(np.tile(degree > 0, config.walks_per_node))]  # isolated: no corpus
  walks = random_walks(graph, starts, k_walk, length=config.walk_length)
  tokens = int(starts.shape[0]) * config.walk_length
  num_steps = max(1, math.ceil(config.epochs * tokens * (config.window + 1) / config.batch_size))
  schedule = optax.linear_schedule(config.learning_rate, 0.01 * config.learning_rate, num_steps)
  tx = optax.adam(schedule)
  scale = 0.5 / config.dim  # word2vec's initialisation: inputs uniform, outputs zero
  params = SkipGramParams(
      jax.random.uniform(k_init, (num_nodes, config.dim), jnp.float32, -scale, scale),
      jnp.zeros((num_nodes, config.dim), jnp.float32))
  noise = _noise_cdf(walks, num_nodes)
  losses, params = _train(params, tx.init(params), walks, noise, k_train, tx=tx,
                          num_steps=num_steps, batch=config.batch_size, window=config.window,
                          negatives=config.negatives)
  out = np.asarray(params.inputs)
  if not return_loss:
    return out
  losses = np.asarray(losses)
  tenth = max(1, num_steps // 10)
  return out, (float(losses[:tenth].mean()), float(losses[-tenth:].mean()))


@functools.partial(jax.jit, static_argnames=("tx", "num_steps", "batch", "window", "negatives"))
def _train(params, opt_state, walks, noise, key, *, tx, num_steps, batch, window, negatives):
  """``num_steps`` Adam steps in one ``lax.scan``; step ``s`` uses ``fold_in(key, s)``."""

  def step(carry, s):
    params, opt_state = carry
    centers, contexts, neg, mask = _sample_pairs(walks, noise, jax.random.fold_in(key, s), batch,
                                                 window, negatives)
    loss, grads = jax.value_and_grad(skipgram_loss)(params, centers, contexts, neg, mask)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, opt_state), jnp.arange(num_steps))
  return losses, params
