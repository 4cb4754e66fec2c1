"""NDM and the LSTM baseline: equations against NumPy, masking, gradients, compiles, learning."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from popdiff_jax.data.batching import make_batches
from popdiff_jax.data.cascades import PAD, TERMINATE, Cascade, load_dataset
from popdiff_jax.experiments import next_user as nu
from popdiff_jax.models.lstm import LSTMNextUser
from popdiff_jax.models.ndm import NDM
from popdiff_jax.models.next_user import mask_infected, next_user_nll
from popdiff_jax.train.state import create_train_state

U = 23


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


def _randomise(model, rng):
  """Fresh random values in every parameter (never test on zeros or on a lucky init)."""
  graphdef, state = nnx.split(model)
  leaves, treedef = jax.tree.flatten(state)
  leaves = [jnp.asarray(rng.normal(scale=0.5, size=l.shape), l.dtype) for l in leaves]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


@pytest.mark.parametrize("f_init,window,heads", [(0, 3, 2), (1, 2, 3), (1, 1, 1)])
def test_ndm_forward_matches_numpy(f_init, window, heads, strict_dtypes):
  rng = np.random.default_rng(f_init * 10 + window)
  model = _randomise(NDM(U, dim=6, num_heads=heads, window=window, f_init=f_init,
                         rngs=nnx.Rngs(0)), rng)
  users, mask = _random_batch(rng)
  got = mask_infected(model(jnp.asarray(users), jnp.asarray(mask)), jnp.asarray(users),
                      jnp.asarray(mask))
  p = {"embedding": model.embedding[...], "w_q": model.w_q[...], "w_k": model.w_k[...],
       "w_v": model.w_v[...], "w_o": model.w_o[...], "w_c": model.w_c[...],
       "w_c_init": None if model.w_c_init is None else model.w_c_init[...],
       "bias": model.bias[...], "ln_scale": model.layer_norm.scale[...],
       "ln_bias": model.layer_norm.bias[...]}
  p = {k: None if v is None else np.asarray(v, np.float64) for k, v in p.items()}
  want = _np_ndm(p, users, mask, heads, window, f_init, model.attention_scale)
  real = mask[..., None] & np.isfinite(want)
  np.testing.assert_allclose(np.asarray(got)[real], want[real], rtol=1e-5, atol=1e-5)
  assert np.array_equal(np.isinf(np.asarray(got))[mask], np.isinf(want)[mask])


def test_lstm_forward_matches_numpy(strict_dtypes):
  rng = np.random.default_rng(7)
  model = _randomise(LSTMNextUser(U, dim=5, rngs=nnx.Rngs(0)), rng)
  users, mask = _random_batch(rng)
  got = np.asarray(model(jnp.asarray(users), jnp.asarray(mask)))
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


@pytest.mark.parametrize("model_cls", [NDM, LSTMNextUser])
def test_infected_users_get_zero_probability(model_cls):
  rng = np.random.default_rng(1)
  model = _randomise(model_cls(U, dim=8, rngs=nnx.Rngs(0)), rng)
  users, mask = _random_batch(rng, b=4, length=12)
  logits = mask_infected(model(jnp.asarray(users), jnp.asarray(mask)), jnp.asarray(users),
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
  model = NDM(U, dim=8, rngs=nnx.Rngs(0))
  users, mask = (jnp.asarray(a) for a in _random_batch(np.random.default_rng(2)))
  a = model(users, mask, jax.random.key(1))
  b = model(users, mask, jax.random.key(1))
  c = model(users, mask, jax.random.key(2))
  chex.assert_trees_all_equal(a, b)
  assert not np.allclose(np.asarray(a), np.asarray(c))
  chex.assert_trees_all_equal(model(users, mask), model(users, mask))


@pytest.mark.parametrize("model_name", ["ndm", "lstm"])
def test_all_padding_batch_has_finite_loss_and_grads(model_name):
  cfg = nu.NextUserConfig(model=model_name, dim=8, num_heads=2)
  graphdef, params = nnx.split(nu.build_model(cfg, U))
  users = jnp.zeros((4, 8), jnp.int32)
  mask = jnp.zeros((4, 8), bool)
  from popdiff_jax.data.batching import CascadeBatch
  batch = CascadeBatch(users, jnp.zeros((4, 8), jnp.float32), mask)
  (loss, count), grads = jax.value_and_grad(nu.loss_fn, has_aux=True)(params, graphdef, batch,
                                                                       jax.random.key(0))
  assert float(count) == 0.0 and np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_gradients_flow_to_every_parameter():
  cfg = nu.NextUserConfig(dim=8, num_heads=2, f_init=1)
  graphdef, params = nnx.split(nu.build_model(cfg, U, f_init=1))
  users, mask = _random_batch(np.random.default_rng(3), b=4, length=10)
  from popdiff_jax.data.batching import CascadeBatch
  batch = CascadeBatch(jnp.asarray(users), jnp.zeros(users.shape, jnp.float32), jnp.asarray(mask))
  grads = jax.grad(lambda p: nu.loss_fn(p, graphdef, batch, None)[0])(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert np.all(np.isfinite(g)), path
    assert np.abs(np.asarray(g)).sum() > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_nll_matches_numpy_on_random_logits():
  rng = np.random.default_rng(4)
  users, mask = _random_batch(rng, b=5, length=11)
  logits = rng.normal(size=(5, 11, U)).astype(np.float32)
  nll, count = next_user_nll(jnp.asarray(logits), jnp.asarray(users), jnp.asarray(mask))
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
  cfg = nu.NextUserConfig(dim=8, num_heads=2)
  graphdef, params = nnx.split(nu.build_model(cfg, U))
  tx = nu.make_optimizer(cfg)
  state = create_train_state(params, tx)
  step = jax.jit(chex.assert_max_traces(nu.make_train_step(graphdef, tx, jit=False), n=3))
  for epoch in range(2):
    for b in make_batches(cascades, 2, max_len=16, buckets=(4, 8, 17), shuffle=True, epoch=epoch):
      state, metrics = step(state, b, jax.random.key(epoch))
  assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("loss", ["dense", "lean"])
def test_per_cascade_loss_weighs_every_prediction_alike(loss):
  """loss_per="cascade": the step descends Σ NLL / B (B = batch rows), the default the mean NLL
  per prediction; checked through a plain SGD step (update = -lr * gradient) against jax.grad of
  the summed NLL, and the reported loss is the per-prediction mean in both cases."""
  import optax
  from popdiff_jax.data.batching import CascadeBatch
  cfg = nu.NextUserConfig(dim=8, num_heads=2, dropout_rate=0.0)
  graphdef, params = nnx.split(nu.build_model(cfg, U))
  users, mask = _random_batch(np.random.default_rng(11), b=4, length=10)
  batch = CascadeBatch(jnp.asarray(users), jnp.zeros(users.shape, jnp.float32), jnp.asarray(mask))
  mean, count = nu.loss_fn(params, graphdef, batch, None)
  grad_sum = jax.grad(lambda p: nu.loss_fn(p, graphdef, batch, None)[0] * count)(params)
  tx = optax.sgd(1.0)
  for loss_per, scale in (("cascade", 1.0 / 4), ("prediction", 1.0 / float(count))):
    step = nu.make_train_step(graphdef, tx, jit=False, loss=loss, loss_per=loss_per)
    new, metrics = step(create_train_state(params, tx), batch, jax.random.key(0))
    moved = jax.tree.map(lambda a, b: a - b, params, new.params)
    want = jax.tree.map(lambda g: g * scale, grad_sum)
    chex.assert_trees_all_close(moved, want, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["loss"]), float(mean), rtol=1e-5)
  with pytest.raises(ValueError, match="loss_per"):
    nu.make_train_step(graphdef, tx, loss_per="token")


@pytest.mark.parametrize("model_name", ["ndm", "lstm"])
def test_loss_decreases_on_real_data(model_name):
  data = load_dataset("ndm/memetracker")
  train = data.train[:400]
  cfg = nu.NextUserConfig(model=model_name, schedule="constant", learning_rate=3e-3, max_len=32)
  graphdef, params = nnx.split(nu.build_model(cfg, len(data.vocab)))
  tx = nu.make_optimizer(cfg)
  state = create_train_state(params, tx)
  step = nu.make_train_step(graphdef, tx)
  batches = make_batches(train, 32, max_len=32, buckets=(33,), shuffle=True)
  fixed = batches[0]
  before = float(nu.loss_fn(state.params, graphdef, fixed, None)[0])
  for i in range(30):
    state, _ = step(state, batches[i % len(batches)], jax.random.key(i))
  after = float(nu.loss_fn(state.params, graphdef, fixed, None)[0])
  assert after < before - 0.5, (before, after)
