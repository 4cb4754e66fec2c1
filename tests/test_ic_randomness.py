"""The counter-based edge tests of the IC engines: marginals, independence across edges and runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from popdiff_jax.simulate.graph import build_graph
from popdiff_jax.simulate.ic import (_edge_label, _keys, _live, _run_label, _threshold,
                                     simulate_ic)


def _grid(key, edges, runs, p):
  """live [E, R] for edge ids `edges` and runs `runs`, all with probability p."""
  k0, k1 = _keys(key)
  a = _edge_label(jnp.asarray(edges, jnp.int32), k0)[:, None]
  b = _run_label(jnp.asarray(runs, jnp.int32), k1)[None, :]
  return np.asarray(_live(a, b, _threshold(jnp.full((len(edges), 1), p, jnp.float32))))


def _binom_ok(k, n, p, z=5.0):
  return abs(k - n * p) <= z * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_single_edge_frequencies_match_p(p):
  live = _grid(jax.random.key(0), np.arange(64), np.arange(20000), p)
  for row in live:  # every edge on its own, 20k runs
    assert _binom_ok(row.sum(), row.size, p)
  # And over all 64 x 20k tests, a much tighter check of the quantised probability.
  assert _binom_ok(live.sum(), live.size, p, z=4.0)


def _pair_chi2(x, y):
  """p-value of independence of two bool arrays (2 x 2 contingency table)."""
  t = np.array([[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]])
  return stats.chi2_contingency(t, correction=False)[1]


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_pairs_are_independent_across_edges_and_runs(p):
  live = _grid(jax.random.key(1), np.arange(256), np.arange(4096), p)
  pvals = []
  for lag in (1, 2, 31, 32, 33, 1024):  # runs in one word, neighbouring words, far apart
    pvals.append(_pair_chi2(live[:, :-lag].ravel(), live[:, lag:].ravel()))
  for lag in (1, 2, 7, 128):  # neighbouring edge ids (a node's edges have close ids)
    pvals.append(_pair_chi2(live[:-lag].ravel(), live[lag:].ravel()))
  # Ten tests at once: a Bonferroni-corrected threshold.
  assert min(pvals) > 1e-3 / len(pvals), pvals
  # Pair frequencies themselves match p^2.
  both = live[:, :-1] & live[:, 1:]
  assert _binom_ok(both.sum(), both.size, p * p)


def test_keys_give_unrelated_streams():
  a = _grid(jax.random.key(2), np.arange(64), np.arange(8192), 0.3)
  b = _grid(jax.random.key(3), np.arange(64), np.arange(8192), 0.3)
  assert _pair_chi2(a.ravel(), b.ravel()) > 1e-4
  assert not np.array_equal(a, b)


@pytest.mark.parametrize("method", ["dense", "frontier"])
def test_engine_star_graph_is_binomial_and_runs_are_independent(method):
  # Seed 0 with K out-edges of probability p: node i is active iff edge (0, i) is live, so the
  # activation frequencies are single-edge frequencies, spread - 1 ~ Binomial(K, p) when the
  # edges of a run are independent, and consecutive runs' spreads are uncorrelated.
  k, p, s = 24, 0.2, 32 * 256
  g, _ = build_graph(np.array([(0, i) for i in range(1, k + 1)]), p, k + 1)
  res = simulate_ic(g, [0], jax.random.key(5), s, method=method)
  act = np.asarray(res.activation_prob[0])[1:]
  tol = 5 * np.sqrt(p * (1 - p) / s)
  assert np.all(np.abs(act - p) < tol)
  live = np.asarray(res.spread[0]) - 1
  counts = np.bincount(live, minlength=k + 1)
  pmf = stats.binom.pmf(np.arange(k + 1), k, p)
  keep = pmf * s >= 5
  chi2 = np.sum((counts[keep] - s * pmf[keep]) ** 2 / (s * pmf[keep]))
  assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
  for lag in (1, 32):
    r = np.corrcoef(live[:-lag], live[lag:])[0, 1]
    assert abs(r) < 5 / np.sqrt(s)
