"""Diffusion-LSTM (models.diffusion_lstm): config checks, shapes, the init's gate layout, one
compile per bucket, edge-case trees against the node-by-node baseline, the loss, generation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _tree_examples import gather_nodes, make_examples, random_parents
from popdiff_jax import ConfigError, losses, models
from popdiff_jax.baselines import tree_lstm as B
from popdiff_jax.data import trees as T
from popdiff_jax.models.diffusion_lstm import VARIANTS, DiffusionLSTMConfig
from popdiff_jax.simulate.trees import generate_trees

# Our own functions run under jax_numpy_dtype_promotion="strict" (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_dtypes")

SMALL = dict(input_dim=5, content_dim=3, num_protos=4, hidden=8, head_hidden=8)


def _model_and_batch(variant="full", n_trees=3, chunk=8, num_chunks=16, seed=0, **kw):
  rng = np.random.default_rng(seed)
  pars = [random_parents(rng, n) for n in rng.integers(1, 20, n_trees)]
  exs = make_examples(rng, pars)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=chunk, num_chunks=num_chunks, batch_trees=4)
  model, variables = models.init(DiffusionLSTMConfig(variant=variant, **SMALL, **kw),
                                 jax.random.key(0))
  return model, variables.params, batch, exs


def _loss(model, batch, wp, wn):
  return lambda p, key=None: losses.weighted_bce(model.apply(p, batch, key=key), batch.targets,
                                                 batch.node_mask, wp, wn)


def test_config_checks_and_data_fields():
  with pytest.raises(ConfigError, match="variant"):
    DiffusionLSTMConfig(variant="tree")
  with pytest.raises(ConfigError, match="dropout_rate"):
    DiffusionLSTMConfig(dropout_rate=1.0)
  with pytest.raises(ConfigError, match="scan_impl"):
    DiffusionLSTMConfig(scan_impl="loop")
  with pytest.raises(ConfigError, match="kernel"):
    DiffusionLSTMConfig(kernel="nodes")
  with pytest.raises(ConfigError, match="num_protos.*set from the data"):
    models.init(DiffusionLSTMConfig(input_dim=5, content_dim=3), jax.random.key(0))
  assert models.config_class("diffusion_lstm") is DiffusionLSTMConfig


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_shapes_and_finite_loss(variant):
  model, params, batch, _ = _model_and_batch(variant)
  wp, wn = losses.class_weights(np.ones(5) * 3, np.ones(5) * 7)
  loss = _loss(model, batch, wp, wn)
  value, grads = jax.jit(jax.value_and_grad(loss))(params, jax.random.key(2))
  logits = jax.jit(model.apply)(params, batch)
  chex.assert_shape(logits, (batch.x.shape[0], 5))
  chex.assert_tree_all_finite(logits)
  assert np.isfinite(float(value))
  chex.assert_tree_all_finite(grads)
  # Dropout is on with a key only.
  assert not np.allclose(model.apply(params, batch, key=jax.random.key(1)), logits)


def test_gate_blocks_are_drawn_in_eq1_order_and_stored_in_cell_order():
  """W and U: Glorot-uniform and four orthogonal blocks drawn from the init key's first split
  in the order (f, i, o, c), stored as (i, f, g, o)."""
  _, params, _, _ = _model_and_batch("full")
  hid = SMALL["hidden"]
  kw, ku = jax.random.split(nnx.Rngs(params=jax.random.key(0)).params())
  lim = np.sqrt(6.0 / (5 + 4 * hid))
  w_eq1 = jax.random.uniform(kw, (5, 4 * hid), jnp.float32, -lim, lim)
  u_eq1 = jnp.concatenate([jax.nn.initializers.orthogonal()(k, (hid, hid), jnp.float32)
                           for k in jax.random.split(ku, 4)], axis=1)
  for eq1, stored in ((w_eq1, params["w"][...]), (u_eq1, params["u"][...])):
    f, i, o, g = np.split(np.asarray(eq1), 4, axis=1)
    np.testing.assert_array_equal(np.asarray(stored), np.concatenate([i, f, g, o], axis=1))
  np.testing.assert_array_equal(params["b"][...], 0.0)


def test_model_scan_impls_agree_and_forward_mode_works_with_scan():
  """scan_impl="vjp" with scan_unroll=2, scan_fuse_input=True and scan_impl="scan": same loss
  and grads; forward mode (jax.jvp), which a custom VJP does not support, works with "scan"."""
  model, params, batch, _ = _model_and_batch("full")
  wp, wn = losses.class_weights(np.ones(5) * 3, np.ones(5) * 7)

  def loss_of(**kw):
    m, _ = models.init(DiffusionLSTMConfig(**SMALL, **kw), jax.random.key(0))
    return _loss(m, batch, wp, wn)

  want = jax.jit(jax.value_and_grad(loss_of(scan_impl="scan")))(params)
  for kw in ({"scan_impl": "vjp", "scan_unroll": 2}, {"scan_fuse_input": True}):
    chex.assert_trees_all_close(jax.jit(jax.value_and_grad(loss_of(**kw)))(params), want,
                                rtol=2e-5, atol=1e-7)
  tangent = jax.tree.map(jnp.ones_like, params)
  _, jvp = jax.jvp(loss_of(scan_impl="scan"), (params,), (tangent,))
  assert np.isfinite(float(jvp))
  assert model.config.scan_impl == "vjp" and model.config.scan_unroll == 1


def test_weighted_bce_matches_numpy_and_all_padding_is_finite():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 2
  t = (rng.random((6, 5)) < 0.4).astype(np.float32)
  mask = np.array([1, 1, 0, 1, 1, 0], bool)
  pos, neg = t[mask].sum(0), (1 - t[mask]).sum(0)
  wp, wn = losses.class_weights(pos, neg)
  np.testing.assert_allclose(wp, neg / (pos + neg), rtol=1e-6)
  got = losses.weighted_bce(jnp.asarray(logits), jnp.asarray(t), jnp.asarray(mask), wp, wn)
  o = 1 / (1 + np.exp(-logits.astype(np.float64)))
  per = -(np.asarray(wp) * t * np.log(o) + np.asarray(wn) * (1 - t) * np.log(1 - o))
  np.testing.assert_allclose(got, per[mask].sum() / mask.sum(), rtol=1e-5)
  model, params, _, _ = _model_and_batch()
  empty = T.make_tree_batch([], num_protos=4, chunk=8, num_chunks=16, batch_trees=4)
  empty = empty._replace(x=np.zeros((empty.x.shape[0], 5), np.float32),
                         content=np.zeros((4, 3), np.float32))
  loss, grads = jax.jit(jax.value_and_grad(_loss(model, empty, wp, wn)))(params)
  assert float(loss) == 0.0
  chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize("variant", ["full", "content"])
def test_kernels_give_the_same_logits_and_gradients(variant):
  """kernel="parents" (the default) and kernel="chunks" (with and without the fused input)
  give the same logits and parameter gradients."""
  _, params, batch, _ = _model_and_batch(variant, n_trees=4)
  wp, wn = losses.class_weights(np.ones(5) * 3, np.ones(5) * 7)
  outs = []
  for kw in ({}, {"kernel": "chunks"}, {"kernel": "chunks", "scan_fuse_input": True}):
    model, _ = models.init(DiffusionLSTMConfig(variant=variant, **SMALL, **kw), jax.random.key(0))
    outs.append(jax.jit(lambda p, model=model: (model.apply(p, batch),
                                                jax.grad(_loss(model, batch, wp, wn))(p)))(params))
  for got in outs[1:]:
    chex.assert_trees_all_close(got, outs[0], rtol=2e-5, atol=2e-6)


def test_one_compile_per_bucket():
  rng = np.random.default_rng(4)
  pars = [random_parents(rng, int(n)) for n in rng.integers(1, 40, 24)]
  exs = make_examples(rng, pars)
  batches = T.bucket_tree_batches(exs, num_protos=4, batch_trees=3, chunk=8, buckets=(4, 8, 16),
                                  parent_chunk=3, parent_buckets=(8, 32))
  ks = {(b.num_chunks, b.parent_chunks.shape) for b in batches}
  assert {k for k, _ in ks} <= {4, 8, 16} and {s for _, s in ks} <= {(8, 3), (32, 3)}
  assert len(batches) > len(ks)
  assert sum(int(b.node_mask.sum()) for b in batches) == sum(e.parent.shape[0] for e in exs)
  model, variables = models.init(DiffusionLSTMConfig(**SMALL), jax.random.key(0))

  @jax.jit
  @chex.assert_max_traces(n=len(ks))
  def fwd(p, b):
    return model.apply(p, b).sum()

  chex.clear_trace_counter()
  for b in batches + batches:
    fwd(variables.params, b)


def test_single_node_depth_one_forest_and_deep_chain():
  """The model's states equal the node-by-node baseline (root memory = FC(content)) on a
  single node, a forest of depth-1 trees, and chains of depth 49 and 50."""
  rng = np.random.default_rng(5)
  model, variables = models.init(DiffusionLSTMConfig(**SMALL), jax.random.key(0))
  params = variables.params
  cfc = params["content_fc"]
  single = [[-1]]
  forest = [[-1] + [0] * int(n) for n in (1, 4, 9)]
  chain = [[-1] + list(range(49))]  # 50 nodes: depth 49 edges; 51 nodes below gives depth 50
  chain50 = [[-1] + list(range(50))]
  states = jax.jit(lambda p, bb: model.apply(p, bb, method="states"))
  for pars, chunk in ((single, 4), (forest, 4), (chain, 1), (chain50, 2)):
    exs = make_examples(rng, pars)
    k = T.num_chunks_needed([e.depth for e in exs], chunk)
    batch = T.make_tree_batch(exs, num_protos=4, chunk=chunk, num_chunks=k, batch_trees=len(exs))
    h, _ = states(params, batch)
    for got, e in zip(gather_nodes(batch, np.asarray(h), exs), exs):
      c0 = jnp.asarray(e.content) @ cfc["kernel"][...] + cfc["bias"][...]
      want, _ = B.tree_lstm_states_jit(jnp.asarray(e.x), jnp.asarray(e.parent), params["w"][...],
                                       params["u"][...], params["b"][...], jnp.zeros(8), c0)
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    t = batch.targets[batch.node_mask]
    leaves = sum(int((np.bincount(e.parent[1:], minlength=e.parent.shape[0]) == 0).sum())
                 for e in exs)
    assert int(t[:, -1].sum()) == leaves
  assert max(T.tree_from_parents(chain50[0], name="c").depth) == 50


@pytest.mark.parametrize("variant", ["full", "fc"])
def test_generation_respects_caps_and_is_vmapped(variant):
  model, params, _, exs = _model_and_batch(variant)
  rng = np.random.default_rng(6)
  proto_x = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  content = jnp.asarray(np.stack([e.content for e in exs]))
  root_x = jnp.asarray(np.stack([e.x[0] for e in exs]))
  caps = dict(terminal_threshold=1.0, max_depth=4, max_width=5, max_size=12)
  g = generate_trees(model, params, content, root_x, proto_x, jnp.zeros(4), **caps)
  # terminal never fires and every prototype passes: trees grow to the caps.
  np.testing.assert_array_equal(g.size, 12)
  assert np.all(np.asarray(g.widths) <= 5)
  np.testing.assert_allclose(np.asarray(g.proto_counts).sum(-1), np.asarray(g.size) - 1)
  gs = generate_trees(model, params, content, root_x, proto_x, jnp.zeros(4),
                      jax.random.split(jax.random.key(0), 3), **caps)
  chex.assert_shape(gs.depth, (3, len(exs)))
  assert np.all(np.asarray(gs.size) <= 12) and np.all(np.asarray(gs.size) >= 1)
  # Each tree alone gives the same as in the batch (vmap, no cross-talk).
  one = generate_trees(model, params, content[1:2], root_x[1:2], proto_x, jnp.zeros(4), **caps)
  np.testing.assert_array_equal(one.widths[0], g.widths[1])
