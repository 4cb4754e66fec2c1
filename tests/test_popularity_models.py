"""Popularity models: equations against NumPy references on random inputs, explicit BatchNorm state,
masking, dropout keys, finite all-padding losses and jitted steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from popdiff_jax.models import dual_attention as da
from popdiff_jax.models._popularity_common import MaskedLSTM, apply_model, split_model
from popdiff_jax.models.fusion_dnn import FusionDNN
from popdiff_jax.models.smp import SMPConv1d

B, T, D1, K = 5, 6, 7, 4


def _inputs(seed=0, vocab=30):
  rng = np.random.default_rng(seed)
  lengths = np.array([6, 3, 1, 0, 4])
  mask = np.arange(T)[None, :] < lengths[:, None]
  tokens = np.where(mask, rng.integers(2, vocab, (B, T)), 0).astype(np.int32)
  f = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))  # noqa: E731
  return jnp.asarray(tokens), jnp.asarray(mask), f(B, D1), f(B, D1), f(B, K)


def _np(x):
  return np.asarray(x[...] if isinstance(x, nnx.Variable) else x, np.float64)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_masked_lstm_matches_numpy():
  rng = np.random.default_rng(1)
  lstm = MaskedLSTM(3, 4, rngs=nnx.Rngs(0))
  x = rng.normal(size=(B, T, 3)).astype(np.float32)
  mask = np.arange(T)[None] < np.array([6, 3, 1, 0, 4])[:, None]
  out, last = lstm(jnp.asarray(x), jnp.asarray(mask))
  wx, bx, wh = _np(lstm.wx.kernel), _np(lstm.wx.bias), _np(lstm.wh.kernel)
  for b in range(B):
    h = c = np.zeros(4)
    for t in range(T):
      if not mask[b, t]:
        np.testing.assert_allclose(out[b, t], 0, atol=1e-6)
        continue
      z = x[b, t] @ wx + bx + h @ wh
      i, f, g, o = np.split(z, 4)
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
      np.testing.assert_allclose(out[b, t], h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last[b], h, rtol=1e-4, atol=1e-5)


def test_explicit_attention_matches_equations():
  rng = np.random.default_rng(2)
  att = da.ExplicitAttention(D1, 5, 8, rngs=nnx.Rngs(0))
  v = rng.normal(size=(B, D1)).astype(np.float32)
  q = rng.normal(size=(B, T, 5)).astype(np.float32)
  mask = np.arange(T)[None] < np.array([6, 3, 1, 2, 4])[:, None]
  aq, q_hat = att(jnp.asarray(v), jnp.asarray(q), jnp.asarray(mask))
  wa, wq, bq = _np(att.w_a.kernel), _np(att.w_q.kernel), _np(att.w_q.bias)
  wv, wh, bh = _np(att.w_v.kernel), _np(att.w_h.kernel), _np(att.w_h.bias)
  for b in range(B):
    a = np.tanh(q[b] @ (v[b] @ wa))                                  # Eq. (1): T
    hq = np.tanh(q[b] @ wq + bq + a[:, None] * (v[b] @ wv)[None])     # Eq. (2): T x k
    s = (hq @ wh + bh)[:, 0]
    s = np.where(mask[b], s, -np.inf)
    w = np.exp(s - s.max())
    w /= w.sum()
    np.testing.assert_allclose(aq[b], w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q_hat[b], w @ q[b], rtol=1e-4, atol=1e-5)  # Eq. (3)


def test_implicit_attention_matches_equations():
  rng = np.random.default_rng(3)
  m = da.ImplicitAttention(D1, K, 6, rngs=nnx.Rngs(0))
  ie = rng.normal(size=(B, D1)).astype(np.float32)
  te = rng.normal(size=(B, K)).astype(np.float32)
  got = m(jnp.asarray(ie), jnp.asarray(te))
  lin = lambda l, x: x @ _np(l.kernel) + _np(l.bias)  # noqa: E731
  f = np.maximum(lin(m.w_i, ie), 0) * np.maximum(lin(m.w_t, te), 0)       # Eq. (4)
  h = lin(m.w_i2, ie) + lin(m.w_t2, te) + f                                 # Eq. (5)
  np.testing.assert_allclose(got, np.maximum(lin(m.fc, h), 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", da.VARIANTS)
def test_variants_shapes_finite_and_all_padding(variant):
  # Eager (no jit): each variant would otherwise compile twice; the shapes are tiny.
  tokens, mask, img, ei, et = _inputs()
  model = da.DualAttention(30, D1, K, variant=variant, embed_dim=8, hidden_dim=8, attn_dim=4,
                           out_dim=8, rngs=nnx.Rngs(0))
  graphdef, params, extra = split_model(model)

  def loss(p, batch_mask):
    out, _ = apply_model(graphdef, p, extra, tokens, mask, img, ei, et)
    return da.classification_loss(out, jnp.asarray([1., 0, 1, 0, 1]), batch_mask, variant), out

  if variant not in ("late_fusion", "ccr", "dual_attention"):  # gradients on the three loss forms
    value, out = loss(params, jnp.ones(B, bool))
    chex.assert_shape(out["logit"], (B,))
    chex.assert_tree_all_finite((value, out))
    return
  (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params, jnp.ones(B, bool))
  chex.assert_shape(out["logit"], (B,))
  chex.assert_shape(out["attention"], (B, T))
  chex.assert_tree_all_finite((value, out, grads))
  if variant == "dual_attention":
    sums = np.asarray(out["attention"]).sum(1)
    np.testing.assert_allclose(sums[np.asarray(mask).any(1)], 1, rtol=1e-5)
    assert (np.asarray(out["attention"])[~np.asarray(mask)] == 0).all()
  (value0, _), grads0 = jax.value_and_grad(loss, has_aux=True)(params, jnp.zeros(B, bool))
  assert float(value0) == 0.0
  chex.assert_tree_all_finite(grads0)


def test_bce_matches_reference(strict_dtypes):
  rng = np.random.default_rng(4)
  logit = rng.normal(size=9).astype(np.float32) * 3
  y = rng.integers(0, 2, 9).astype(np.float32)
  mask = rng.random(9) < 0.7
  got = da.classification_loss({"logit": jnp.asarray(logit)}, jnp.asarray(y), jnp.asarray(mask),
                               "dual_attention")
  p = _sigmoid(logit.astype(np.float64))
  ref = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  np.testing.assert_allclose(got, ref[mask].mean(), rtol=1e-5)


def test_fusion_batchnorm_state_is_explicit():
  rng = np.random.default_rng(5)
  model = FusionDNN(3, 4, 2, hidden=(8, 8, 8, 8), rngs=nnx.Rngs(0))
  graphdef, params, extra = split_model(model)
  x = [jnp.asarray(rng.normal(size=(16, d)).astype(np.float32) * 3 + 1) for d in (3, 4, 2)]
  _, new_extra = apply_model(graphdef, params, extra, *x, train=True)
  # Running mean after one batch: momentum 0.9 -> 0.1 * batch mean of the first pre-activation.
  z = np.concatenate([np.asarray(a) for a in x], 1) @ _np(params["dense"][0]["kernel"]) \
      + _np(params["dense"][0]["bias"])
  np.testing.assert_allclose(new_extra["norm"][0]["mean"][...], 0.1 * z.mean(0), rtol=1e-4, atol=1e-5)
  out_eval, same = apply_model(graphdef, params, new_extra, *x, train=False)
  chex.assert_trees_all_close(jax.tree.map(lambda v: v[...], same),
                              jax.tree.map(lambda v: v[...], new_extra))
  out_eval2, _ = apply_model(graphdef, params, new_extra, *[a[:3] for a in x], train=False)
  np.testing.assert_allclose(out_eval[:3], out_eval2, rtol=1e-5)  # eval does not depend on the batch


def test_smp_conv1d_dropout_key():
  x = jnp.asarray(np.random.default_rng(6).normal(size=(B, 15)).astype(np.float32))
  m = SMPConv1d(15, rngs=nnx.Rngs(0))
  assert m(x).shape == (B,)
  np.testing.assert_allclose(m(x), m(x))
  a, b = m(x, key=jax.random.key(1)), m(x, key=jax.random.key(1))
  np.testing.assert_allclose(a, b)
  assert not np.allclose(a, m(x, key=jax.random.key(2)))
  with pytest.raises(ValueError):
    SMPConv1d(4, rngs=nnx.Rngs(0))


def test_train_step_traces_once():
  from popdiff_jax.experiments import popularity as ex
  from popdiff_jax.train.state import create_train_state
  tokens, mask, img, ei, et = _inputs()
  model = da.DualAttention(30, D1, K, embed_dim=8, hidden_dim=8, attn_dim=4, out_dim=8,
                           rngs=nnx.Rngs(0))
  graphdef, params, extra = split_model(model)
  tx = optax.adam(1e-2)
  train_step, _ = ex.dual_attention_steps(graphdef, tx, "dual_attention")
  z = np.zeros((B, 0), np.float32)
  batch = ex.PostBatch(tokens, mask, img, z, z, z, ei, et, jnp.asarray([1., 0, 1, 0, 1]),
                       jnp.zeros(B), jnp.ones(B, bool))
  state = create_train_state(params, tx, extra)
  losses = []
  for i in range(5):
    state, m = train_step(state, batch, jax.random.key(i))
    losses.append(float(m["loss"]))
  assert train_step._cache_size() == 1  # one static shape, one trace
  assert losses[-1] < losses[0]
