"""Diffusion-LSTM: level-wise scan vs a node-by-node reference (forward and gradients), shapes,
one compile per bucket, edge-case trees, loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax.data import trees as T
from popdiff_jax.models import diffusion_lstm as M

# Our own functions run under jax_numpy_dtype_promotion="strict" (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_dtypes")


def random_parents(rng, n, max_branch=None):
  """Random BFS-ordered parent array of n nodes (parent[i] < i)."""
  par = [-1]
  for i in range(1, n):
    lo = 0 if max_branch is None else max(0, i - max_branch)
    par.append(int(rng.integers(lo, i)))
  return T.tree_from_parents(par, name=f"r{n}").parent


def make_examples(rng, parents_list, d=5, f=3, k=4):
  out = []
  for j, par in enumerate(parents_list):
    t = T.tree_from_parents(par, name=f"t{j}")
    n = t.size
    out.append(T.TreeExample(t.name, t.parent, t.depth, rng.normal(size=(n, d)).astype(np.float32),
                             rng.integers(0, k, n).astype(np.int32),
                             rng.normal(size=f).astype(np.float32)))
  return out


def reference_states(ex_list, w, u, b, c_root_fn):
  """Node-by-node recursion of Eq. 1, one node at a time (NumPy float64 or JAX)."""
  xp = jnp if isinstance(w, jax.Array) else np
  sig = lambda z: 1 / (1 + xp.exp(-z))
  hs = []
  for e in ex_list:
    hid = u.shape[0]
    c0 = c_root_fn(e.content)
    h_nodes, c_nodes = [], []
    for i in range(e.parent.shape[0]):
      p = int(e.parent[i])
      hp, cp = (xp.zeros(hid), c0) if p < 0 else (h_nodes[p], c_nodes[p])
      z = xp.asarray(e.x[i], dtype=w.dtype) @ w + hp @ u + b
      f, ii, o, g = z[:hid], z[hid:2 * hid], z[2 * hid:3 * hid], z[3 * hid:]
      c = sig(f) * cp + sig(ii) * xp.tanh(g)
      h_nodes.append(sig(o) * xp.tanh(c))
      c_nodes.append(c)
    hs.append(xp.stack(h_nodes))
  return hs


def gather_nodes(batch, arr, ex_list):
  """Per-tree (n_i, ...) rows of a node-slot array, in each tree's BFS order."""
  out = []
  tree = np.asarray(batch.tree)
  mask = np.asarray(batch.node_mask)
  depth = np.asarray(batch.depth)
  for j, e in enumerate(ex_list):
    slots = np.flatnonzero(mask & (tree == j))
    # Within a tree, slots are ordered by (depth, BFS index): BFS order itself.
    slots = slots[np.argsort(depth[slots], kind="stable")]
    out.append(arr[slots])
  return out


@pytest.mark.parametrize("chunk", [3, 64])
def test_forward_matches_node_by_node_reference(chunk):
  rng = np.random.default_rng(0)
  hid = 6
  pars = [random_parents(rng, n) for n in (1, 2, 7, 15, 30)]
  exs = make_examples(rng, pars)
  k_needed = T.num_chunks_needed([e.depth for e in exs], chunk)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=chunk, num_chunks=k_needed + 2, batch_trees=6)
  w = rng.normal(size=(5, 4 * hid)) * 0.5
  u = rng.normal(size=(hid, 4 * hid)) * 0.5
  b = rng.normal(size=4 * hid) * 0.1
  wc = rng.normal(size=(3, hid))
  with jax.enable_x64(True):
    xw = jnp.asarray(batch.x, jnp.float64) @ w + b[None, :]
    c_root = jnp.asarray(batch.content, jnp.float64) @ wc
    h, _ = M.levelwise_tree_lstm(xw, jnp.asarray(batch.parent), jnp.zeros_like(c_root), c_root,
                                 jnp.asarray(u), batch.chunk_depth.shape[0])
    h = np.asarray(h)
  ref = reference_states(exs, w, u, b, lambda c: c.astype(np.float64) @ wc)
  for got, want in zip(gather_nodes(batch, h, exs), ref):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_gradients_match_node_by_node_reference():
  """Forward and gradients (W, U, b, content FC, inputs) to 1e-5 vs node-by-node JAX, float64."""
  rng = np.random.default_rng(1)
  hid = 4
  pars = [random_parents(rng, n) for n in (1, 5, 9, 14)]
  exs = make_examples(rng, pars)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=4, num_chunks=24, batch_trees=5)
  with jax.enable_x64(True):
    params = dict(w=jnp.asarray(rng.normal(size=(5, 4 * hid)) * 0.5),
                  u=jnp.asarray(rng.normal(size=(hid, 4 * hid)) * 0.5),
                  b=jnp.asarray(rng.normal(size=4 * hid) * 0.1),
                  wc=jnp.asarray(rng.normal(size=(3, hid))))
    r_trees = [jnp.asarray(rng.normal(size=(e.parent.shape[0], hid))) for e in exs]
    # Random readout weights put per node, in slot layout, for the level-wise loss.
    r_slots = np.zeros((batch.x.shape[0], hid))
    tree = np.asarray(batch.tree)
    for j, e in enumerate(exs):
      slots = np.flatnonzero(batch.node_mask & (tree == j))
      slots = slots[np.argsort(batch.depth[slots], kind="stable")]
      r_slots[slots] = np.asarray(r_trees[j])
    r_slots = jnp.asarray(r_slots)
    x64 = jnp.asarray(batch.x, jnp.float64)
    cont64 = jnp.asarray(batch.content, jnp.float64)

    def loss_level(p, x):
      c_root = cont64 @ p["wc"]
      h, c = M.levelwise_tree_lstm(x @ p["w"] + p["b"][None, :], jnp.asarray(batch.parent),
                                   jnp.zeros_like(c_root), c_root, p["u"],
                                   batch.chunk_depth.shape[0])
      return jnp.sum(h * r_slots) + 0.3 * jnp.sum(jnp.where(batch.node_mask[:, None], c, 0.0))

    def loss_ref_full(p, xs):
      sig = jax.nn.sigmoid
      tot = 0.0
      for j, e in enumerate(exs):
        c0 = jnp.asarray(e.content, jnp.float64) @ p["wc"]
        hn, cn = [], []
        for i in range(e.parent.shape[0]):
          q = int(e.parent[i])
          hp, cp = (jnp.zeros(hid), c0) if q < 0 else (hn[q], cn[q])
          z = xs[j][i] @ p["w"] + hp @ p["u"] + p["b"]
          c = sig(z[:hid]) * cp + sig(z[hid:2 * hid]) * jnp.tanh(z[3 * hid:])
          hn.append(sig(z[2 * hid:3 * hid]) * jnp.tanh(c))
          cn.append(c)
        tot = tot + jnp.sum(jnp.stack(hn) * r_trees[j]) + 0.3 * jnp.sum(jnp.stack(cn))
      return tot

    xs_trees = [jnp.asarray(e.x, jnp.float64) for e in exs]
    v_lvl, (g_lvl, gx_lvl) = jax.jit(jax.value_and_grad(loss_level, argnums=(0, 1)))(params, x64)
    v_ref, (g_ref, gx_ref) = jax.jit(jax.value_and_grad(loss_ref_full, argnums=(0, 1)))(
        params, xs_trees)
    np.testing.assert_allclose(v_lvl, v_ref, rtol=1e-5)
    chex.assert_trees_all_close(g_lvl, g_ref, rtol=1e-5, atol=1e-8)
    for got, want in zip(gather_nodes(batch, np.asarray(gx_lvl), exs), gx_ref):
      np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-8)
    # Padding slots receive no gradient.
    assert np.all(np.asarray(gx_lvl)[~batch.node_mask] == 0)


def test_levelwise_impls_and_unroll_agree():
  """impl="vjp" (hand-written backward) equals autodiff through the scan (impl="scan"), for
  unroll 5 (not dividing K = 12) and full, float32, with a star level (many children per
  parent row in one chunk: duplicate scatter indices) and a cotangent on c as well as h."""
  rng = np.random.default_rng(7)
  hid = 4
  pars = [[-1] + [0] * 11, random_parents(rng, 13), [-1, 0, 1, 2, 3]]
  exs = make_examples(rng, pars)
  k = T.num_chunks_needed([e.depth for e in exs], 3)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=3, num_chunks=k + 1, batch_trees=4)
  kk = batch.chunk_depth.shape[0]
  assert kk == 12
  xw = jnp.asarray(rng.normal(size=(batch.x.shape[0], 4 * hid)), jnp.float32)
  h0 = jnp.asarray(rng.normal(size=(4, hid)), jnp.float32)
  c0 = jnp.asarray(rng.normal(size=(4, hid)), jnp.float32)
  u = jnp.asarray(rng.normal(size=(hid, 4 * hid)) * 0.5, jnp.float32)
  r = jnp.asarray(rng.normal(size=(batch.x.shape[0], 2 * hid)), jnp.float32)
  parent = jnp.asarray(batch.parent)

  def run(impl, unroll):
    def loss(xw, h0, c0, u):
      h, c = M.levelwise_tree_lstm(xw, parent, h0, c0, u, kk, impl=impl, unroll=unroll)
      return jnp.sum(h * r[:, :hid]) + jnp.sum(jnp.tanh(c) * r[:, hid:]), (h, c)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(xw, h0, c0, u)

  want = run("scan", 1)
  # unroll=1 of "vjp" is the default, checked against the node-by-node reference above.
  for impl, unroll in (("vjp", 5), ("vjp", True)):
    chex.assert_trees_all_close(run(impl, unroll), want, rtol=2e-5, atol=2e-6)
  # Given x, W, b (W x + b inside the scan): same values, and the gradients chain through W x + b.
  x = jnp.asarray(rng.normal(size=(batch.x.shape[0], 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 4 * hid)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=4 * hid), jnp.float32)

  def run_x(fused, impl):
    def loss(x, w, bias, c0, u):
      if fused:
        h, c = M.levelwise_tree_lstm_inputs(x, w, bias, parent, h0, c0, u, kk, impl=impl,
                                            unroll=2)
      else:
        h, c = M.levelwise_tree_lstm(x @ w + bias[None, :], parent, h0, c0, u, kk, impl="scan")
      return jnp.sum(h * r[:, :hid]) + jnp.sum(jnp.tanh(c) * r[:, hid:])
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))(x, w, bias, c0, u)

  want_x = run_x(False, None)
  for impl in M.LEVELWISE_IMPLS:
    chex.assert_trees_all_close(run_x(True, impl), want_x, rtol=2e-5, atol=2e-6)
  with pytest.raises(ValueError, match="impl"):
    M.levelwise_tree_lstm(xw, parent, h0, c0, u, kk, impl="nope")
  with pytest.raises(ValueError, match="multiple"):
    M.levelwise_tree_lstm(xw[:-1], parent[:-1], h0, c0, u, kk)


def test_by_level_equals_scan_with_padding_runs():
  """levelwise_tree_lstm_by_level (one step per level, static widths from chunk_runs) equals
  the scan on real nodes, in values and gradients, with several chunks per level, a single-node
  tree, unused bucket chunks at the end (a trailing depth-0 run) and padding slots."""
  rng = np.random.default_rng(8)
  hid = 4
  exs = make_examples(rng, [[-1] + [0] * 11, random_parents(rng, 13), [-1, 0, 1, 2, 3], [-1]])
  k = T.num_chunks_needed([e.depth for e in exs], 3)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=3, num_chunks=k + 2, batch_trees=5)
  runs = M.chunk_runs(batch.chunk_depth)
  assert sum(runs) == k + 2 and runs[0] == 2 and runs[-1] == 2  # 2 root chunks, 2 unused
  n = batch.x.shape[0]
  xw = jnp.asarray(rng.normal(size=(n, 4 * hid)), jnp.float32)
  h0 = jnp.asarray(rng.normal(size=(5, hid)), jnp.float32)
  c0 = jnp.asarray(rng.normal(size=(5, hid)), jnp.float32)
  u = jnp.asarray(rng.normal(size=(hid, 4 * hid)) * 0.5, jnp.float32)
  r = jnp.asarray(rng.normal(size=(n, 2 * hid)), jnp.float32)
  mask = jnp.asarray(batch.node_mask)[:, None]
  parent = jnp.asarray(batch.parent)

  def run(fn):
    def loss(xw, h0, c0, u):
      h, c = fn(xw, h0, c0, u)
      h = jnp.where(mask, h, jnp.zeros((), h.dtype))
      c = jnp.where(mask, c, jnp.zeros((), c.dtype))
      return jnp.sum(h * r[:, :hid]) + jnp.sum(jnp.tanh(c) * r[:, hid:]), (h, c)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(xw, h0, c0, u)

  want = run(lambda *a: M.levelwise_tree_lstm(a[0], parent, *a[1:], k + 2))
  got = run(lambda *a: M.levelwise_tree_lstm_by_level(a[0], parent, *a[1:], runs))
  chex.assert_trees_all_close(got, want, rtol=2e-5, atol=2e-6)
  # The inputs form ([x, h_parent] @ [W; U] + b per level) against the same on xw = x W + b,
  # gradients w.r.t. x, W and b included.
  dim = 3
  x = jnp.asarray(rng.normal(size=(n, dim)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(dim, 4 * hid)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(4 * hid,)), jnp.float32)

  def run_x(fn):
    def loss(x, w, bias, c0, u):
      h, c = fn(x, w, bias, c0, u)
      return jnp.sum(jnp.where(mask, h * r[:, :hid] + jnp.tanh(c) * r[:, hid:], 0.0))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))(x, w, bias, c0, u)

  want_x = run_x(lambda x, w, bias, c0, u: M.levelwise_tree_lstm_by_level(
      x @ w + bias[None, :], parent, h0, c0, u, runs))
  got_x = run_x(lambda x, w, bias, c0, u: M.levelwise_tree_lstm_inputs_by_level(
      x, w, bias, parent, h0, c0, u, runs))
  chex.assert_trees_all_close(got_x, want_x, rtol=2e-5, atol=2e-6)
  with pytest.raises(ValueError, match="disagree"):
    M.levelwise_tree_lstm_inputs_by_level(x, w[1:], bias, parent, h0, c0, u, runs)
  with pytest.raises(ValueError, match="chunk_depth"):
    M.chunk_runs(np.zeros((0,), np.int32))


def _model_and_batch(variant="full", n_trees=3, chunk=8, num_chunks=16, seed=0):
  rng = np.random.default_rng(seed)
  pars = [random_parents(rng, n) for n in rng.integers(1, 20, n_trees)]
  exs = make_examples(rng, pars)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=chunk, num_chunks=num_chunks, batch_trees=4)
  gd, params = M.init_model(jax.random.key(0), input_dim=5, content_dim=3, num_protos=4,
                            variant=variant, hidden=8, head_hidden=8)
  return gd, params, batch, exs


@pytest.mark.parametrize("variant", M.VARIANTS)
def test_model_shapes_and_finite_loss(variant):
  gd, params, batch, _ = _model_and_batch(variant)
  wp, wn = M.class_weights(np.ones(5) * 3, np.ones(5) * 7)

  @jax.jit
  def go(p, key):
    def loss(p):
      logits = M.apply_model(gd, p, batch, key)
      return M.weighted_bce(logits, batch.targets, batch.node_mask, wp, wn), logits
    return jax.value_and_grad(loss, has_aux=True)(p)

  (loss, logits), grads = go(params, jax.random.key(2))
  chex.assert_shape(logits, (batch.x.shape[0], 5))
  chex.assert_tree_all_finite(logits)
  assert np.isfinite(float(loss))
  chex.assert_tree_all_finite(grads)


def test_model_scan_impls_agree_and_forward_mode_works_with_scan():
  """DiffusionLSTM(scan_impl="vjp", scan_unroll=2), scan_fuse_input=True and scan_impl="scan":
  same loss and grads; forward-mode (jax.jvp), which a custom VJP does not support, works with
  "scan"."""
  gd, params, batch, _ = _model_and_batch("full")
  wp, wn = M.class_weights(np.ones(5) * 3, np.ones(5) * 7)
  model = M.nnx.merge(gd, params)
  args = dict(input_dim=5, content_dim=3, num_protos=4, hidden=8, head_hidden=8)

  def loss_of(impl, unroll):
    gdi, _ = M.init_model(jax.random.key(0), scan_impl=impl, scan_unroll=unroll, **args)
    return lambda p: M.weighted_bce(M.apply_model(gdi, p, batch), batch.targets, batch.node_mask,
                                    wp, wn)

  got = jax.jit(jax.value_and_grad(loss_of("vjp", 2)))(params)
  want = jax.jit(jax.value_and_grad(loss_of("scan", 1)))(params)
  chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-7)
  gdf, _ = M.init_model(jax.random.key(0), scan_fuse_input=True, **args)
  fused = jax.jit(jax.value_and_grad(lambda p: M.weighted_bce(
      M.apply_model(gdf, p, batch), batch.targets, batch.node_mask, wp, wn)))(params)
  chex.assert_trees_all_close(fused, want, rtol=2e-5, atol=1e-7)
  tangent = jax.tree.map(jnp.ones_like, params)
  _, jvp = jax.jvp(loss_of("scan", 1), (params,), (tangent,))
  assert np.isfinite(float(jvp))
  assert model.scan_impl == "vjp" and model.scan_unroll == 1
  with pytest.raises(ValueError, match="scan_impl"):
    M.init_model(jax.random.key(0), scan_impl="loop", **args)


def test_weighted_bce_matches_numpy_and_all_padding_is_finite():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 2
  t = (rng.random((6, 5)) < 0.4).astype(np.float32)
  mask = np.array([1, 1, 0, 1, 1, 0], bool)
  pos, neg = t[mask].sum(0), (1 - t[mask]).sum(0)
  wp, wn = M.class_weights(pos, neg)
  np.testing.assert_allclose(wp, neg / (pos + neg), rtol=1e-6)
  got = M.weighted_bce(jnp.asarray(logits), jnp.asarray(t), jnp.asarray(mask), wp, wn)
  o = 1 / (1 + np.exp(-logits.astype(np.float64)))
  per = -(np.asarray(wp) * t * np.log(o) + np.asarray(wn) * (1 - t) * np.log(1 - o))
  np.testing.assert_allclose(got, per[mask].sum() / mask.sum(), rtol=1e-5)
  gd, params, batch, _ = _model_and_batch()
  empty = T.make_tree_batch([], num_protos=4, chunk=8, num_chunks=16, batch_trees=4)
  empty = empty._replace(x=np.zeros((empty.x.shape[0], 5), np.float32),
                         content=np.zeros((4, 3), np.float32))
  loss, grads = jax.jit(jax.value_and_grad(lambda p: M.weighted_bce(
      M.apply_model(gd, p, empty), empty.targets, empty.node_mask, wp, wn)))(params)
  assert float(loss) == 0.0
  chex.assert_tree_all_finite(grads)


def test_one_compile_per_bucket():
  rng = np.random.default_rng(4)
  pars = [random_parents(rng, int(n)) for n in rng.integers(1, 40, 24)]
  exs = make_examples(rng, pars)
  batches = T.bucket_tree_batches(exs, num_protos=4, batch_trees=3, chunk=8, buckets=(4, 8, 16))
  ks = {b.chunk_depth.shape[0] for b in batches}
  assert ks <= {4, 8, 16} and len(batches) >= len(ks)
  assert sum(int(b.node_mask.sum()) for b in batches) == sum(e.parent.shape[0] for e in exs)
  gd, params = M.init_model(jax.random.key(0), input_dim=5, content_dim=3, num_protos=4, hidden=8,
                            head_hidden=8)

  @jax.jit
  @chex.assert_max_traces(n=len(ks))
  def fwd(p, b):
    return M.apply_model(gd, p, b).sum()

  chex.clear_trace_counter()
  for b in batches + batches:
    fwd(params, b)


def test_single_node_depth_one_forest_and_deep_chain():
  rng = np.random.default_rng(5)
  gd, params = M.init_model(jax.random.key(0), input_dim=5, content_dim=3, num_protos=4, hidden=8,
                            head_hidden=8)
  w = np.asarray(params["w"][...])
  u = np.asarray(params["u"][...])
  b = np.asarray(params["b"][...])
  cfc = params["content_fc"]
  c_root = lambda c: c @ np.asarray(cfc["kernel"][...]) + np.asarray(cfc["bias"][...])
  single = [[-1]]
  forest = [[-1] + [0] * int(n) for n in (1, 4, 9)]
  chain = [[-1] + list(range(49))]  # 50 nodes: depth 49 edges; 51 nodes below gives depth 50
  chain50 = [[-1] + list(range(50))]
  for pars, chunk in ((single, 4), (forest, 4), (chain, 1), (chain50, 2)):
    exs = make_examples(rng, pars)
    k = T.num_chunks_needed([e.depth for e in exs], chunk)
    batch = T.make_tree_batch(exs, num_protos=4, chunk=chunk, num_chunks=k, batch_trees=len(exs))
    h, _ = jax.jit(lambda p, bb: M.nnx.merge(gd, p).states(bb))(params, batch)
    ref = reference_states(exs, w.astype(np.float64), u.astype(np.float64), b.astype(np.float64),
                           lambda c: c_root(c.astype(np.float64)))
    for got, want in zip(gather_nodes(batch, np.asarray(h), exs), ref):
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    t = batch.targets[batch.node_mask]
    leaves = sum(int((np.bincount(e.parent[1:], minlength=e.parent.shape[0]) == 0).sum())
                 for e in exs)
    assert int(t[:, -1].sum()) == leaves
  assert max(T.tree_from_parents(chain50[0], name="c").depth) == 50


def test_generation_respects_caps_and_is_vmapped():
  gd, params, batch, exs = _model_and_batch("full")
  rng = np.random.default_rng(6)
  proto_x = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  content = jnp.asarray(np.stack([e.content for e in exs]))
  root_x = jnp.asarray(np.stack([e.x[0] for e in exs]))
  g = jax.jit(lambda p, thr: M.generate_trees(gd, p, content, root_x, proto_x, thr,
                                              terminal_threshold=1.0, max_depth=4, max_width=5,
                                              max_size=12))(params, jnp.zeros(4))
  # terminal never fires and every prototype passes: trees grow to the caps.
  np.testing.assert_array_equal(g.size, 12)
  assert np.all(np.asarray(g.widths) <= 5)
  np.testing.assert_allclose(np.asarray(g.proto_counts).sum(-1), np.asarray(g.size) - 1)
  gs = jax.jit(lambda p, thr, keys: M.generate_trees(
      gd, p, content, root_x, proto_x, thr, keys=keys, terminal_threshold=1.0, max_depth=4,
      max_width=5, max_size=12))(params, jnp.zeros(4), jax.random.split(jax.random.key(0), 3))
  chex.assert_shape(gs.depth, (3, len(exs)))
  assert np.all(np.asarray(gs.size) <= 12) and np.all(np.asarray(gs.size) >= 1)
