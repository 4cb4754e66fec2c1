"""Monte Carlo sampler: incremental decoding equals the full forward pass; runs obey the rules."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax import models
from popdiff_jax.data.cascades import Cascade
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.simulate.sampler import simulate, simulate_dataset
from popdiff_jax.types import PAD, TERMINATE, CascadeBatch

U = 19


def _random_model(config, seed):
  """``(model, variables)`` with random values in every parameter."""
  model, v = models.init(config, seed)
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda l: jnp.asarray(rng.normal(scale=0.4, size=l.shape), l.dtype),
                        v.params)
  return model, models.Variables(params, v.state)


def _ndm(**kw):
  return NDMConfig(**{"num_items": U, "dim": 8, "f_init": 0, **kw})


def _forward(model, v, users, mask):
  batch = CascadeBatch(jnp.asarray(users), jnp.zeros(users.shape, jnp.float32),
                       jnp.asarray(mask))
  return np.asarray(model.apply(v.params, batch, state=v.state))


@pytest.mark.parametrize("config", [_ndm(num_heads=2, window=3, f_init=1),
                                    _ndm(num_heads=1, window=1), LSTMConfig(num_items=U, dim=8)])
def test_incremental_decoding_equals_forward(config):
  net, v = _random_model(config, 0)
  model = net.bind(v.params, v.state)
  rng = np.random.default_rng(1)
  users = np.stack([rng.choice(np.arange(2, U), 9, replace=False) for _ in range(3)]).astype(np.int32)
  mask = np.ones_like(users, bool)
  full = _forward(net, v, users, mask)
  for p in (1, 2, 4):  # prefix length, then teacher-forced decoding of the rest
    cache = model.decode_init(jnp.asarray(users[:, :p]), jnp.asarray(mask[:, :p]), 9)
    for j in range(p - 1, 8):
      np.testing.assert_allclose(np.asarray(model.decode_logits(cache)), full[:, j], rtol=1e-5,
                                 atol=1e-5)
      cache = model.decode_step(cache, jnp.asarray(users[:, j + 1]))


def test_ragged_prefixes_decode_from_their_own_last_user():
  net, v = _random_model(_ndm(num_heads=2), 2)
  model = net.bind(v.params, v.state)
  users = np.array([[5, 7, 9], [4, 0, 0]], np.int32)
  mask = users > 0
  full = _forward(net, v, users, mask)
  got = np.asarray(model.decode_logits(model.decode_init(jnp.asarray(users), jnp.asarray(mask), 6)))
  np.testing.assert_allclose(got[0], full[0, 2], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1], full[1, 0], rtol=1e-5, atol=1e-5)


def _run(key, return_sequences=True, budgets=(6, 3, 0)):
  model, v = _random_model(_ndm(num_heads=2), 3)
  users = jnp.asarray([[4, 9], [7, 0], [11, 12]], jnp.int32)
  return simulate(model, v, users, users > 0, jnp.asarray(budgets, jnp.int32), key,
                  num_runs=64, num_steps=8, return_sequences=return_sequences), users


def test_same_key_same_runs_other_key_other_runs():
  a, _ = _run(jax.random.key(0))
  b, _ = _run(jax.random.key(0))
  c, _ = _run(jax.random.key(1))
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(np.asarray(a.sequences), np.asarray(c.sequences))


def test_runs_never_reinfect_stop_at_terminate_and_respect_budgets():
  sim, prefixes = _run(jax.random.key(5))
  seqs = np.asarray(sim.sequences)
  budgets = (6, 3, 0)
  saw_terminate = False
  for c in range(3):
    given = set(np.asarray(prefixes[c])[np.asarray(prefixes[c]) > 0].tolist())
    for s in range(64):
      seq = seqs[c, s].tolist()
      infected, stopped = set(given), budgets[c] <= 0
      new = 0
      for u in seq:
        if stopped:
          assert u == PAD, "a run emitted a user after it stopped"
          continue
        if u == TERMINATE:
          stopped = saw_terminate = True
          continue
        assert u != PAD and u not in infected, "re-infection or padding sampled"
        infected.add(u)
        new += 1
        stopped = new >= budgets[c]
      assert new <= budgets[c] and new == int(sim.new_users[c, s])
  assert saw_terminate
  counts = np.asarray(sim.infected_counts)
  assert counts[2].sum() == 0 and np.all(counts[:, [PAD, TERMINATE]] == 0)
  assert np.all(counts[0, [4, 9]] == 0)  # prefix users are not counted as new infections
  for c in range(2):  # counts agree with the sequences
    want = np.zeros(U)
    for s in range(64):
      for u in seqs[c, s]:
        if u > TERMINATE:
          want[u] += 1
    np.testing.assert_array_equal(counts[c], want)


def test_simulate_dataset_buckets_and_chunks_without_losing_cascades():
  model, v = _random_model(_ndm(num_heads=2), 4)
  rng = np.random.default_rng(0)
  cascades = [Cascade(rng.choice(np.arange(2, U), n, replace=False).astype(np.int32),
                      np.arange(n, dtype=np.float64)) for n in (2, 5, 9, 3, 12, 4, 7)]
  budgets = [len(c.users) - 1 for c in cascades]
  freq, mean_new = simulate_dataset(model, v, cascades, num_given=1, budgets=budgets,
                                    num_runs=32, key=jax.random.key(0), max_rows=96,
                                    num_items=U, progress=False)
  assert freq.shape == (7, U) and np.all((freq >= 0) & (freq <= 1))
  assert np.all(mean_new <= np.asarray(budgets)) and np.all(mean_new > 0)
  for c, f in zip(cascades, freq):
    assert f[c.users[0]] == 0
  np.testing.assert_allclose(freq.sum(1), mean_new, rtol=1e-5)


def test_decoding_cache_bounds_the_chunk_and_loses_no_cascade():
  """NDM's cache grows with heads x dim x length: the chunking bounds it (the LSTM has no such
  cache); a cap below one cascade's runs still simulates every cascade, one at a time."""
  from popdiff_jax.simulate.sampler import _cache_floats_per_position
  model, v = _random_model(_ndm(num_heads=2), 5)
  assert _cache_floats_per_position(model) == 2 * 2 * 8
  assert _cache_floats_per_position(_random_model(LSTMConfig(num_items=U, dim=8), 5)[0]) == 0
  rng = np.random.default_rng(1)
  cascades = [Cascade(rng.choice(np.arange(2, U), n, replace=False).astype(np.int32),
                      np.arange(n, dtype=np.float64)) for n in (3, 6, 4)]
  budgets = [len(c.users) - 1 for c in cascades]
  freq, mean_new = simulate_dataset(model, v, cascades, num_given=1, budgets=budgets,
                                    num_runs=16, key=jax.random.key(1), max_cache_elements=1,
                                    num_items=U, progress=False)
  assert freq.shape == (3, U) and np.all(mean_new > 0)
  np.testing.assert_allclose(freq.sum(1), mean_new, rtol=1e-5)
