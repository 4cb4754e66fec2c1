"""The functional API: every model builds from keywords, ``apply`` is pure under jit / vmap / grad,
and the batch constructors turn plain lists into typed batches (bad lists raise DataError)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import popdiff_jax.functional as F
from popdiff_jax._errors import DataError
from popdiff_jax.data.batching import CascadeBatch
from popdiff_jax.types import TreeBatch

_RNG = np.random.default_rng(0)
_POSTS = {"tokens": jnp.asarray(_RNG.integers(1, 30, (3, 5)), jnp.int32),
          "token_mask": jnp.asarray(np.arange(5)[None] < np.array([[5], [3], [1]])),
          "image": jnp.asarray(_RNG.normal(size=(3, 6)), jnp.float32),
          "env_image": jnp.asarray(_RNG.normal(size=(3, 6)), jnp.float32),
          "env_topic": jnp.asarray(_RNG.random((3, 4)), jnp.float32),
          "text": jnp.asarray(_RNG.normal(size=(3, 5)), jnp.float32),
          "numeric": jnp.asarray(_RNG.normal(size=(3, 2)), jnp.float32),
          "features": jnp.asarray(_RNG.normal(size=(3, 9)), jnp.float32)}
_CASCADES = [[5, 9, 2, 7], [7, 3], [4]]
_PARENTS = [[-1, 0, 0, 1], [2, -1, 1], [-1]]

CASES = {
    "ndm": (dict(num_items=12, dim=8, num_heads=2), lambda: F.cascade_batch(_CASCADES)),
    "lstm": (dict(num_items=12, dim=8), lambda: F.cascade_batch(_CASCADES)),
    "diffusion_lstm": (dict(input_dim=1, content_dim=1, num_protos=3, hidden=8, head_hidden=8),
                       lambda: F.tree_batch(_PARENTS, num_protos=3, protos=[[0, 1, 2, 1], [2, 0, 1], [0]])),
    "dual_attention": (dict(vocab_size=30, image_dim=6, topic_dim=4, embed_dim=8, hidden_dim=8,
                            attn_dim=4, out_dim=8), lambda: _POSTS),
    "fusion_dnn": (dict(image_dim=6, text_dim=5, numeric_dim=2, hidden=(8, 4)), lambda: _POSTS),
    "smp_conv1d": (dict(num_features=9), lambda: _POSTS),
}


def _scalar(out):
  out = out["logit"] if isinstance(out, dict) else out
  return jnp.sum(jnp.sin(out))  # a loss that depends on every output


@pytest.mark.parametrize("name", F.MODEL_NAMES)
def test_apply_is_pure_under_jit_vmap_grad(name):
  hp, make = CASES[name]
  model = F.build(name, **hp)
  batch = make()
  out = jax.jit(model.apply)(model.params, batch)
  grads = jax.jit(jax.grad(lambda p: _scalar(model.apply(p, batch))))(model.params)
  leaves = jax.tree.leaves(grads)
  assert jax.tree.structure(grads) == jax.tree.structure(model.params)
  assert all(np.isfinite(g).all() for g in leaves) and any(np.abs(g).sum() > 0 for g in leaves)
  if name not in ("ndm", "smp_conv1d"):
    return  # vmap: two models are enough (compiles are what cost here)
  # vmap over the parameters of two seeds equals applying each.
  other = F.build(name, seed=1, **hp)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), model.params, other.params)
  both = jax.vmap(lambda p: _scalar(model.apply(p, batch)))(stacked)
  np.testing.assert_allclose(both, [_scalar(out), _scalar(jax.jit(other.apply)(other.params, batch))],
                             rtol=1e-4, atol=1e-5)


def test_dropout_key_is_an_argument():
  model = F.build("ndm", num_items=12, dim=8, num_heads=2, dropout_rate=0.5)
  batch = F.cascade_batch(_CASCADES)
  apply = jax.jit(model.apply)
  a = apply(model.params, batch, jax.random.key(0))
  b = apply(model.params, batch, jax.random.key(0))
  c = apply(model.params, batch, jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  loss = jax.jit(jax.grad(lambda p: F.next_user_loss(model.apply(p, batch, jax.random.key(0)),
                                                     batch)))
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(loss(model.params)))


def test_fusion_train_mode_updates_batchnorm_state():
  model = F.build("fusion_dnn", image_dim=6, text_dim=5, numeric_dim=2, hidden=(8, 4))
  pred, new_state = jax.jit(model.apply_train)(model.params, model.state, _POSTS)
  assert pred.shape == (3,)
  changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(model.state),
                                                   jax.tree.leaves(new_state))]
  assert any(changed)
  assert model.apply(model.params, _POSTS, state=new_state).shape == (3,)


def test_cascade_batch_from_lists():
  b = F.cascade_batch(_CASCADES)
  assert isinstance(b, CascadeBatch) and b.users.dtype == np.int32 and b.users.shape[0] == 3
  assert b.users[0, :5].tolist() == [5, 9, 2, 7, 1] and b.mask.sum(1).tolist() == [5, 3, 2]
  timed = F.cascade_batch([([5, 6], [10.0, 12.5])], rows=4)
  assert timed.users.shape[0] == 4 and timed.times[0, 1] == 2.5
  for bad in ([[]], [[0, 5]], [[1]], [["a"]], [([5, 6], [0.0])], [([5], [float("nan")])], []):
    with pytest.raises(DataError):
      F.cascade_batch(bad)


def test_tree_batch_from_parent_arrays():
  b = F.tree_batch(_PARENTS, node_features=[np.arange(4.0)[:, None], np.arange(3.0)[:, None],
                                            [[7.0]]], num_protos=2)
  assert isinstance(b, TreeBatch) and int(b.node_mask.sum()) == 8 and b.tree_mask.all()
  # Node features follow their nodes into breadth-first order: tree 1's root is its node 1.
  roots = np.flatnonzero(b.node_mask & (b.depth == 0))
  assert sorted(b.x[roots, 0].tolist()) == [0.0, 1.0, 7.0]
  for bad in ([[0, 0]], [[-1, -1]], [[-1, 5]], [[-1, 2, 1]], [["x"]], []):
    with pytest.raises(DataError):
      F.tree_batch(bad)


def test_unknown_model_and_missing_hparams():
  with pytest.raises(ValueError):
    F.build("nope")
  with pytest.raises(TypeError):
    F.build("ndm", dim=8)


def test_readme_example_runs():
  import pathlib
  import re
  readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
  section = readme[readme.index("### Functional API"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  env = {}
  exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - our own README
  assert env["logits"].shape[-1] == 100 and env["node_logits"].shape[-1] == 4
  assert env["out"]["attention"].shape == (2, 5)
