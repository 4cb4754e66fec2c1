"""Data parallelism over 4 forced CPU devices equals one device; a multi-step call equals N steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from popdiff_jax.functional import build, cascade_batch, next_user_loss, tree_batch
from popdiff_jax.losses import weighted_bce
from popdiff_jax.train.parallel import (data_parallel, group_steps, make_mesh, multi_step,
                                        stack_batches)
from popdiff_jax.train.state import apply_gradients, create_train_state

N_STEPS = 4


def _cascade_batches(num_items, n=N_STEPS, rows=8, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    cascades = [list(rng.choice(np.arange(2, num_items), size=rng.integers(2, 8), replace=False))  # + Terminate <= 8
                for _ in range(rows - 2)]
    cascades.append(list(rng.choice(np.arange(2, num_items), size=9, replace=False)))  # cut: L = 8
    out.append(cascade_batch(cascades, max_len=8, rows=rows))  # one padding row
  return out


def _ndm_setup():
  model = build("ndm", num_items=40, dim=16, num_heads=2, window=3, dropout_rate=0.1)
  tx = optax.adam(1e-2)

  def step(state, batch, key):
    def loss_fn(params):
      return next_user_loss(model.apply(params, batch, key), batch)
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return apply_gradients(state, grads, tx), {"loss": loss}

  return create_train_state(model.params, tx), step, _cascade_batches(40)


def _trees_setup():
  model = build("diffusion_lstm", input_dim=3, content_dim=2, num_protos=4, hidden=8)
  tx = optax.adam(1e-2)
  rng = np.random.default_rng(1)
  batches = []
  for _ in range(N_STEPS):
    parents = [[-1, 0, 0, 1, 1, 2, 5, 5], [-1, 0, 1, 2], [-1, 0, 0, 0]]
    batches.append(tree_batch(
        parents, node_features=[rng.normal(size=(len(p), 3)) for p in parents],
        content=[rng.normal(size=2) for _ in parents],
        protos=[rng.integers(0, 4, size=len(p)) for p in parents], num_protos=4, chunk=4))

  def step(state, batch, key):
    def loss_fn(params):
      logits = model.apply(params, batch, key)
      return weighted_bce(logits, batch.targets, batch.node_mask, jnp.full((5,), 2.0),
                          jnp.full((5,), 0.5))
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return apply_gradients(state, grads, tx), {"loss": loss}

  return create_train_state(model.params, tx), step, batches


def _run(state, step, batches, mesh=None):
  base = jax.random.key(0)
  if mesh is None:
    run_step, place = jax.jit(step), (lambda b: b)
  else:
    dp = data_parallel(step, mesh, state)
    state, run_step, place = dp.place_state(state), dp.step, dp.place_batch
  losses = []
  for batch in batches:
    state, metrics = run_step(state, place(batch), jax.random.fold_in(base, state.step))
    losses.append(float(metrics["loss"]))
  return state, losses


@pytest.mark.parametrize("setup", [_ndm_setup, _trees_setup], ids=["ndm", "diffusion_lstm"])
def test_four_devices_equal_one(setup):
  assert jax.device_count() >= 4
  state, step, batches = setup()
  one, losses_one = _run(state, step, batches)
  four, losses_four = _run(state, step, batches, make_mesh(4))
  np.testing.assert_allclose(losses_four, losses_one, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(four.params), jax.tree.leaves(one.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_batch_is_split_over_devices():
  state, step, batches = _ndm_setup()
  dp = data_parallel(step, make_mesh(4), state)
  placed = dp.place_batch(batches[0])
  assert len(placed.users.sharding.device_set) == 4
  assert placed.users.addressable_shards[0].data.shape[0] == batches[0].users.shape[0] // 4


def test_user_tables_shard_over_model_axis():
  state, step, batches = _ndm_setup()
  mesh = make_mesh(4, model_parallel=2)
  dp = data_parallel(step, mesh, state, table_rows=40)
  placed = dp.place_state(state)
  sharded = [x for x in jax.tree.leaves(placed.params) if 40 in x.shape]
  assert sharded and all(x.addressable_shards[0].data.size * 2 == x.size for x in sharded)
  one, losses_one = _run(state, step, batches)
  base = jax.random.key(0)
  losses = []
  for batch in batches:
    placed, m = dp.step(placed, dp.place_batch(batch), jax.random.fold_in(base, placed.step))
    losses.append(float(m["loss"]))
  np.testing.assert_allclose(losses, losses_one, rtol=1e-5, atol=1e-5)


def test_multi_step_equals_single_steps():
  state, step, batches = _ndm_setup()
  one, losses = _run(state, step, batches)
  stacked, metrics = jax.jit(multi_step(step))(state, stack_batches(batches), jax.random.key(0))
  assert int(stacked.step) == N_STEPS
  np.testing.assert_allclose(float(metrics["loss"]), sum(losses), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(stacked.params), jax.tree.leaves(one.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_group_steps_keeps_order_and_shapes():
  a, b = np.zeros((2, 4)), np.zeros((2, 8))
  groups = group_steps([a, a, a, b, a, a], 2)
  assert [len(g) for g in groups] == [2, 1, 1, 2]
  flat = [x.shape for g in groups for x in g]
  assert flat == [(2, 4)] * 3 + [(2, 8)] + [(2, 4)] * 2
  with pytest.raises(ValueError):
    group_steps([a], 0)
