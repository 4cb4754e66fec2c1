"""End to end: the Diffusion-LSTM driver on a tiny synthetic set (train, evaluate, generate, resume)."""

import chex
import jax
import numpy as np
import optax
import pytest

from popdiff_jax.data import synthetic_trees as S
from popdiff_jax.experiments import diffusion_lstm as E
from popdiff_jax.models import diffusion_lstm as dl
from popdiff_jax.train.state import create_train_state

CFG = E.DiffusionLSTMConfig.tiny(optimizer="adam", lr=1e-2, lr_low=1e-3)
GEN = S.SyntheticTreesConfig(num_users=200, num_trees=320, seed=1)


@pytest.fixture(scope="module")
def prepared():
  return E.prepare_synthetic(CFG, GEN)


def test_prepare_synthetic(prepared):
  assert [len(prepared.train), len(prepared.val), len(prepared.test)] == [240, 40, 40]
  assert prepared.proto_x.shape == (8, 14) and prepared.hist_feats.shape == (8, 10)
  np.testing.assert_allclose(prepared.hist_feats.sum(1), 1.0, rtol=1e-5)
  e = prepared.train[0]
  np.testing.assert_allclose(e.x, prepared.proto_x[e.proto])
  assert prepared.pos_counts.shape == (9,)
  assert prepared.pos_counts[-1] + prepared.neg_counts[-1] == sum(x.parent.size for x in prepared.train)


def test_train_step_jit_matches_no_jit_and_is_finite(prepared):
  gd, params = dl.init_model(jax.random.key(0), input_dim=14, content_dim=16, num_protos=8,
                             hidden=8, head_hidden=8)
  tx = optax.sgd(0.2)
  wp, wn = dl.class_weights(prepared.pos_counts, prepared.neg_counts)
  step = E.make_train_step(gd, tx, wp, wn)
  batch = E._batches(prepared.train[:20], CFG, 8, batch_trees=32)[0]
  state = create_train_state(params, tx)
  s1, m1 = step(state, batch, jax.random.key(3))
  with jax.disable_jit():
    s2, m2 = step.__wrapped__(state, batch, jax.random.key(3))
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
  chex.assert_trees_all_close(s1.params, s2.params, rtol=1e-4, atol=1e-6)
  chex.assert_tree_all_finite(s1.params)
  assert int(s1.step) == 1


def test_run_trains_better_than_random_and_resumes(prepared, tmp_path):
  rows = E.run(prepared, ["random", "Diffusion-LSTM"], cfg=CFG, workdir=str(tmp_path))
  by = {r["model"]: r for r in rows}
  for r in rows:
    for k in ("ap_terminal", "map_prototypes", "map_all", "depth_mae", "hist_intersection"):
      assert np.isfinite(r[k]), (r["model"], k)
    assert 0.0 <= r["hist_intersection"] <= 1.0
  assert by["random"]["epochs"] == 0 and by["Diffusion-LSTM"]["epochs"] >= 2
  assert by["Diffusion-LSTM"]["test_loss"] < by["random"]["test_loss"]
  assert by["Diffusion-LSTM"]["ap_terminal"] > by["random"]["ap_terminal"]
  # Same workdir again: the fit loop resumes from the checkpoints and gives the same numbers.
  again = E.run(prepared, "Diffusion-LSTM", cfg=CFG, workdir=str(tmp_path))[0]
  assert again["map_all"] == pytest.approx(by["Diffusion-LSTM"]["map_all"], rel=1e-5)


def test_prepare_twitter15_small():
  from _shared_data import require_shared
  d = require_shared("twitter15_16_trees")
  cfg = E.DiffusionLSTMConfig.tiny(max_trees=40)
  p = E.prepare_twitter15(d, cfg)
  assert p.info["split"] == [30, 5, 5] and p.info["cleaning"]["trees"] == 40
  e = p.test[0]
  assert e.x.shape == (e.parent.shape[0], 8) and e.content.shape == (9,)
  np.testing.assert_allclose(e.x, p.proto_x[e.proto])
  assert np.all((0 <= e.proto) & (e.proto < 8))
  np.testing.assert_allclose(np.stack([x.content for x in p.train]).mean(0), 0.0, atol=1e-5)
