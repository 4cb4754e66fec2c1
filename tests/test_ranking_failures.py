"""Ranking metrics never reward failure: NaN or +inf scores give NaN Hits@k and MAP@k (dense and
streamed), while -inf (a masked user) stays a legitimate score."""

import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax.metrics.ranking import lean_ranking_sums, next_user_sums, ranking_sums
from popdiff_jax.types import TERMINATE

U = 11


def _batch():
  users = np.array([[4, 7, 2, TERMINATE, 0], [5, 3, TERMINATE, 0, 0]], np.int32)
  return jnp.asarray(users), jnp.asarray(users > 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_scores_give_nan_not_hits(bad):
  users, mask = _batch()
  logits = np.random.default_rng(0).normal(size=(2, 5, U)).astype(np.float32)
  clean = next_user_sums(jnp.asarray(logits), users, mask)
  assert all(np.isfinite(float(v)) for v in clean.values())
  broken = logits.copy()
  broken[0, 1, 9] = bad  # one allowed user of one real step
  sums = next_user_sums(jnp.asarray(broken), users, mask)
  for k in ("hits@10", "map@10"):
    assert np.isnan(float(sums[k])), k
  everything = np.full_like(logits, np.nan)  # a diverged model: NaN everywhere
  sums = next_user_sums(jnp.asarray(everything), users, mask)
  assert np.isnan(float(sums["hits@10"])) and float(sums["count"]) > 0


def test_nan_in_a_padded_step_is_not_scored():
  users, mask = _batch()
  logits = np.random.default_rng(1).normal(size=(2, 5, U)).astype(np.float32)
  logits[1, 4] = np.nan  # position 4 of row 1 is padding
  targets = jnp.concatenate([users[:, 1:], jnp.zeros_like(users[:, :1])], 1)
  tmask = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], 1) & mask
  sums = ranking_sums(jnp.asarray(logits), targets, tmask, (10,))
  assert np.isfinite(float(sums["hits@10"]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_streamed_metrics_agree(bad):
  users, mask = _batch()
  rng = np.random.default_rng(2)
  feats = rng.normal(size=(2, 5, 3)).astype(np.float32)
  w = rng.normal(size=(3, U)).astype(np.float32)
  w[:, 8] = bad
  sums = lean_ranking_sums(jnp.asarray(feats), jnp.asarray(w), None, users, mask, (10,), 4)
  assert np.isnan(float(sums["hits@10"])) and np.isnan(float(sums["map@10"]))


def test_users_only_and_with_terminate_by_hand():
  """One cascade (4, 7) then Terminate, U = 11. Step 0's target is 7, scored below user 9 and
  Terminate: 3rd with Terminate, 2nd among users. Step 1's target is Terminate, 2nd. Users only:
  one target (7), Terminate no candidate; with Terminate: two targets."""
  users = jnp.asarray([[4, 7, TERMINATE, 0]], jnp.int32)
  mask = users > 0
  z = np.zeros((1, 4, U), np.float32)
  z[0, 0] = -5.0
  z[0, 0, 9], z[0, 0, TERMINATE], z[0, 0, 7] = 3.0, 2.0, 1.0   # 7 ranks 3rd with T, 2nd without
  z[0, 1] = -5.0
  z[0, 1, TERMINATE], z[0, 1, 5] = 0.5, 1.0                      # Terminate ranks 2nd
  sums = next_user_sums(jnp.asarray(z), users, mask, (1, 2))
  got = {k: float(v) for k, v in sums.items()}
  assert got["count"] == 2 and got["count[hits@1]"] == 1
  assert got["hits@2"] == 1.0 and got["hits@1"] == 0.0
  np.testing.assert_allclose(got["map@2"], 0.5, rtol=1e-5)  # the harmonic numbers via digamma
  assert got["hits@2_with_terminate"] == 1.0  # step 0: rank 3 (miss); step 1: rank 2 (hit)
  assert got["hits@1_with_terminate"] == 0.0
  np.testing.assert_allclose(got["map@2_with_terminate"], 0.5, rtol=1e-5)  # 0 + 1/2
  from popdiff_jax.training.steps import evaluate
  means = evaluate(lambda p, s, b: sums, None, None, [None])
  assert means["hits@2"] == 1.0 and means["hits@2_with_terminate"] == 0.5
