"""The synthetic trees' true process (``grow_tree``, ``child_rate``) and the generation floor."""

import dataclasses

import numpy as np

from popdiff_jax.data.trees import synthetic as S
from popdiff_jax.projects.diffusion_lstm import oracle
from popdiff_jax.projects.diffusion_lstm.configs import DataConfig

SMALL = S.SyntheticTreesConfig(num_users=200, num_trees=160, seed=2)


def test_child_rate_is_the_documented_rule():
  cfg = S.SyntheticTreesConfig(base_rate=0.2, community_boost=2.0, image_boost=3.0)
  cats = np.array([0, 1, 2, 1])
  rate = S.child_rate(cats, 1, 2, np.array([1.0, 1.0, 0.5, 2.0]), cfg)
  np.testing.assert_allclose(rate, [0.2, 0.2 * 2.0, 0.2 * 0.5 * 3.0, 0.2 * 2.0 * 2.0])


def test_grow_tree_is_a_tree_within_the_caps_and_seeded():
  data = S.make_synthetic_trees(SMALL)
  cfg = dataclasses.replace(SMALL, max_depth=3, max_size=30)
  for seed in range(20):
    users, parents, depth = S.grow_tree(np.random.default_rng(seed), 5, 1, data.user_category,
                                        data.influence, cfg)
    assert parents[0] == -1 and depth[0] == 0 and users[0] == 5 and len(users) >= 2
    assert len(users) <= cfg.max_size and max(depth) <= cfg.max_depth
    assert all(depth[i] == depth[p] + 1 for i, p in enumerate(parents) if p >= 0)
    again = S.grow_tree(np.random.default_rng(seed), 5, 1, data.user_category, data.influence,
                        cfg)
    assert again == (users, parents, depth)


def test_generation_floor_bounds():
  out = oracle.generation_floor(DataConfig(synthetic=SMALL), draws=3)
  assert out["test_trees"] == sum(out["true_depth_counts"].values()) == 20
  assert 0.0 <= out["leaf_prob_above_half"] <= 1.0 and 0.0 < out["leaf_prob_mean"] < 1.0
  # depth one scored against the truth: the mean of |d - 1| over the depths present
  depths = np.array(list(out["true_depth_counts"]))
  assert np.isclose(out["depth_one_depth_mae"], np.mean(np.abs(depths - 1)))
  for space in ("users", "prototypes"):
    for key in ("resampled", "depth_one", "everyone"):
      assert 0.0 < out[f"{key}_hist_intersection_{space}"] <= 1.0


def test_a_high_child_rate_makes_few_nodes_likely_leaves():
  busy = dataclasses.replace(SMALL, base_rate=3.0, max_size=60)
  out = oracle.generation_floor(DataConfig(synthetic=busy), draws=1)
  assert out["leaf_prob_above_half"] < 0.1
  assert oracle.generation_floor(DataConfig(synthetic=SMALL), draws=1)["leaf_prob_above_half"] > 0.5
