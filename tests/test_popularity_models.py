"""Popularity models: equations against NumPy references on random inputs, the key stream of the
caption LSTM, explicit BatchNorm state, masking, dropout keys, finite all-padding losses and one
trace of the jitted step."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from popdiff_jax import ConfigError, losses, models
from popdiff_jax.models import dual_attention as da
from popdiff_jax.models.fusion_dnn import FusionDNNConfig
from popdiff_jax.models.smp import SMPConv1dConfig
from popdiff_jax.training import compile_train_step, create_train_state, make_train_step
from popdiff_jax.types import PostBatch, check_post_batch

B, T, D1, K = 5, 6, 7, 4


def _batch(seed=0, vocab=30, label=(1., 0, 1, 0, 1), mask=None, **widths):
  """A PostBatch with captions of lengths 6, 3, 1, 0, 4 and random dense fields."""
  rng = np.random.default_rng(seed)
  lengths = np.array([6, 3, 1, 0, 4])
  token_mask = np.arange(T)[None, :] < lengths[:, None]
  tokens = np.where(token_mask, rng.integers(2, vocab, (B, T)), 0).astype(np.int32)
  f = lambda d: rng.normal(size=(B, d)).astype(np.float32) * 3 + 1  # noqa: E731
  w = {"image": D1, "text": 0, "numeric": 0, "features": 0, "env_image": D1, "env_topic": K,
       **widths}
  batch = PostBatch(tokens=tokens, token_mask=token_mask, **{k: f(d) for k, d in w.items()},
                    label=np.asarray(label, np.float32), target=rng.normal(size=B).astype(
                        np.float32), mask=np.ones(B, bool) if mask is None else mask)
  check_post_batch(batch)
  return jax.tree.map(jnp.asarray, batch)


def _np(x):
  return np.asarray(x[...] if isinstance(x, nnx.Variable) else x, np.float64)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_caption_lstm_matches_numpy():
  enc = da.CaptionEncoder(30, 3, 4, rngs=nnx.Rngs(params=0))
  batch = _batch()
  out, last = enc(batch.tokens, batch.token_mask)
  x = _np(enc.embed.embedding)[np.asarray(batch.tokens)]
  mask = np.asarray(batch.token_mask)
  wx, bx, wh = _np(enc.w_x), _np(enc.b), _np(enc.w_h)
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


def test_caption_lstm_draws_the_keys_of_two_linear_layers():
  """The same seed gives the weights of Embed -> Linear(E, 4H) -> Linear(H, 4H, no bias)."""
  enc = da.CaptionEncoder(30, 3, 4, rngs=nnx.Rngs(params=7))
  rngs = nnx.Rngs(params=7)
  embed = nnx.Embed(30, 3, rngs=rngs)
  wx = nnx.Linear(3, 16, rngs=rngs)
  wh = nnx.Linear(4, 16, use_bias=False, rngs=rngs)
  for got, want in ((enc.embed.embedding, embed.embedding), (enc.w_x, wx.kernel),
                    (enc.b, wx.bias), (enc.w_h, wh.kernel)):
    np.testing.assert_array_equal(got[...], want[...])


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


def _da_config(variant="dual_attention", **kw):
  return da.DualAttentionConfig(vocab_size=30, image_dim=D1, topic_dim=K, variant=variant,
                                embed_dim=8, hidden_dim=8, attn_dim=4, out_dim=8, **kw)


@pytest.mark.parametrize("variant", da.VARIANTS)
def test_variants_shapes_finite_and_all_padding(variant):
  # Eager (no jit): each variant would otherwise compile twice; the shapes are tiny.
  model, variables = models.init(_da_config(variant), 0)
  batch = _batch()

  def loss(p, batch_mask):
    out = model.apply(p, batch, state=variables.state)
    return losses.dual_attention_loss(out, batch.label, batch_mask, variant), out

  if variant not in ("late_fusion", "ccr", "dual_attention"):  # gradients on the three loss forms
    value, out = loss(variables.params, jnp.ones(B, bool))
    chex.assert_shape(out["logit"], (B,))
    chex.assert_tree_all_finite((value, out))
    return
  (value, out), grads = jax.value_and_grad(loss, has_aux=True)(variables.params,
                                                               jnp.ones(B, bool))
  chex.assert_shape(out["logit"], (B,))
  chex.assert_shape(out["attention"], (B, T))
  chex.assert_tree_all_finite((value, out, grads))
  if variant == "dual_attention":
    sums = np.asarray(out["attention"]).sum(1)
    np.testing.assert_allclose(sums[np.asarray(batch.token_mask).any(1)], 1, rtol=1e-5)
    assert (np.asarray(out["attention"])[~np.asarray(batch.token_mask)] == 0).all()
  (value0, _), grads0 = jax.value_and_grad(loss, has_aux=True)(variables.params,
                                                               jnp.zeros(B, bool))
  assert float(value0) == 0.0
  chex.assert_tree_all_finite(grads0)


def test_configs_check_their_fields():
  with pytest.raises(ConfigError, match="variant"):
    da.DualAttentionConfig(variant="nope")
  with pytest.raises(ConfigError, match="vocab_size"):
    models.init(dataclasses.replace(_da_config(), vocab_size=0), 0)
  with pytest.raises(ConfigError, match="hidden"):
    FusionDNNConfig(hidden=())
  with pytest.raises(ConfigError, match="numeric_dim"):
    models.init(FusionDNNConfig(), 0)
  with pytest.raises(ValueError, match="num_features"):  # ConfigError is a ValueError
    SMPConv1dConfig(num_features=4)


def test_bce_matches_reference(strict_dtypes):
  rng = np.random.default_rng(4)
  logit = rng.normal(size=9).astype(np.float32) * 3
  y = rng.integers(0, 2, 9).astype(np.float32)
  mask = rng.random(9) < 0.7
  got = losses.dual_attention_loss({"logit": jnp.asarray(logit)}, jnp.asarray(y),
                                   jnp.asarray(mask), "dual_attention")
  p = _sigmoid(logit.astype(np.float64))
  ref = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  np.testing.assert_allclose(got, ref[mask].mean(), rtol=1e-5)


def test_fusion_batchnorm_state_is_explicit():
  model, variables = models.init(FusionDNNConfig(image_dim=D1, text_dim=4, numeric_dim=2,
                                                 hidden=(8, 8, 8, 8)), 0)
  batch = _batch(text=4, numeric=2)
  params = variables.params
  _, new_state = model.apply_train(params, variables.state, batch, None)
  # Running mean after one batch: momentum 0.9 -> 0.1 * batch mean of the first pre-activation.
  x = np.concatenate([np.asarray(a) for a in (batch.image, batch.text, batch.numeric)], 1)
  z = x @ _np(params["dense"][0]["kernel"])
  assert "bias" not in params["dense"][0]  # redundant before BatchNorm (fusion_dnn docstring)
  np.testing.assert_allclose(new_state["norm"][0]["mean"][...], 0.1 * z.mean(0), rtol=1e-4,
                             atol=1e-5)
  out_eval = model.apply(params, batch, state=new_state)
  # Evaluation leaves the statistics alone and does not depend on the other rows.
  part = jax.tree.map(lambda a: a[:3], batch)
  np.testing.assert_allclose(out_eval[:3], model.apply(params, part, state=new_state),
                             rtol=1e-5)
  assert not np.allclose(out_eval, model.apply(params, batch, state=variables.state))


def test_smp_conv1d_dropout_key():
  model, variables = models.init(SMPConv1dConfig(num_features=15), 0)
  batch = _batch(features=15)
  apply = lambda key=None: model.apply(variables.params, batch, key=key)  # noqa: E731
  assert apply().shape == (B,)
  np.testing.assert_allclose(apply(), apply())
  np.testing.assert_allclose(apply(jax.random.key(1)), apply(jax.random.key(1)))
  assert not np.allclose(apply(jax.random.key(1)), apply(jax.random.key(2)))
  assert not np.allclose(apply(jax.random.key(1)), apply())


def test_train_step_traces_once():
  from popdiff_jax.projects.dual_attention.experiment import loss_fn

  model, variables = models.init(_da_config(), 0)
  tx = optax.adam(1e-2)
  step = compile_train_step(make_train_step(model, loss_fn("dual_attention"), tx))
  batch = _batch()
  state = create_train_state(variables.params, tx, extra=variables.state)
  history = []
  for i in range(5):
    state, m = step(state, batch, jax.random.key(i))
    history.append(float(m["loss"]))
    assert 0.0 <= float(m["accuracy"]) <= 1.0
  assert step._cache_size() == 1  # one static shape, one trace
  assert history[-1] < history[0]
