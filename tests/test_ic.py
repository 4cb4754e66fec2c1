"""Independent Cascade engines: exactness against enumerated live-edge worlds, keys, bad input."""

import jax
import numpy as np
import pytest

from popdiff_jax._errors import DataError
from popdiff_jax.simulate.graph import build_graph, random_graph
from popdiff_jax.simulate.ic import exact_ic, simulate_ic


def _small_graph(seed, n=7, e=11):
  """Random loop-free simple digraph; probabilities on a 1/64 grid (exact under the 2^-31 grid)."""
  rng = np.random.default_rng(seed)
  pairs = [(u, v) for u in range(n) for v in range(n) if u != v]
  idx = rng.choice(len(pairs), size=e, replace=False)
  edges = np.array([pairs[i] for i in idx])
  probs = rng.integers(4, 61, size=e) / 64.0
  return build_graph(edges, probs, n)[0]


_G = _small_graph(0)


@pytest.mark.parametrize("seed,method", [(0, "dense"), (1, "dense"), (2, "frontier"), (3, "frontier"),
                                         (4, "auto")])
def test_spread_and_activation_match_exact_enumeration(seed, method):
  g = _G
  seeds = np.array([seed % 7, (seed + 3) % 7])
  exp_spread, exp_act, pmf = exact_ic(g, seeds)
  s = 32 * 512
  res = simulate_ic(g, seeds, jax.random.key(seed), s, method=method)
  spread = np.asarray(res.spread[0])
  assert spread.shape == (s,)
  sd = np.sqrt(np.sum(pmf * (np.arange(len(pmf)) - exp_spread) ** 2))
  assert abs(spread.mean() - exp_spread) < 5 * sd / np.sqrt(s) + 1e-9
  act = np.asarray(res.activation_prob[0])
  tol = 5 * np.sqrt(exp_act * (1 - exp_act) / s) + 1e-6
  np.testing.assert_array_less(np.abs(act - exp_act), tol)
  # The whole spread distribution, not only its mean: chi-square against the exact pmf.
  counts = np.bincount(spread, minlength=len(pmf))
  keep = pmf * s >= 5
  chi2 = np.sum((counts[keep] - s * pmf[keep]) ** 2 / (s * pmf[keep]))
  from scipy import stats
  assert stats.chi2.sf(chi2, max(keep.sum() - 1, 1)) > 1e-4


def test_batch_of_seed_sets_and_partial_words():
  g = _G
  seeds = np.array([[0, -1], [2, 4]])
  s = 3000  # not a multiple of 32: the extra bits are ignored
  res = simulate_ic(g, seeds, jax.random.key(3), s)
  assert res.spread.shape == (2, s) and res.activation_prob.shape == (2, 7)
  for b, row in enumerate(seeds):
    exp_spread, exp_act, pmf = exact_ic(g, row)
    sd = np.sqrt(np.sum(pmf * (np.arange(len(pmf)) - exp_spread) ** 2))
    assert abs(float(res.spread[b].mean()) - exp_spread) < 5 * sd / np.sqrt(s)
    assert np.all(np.asarray(res.activation_prob[b])[row[row >= 0]] == 1.0)


def test_same_key_same_samples_and_chunking_invariance():
  g = _G
  seeds = np.array([1, 4])
  a = simulate_ic(g, seeds, jax.random.key(7), 32 * 512)
  b = simulate_ic(g, seeds, jax.random.key(7), 32 * 512, words_per_chunk=100)
  c = simulate_ic(g, seeds, jax.random.key(8), 32 * 512)
  np.testing.assert_array_equal(np.asarray(a.spread), np.asarray(b.spread))
  np.testing.assert_array_equal(np.asarray(a.activation_prob), np.asarray(b.activation_prob))
  assert not np.array_equal(np.asarray(a.spread), np.asarray(c.spread))


def test_probability_one_and_zero_edges():
  edges = np.array([[0, 1], [1, 2], [2, 3]])
  g, _ = build_graph(edges, np.array([1.0, 1.0, 0.0]), 4)
  res = simulate_ic(g, [0], jax.random.key(0), 64)
  np.testing.assert_array_equal(np.asarray(res.spread), 3)
  np.testing.assert_allclose(np.asarray(res.activation_prob[0]), [1, 1, 1, 0])


def test_max_active_caps_runs_at_round_granularity():
  # A path 0 -> 1 -> 2 -> 3 -> 4 with p = 1: the cap stops the run after the round reaching it.
  edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
  g, _ = build_graph(edges, 1.0, 5)
  res = simulate_ic(g, [[0], [0]], jax.random.key(0), 32, max_active=np.array([3, 5]))
  np.testing.assert_array_equal(np.asarray(res.spread[0]), 3)
  np.testing.assert_array_equal(np.asarray(res.spread[1]), 5)
  res = simulate_ic(g, [0], jax.random.key(0), 32, max_rounds=2)
  np.testing.assert_array_equal(np.asarray(res.spread), 3)


def test_graph_handling_of_loops_and_duplicates():
  edges = np.array([[0, 1], [1, 1], [0, 1], [1, 2]])
  g, rep = build_graph(edges, np.array([0.5, 0.3, 0.5, 0.2]), 3)
  assert rep.self_loops == 1 and rep.merged_duplicates == 1 and g.num_edges == 2
  np.testing.assert_allclose(g.probs, [0.75, 0.2], rtol=1e-6)  # 1 - (1 - .5)(1 - .5)
  with pytest.raises(DataError, match="self-loop"):
    build_graph(edges, 0.5, 3, self_loops="error")
  with pytest.raises(DataError, match="duplicate"):
    build_graph(edges[[0, 2, 3]], 0.5, 3, duplicates="error")


@pytest.mark.parametrize("edges,probs,n,match", [
    ([[0, 3]], [0.5], 3, "outside"),
    ([[-1, 0]], [0.5], 3, "outside"),
    ([[0, 1]], [1.5], 3, r"\[0, 1\]"),
    ([[0, 1]], [-0.1], 3, r"\[0, 1\]"),
    ([[0, 1]], [np.nan], 3, r"\[0, 1\]"),
    ([[0, 1, 2]], [0.5], 3, "shape"),
    ([[0, 1]], [0.5, 0.5], 3, "shape"),
])
def test_bad_graphs_raise(edges, probs, n, match):
  with pytest.raises(DataError, match=match):
    build_graph(np.array(edges), np.array(probs), n)


def test_bad_seeds_raise():
  g = _G
  with pytest.raises(DataError, match="outside"):
    simulate_ic(g, [7], jax.random.key(0), 32)
  with pytest.raises(DataError, match="outside"):
    simulate_ic(g, [-3], jax.random.key(0), 32)
  with pytest.raises(DataError, match="empty"):
    simulate_ic(g, np.zeros(0, np.int32), jax.random.key(0), 32)
  with pytest.raises(DataError, match="empty"):
    simulate_ic(g, [[0, 1], [-1, -1]], jax.random.key(0), 32)
  with pytest.raises(DataError, match="num_sims"):
    simulate_ic(g, [0], jax.random.key(0), 0)


def test_bucketed_layout_covers_every_edge_once():
  g, _ = random_graph(500, 5000, 0.05, seed=3)
  seen = []
  pos0 = 0
  for b in g.buckets:
    for i in range(b.src.shape[0]):
      for j in range(b.src.shape[1]):
        if b.prob[i, j] > 0:
          e = b.edge[i, j]
          assert g.rank[g.receivers[e]] == pos0 + i and g.rank[g.senders[e]] == b.src[i, j]
          seen.append(e)
    pos0 += b.src.shape[0]
  assert sorted(seen) == list(range(g.num_edges))
  assert g.padded_edges <= 1.25 * g.num_edges + 500


def test_frontier_engine_gives_identical_samples():
  # Both engines hash (key, edge id, run), so the same key gives the same live-edge worlds; the
  # frontier's batch sizes, its tail tier and its hand-over to dense rounds change nothing.
  g, _ = random_graph(150, 900, 0.12, seed=4)
  seeds = np.array([[0, 1, 2], [5, -1, -1]])
  a = simulate_ic(g, seeds, jax.random.key(3), 80, method="dense")
  tests = []
  for caps in [{"frontier_cap": 128, "item_cap": 64}, {"frontier_cap": 7, "item_cap": 30,
                                                       "queue_cap": 70}]:
    b = simulate_ic(g, seeds, jax.random.key(3), 80, method="frontier", **caps)
    np.testing.assert_array_equal(np.asarray(a.spread), np.asarray(b.spread))
    np.testing.assert_array_equal(np.asarray(a.activation_prob), np.asarray(b.activation_prob))
    tests.append(float(b.edge_tests))
  assert tests[1] > 10 * tests[0]  # the second queue overflowed: dense rounds finished the runs
  with pytest.raises(ValueError, match="dense"):
    simulate_ic(g, [0], jax.random.key(0), 32, method="frontier", max_rounds=2)


def test_frontier_dedupes_many_parents_of_one_child():
  # 50 seeds all point at node 50 (p = 1), which starts a p = 0.5 path: one batch holds 50 copies of
  # every (50, run); a missed duplicate would double-count or re-expand.
  edges = [(i, 50) for i in range(50)] + [(50, 51), (51, 52), (52, 50)] + \
      [(i, i + 1) for i in range(52, 60)]
  g, _ = build_graph(np.array(edges), np.array([1.0] * 50 + [0.5] * 11), 61)
  a = simulate_ic(g, np.arange(50), jax.random.key(1), 1000, method="dense")
  b = simulate_ic(g, np.arange(50), jax.random.key(1), 1000, method="frontier", item_cap=64,
                  frontier_cap=32)
  np.testing.assert_array_equal(np.asarray(a.spread), np.asarray(b.spread))
  assert np.all(np.asarray(b.spread) >= 51)


def test_auto_picks_frontier_below_and_dense_above_criticality():
  from popdiff_jax.simulate.ic import choose_method, estimate_costs, resolve_method
  low, _ = random_graph(2000, 20000, 0.02, seed=1)  # R ~ 0.2
  high, _ = random_graph(2000, 20000, 0.6, seed=1)  # R ~ 6
  for plat in ("cpu", "gpu"):
    assert choose_method(low, 1000, num_seeds=10, platform=plat) == "frontier"
    assert choose_method(high, 1000, num_seeds=10, platform=plat) == "dense"
  est = estimate_costs(low, 1000, 10)
  assert 0.15 < est["branching_factor"] < 0.25 and est["frontier_s"] < est["dense_s"]
  assert resolve_method(low, 1000, (1, 10), max_active=[3]) == "dense"
