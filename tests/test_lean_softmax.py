"""The streamed (lean) loss and metrics equal the dense ones (losses, metrics.ranking)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax import models
from popdiff_jax.losses import lean_next_user_nll, masked_nll, next_user_nll
from popdiff_jax.metrics.ranking import lean_ranking_sums, next_user_sums
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.nn.masking import mask_infected, shift_targets
from popdiff_jax.nn.streaming_softmax import auto_chunk, masked_logsumexp, target_scores
from popdiff_jax.projects.ndm.configs import TrainConfig
from popdiff_jax.projects.ndm.experiment import loss_fn
from popdiff_jax.types import TERMINATE, CascadeBatch

U = 37  # prime: no chunk size below divides it


def _cascades(rng, b=6, length=9, num_items=U, repeats=False):
  """Cascades of distinct users (optionally with repeats), Terminate at the end, then padding."""
  users = np.zeros((b, length), np.int32)
  mask = np.zeros((b, length), bool)
  for r in range(b):
    n = int(rng.integers(1, length))  # users before Terminate
    row = rng.choice(np.arange(2, num_items), size=n, replace=repeats)
    users[r, :n] = row
    if r % 3 == 0:  # a cascade cut at the length limit: no Terminate
      n = length
      users[r] = rng.choice(np.arange(2, num_items), size=length, replace=repeats)
    else:
      users[r, n] = TERMINATE
      n += 1
    mask[r, :n] = True
  users[-1] = users[0]  # repeated-looking rows
  mask[-1] = mask[0]
  users[-2] = 0  # an all-padding row
  mask[-2] = False
  return jnp.asarray(users), jnp.asarray(mask)


def _params(rng, b=6, length=9, f=5, num_items=U, integer=False):
  if integer:  # small integers: exact float sums, so many exact ties
    feats = rng.integers(-2, 3, (b, length, f)).astype(np.float32)
    w = rng.integers(-1, 2, (f, num_items)).astype(np.float32)
    bias = rng.integers(-1, 2, (num_items,)).astype(np.float32)
  else:
    feats = rng.normal(size=(b, length, f)).astype(np.float32)
    w = rng.normal(size=(f, num_items)).astype(np.float32)
    bias = rng.normal(size=(num_items,)).astype(np.float32)
  return jnp.asarray(feats), jnp.asarray(w), jnp.asarray(bias)


def _dense_step_nll(feats, w, bias, users, mask):
  logits = feats @ w + bias[None, None, :]
  targets, target_mask = shift_targets(users, mask)
  logp = jax.nn.log_softmax(mask_infected(logits, users, mask), -1)
  picked = jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
  return jnp.where(target_mask, -picked, 0.0)


@pytest.mark.parametrize("chunk", [7, 64])
def test_nll_equals_dense(strict_dtypes, chunk):
  rng = np.random.default_rng(chunk)
  users, mask = _cascades(rng)
  feats, w, bias = _params(rng)
  lean, n_lean = jax.jit(lean_next_user_nll, static_argnums=5)(feats, w, bias, users, mask, chunk)
  dense, n_dense = next_user_nll(feats @ w + bias[None, None, :], users, mask)
  assert float(n_lean) == float(n_dense) > 0
  np.testing.assert_allclose(lean, dense, rtol=1e-5)


def test_logsumexp_equals_dense_per_step(strict_dtypes):
  rng = np.random.default_rng(1)
  users, mask = _cascades(rng)
  feats, w, bias = _params(rng)
  lean = jax.jit(masked_logsumexp, static_argnums=5)(feats, w, bias, users, mask, 5)
  dense = jax.nn.logsumexp(mask_infected(feats @ w + bias[None, None, :], users, mask), -1)
  np.testing.assert_allclose(lean, dense, rtol=1e-5, atol=1e-5)


def test_repeated_users_give_the_dense_infinities(strict_dtypes):
  """A target already infected is impossible: infinite NLL in both versions, at the same steps."""
  rng = np.random.default_rng(2)
  users, mask = _cascades(rng, num_items=8, repeats=True)
  feats, w, bias = _params(rng, num_items=8)
  dense = _dense_step_nll(feats, w, bias, users, mask)
  assert np.isinf(np.asarray(dense)).any()
  t, _, tm = jax.jit(target_scores)(feats, w, bias, users, mask)
  lse = jax.jit(masked_logsumexp, static_argnums=5)(feats, w, bias, users, mask, 3)
  lean = jnp.where(tm, lse - t, 0.0)
  np.testing.assert_allclose(lean, dense, rtol=1e-5)


@pytest.mark.parametrize("chunk", [4])
def test_gradients_equal_dense(strict_dtypes, chunk):
  rng = np.random.default_rng(3)
  users, mask = _cascades(rng)
  feats, w, bias = _params(rng)
  lean = jax.grad(lambda *p: lean_next_user_nll(*p, users, mask, chunk)[0], argnums=(0, 1, 2))
  dense = jax.grad(lambda f, w_, b: next_user_nll(f @ w_ + b[None, None, :], users, mask)[0],
                   argnums=(0, 1, 2))
  g_lean = jax.jit(lean)(feats, w, bias)
  g_dense = dense(feats, w, bias)
  for a, b in zip(g_lean, g_dense):
    assert float(jnp.abs(b).max()) > 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_all_padding_batch_is_finite(strict_dtypes):
  rng = np.random.default_rng(4)
  users = jnp.zeros((3, 8), jnp.int32)
  mask = jnp.zeros((3, 8), bool)
  feats, w, bias = _params(rng, b=3, length=8)
  loss, count = jax.jit(lean_next_user_nll, static_argnums=5)(feats, w, bias, users, mask, 6)
  assert float(loss) == 0.0 and float(count) == 0.0
  grads = jax.jit(jax.grad(lambda *p: lean_next_user_nll(*p, users, mask, 6)[0],
                           argnums=(0, 1, 2)))(feats, w, bias)
  for g in grads:
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.parametrize("chunk,integer", [(3, False), (U, True), (10, True)])
def test_ranking_sums_equal_dense_ties_included(strict_dtypes, integer, chunk):
  rng = np.random.default_rng(5 + chunk)
  users, mask = _cascades(rng, b=8, length=10, repeats=integer)
  feats, w, bias = _params(rng, b=8, length=10, integer=integer)
  ks = (1, 3, 10)
  lean = jax.jit(lean_ranking_sums, static_argnums=(5, 6))(feats, w, bias, users, mask, ks, chunk)
  dense = next_user_sums(feats @ w + bias[None, None, :], users, mask, ks)
  assert set(lean) == set(dense) and "hits@3_with_terminate" in dense
  for k in dense:
    np.testing.assert_allclose(lean[k], dense[k], rtol=1e-5, err_msg=k)


def test_ranking_without_bias(strict_dtypes):
  rng = np.random.default_rng(6)
  users, mask = _cascades(rng)
  feats, w, _ = _params(rng)
  lean = jax.jit(lean_ranking_sums, static_argnums=(5, 6))(feats, w, None, users, mask, (5,), 8)
  dense = next_user_sums(feats @ w, users, mask, (5,))
  for k in dense:
    np.testing.assert_allclose(lean[k], dense[k], rtol=1e-5, err_msg=k)


@pytest.mark.parametrize("f_init", [1])  # F_init = 0 drops the folded term: a subset of this path
def test_ndm_output_features_reproduce_call(strict_dtypes, f_init):
  rng = np.random.default_rng(7)
  users, mask = _cascades(rng)
  model, v = models.init(NDMConfig(num_items=U, dim=8, num_heads=2, window=3, f_init=f_init), 0)
  # No dropout key: the features and the scores share every op before the read-out (dropout
  # included), and threefry's CPU compile would dominate this file's run time.
  batch = CascadeBatch(users, jnp.zeros(users.shape, jnp.float32), mask)
  dense_loss = loss_fn(TrainConfig(), U)
  lean_loss = loss_fn(TrainConfig(loss="lean", lean_chunk=10), U)

  @jax.jit
  def both(p):
    feats = model.apply(p, batch, method="output_features")
    logits = model.apply(p, batch)
    # The library's training loss, and the lean one (gradients through the model follow from the
    # features reproducing the scores and from test_gradients_equal_dense).
    return (*feats, logits, dense_loss(logits, batch)[0], lean_loss(feats, batch)[0])

  feats, w, bias, logits, dense, lean = both(v.params)
  assert feats.shape[-1] == (3 + f_init) * 8
  np.testing.assert_allclose(feats @ w + bias[None, None, :], logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(lean, dense, rtol=1e-5)


def test_lstm_output_features_reproduce_call(strict_dtypes):
  rng = np.random.default_rng(8)
  users, mask = _cascades(rng)
  model, v = models.init(LSTMConfig(num_items=U, dim=8), 0)
  batch = CascadeBatch(users, jnp.zeros(users.shape, jnp.float32), mask)
  feats, w, bias, logits = jax.jit(lambda p: (
      *model.apply(p, batch, method="output_features"), model.apply(p, batch)))(v.params)
  np.testing.assert_allclose(feats @ w + bias[None, None, :], logits, rtol=1e-5, atol=1e-5)
  lean, _ = jax.jit(lean_next_user_nll, static_argnums=5)(feats, w, bias, users, mask, 9)
  dense, _ = next_user_nll(logits, users, mask)
  np.testing.assert_allclose(lean, dense, rtol=1e-5)


def test_rejects_bad_chunk():
  rng = np.random.default_rng(9)
  users, mask = _cascades(rng)
  feats, w, bias = _params(rng)
  with pytest.raises(ValueError, match="chunk"):
    lean_next_user_nll(feats, w, bias, users, mask, 0)


@pytest.mark.parametrize("b,length,u", [(32, 201, 12629), (32, 8, 1_000_002), (32, 501, 1_000_002),
                                        (6, 9, 37)])
def test_auto_chunk_covers_the_users_in_balanced_blocks(b, length, u):
  c = auto_chunk(b, length, u)
  n = -(-u // c)
  assert 1 <= c <= u and n * c >= u and (n - 1) * c < u
  assert c == u or b * length * c <= 2 ** 26 + b * length * 128
