"""Behavioural user features, k-means++ on device (baselines.kmeans), the synthetic generator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax.baselines import kmeans as K
from popdiff_jax.data import trees as T
from popdiff_jax.data.trees import synthetic as S
from popdiff_jax.data.trees import user_features as U

# Our own functions run under jax_numpy_dtype_promotion="strict" (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_dtypes")


def _tree(name, parent, users, delay):
  return T.tree_from_parents(parent, name=name, user=users, delay=delay)


def test_behaviour_features_leave_own_tree_out_and_unseen_users():
  a = _tree("a", [-1, 0, 0, 1], ["r", "x", "y", "z"], [0, 1, 2, 5])
  b = _tree("b", [-1, 0, 1], ["x", "r", "q"], [0, 3, 4])
  test = _tree("t", [-1, 0], ["x", "new"], [0, 7])
  table = U.fit_behaviour([a, b])
  raw_scale = table.scale
  f_test = U.behaviour_features(test, table) * raw_scale[None, :]
  # x in training: 2 appearances, out-degree 1 (in a) + 1 (in b), root once (b).
  np.testing.assert_allclose(f_test[0, :3], np.log1p([2, 2, 1]), rtol=1e-6)
  np.testing.assert_allclose(f_test[0, 3], 0.5, rtol=1e-6)  # mean depth (1 + 0) / 2
  # Unseen user: zero history, arrival features only.
  np.testing.assert_allclose(f_test[1, :5], 0.0)
  np.testing.assert_allclose(f_test[1, 5:], [1, np.log1p(7), np.log1p(7)], rtol=1e-6)
  # In its own training tree, x's history excludes tree a: 1 appearance (b), out-degree 1, root 1.
  f_a = U.behaviour_features(a, table) * raw_scale[None, :]
  np.testing.assert_allclose(f_a[1, :3], np.log1p([1, 1, 1]), rtol=1e-6)
  # z appears only in a: no history at all inside a (its own out-degree never leaks).
  np.testing.assert_allclose(f_a[3, :5], 0.0)
  f_all = np.concatenate([U.behaviour_features(t, table) for t in (a, b)])
  assert f_all.max() <= 1.0 + 1e-6 and f_all.min() >= 0.0


def test_content_features_of_twitter15_and_of_other_trees():
  t = T.tree_from_parents([-1, 0, 0], name="265953285247209472", delay=[0, 3, 20])
  t = t._replace(label="false")
  f = U.content_features([t])
  assert f.shape == (1, 9)
  np.testing.assert_allclose(f[0, :4], [0, 1, 0, 0])
  assert 1.5 < f[0, 4] < 2.5  # November 2012
  np.testing.assert_allclose(f[0, 7:], [np.log1p(1), np.log1p(3)], rtol=1e-6)
  # A tree of another source: no tweet time, the data's own labels (an unknown one: zeros).
  other = T.tree_from_parents([-1, 0], name="post1", delay=[0, 12])._replace(label="meme")
  g = U.content_features([other, t], ("meme", "news"), tweet_time=False)
  np.testing.assert_allclose(g, [[1, 0, 0, np.log1p(12)], [0, 0, np.log1p(1), np.log1p(3)]],
                             rtol=1e-6)
  assert U.content_features([other], (), tweet_time=False).shape == (1, 2)


def test_kmeans_recovers_separated_clusters_and_nearest_centroid():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(5, 3)) * 10
  x = np.concatenate([c + rng.normal(size=(40, 3)) * 0.1 for c in centres]).astype(np.float32)
  res = K.kmeans(jax.random.key(0), x, 5, iters=10)
  assign = np.asarray(res.assign)
  # Each true cluster maps to one k-means cluster, all different.
  labels = [set(assign[i * 40:(i + 1) * 40]) for i in range(5)]
  assert all(len(s) == 1 for s in labels) and len(set.union(*labels)) == 5
  np.testing.assert_array_equal(np.asarray(K.nearest_centroid(jnp.asarray(x), res.centroids)),
                                assign)
  # Centroids are the members' means.
  for j in range(5):
    np.testing.assert_allclose(res.centroids[j], x[assign == j].mean(0), rtol=1e-4, atol=1e-4)
  assert float(res.inertia) < 40 * 5 * 3 * 0.05


def test_synthetic_generator_statistics_and_memory_dependence():
  d = S.make_synthetic_trees(S.SyntheticTreesConfig(num_trees=1500, num_users=600, seed=3))
  st = [T.tree_stats(t) for t in d.trees]
  assert 3.5 < np.mean([s["size"] for s in st]) < 6.5
  assert 2.2 < np.mean([s["width"] for s in st]) < 4.2
  assert 1.2 < np.mean([s["depth"] for s in st]) < 2.2
  assert d.social.shape == (600, 4 + 10) and d.content.shape == (1500, 16)
  # Children of depth >= 1 nodes follow the root's category more than their parent's (when they
  # differ): the planted dependence on an ancestor further up.
  root_match = parent_match = 0
  for t in d.trees:
    cat = d.user_category[t.user.astype(int)]
    for i in range(1, t.size):
      p = t.parent[i]
      if p > 0 and cat[p] != cat[0]:
        root_match += cat[i] == cat[0]
        parent_match += cat[i] == cat[p]
  assert root_match > 2 * parent_match > 0
