"""End to end on the synthetic generator: every model learns the planted signal far above chance, and
the explicit attention concentrates on the planted words."""

import dataclasses

import numpy as np
import pytest
import threadpoolctl

from popdiff_jax.baselines.regressors import GradientBoostingConfig, ImageModelConfig
from popdiff_jax.data import synthetic_posts as sp
from popdiff_jax.data.posts import PostsConfig, load_posts
from popdiff_jax.models.dual_attention import DualAttentionConfig
from popdiff_jax.projects.dual_attention import configs as da_configs
from popdiff_jax.projects.dual_attention import experiment as da
from popdiff_jax.projects.fusion_dnn import configs as fusion_configs
from popdiff_jax.projects.fusion_dnn import experiment as fusion
from popdiff_jax.projects.multimodal_smp import configs as smp_configs
from popdiff_jax.projects.multimodal_smp import experiment as smp


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  d = tmp_path_factory.mktemp("synthetic")
  posts = load_posts(PostsConfig(source="synthetic", synthetic_users=120, n_topics=6, lda_iter=2,
                                 lsa_dim=8, max_len=20), seed=0, workdir=d)
  return posts, d


def test_dual_attention_learns_and_attends_to_planted_words(synthetic):
  (table, split, feats, stats), d = synthetic
  cfg = da_configs.ExperimentConfig(
      model=DualAttentionConfig(embed_dim=24, hidden_dim=24, attn_dim=16, out_dim=24),
      train=da_configs.TrainConfig(batch_size=32, num_epochs=8, patience=8, lr_high=3e-3,
                                   high_epochs=8))
  row, extra = da.train_and_test(feats, split, cfg, workdir=d / "runs")
  assert row["accuracy"] > 0.75 and row["f1"] > 0.7  # chance is 0.5 (balanced labels)
  planted = {stats.vocab.index(w) for w in sp.HOT_WORDS + sp.COLD_WORDS if w in stats.vocab}
  assert len(planted) >= 8
  tokens = feats.tokens[extra["test"]]
  mask = feats.token_mask[extra["test"]]
  is_planted = np.isin(tokens, list(planted)) & mask
  has = is_planted.any(1)
  mass = (extra["attention"] * is_planted).sum(1)[has]
  share = is_planted.sum(1)[has] / mask.sum(1)[has]  # what uniform attention would give
  assert mass.mean() > 1.5 * share.mean()


def test_textual_baseline_beats_chance(synthetic):
  (_, split, feats, _), d = synthetic
  cfg = da_configs.ExperimentConfig(
      model=DualAttentionConfig(variant="textual", embed_dim=16, hidden_dim=16, out_dim=16),
      train=da_configs.TrainConfig(batch_size=32, num_epochs=6, patience=6, lr_high=3e-3,
                                   high_epochs=6))
  row, _ = da.train_and_test(feats, split, cfg, workdir=d / "runs")
  assert row["accuracy"] > 0.7


def test_fusion_dnn_learns_followers_and_words(synthetic):
  (table, split, feats, _), d = synthetic
  cfg = fusion_configs.ExperimentConfig(
      train=fusion_configs.TrainConfig(batch_size=32, num_epochs=6, learning_rate=1e-3))
  row, pred = fusion.train_and_test(feats, split, cfg, workdir=d / "runs")
  assert row["srcc"] > 0.8 and pred.shape == split.test.shape
  assert row["mse"] < 0.5 * np.var(table.score[split.test])  # far better than predicting the mean
  # Univariate: user information alone carries the follower signal, time/location nothing.
  only_user = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, only="user"))
  assert fusion.row_name(only_user) == "only_user"
  row, _ = fusion.train_and_test(feats, split, only_user, workdir=d / "runs")
  assert row["srcc"] > 0.7


def test_smp_models_learn(synthetic):
  (table, split, feats, _), d = synthetic
  cfg = smp_configs.conv1d_multimodal()
  cfg = dataclasses.replace(cfg, train=smp_configs.TrainConfig(batch_size=32, num_epochs=6))
  row, _ = smp.train_and_test(feats, split, cfg, workdir=d / "runs")
  assert row["srcc"] > 0.8 and row["epochs_run"] <= 6
  rows = {}
  # One OpenMP thread: gradient boosting's default (all cores) thrashes on a shared 2-core machine.
  with threadpoolctl.threadpool_limits(1):
    for name in ("random_forest", "gradient_boosting", "image_model"):
      c = smp_configs.get_config("smp-" + name.replace("_", "-"))
      model = {"random_forest": smp_configs.RandomForestConfig(n_estimators=20),
               "gradient_boosting": GradientBoostingConfig(max_iter=60),
               "image_model": ImageModelConfig()}[name]
      c = dataclasses.replace(c, model=model)
      assert smp.row_name(c) == name
      rows[name], _ = smp.train_and_test(feats, split, c, workdir=d / "runs")
  assert rows["random_forest"]["srcc"] > 0.8 and rows["gradient_boosting"]["srcc"] > 0.8
  assert np.isfinite(rows["image_model"]["mae"])


def test_fusion_column_keep_groups(synthetic):
  (_, _, feats, _), _ = synthetic
  only = fusion.column_keep(feats, only="user")
  assert only["image"].sum() == 0 and only["text"].sum() == 0
  assert only["numeric"].tolist() == [1, 1, 1] + [0] * 7
  drop = fusion.column_keep(feats, drop="deep_image")
  assert drop["image"].sum() == 0 and drop["text"].all() and drop["numeric"].all()
  with pytest.raises(ValueError):
    fusion.column_keep(feats, only="nope")
