"""NDM and the LSTM baseline: equations against NumPy, masking, gradients, compiles, learning."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from popdiff_jax import losses, models
from popdiff_jax.data.batching import make_batches
from popdiff_jax.data.cascades import Cascade, load_dataset
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.nn.masking import mask_infected
from popdiff_jax.projects.ndm import experiment as ex
from popdiff_jax.projects.ndm.configs import TrainConfig
from popdiff_jax.training import create_train_state, make_train_step
from popdiff_jax.types import PAD, TERMINATE, CascadeBatch

U = 23


def _batch(users, mask) -> CascadeBatch:
  return CascadeBatch(jnp.asarray(users), jnp.zeros(np.shape(users), jnp.float32),
                      jnp.asarray(mask))


def _random_batch(rng, b=3, length=9):
  """Distinct users per row, ragged lengths, Terminate after the last user, padding after."""
  users = np.zeros((b, length), np.int32)
  mask = np.zeros((b, length), bool)
  for r in range(b):
    n = int(rng.integers(1, length))
    users[r, :n] = rng.choice(np.arange(2, U), size=n, replace=False)
    users[r, n] = TERMINATE
    mask[r, :n + 1] = True
  return users, mask


def _np_layer_norm(x, scale, bias, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def _np_ndm(p, users, mask, heads, window, f_init, scale):
  """Eqs. 3-7 written position by position with loops, in float64."""
  emb_table = np.asarray(p["embedding"], np.float64)
  b, length = users.shape
  d = emb_table.shape[1]
  act = np.zeros((b, length, d))
  for r in range(b):
    e = emb_table[users[r]]
    for j in range(length):
      if not mask[r, j]:
        continue
      outs = []
      for h in range(heads):
        q = e[j] @ p["w_q"][h]
        ks = [k for k in range(j + 1) if mask[r, k]]
        s = np.array([q @ (e[k] @ p["w_k"][h]) for k in ks]) * scale
        w = np.exp(s - s.max())
        w /= w.sum()
        outs.append(sum(wk * (e[k] @ p["w_v"][h]) for wk, k in zip(w, ks)))
      a = np.concatenate(outs) @ p["w_o"]
      act[r, j] = _np_layer_norm(e[j] + a, p["ln_scale"], p["ln_bias"])
  logits = np.zeros((b, length, p["w_c"].shape[-1]))
  for r in range(b):
    for j in range(length):
      z = p["bias"].astype(np.float64).copy()
      for n in range(window):
        if j - n >= 0:
          z += act[r, j - n] @ p["w_c"][n]
      if f_init:
        z += act[r, 0] @ p["w_c_init"]
      infected = set(users[r, :j + 1][mask[r, :j + 1]].tolist()) | {PAD}
      for u in infected:
        z[u] = -np.inf
      logits[r, j] = z
  return logits


def _randomised(config, rng):
  """A model with fresh random values in every parameter (never test on zeros or a lucky init):
  ``(model, params, module)``, the module bound to those parameters for reading them."""
  model, variables = models.init(config, 0)
  params = jax.tree.map(lambda l: jnp.asarray(rng.normal(scale=0.5, size=l.shape), l.dtype),
                        variables.params)
  return model, params, model.bind(params, variables.state)


@pytest.mark.parametrize("f_init,window,heads", [(0, 3, 2), (1, 2, 3), (1, 1, 1)])
def test_ndm_forward_matches_numpy(f_init, window, heads, strict_dtypes):
  rng = np.random.default_rng(f_init * 10 + window)
  model, params, m = _randomised(NDMConfig(num_items=U, dim=6, num_heads=heads, window=window,
                                           f_init=f_init), rng)
  users, mask = _random_batch(rng)
  got = mask_infected(model.apply(params, _batch(users, mask)), jnp.asarray(users),
                      jnp.asarray(mask))
  a = m.attention
  p = {"embedding": m.embedding[...], "w_q": a.w_q[...], "w_k": a.w_k[...],
       "w_v": a.w_v[...], "w_o": a.w_o[...], "w_c": m.w_c[...],
       "w_c_init": None if m.w_c_init is None else m.w_c_init[...],
       "bias": m.bias[...], "ln_scale": m.layer_norm.scale[...],
       "ln_bias": m.layer_norm.bias[...]}
  p = {k: None if v is None else np.asarray(v, np.float64) for k, v in p.items()}
  want = _np_ndm(p, users, mask, heads, window, f_init, a.scale)
  real = mask[..., None] & np.isfinite(want)
  np.testing.assert_allclose(np.asarray(got)[real], want[real], rtol=1e-5, atol=1e-5)
  assert np.array_equal(np.isinf(np.asarray(got))[mask], np.isinf(want)[mask])


def test_lstm_forward_matches_numpy(strict_dtypes):
  rng = np.random.default_rng(7)
  lstm, params, model = _randomised(LSTMConfig(num_items=U, dim=5), rng)
  users, mask = _random_batch(rng)
  got = np.asarray(lstm.apply(params, _batch(users, mask)))
  sig = lambda x: 1 / (1 + np.exp(-x))
  e = np.asarray(model.embedding[...], np.float64)[users]
  wx, wh, bb = (np.asarray(a[...], np.float64) for a in (model.w_x, model.w_h, model.b))
  h = np.zeros((3, 5))
  c = np.zeros((3, 5))
  for j in range(users.shape[1]):
    g = e[:, j] @ wx + h @ wh + bb
    i, f, gg, o = np.split(g, 4, axis=-1)
    c = sig(f) * c + sig(i) * np.tanh(gg)
    h = sig(o) * np.tanh(c)
    want = h @ np.asarray(model.out.kernel[...]) + np.asarray(model.out.bias[...])
    np.testing.assert_allclose(got[:, j], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [NDMConfig(num_items=U, dim=8, f_init=0),
                                    LSTMConfig(num_items=U, dim=8)])
def test_infected_users_get_zero_probability(config):
  rng = np.random.default_rng(1)
  model, params, _ = _randomised(config, rng)
  users, mask = _random_batch(rng, b=4, length=12)
  logits = mask_infected(model.apply(params, _batch(users, mask)), jnp.asarray(users),
                         jnp.asarray(mask))
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  for r in range(4):
    for j in range(12):
      if mask[r, j] and users[r, j] != TERMINATE:
        seen = users[r, :j + 1]
        assert np.all(probs[r, j, seen] == 0.0)
        assert probs[r, j, PAD] == 0.0
        assert np.isfinite(np.asarray(logits)[r, j, TERMINATE])  # Terminate is always possible
        np.testing.assert_allclose(probs[r, j].sum(), 1.0, rtol=1e-5)


def test_dropout_uses_the_key_and_eval_is_deterministic():
  model, v = models.init(NDMConfig(num_items=U, dim=8, f_init=0), 0)
  batch = _batch(*_random_batch(np.random.default_rng(2)))
  a = model.apply(v.params, batch, key=jax.random.key(1))
  b = model.apply(v.params, batch, key=jax.random.key(1))
  c = model.apply(v.params, batch, key=jax.random.key(2))
  chex.assert_trees_all_equal(a, b)
  assert not np.allclose(np.asarray(a), np.asarray(c))
  chex.assert_trees_all_equal(model.apply(v.params, batch), model.apply(v.params, batch))


def _objective(model, batch, key=None):
  """The mean NLL per prediction and the count, as a function of the parameters."""
  def fn(params):
    total, count = losses.next_user_nll(model.apply(params, batch, key=key), batch.users,
                                        batch.mask)
    return total / jnp.maximum(count, 1.0), count
  return fn


@pytest.mark.parametrize("config", [NDMConfig(num_items=U, dim=8, num_heads=2, f_init=0),
                                    LSTMConfig(num_items=U, dim=8)])
def test_all_padding_batch_has_finite_loss_and_grads(config):
  model, v = models.init(config, 0)
  batch = _batch(np.zeros((4, 8), np.int32), np.zeros((4, 8), bool))
  (loss, count), grads = jax.value_and_grad(_objective(model, batch, jax.random.key(0)),
                                            has_aux=True)(v.params)
  assert float(count) == 0.0 and np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_gradients_flow_to_every_parameter():
  model, v = models.init(NDMConfig(num_items=U, dim=8, num_heads=2, f_init=1), 0)
  batch = _batch(*_random_batch(np.random.default_rng(3), b=4, length=10))
  grads = jax.grad(lambda p: _objective(model, batch)(p)[0])(v.params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert np.all(np.isfinite(g)), path
    assert np.abs(np.asarray(g)).sum() > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_nll_matches_numpy_on_random_logits():
  rng = np.random.default_rng(4)
  users, mask = _random_batch(rng, b=5, length=11)
  logits = rng.normal(size=(5, 11, U)).astype(np.float32)
  nll, count = losses.next_user_nll(jnp.asarray(logits), jnp.asarray(users), jnp.asarray(mask))
  want, n = 0.0, 0
  for r in range(5):
    for j in range(10):
      if mask[r, j] and mask[r, j + 1]:
        z = logits[r, j].astype(np.float64)
        blocked = set(users[r, :j + 1].tolist()) | {PAD}
        keep = np.array([u not in blocked for u in range(U)])
        lse = np.log(np.exp(z[keep]).sum())
        want += lse - z[users[r, j + 1]]
        n += 1
  assert int(count) == n
  np.testing.assert_allclose(float(nll), want, rtol=1e-5)


def test_one_compile_per_bucket():
  rng = np.random.default_rng(5)
  cascades = [Cascade(rng.choice(np.arange(2, U), size=n, replace=False).astype(np.int32),
                      np.arange(n, dtype=np.float64)) for n in [1, 2, 5, 9, 12, 3, 15, 7, 10]]
  batches = make_batches(cascades, 2, max_len=16, buckets=(4, 8, 17), shuffle=True)
  assert {b.users.shape[1] for b in batches} == {4, 8, 17}
  model, v = models.init(NDMConfig(num_items=U, dim=8, num_heads=2, f_init=0), 0)
  train = TrainConfig()
  tx = ex.make_optimizer(train, 8)
  state = create_train_state(v.params, tx, v.state)
  step = jax.jit(chex.assert_max_traces(make_train_step(model, ex.loss_fn(train, U), tx), n=3))
  for epoch in range(2):
    for b in make_batches(cascades, 2, max_len=16, buckets=(4, 8, 17), shuffle=True, epoch=epoch):
      state, metrics = step(state, b, jax.random.key(epoch))
  assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("loss", ["dense", "lean"])
def test_per_cascade_loss_weighs_every_prediction_alike(loss):
  """loss_per="cascade": the step descends Σ NLL / B (B = batch rows), the default the mean NLL
  per prediction; checked through a plain SGD step (update = -lr * gradient) against jax.grad of
  the summed NLL, and the reported loss is the per-prediction mean in both cases."""
  model, v = models.init(NDMConfig(num_items=U, dim=8, num_heads=2, dropout_rate=0.0,
                                   f_init=0), 0)
  batch = _batch(*_random_batch(np.random.default_rng(11), b=4, length=10))
  mean, count = _objective(model, batch)(v.params)
  grad_sum = jax.grad(lambda p: _objective(model, batch)(p)[0] * count)(v.params)
  tx = optax.sgd(1.0)
  method = "output_features" if loss == "lean" else "__call__"
  for loss_per, scale in (("cascade", 1.0 / 4), ("prediction", 1.0 / float(count))):
    train = TrainConfig(loss=loss, loss_per=loss_per, lean_chunk=8)
    step = make_train_step(model, ex.loss_fn(train, U), tx, method=method)
    new, metrics = step(create_train_state(v.params, tx, v.state), batch, jax.random.key(0))
    moved = jax.tree.map(lambda a, b: a - b, v.params, new.params)
    want = jax.tree.map(lambda g: g * scale, grad_sum)
    chex.assert_trees_all_close(moved, want, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["loss"]), float(mean), rtol=1e-5)


@pytest.mark.parametrize("config", [NDMConfig(f_init=0), LSTMConfig()])
def test_loss_decreases_on_real_data(config):
  data = load_dataset("ndm/memetracker")
  train = data.train[:400]
  u = len(data.vocab)
  import dataclasses
  model, v = models.init(dataclasses.replace(config, num_items=u), 0)
  tc = TrainConfig(learning_rate=3e-3)
  tx = ex.make_optimizer(tc, config.dim)
  state = create_train_state(v.params, tx, v.state)
  step = jax.jit(make_train_step(model, ex.loss_fn(tc, u), tx))
  batches = make_batches(train, 32, max_len=32, buckets=(33,), shuffle=True)
  fixed = batches[0]
  before = float(_objective(model, fixed)(state.params)[0])
  for i in range(30):
    state, _ = step(state, batches[i % len(batches)], jax.random.key(i))
  after = float(_objective(model, fixed)(state.params)[0])
  assert after < before - 0.5, (before, after)
