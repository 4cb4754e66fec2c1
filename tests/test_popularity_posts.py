"""data.posts (PostBatch arrays, training and padded evaluation batches, predictions over rows)
and the popularity projects' named configs."""

import dataclasses

import numpy as np
import pytest

from popdiff_jax import ConfigError
from popdiff_jax.data.instagram import Split
from popdiff_jax.data.posts import (PostsConfig, iterate_batches, make_arrays, predict_rows,
                                    standardize)
from popdiff_jax.features.pipeline import FeatureSet
from popdiff_jax.projects.dual_attention import configs as da_configs
from popdiff_jax.projects.fusion_dnn import configs as fusion_configs
from popdiff_jax.projects.multimodal_smp import configs as smp_configs
from popdiff_jax.types import check_post_batch


def _feats(n=23, seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
  token_mask = np.arange(5)[None, :] < rng.integers(0, 6, size=n)[:, None]
  tokens = np.where(token_mask, rng.integers(2, 9, size=(n, 5)), 0).astype(np.int32)
  label = rng.integers(-1, 2, size=n).astype(np.int32)
  return FeatureSet(tokens=tokens, token_mask=token_mask, image=f(n, 3), text=f(n, 2),
                    lda=np.abs(f(n, 2)), env_image=f(n, 3), env_topic=np.abs(f(n, 2)),
                    numeric=f(n, 10), smp=f(n, 14), image_score=f(n), score=2 + f(n),
                    label=label, user=(np.arange(n) % 4).astype(np.int32))


def test_make_arrays_keeps_only_the_fields_used():
  feats = _feats()
  keep = {"image": np.array([1, 0, 1], np.float32)}
  arrays = make_arrays(feats, use=("image", "numeric"), target=feats.score * 2,
                       column_keep=keep)
  check_post_batch(arrays)
  assert arrays.tokens.shape == (23, 0) and arrays.text.shape == (23, 0)
  assert arrays.features.shape == (23, 0) and arrays.numeric.shape == (23, 10)
  np.testing.assert_array_equal(arrays.image[:, 1], 0)
  np.testing.assert_array_equal(arrays.image[:, 0], feats.image[:, 0])
  np.testing.assert_array_equal(arrays.label, np.maximum(feats.label, 0))
  assert arrays.target.dtype == np.float32 and arrays.mask.all()


def test_training_batches_are_shuffled_and_evaluation_batches_padded():
  feats = _feats()
  arrays = make_arrays(feats, use=("features",), features=feats.smp,
                       target=np.arange(23, dtype=np.float32))
  rows = np.arange(3, 23)
  train = list(iterate_batches(arrays, rows, 6, shuffle_seed=4, drop_last=True))
  assert len(train) == 3 and all(b.mask.all() and b.target.shape == (6,) for b in train)
  seen = np.concatenate([b.target for b in train]).astype(int)
  assert len(set(seen)) == 18 and set(seen) <= set(rows)
  again = np.concatenate([b.target for b in iterate_batches(arrays, rows, 6, shuffle_seed=4,
                                                            drop_last=True)])
  np.testing.assert_array_equal(again, seen)
  evaluation = list(iterate_batches(arrays, rows, 6))
  assert len(evaluation) == 4 and {b.features.shape for b in evaluation} == {(6, 14)}
  assert evaluation[-1].mask.tolist() == [True, True, False, False, False, False]
  real = np.concatenate([b.target[b.mask] for b in evaluation]).astype(int)
  np.testing.assert_array_equal(real, rows)  # every row once, in order

  def predict_step(params, state, batch):
    return {"twice": batch.target * 2, "row": batch.features[:, :2]}

  out = predict_rows(predict_step, None, None, arrays, rows, 6)
  np.testing.assert_array_equal(out["twice"], 2 * rows)
  np.testing.assert_array_equal(out["row"], feats.smp[rows, :2])


def test_standardize_uses_training_rows_only():
  score = np.array([1.0, 3.0, 100.0, 5.0], np.float32)
  target, mean, std = standardize(score, np.array([0, 1, 3]))
  assert mean == pytest.approx(3.0) and std == pytest.approx(np.std([1.0, 3.0, 5.0]))
  np.testing.assert_allclose(target * std + mean, score, rtol=1e-6)
  assert standardize(np.ones(3, np.float32), np.arange(3))[2] == 1.0


def test_named_configs_build_with_unique_names():
  names = []
  for module in (da_configs, fusion_configs, smp_configs):
    for name, make in module.CONFIGS.items():
      cfg = make()
      assert module.get_config(name) == cfg and make.__doc__ and "Command:" in make.__doc__
      names.append(name)
    with pytest.raises(ValueError):
      module.get_config("nope")
  assert len(names) == len(set(names))
  variants = {da_configs.get_config(n).model.variant for n in da_configs.CONFIGS}
  assert len(variants) == 11


def test_config_fields_are_checked():
  with pytest.raises(ConfigError, match="split"):
    PostsConfig(split="nope")
  with pytest.raises(ConfigError, match="only"):
    fusion_configs.DataConfig(only="nope")
  with pytest.raises(ConfigError, match="drop"):
    fusion_configs.DataConfig(only="user", drop="text")
  with pytest.raises(ConfigError, match="n_estimators"):
    smp_configs.RandomForestConfig(n_estimators=0)
  with pytest.raises(ConfigError, match="patience"):
    dataclasses.replace(da_configs.tiny().train, patience=0)


def test_smp_inputs_and_row_names():
  from popdiff_jax.projects.multimodal_smp import experiment as smp

  feats = _feats()
  split = Split(np.arange(15), np.arange(15, 19), np.arange(19, 23), "random", 0)
  base = smp_configs.DataConfig()
  assert smp.inputs(feats, split, base).shape == (23, 14)
  x15 = smp.inputs(feats, split, dataclasses.replace(base, image_score=True))
  assert x15.shape == (23, 15) and abs(x15[split.train, 14].mean()) < 1e-5
  x13 = smp.inputs(feats, split, dataclasses.replace(base, comments=False))
  np.testing.assert_array_equal(x13, np.delete(feats.smp, smp.COMMENTS_COLUMN, axis=1))
  assert [smp.row_name(smp_configs.get_config(n)) for n in smp_configs.CONFIGS] == [
      "conv1d", "conv1d_multimodal", "random_forest", "random_forest_no_comments",
      "image_model", "gradient_boosting", "conv1d"]
