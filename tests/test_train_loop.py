"""The generic loop: resume gives the same parameters, early stopping, corrupt-checkpoint fallback."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from popdiff_jax.training import fit
from popdiff_jax.training.checkpoint import Checkpointer, CheckpointError, abstract_like
from popdiff_jax.training.state import apply_gradients, create_train_state

_TX = optax.adam(0.05)


def _problem():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * rng.normal(size=64)).astype(np.float32)
  batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
  return x, y, batches


def _step(state, batch, key):  # fit jits it, donating the state
  x, y = batch
  noise = 0.01 * jax.random.normal(key, (3,))  # uses the key, so a wrong key changes the result

  def loss_fn(w):
    return jnp.mean((x @ (w + noise) - y) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return apply_gradients(state, grads, _TX), {"loss": loss}


def _run(workdir, num_epochs, patience=None):
  x, y, batches = _problem()
  state = create_train_state(jnp.asarray(np.random.default_rng(1).normal(size=3), jnp.float32), _TX)

  def evaluate(s):
    return {"loss": float(jnp.mean((x @ s.params - y) ** 2))}

  return fit(state, train_step=_step, train_batches=lambda epoch: batches, evaluate=evaluate,
             workdir=workdir, num_epochs=num_epochs, base_key=jax.random.key(3),
             patience=patience, progress=False)


def test_resume_reaches_the_same_parameters(tmp_path):
  straight = _run(tmp_path / "a", 4)
  first = _run(tmp_path / "b", 2)
  assert first.resumed_from is None and len(first.history) == 2
  resumed = _run(tmp_path / "b", 4)
  assert resumed.resumed_from == 1
  chex.assert_trees_all_equal(straight.state, resumed.state)
  assert [r["step"] for r in resumed.history] == [r["step"] for r in straight.history]
  lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [0, 1, 2, 3]


def test_loss_decreases_and_best_is_kept(tmp_path):
  result = _run(tmp_path, 6)
  losses = [r["val_loss"] for r in result.history]
  assert losses[-1] < losses[0] * 0.5
  assert result.best["val_loss"] == min(losses)


def test_early_stopping_stops(tmp_path):
  x, y, batches = _problem()
  state = create_train_state(jnp.zeros(3, jnp.float32), _TX)
  calls = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
  result = fit(state, train_step=_step, train_batches=lambda e: batches,
               evaluate=lambda s: {"loss": next(calls)}, workdir=tmp_path, num_epochs=7,
               base_key=jax.random.key(0), patience=2, progress=False)
  assert len(result.history) == 4  # best at epoch 1, then two epochs without improvement
  assert result.best["epoch"] == 1


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
  ckpt = Checkpointer(tmp_path, max_to_keep=3)
  tree = {"w": jnp.arange(4.0), "b": jnp.ones(2)}
  ckpt.save(1, tree, {"tag": "one"})
  ckpt.save(2, jax.tree.map(lambda a: a + 1, tree), {"tag": "two"})
  # Truncate every data file of the newest checkpoint.
  for f in (tmp_path / "checkpoints" / "2").rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  restored, meta, step = ckpt.restore(abstract_like(tree))
  assert step == 1 and meta["tag"] == "one"
  chex.assert_trees_all_equal(restored, tree)


def test_restore_from_empty_dir_raises(tmp_path):
  with pytest.raises(CheckpointError):
    Checkpointer(tmp_path).restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)})


def test_time_budget_ends_the_epoch_early(tmp_path):
  x, y, batches = _problem()
  state = create_train_state(jnp.zeros(3, jnp.float32), _TX)
  result = fit(state, train_step=_step, train_batches=lambda e: batches * 50, evaluate=None,
               monitor="train_loss", workdir=tmp_path, num_epochs=5, base_key=jax.random.key(0),
               progress=False, max_seconds=0.0)
  assert result.stopped_by == "time" and len(result.history) == 1
  assert result.history[0]["partial"] and result.history[0]["steps"] == 1


def test_best_epoch_keeps_its_non_trainable_state_and_resumes(tmp_path):
  """BatchNorm-like ``extra`` state comes from the best epoch, like the params, also after resume."""
  _, _, batches = _problem()

  def step(state, batch, key):
    del batch, key
    return state._replace(step=state.step + 1, extra={"seen": state.extra["seen"] + 1.0}), {
        "loss": jnp.float32(0.0)}

  def make():
    return create_train_state(jnp.zeros(3, jnp.float32), _TX, extra={"seen": jnp.float32(0.0)})

  scores = [3.0, 1.0, 2.0, 2.5, 2.7]
  evaluate = lambda s: {"loss": scores[int(s.step) // len(batches) - 1]}
  kw = dict(train_step=step, train_batches=lambda e: batches, evaluate=evaluate,
            base_key=jax.random.key(0), progress=False, patience=None)
  straight = fit(make(), workdir=tmp_path / "a", num_epochs=5, **kw)
  assert float(straight.state.extra["seen"]) == 2 * len(batches)  # the best epoch is the second
  fit(make(), workdir=tmp_path / "b", num_epochs=3, **kw)
  resumed = fit(make(), workdir=tmp_path / "b", num_epochs=5, **kw)
  chex.assert_trees_all_equal(straight.state, resumed.state)


def test_fit_leaves_the_callers_state_usable(tmp_path):
  """The compiled step donates its input state; fit works on a copy of the caller's."""
  x, y, batches = _problem()
  state = create_train_state(jnp.ones(3, jnp.float32), _TX)
  fit(state, train_step=_step, train_batches=lambda e: batches, evaluate=None,
      monitor="train_loss", workdir=tmp_path, num_epochs=1, base_key=jax.random.key(0),
      progress=False)
  np.testing.assert_array_equal(np.asarray(state.params), np.ones(3, np.float32))


def test_a_diverged_run_stops_keeps_the_finite_checkpoints_and_raises(tmp_path):
  """A NaN loss ends training at that epoch with TrainingDiverged; the epochs before it stay
  logged and checkpointed, and a rerun resumes from the last finite one."""
  from popdiff_jax.training import TrainingDiverged

  x, y, batches = _problem()
  state = create_train_state(jnp.zeros(3, jnp.float32), _TX)
  values = iter([1.0, 0.5, float("nan")])
  with pytest.raises(TrainingDiverged, match="epoch 3.*val_loss = nan.*best finite epoch \\(2\\)"):
    fit(state, train_step=_step, train_batches=lambda e: batches,
        evaluate=lambda s: {"loss": next(values)}, workdir=tmp_path, num_epochs=5,
        base_key=jax.random.key(0), patience=5, progress=False)
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [0, 1]
  assert Checkpointer(tmp_path).latest_step() == 2 * len(batches)
