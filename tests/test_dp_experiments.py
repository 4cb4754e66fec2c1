"""The lean loss in a next-user run, data parallelism in the projects' loops (4 forced CPU
devices equal 1 device), masked padding rows for batches that do not divide."""

import dataclasses
import json
import warnings

import jax
import numpy as np
import pytest

from popdiff_jax import models
from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm import experiment as ex
from popdiff_jax.projects.ndm.configs import TrainConfig


@pytest.fixture(scope="module")
def irvine():
  """A slice of the embedded Irvine set (real cascades over its full vocabulary): 3 training
  steps of 32, one bucket of 8 tokens (max_len 7)."""
  full = load_dataset("ndm/irvine")
  return dataclasses.replace(full, train=full.train[:96], valid=full.valid[:48],
                             test=full.test[:48])


@pytest.fixture(autouse=True)
def _no_truncation_warnings():
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*are truncated to their first.*")
    yield


def test_lean_epoch_equals_dense_epoch(irvine):
  """One epoch of the train step (shuffled, dropout on), then the eval sums, per loss. (The path
  is the same for the LSTM, whose ``output_features`` test_lean_softmax.py checks.)"""
  from popdiff_jax.data.batching import make_batches
  from popdiff_jax.training import create_train_state, evaluate, make_eval_step, make_train_step

  u = len(irvine.vocab)
  out = {}
  for loss in ("dense", "lean"):
    train = TrainConfig(loss=loss, lean_chunk=512, eval_batch_size=48)
    method = "output_features" if loss == "lean" else "__call__"
    model, v = models.init(NDMConfig(num_items=u, dim=8, num_heads=2, f_init=0), 0)
    tx = ex.make_optimizer(train, 8)
    step = jax.jit(make_train_step(model, ex.loss_fn(train, u), tx, method=method))
    state = create_train_state(v.params, tx, v.state)
    base = jax.random.key(train.seed)
    losses = []
    for batch in make_batches(irvine.train, train.batch_size, max_len=7, shuffle=True):
      state, m = step(state, batch, jax.random.fold_in(base, state.step))
      losses.append(float(m["loss"]))
    eval_step = make_eval_step(model, ex.metric_fn(train, u), method=method)
    valid = make_batches(irvine.valid, train.eval_batch_size, max_len=7)
    out[loss] = (losses, state.params, evaluate(eval_step, state.params, state.extra, valid))
  (l_dense, p_dense, m_dense), (l_lean, p_lean, m_lean) = out["dense"], out["lean"]
  assert len(l_lean) == 3 and set(m_dense) == set(m_lean) and "hits@10" in m_lean
  np.testing.assert_allclose(l_lean, l_dense, rtol=1e-5)
  for k in m_dense:
    np.testing.assert_allclose(m_lean[k], m_dense[k], rtol=1e-5, atol=1e-5, err_msg=k)
  for a, b in zip(jax.tree.leaves(p_lean), jax.tree.leaves(p_dense)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_cli_train_on_four_devices_with_two_steps_per_call(tmp_path, capsys):
  from popdiff_jax.cli.main import main

  assert jax.device_count() >= 4
  # 30 rows per batch do not divide by 4 devices: each batch gets 2 masked padding rows.
  args = ["train", "ndm", "--data", "ndm/irvine", "--train.num-epochs", "1", "--model.dim", "8",
          "--model.num-heads", "2", "--max-len", "7", "--train.batch-size", "30",
          "--train.num-devices", "4", "--train.steps-per-call", "2", "--train.loss", "lean",
          "--train.lean-chunk", "256", "--workdir", str(tmp_path), "--no-progress"]
  assert main(args) == 0
  table = capsys.readouterr().out
  assert "hits@10" in table and "ndm/irvine" in table
  row = json.loads((tmp_path / "results.json").read_text())
  assert 0.0 < row["hits@100"] <= 1.0 and row["epochs"] == 1
  train = json.loads((tmp_path / "config.json").read_text())["config"]["train"]
  assert (train["num_devices"], train["steps_per_call"], train["loss"]) == (4, 2, "lean")


# ------------------------------------------------------------------ popularity and trees loops

def _fake_posts(n=160, seed=0):
  """A random FeatureSet (shapes as build_features gives) with a learnable score, and a split."""
  from popdiff_jax.data.instagram import Split
  from popdiff_jax.features.pipeline import FeatureSet

  rng = np.random.default_rng(seed)
  t, di, dt, k = 6, 5, 4, 3
  tokens = rng.integers(2, 30, size=(n, t)).astype(np.int32)
  lengths = rng.integers(1, t + 1, size=n)
  token_mask = np.arange(t)[None, :] < lengths[:, None]
  tokens = np.where(token_mask, tokens, 0).astype(np.int32)
  f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
  numeric, smp = f(n, 10), f(n, 14)
  score = (2.0 + numeric[:, 0] + 0.5 * smp[:, 1] + 0.1 * f(n)).astype(np.float32)
  label = np.where(score > np.median(score), 1, 0).astype(np.int32)
  label[::7] = -1
  feats = FeatureSet(tokens=tokens, token_mask=token_mask, image=f(n, di), text=f(n, dt),
                     lda=np.abs(f(n, k)), env_image=f(n, di), env_topic=np.abs(f(n, k)),
                     numeric=numeric, smp=smp, image_score=score + f(n), score=score,
                     label=label, user=(np.arange(n) % 10).astype(np.int32))
  idx = rng.permutation(n)
  split = Split(np.sort(idx[:100]), np.sort(idx[100:130]), np.sort(idx[130:]), "random", seed)
  return feats, split


def _assert_rows_close(a, b):
  keys = [k for k in a if isinstance(a[k], float)]
  assert keys
  for k in keys:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("which", ["dual_attention", "fusion", "smp"])
def test_popularity_loops_on_four_devices_equal_one(tmp_path, which):
  """Two epochs (one for the slow-to-compile dual attention) of each popularity training loop:
  5 steps an epoch, global batch 20 (5 rows a device)."""
  from popdiff_jax.models.dual_attention import DualAttentionConfig
  from popdiff_jax.models.fusion_dnn import FusionDNNConfig
  from popdiff_jax.projects.dual_attention import configs as da_configs
  from popdiff_jax.projects.dual_attention import experiment as da
  from popdiff_jax.projects.fusion_dnn import configs as fusion_configs
  from popdiff_jax.projects.fusion_dnn import experiment as fusion
  from popdiff_jax.projects.multimodal_smp import configs as smp_configs
  from popdiff_jax.projects.multimodal_smp import experiment as smp

  feats, split = _fake_posts()
  out = {}
  for n in (1, 4):
    wd = tmp_path / f"d{n}"
    if which == "dual_attention":
      cfg = da_configs.ExperimentConfig(
          model=DualAttentionConfig(vocab_size=30, embed_dim=8, hidden_dim=8, attn_dim=4,
                                    out_dim=8),
          train=da_configs.TrainConfig(batch_size=20, num_epochs=1, patience=2, num_devices=n))
      row, extra = da.train_and_test(feats, split, cfg, workdir=wd)
      out[n] = (row, extra["probs"])
    elif which == "fusion":
      cfg = fusion_configs.ExperimentConfig(
          model=FusionDNNConfig(hidden=(8, 4)),
          train=fusion_configs.TrainConfig(batch_size=20, num_epochs=2, learning_rate=1e-3,
                                           num_devices=n))
      out[n] = fusion.train_and_test(feats, split, cfg, workdir=wd)
    else:
      cfg = smp_configs.ExperimentConfig(
          train=smp_configs.TrainConfig(batch_size=20, num_epochs=2, patience=2, num_devices=n))
      out[n] = smp.train_and_test(feats, split, cfg, workdir=wd)
  # The training loss of every epoch (fit's metrics.jsonl), then the test rows and predictions.
  hist = {n: [json.loads(line)["train_loss"] for p in sorted((tmp_path / f"d{n}").glob("*"))
              for line in (p / "metrics.jsonl").read_text().splitlines()] for n in (1, 4)}
  assert len(hist[1]) == (1 if which == "dual_attention" else 2)
  np.testing.assert_allclose(hist[4], hist[1], rtol=1e-5, atol=1e-6)
  _assert_rows_close(out[4][0], out[1][0])
  np.testing.assert_allclose(out[4][1], out[1][1], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ rows that do not divide

def test_pad_rows_adds_masked_zero_rows_only_when_needed():
  from popdiff_jax.training.mesh import make_mesh, pad_rows, shard_batch
  from popdiff_jax.types import CascadeBatch

  rng = np.random.default_rng(0)
  batch = CascadeBatch(rng.integers(2, 9, size=(6, 5)).astype(np.int32),
                       rng.random((6, 5)).astype(np.float32), np.ones((6, 5), bool))
  padded = pad_rows(batch, 4)
  assert padded.users.shape == (8, 5) and padded.mask.dtype == bool
  np.testing.assert_array_equal(padded.users[:6], batch.users)
  assert not padded.mask[6:].any() and not padded.users[6:].any() and padded.num_cascades == 6
  assert pad_rows(batch, 3) is batch and pad_rows(batch, 1) is batch
  stacked = pad_rows(jax.tree.map(lambda x: np.stack([x, x]), batch), 4, stacked=True)
  assert stacked.users.shape == (2, 8, 5)
  with pytest.raises(ValueError, match="batch axis"):
    pad_rows({"a": np.zeros((6, 2)), "b": np.zeros((5,))}, 4)
  mesh = make_mesh(4)
  # Without padding a leaf that does not divide is replicated (correct, not split) ...
  placed = shard_batch(mesh, batch)
  assert placed.users.addressable_shards[0].data.shape == (6, 5)
  # ... with padding every device gets 2 rows, none dropped.
  placed = shard_batch(mesh, batch, pad=True)
  assert [s.data.shape for s in placed.users.addressable_shards] == [(2, 5)] * 4
  assert int(np.asarray(placed.mask).sum()) == int(batch.mask.sum())


def _ndm_six_row_setup():
  import optax

  from popdiff_jax.data.batching import cascade_batch
  from popdiff_jax.training import create_train_state, make_train_step

  model, v = models.init(NDMConfig(num_items=30, dim=8, num_heads=2, window=3,
                                   dropout_rate=0.2, f_init=0), 0)
  tx = optax.adam(1e-2)
  rng = np.random.default_rng(3)
  batches = [cascade_batch([list(rng.choice(np.arange(2, 30), size=rng.integers(2, 7),
                                              replace=False)) for _ in range(6)],
                           max_len=7, rows=6) for _ in range(3)]
  step = make_train_step(model, ex.loss_fn(TrainConfig(), 30), tx)
  return create_train_state(v.params, tx, v.state), step, batches


def _smp_six_row_setup():
  import optax

  from popdiff_jax import models
  from popdiff_jax.data.posts import iterate_batches, make_arrays
  from popdiff_jax.models.smp import SMPConv1dConfig
  from popdiff_jax.projects.multimodal_smp.experiment import loss_fn
  from popdiff_jax.training import create_train_state, make_train_step

  feats, split = _fake_posts()
  arrays = make_arrays(feats, use=("features",), features=feats.smp, target=feats.score - 2.0)
  model, variables = models.init(SMPConv1dConfig(num_features=14), 0)
  tx = optax.adam(1e-2)
  step = make_train_step(model, loss_fn, tx)
  batches = list(iterate_batches(arrays, split.train[:18], 6, shuffle_seed=0, drop_last=True))
  return create_train_state(variables.params, tx, extra=variables.state), step, batches


@pytest.mark.parametrize("setup", [_ndm_six_row_setup, _smp_six_row_setup], ids=["ndm", "smp"])
def test_six_rows_on_four_devices_are_padded_and_equal_one_device(setup):
  """6-row batches on 4 devices: padded to 8 with masked rows; loss and parameters after 3
  steps (dropout on) equal the unpadded 1-device steps."""
  from popdiff_jax.training.mesh import fit_arguments

  state0, step, batches = setup()
  assert all(jax.tree.leaves(b)[0].shape[0] == 6 for b in batches)
  base = jax.random.key(7)
  runs = {}
  for n in (1, 4):
    # The compiled step donates its state: each device count starts from its own copy.
    state, kw = fit_arguments(step, jax.tree.map(np.copy, state0), n, pad=True)
    losses = []
    for b in batches:
      placed = b if kw["place_batch"] is None else kw["place_batch"](b, False)
      if n == 4:
        assert jax.tree.leaves(placed)[0].shape[0] == 8
      state, m = kw["train_step"](state, placed, jax.random.fold_in(base, state.step))
      losses.append(float(m["loss"]))
    runs[n] = (losses, state)
  np.testing.assert_allclose(runs[4][0], runs[1][0], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(runs[4][1].params), jax.tree.leaves(runs[1][1].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
