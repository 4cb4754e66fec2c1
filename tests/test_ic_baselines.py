"""IC baselines: candidate edges, likelihoods, and recovery of a planted graph."""

import jax
import numpy as np
import pytest

from popdiff_jax._errors import DataError
from popdiff_jax.data.cascades import Cascade
from popdiff_jax.baselines import ic as icb

U = 14  # 0 = padding, 1 = Terminate, users 2..13
PLANTED = np.array([[2, 3], [3, 4], [4, 5], [2, 6], [6, 7], [7, 8], [9, 10], [10, 11], [11, 12],
                    [12, 13], [5, 9], [8, 2]])


def _planted_cascades(n, seed, p=0.7):
  """Continuous-time IC on PLANTED (Exp(1) delays), cascades in infection order."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    t = {int(rng.integers(2, U)): 0.0}
    frontier = list(t)
    while frontier:
      u = frontier.pop()
      for a, b in PLANTED:
        if a == u and rng.random() < p:
          tb = t[u] + rng.exponential(1.0)
          if b not in t or tb < t[b]:
            t[b] = tb
            frontier.append(b)
    order = sorted(t, key=t.get)
    out.append(Cascade(np.array(order, np.int32), np.array([t[k] for k in order])))
  return out


_TRAIN = _planted_cascades(240, 0)
_TEST = _planted_cascades(40, 1)


def test_candidate_edges_are_ordered_pairs_with_counts():
  cas = [np.array([2, 3, 4]), np.array([3, 4]), np.array([5])]
  edges, counts = icb.candidate_edges(cas, 6)
  got = {tuple(e): c for e, c in zip(edges.tolist(), counts.tolist())}
  assert got == {(2, 3): 1, (2, 4): 1, (3, 4): 2}
  assert tuple(edges[0]) == (3, 4)  # most frequent first
  edges, _ = icb.candidate_edges(cas, 6, max_lag=1, max_pairs=1)
  assert edges.tolist() == [[3, 4]]
  with pytest.raises(DataError):
    icb.candidate_edges([np.array([2, 9])], 6)


def _planted_vs_other(model):
  planted = {tuple(e) for e in PLANTED.tolist()}
  is_p = np.array([tuple(e) in planted for e in model.edges.tolist()])
  assert is_p.any() and (~is_p).any()
  return model.probs[is_p].mean(), model.probs[~is_p].mean()


@pytest.mark.parametrize("fit", [icb.fit_embedded_ic, icb.fit_netrate])
def test_baseline_recovers_planted_edges_and_evaluates(fit):
  model = fit(_TRAIN, U, jax.random.key(0), steps=150, batch_size=64)
  assert np.all(np.isfinite(model.losses)) and model.losses[-10:].mean() < model.losses[:10].mean()
  assert np.all((model.probs >= 0) & (model.probs <= 1))
  planted, other = _planted_vs_other(model)
  assert planted > 2 * other, (planted, other)
  f1, probs = icb.evaluate_ic_baseline(model, _TEST, U, jax.random.key(1), num_sims=256)
  assert probs.shape == (len(_TEST), U)
  # The learned probabilities beat the same edges with their probabilities shuffled.
  rng = np.random.default_rng(0)
  shuffled = icb.FittedIC(model.edges, rng.permutation(model.probs), model.losses)
  f1_s, _ = icb.evaluate_ic_baseline(shuffled, _TEST, U, jax.random.key(1), num_sims=256)
  assert float(f1.macro_f1) > float(f1_s.macro_f1)
  assert 0 < float(f1.micro_f1) <= 1
  err, pred, true = icb.ic_size_msle(model, _TEST, U, jax.random.key(2), num_sims=64)
  assert np.isfinite(float(err)) and pred.shape == true.shape
  assert np.all(np.asarray(pred) >= np.minimum(true, 5) - 1e-6)  # the given users are always active


def test_netrate_likelihood_matches_numpy_on_one_cascade():
  rng = np.random.default_rng(3)
  cas = [Cascade(np.array([2, 4, 3], np.int32), np.array([0.0, 0.5, 2.0]))]
  batch = icb.make_batch(cas, max_len=4, time_scale=1.0)
  alpha = rng.random((5, 5)).astype(np.float32)
  got = float(icb.netrate_nll(alpha, batch))
  t = {2: 0.0, 4: 0.5, 3: 2.0}
  ll = 0.0
  for v in (4, 3):
    prev = [u for u in t if t[u] < t[v]]
    ll += np.log(sum(alpha[u, v] for u in prev) + 1e-8) - sum(alpha[u, v] * (t[v] - t[u]) for u in prev)
  # Users 0 and 1 are reserved (never scored); every real user (2..4) is infected, so there is no
  # survival term for users outside the cascade.
  np.testing.assert_allclose(got, -ll, rtol=1e-5)


def test_embedded_ic_likelihood_matches_numpy_on_one_cascade():
  params = icb.init_embedded_ic(jax.random.key(2), 6, dim=3)
  params = params._replace(bias=params.bias * 0.1)
  cas = [Cascade(np.array([2, 4, 3], np.int32), np.zeros(3))]
  got = float(icb.embedded_ic_nll(params, icb.make_batch(cas, max_len=5)))
  z, b, w = (np.asarray(x, np.float64) for x in params)
  p = 1 / (1 + np.exp(b[:, None] + ((z[:, None, :] - w[None, :, :]) ** 2).sum(-1)))
  d = [2, 4, 3]
  ll = sum(np.log(1 - np.prod([1 - p[d[i], d[j]] for i in range(j)])) for j in (1, 2))
  ll += sum(np.log(1 - p[u, v]) for u in d for v in (5,))  # user 5 is the only one not in D
  np.testing.assert_allclose(got, -ll, rtol=1e-4)
