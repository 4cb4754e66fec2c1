"""DeepWalk: walks follow edges, the skip-gram loss against NumPy, communities come out closer."""

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.baselines.deepwalk import (DeepWalkConfig, SkipGramParams, csr_from_edges, deepwalk,
                                         random_walks, skipgram_loss)


def _random_graph(rng, n=15, e=30):
  edges = rng.integers(0, n, size=(e, 2))
  return edges[edges[:, 0] != edges[:, 1]]


def test_walks_follow_edges_start_at_their_node_and_are_seeded(strict_dtypes):
  rng = np.random.default_rng(0)
  edges = _random_graph(rng)
  graph = csr_from_edges(edges, 15)
  arcs = {(int(u), int(v)) for u, v in edges} | {(int(v), int(u)) for u, v in edges}
  starts = jnp.asarray(np.unique(edges).astype(np.int32))
  walks = np.asarray(random_walks(graph, starts, jax.random.key(1), length=12))
  assert walks.shape == (len(starts), 12)
  np.testing.assert_array_equal(walks[:, 0], np.asarray(starts))
  for w in walks:
    for a, b in zip(w[:-1], w[1:]):
      assert (int(a), int(b)) in arcs
  again = np.asarray(random_walks(graph, starts, jax.random.key(1), length=12))
  other = np.asarray(random_walks(graph, starts, jax.random.key(2), length=12))
  np.testing.assert_array_equal(walks, again)
  assert not np.array_equal(walks, other)
  # Walk i depends only on (key, i): the first walks are the same when fewer are drawn.
  fewer = np.asarray(random_walks(graph, starts[:4], jax.random.key(1), length=12))
  np.testing.assert_array_equal(fewer, walks[:4])


def test_walk_ends_with_minus_one_at_a_dead_end(strict_dtypes):
  graph = csr_from_edges(np.array([[0, 1], [1, 2]]), 4, undirected=False)  # 2 and 3 have no arcs
  walks = np.asarray(random_walks(graph, jnp.array([0, 3], jnp.int32), jax.random.key(0), length=5))
  np.testing.assert_array_equal(walks, [[0, 1, 2, -1, -1], [3, -1, -1, -1, -1]])


def test_skipgram_loss_matches_numpy(strict_dtypes):
  rng = np.random.default_rng(3)
  n, d, b, k = 11, 6, 9, 4
  params = SkipGramParams(jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
                          jnp.asarray(rng.normal(size=(n, d)), jnp.float32))
  centers, contexts = rng.integers(0, n, b), rng.integers(0, n, b)
  negatives = rng.integers(0, n, (b, k))
  mask = rng.random(b) < 0.7
  got = skipgram_loss(params, jnp.asarray(centers, jnp.int32), jnp.asarray(contexts, jnp.int32),
                      jnp.asarray(negatives, jnp.int32), jnp.asarray(mask))
  u, v = np.asarray(params.inputs, np.float64), np.asarray(params.outputs, np.float64)
  log_sig = lambda x: -np.log1p(np.exp(-x))
  per = [-(log_sig(u[c] @ v[x]) + sum(log_sig(-(u[c] @ v[m])) for m in neg))
         for c, x, neg in zip(centers, contexts, negatives)]
  want = np.sum(np.where(mask, per, 0.0)) / mask.sum()
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_skipgram_loss_with_no_valid_pair_is_finite():
  params = SkipGramParams(jnp.ones((5, 3)), jnp.ones((5, 3)))
  idx = jnp.zeros(4, jnp.int32)
  loss, grads = jax.value_and_grad(skipgram_loss)(params, idx, idx, jnp.zeros((4, 2), jnp.int32),
                                                   jnp.zeros(4, bool))
  assert float(loss) == 0.0
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def test_planted_communities_end_up_closer():
  """A stochastic-block graph of 3 communities: same-community nodes get closer vectors."""
  rng = np.random.default_rng(0)
  k, n = 3, 20
  community = np.repeat(np.arange(k), n)
  p = np.where(community[:, None] == community[None, :], 0.3, 0.01)
  edges = np.argwhere(np.triu(rng.random((k * n, k * n)) < p, 1))
  config = DeepWalkConfig(dim=16, walks_per_node=10, walk_length=20, batch_size=512,
                          learning_rate=0.02)
  emb, (first, last) = deepwalk(edges, k * n, config, return_loss=True)
  assert emb.shape == (k * n, 16) and np.all(np.isfinite(emb))
  assert last < first
  dist = np.linalg.norm(emb[:, None] - emb[None, :], axis=-1)
  same = community[:, None] == community[None, :]
  off = ~np.eye(k * n, dtype=bool)
  assert dist[same & off].mean() < 0.75 * dist[~same].mean()
  nearest = np.argmin(np.where(off, dist, np.inf), axis=1)
  assert np.mean(community[nearest] == community) > 0.8  # chance: 19/59
