"""``models.init`` builds every registered model from its config; ``Model.apply`` is pure under
jit / vmap / grad; the dropout key is an argument; batch constructors from plain lists."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax import ConfigError, DataError, losses, models
from popdiff_jax.data.batching import cascade_batch
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.training import init_model
from popdiff_jax.types import CascadeBatch

_CASCADES = [[5, 9, 2, 7], [7, 3], [4]]

CASES = {
    "ndm": (NDMConfig(num_items=12, dim=8, num_heads=2, f_init=1), lambda: cascade_batch(_CASCADES)),
    "lstm": (LSTMConfig(num_items=12, dim=8), lambda: cascade_batch(_CASCADES)),
}


def _scalar(out):
  out = out["logit"] if isinstance(out, dict) else out
  return jnp.sum(jnp.sin(out))  # a loss that depends on every output


@pytest.mark.parametrize("name", sorted(CASES))
def test_apply_is_pure_under_jit_vmap_grad(name):
  config, make = CASES[name]
  model, v = models.init(config, 0)
  batch = make()
  out = jax.jit(model.apply)(v.params, batch)
  grads = jax.jit(jax.grad(lambda p: _scalar(model.apply(p, batch))))(v.params)
  leaves = jax.tree.leaves(grads)
  assert jax.tree.structure(grads) == jax.tree.structure(v.params)
  assert all(np.isfinite(g).all() for g in leaves) and any(np.abs(g).sum() > 0 for g in leaves)
  if name != "ndm":
    return  # vmap: one model is enough (compiles are what cost here)
  # vmap over the parameters of two seeds equals applying each.
  _, other = models.init(config, 1)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), v.params, other.params)
  both = jax.vmap(lambda p: _scalar(model.apply(p, batch)))(stacked)
  np.testing.assert_allclose(both, [_scalar(out), _scalar(jax.jit(model.apply)(other.params,
                                                                               batch))],
                             rtol=1e-4, atol=1e-5)


def test_model_is_static_and_hashable():
  model, _ = models.init(CASES["ndm"][0], 0)
  again, _ = models.init(CASES["ndm"][0], 1)
  assert hash(model) == hash(again) and model == again
  assert model.name == "ndm"


def test_dropout_key_is_an_argument():
  model, v = models.init(NDMConfig(num_items=12, dim=8, num_heads=2, dropout_rate=0.5,
                                   f_init=0), 0)
  batch = cascade_batch(_CASCADES)
  apply = jax.jit(lambda p, k: model.apply(p, batch, key=k))
  a = apply(v.params, jax.random.key(0))
  b = apply(v.params, jax.random.key(0))
  c = apply(v.params, jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)

  def loss(p):
    total, count = losses.next_user_nll(model.apply(p, batch, key=jax.random.key(0)),
                                        batch.users, batch.mask)
    return total / count

  assert all(np.isfinite(g).all() for g in jax.tree.leaves(jax.jit(jax.grad(loss))(v.params)))


def test_cascade_batch_from_lists():
  b = cascade_batch(_CASCADES)
  assert isinstance(b, CascadeBatch) and b.users.dtype == np.int32 and b.users.shape[0] == 3
  assert b.users[0, :5].tolist() == [5, 9, 2, 7, 1] and b.mask.sum(1).tolist() == [5, 3, 2]
  timed = cascade_batch([([5, 6], [10.0, 12.5])], rows=4)
  assert timed.users.shape[0] == 4 and timed.times[0, 1] == 2.5
  for bad in ([[]], [[0, 5]], [[1]], [["a"]], [([5, 6], [0.0])], [([5], [float("nan")])], []):
    with pytest.raises(DataError):
      cascade_batch(bad)


def test_unknown_model_and_unset_fields():
  with pytest.raises(ValueError, match="unknown model"):
    models.config_class("nope")
  with pytest.raises(ConfigError, match="num_items"):
    models.init(NDMConfig(f_init=0), 0)
  with pytest.raises(ConfigError, match="f_init"):
    models.init(NDMConfig(num_items=12), 0)


def test_readme_example_runs():
  import pathlib
  import re
  readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
  section = readme[readme.index("## Import a model"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  env = {}
  exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - our own README
  assert env["logits"].shape[-1] == 100
  assert jax.tree.structure(env["grads"]) == jax.tree.structure(env["variables"].params)


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_model_draws_the_same_parameters_in_one_program(name):
  config, make = CASES[name]
  model, eager = models.init(config, 3)
  compiled_model, compiled = init_model(config, jax.random.key(3))
  assert jax.tree.structure(compiled) == jax.tree.structure(eager)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(compiled)):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)  # the same draws: bit for bit on the CPU
  batch = make()
  np.testing.assert_allclose(compiled_model.apply(compiled.params, batch),
                             model.apply(eager.params, batch), rtol=1e-5, atol=1e-6)
