"""The level-wise tree LSTM kernels (nn.tree_lstm) against the node-by-node baseline
(baselines.tree_lstm) and a NumPy recursion: values and gradients, every impl and variant."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _tree_examples import gather_nodes, make_examples, random_parents, tree_slots
from popdiff_jax.baselines import tree_lstm as B
from popdiff_jax.data import trees as T
from popdiff_jax.nn import tree_lstm as L

# Our own functions run under jax_numpy_dtype_promotion="strict" (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_dtypes")


def numpy_states(ex_list, w, u, b, c_root_fn):
  """Eq. 1 node by node in NumPy float64, gate blocks (i, f, g, o)."""
  sig = lambda z: 1 / (1 + np.exp(-z))
  hs = []
  for e in ex_list:
    hid = u.shape[0]
    c0 = c_root_fn(e.content)
    h_nodes, c_nodes = [], []
    for i in range(e.parent.shape[0]):
      p = int(e.parent[i])
      hp, cp = (np.zeros(hid), c0) if p < 0 else (h_nodes[p], c_nodes[p])
      z = e.x[i].astype(np.float64) @ w + hp @ u + b
      ii, f, g, o = z[:hid], z[hid:2 * hid], z[2 * hid:3 * hid], z[3 * hid:]
      c = sig(f) * cp + sig(ii) * np.tanh(g)
      h_nodes.append(sig(o) * np.tanh(c))
      c_nodes.append(c)
    hs.append(np.stack(h_nodes))
  return hs


@pytest.mark.parametrize("chunk", [3, 64])
def test_forward_matches_numpy_and_the_node_by_node_baseline(chunk):
  rng = np.random.default_rng(0)
  hid = 6
  pars = [random_parents(rng, n) for n in (1, 2, 7, 15, 30)]
  exs = make_examples(rng, pars)
  k_needed = T.num_chunks_needed([e.depth for e in exs], chunk)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=chunk, num_chunks=k_needed + 2,
                            batch_trees=6)
  w = rng.normal(size=(5, 4 * hid)) * 0.5
  u = rng.normal(size=(hid, 4 * hid)) * 0.5
  b = rng.normal(size=4 * hid) * 0.1
  wc = rng.normal(size=(3, hid))
  ref = numpy_states(exs, w, u, b, lambda c: c.astype(np.float64) @ wc)
  with jax.enable_x64(True):
    xw = jnp.asarray(batch.x, jnp.float64) @ w + b[None, :]
    c_root = jnp.asarray(batch.content, jnp.float64) @ wc
    h, _ = L.levelwise_tree_lstm(xw, jnp.asarray(batch.parent), jnp.zeros_like(c_root), c_root,
                                 jnp.asarray(u), batch.num_chunks)
    h = np.asarray(h)
    base = [np.asarray(B.tree_lstm_states_jit(
        jnp.asarray(e.x, jnp.float64), jnp.asarray(e.parent), jnp.asarray(w), jnp.asarray(u),
        jnp.asarray(b), jnp.zeros(hid), jnp.asarray(e.content, jnp.float64) @ wc)[0])
        for e in exs]
  for got, want, node in zip(gather_nodes(batch, h, exs), ref, base):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(node, want, rtol=1e-10, atol=1e-10)


KERNELS = [("tree_lstm_by_parents", "vjp"), ("tree_lstm_by_parents", "scan"),
           ("levelwise_tree_lstm", "vjp"), ("levelwise_tree_lstm", "scan"),
           ("levelwise_tree_lstm_inputs", "vjp"), ("levelwise_tree_lstm_inputs", "scan"),
           ("levelwise_tree_lstm_by_level", None), ("levelwise_tree_lstm_inputs_by_level", None)]


def test_values_and_gradients_match_the_node_by_node_baseline():
  """Every kernel (and impl) against baselines.tree_lstm node by node (both forms), float64:
  the loss and its gradients w.r.t. W, U, b, the content FC and the inputs to 1e-5; padding
  slots get no input gradient."""
  rng = np.random.default_rng(1)
  hid = 4
  pars = [random_parents(rng, n) for n in (1, 5, 9, 14)]
  exs = make_examples(rng, pars)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=4, num_chunks=24, batch_trees=5,
                            parent_chunk=2, parent_buckets=(16,))
  runs = L.chunk_runs(batch.chunk_depth)
  parent_chunks = jnp.asarray(batch.parent_chunks)
  with jax.enable_x64(True):
    params = dict(w=jnp.asarray(rng.normal(size=(5, 4 * hid)) * 0.5),
                  u=jnp.asarray(rng.normal(size=(hid, 4 * hid)) * 0.5),
                  b=jnp.asarray(rng.normal(size=4 * hid) * 0.1),
                  wc=jnp.asarray(rng.normal(size=(3, hid))))
    r_trees = [jnp.asarray(rng.normal(size=(e.parent.shape[0], hid))) for e in exs]
    # Random readout weights put per node, in slot layout, for the level-wise loss.
    r_slots = np.zeros((batch.x.shape[0], hid))
    for j in range(len(exs)):
      r_slots[tree_slots(batch, j)] = np.asarray(r_trees[j])
    r_slots = jnp.asarray(r_slots)
    mask = jnp.asarray(batch.node_mask)[:, None]
    parent = jnp.asarray(batch.parent)
    x64 = jnp.asarray(batch.x, jnp.float64)
    cont64 = jnp.asarray(batch.content, jnp.float64)

    def loss_level(p, x, fn, impl):
      c_root = cont64 @ p["wc"]
      h0 = jnp.zeros_like(c_root)
      if fn == "tree_lstm_by_parents":
        h, c = L.tree_lstm_by_parents(x @ p["w"] + p["b"][None, :], parent, parent_chunks, h0,
                                      c_root, p["u"], impl=impl)
      elif fn == "levelwise_tree_lstm":
        h, c = L.levelwise_tree_lstm(x @ p["w"] + p["b"][None, :], parent, h0, c_root, p["u"],
                                     batch.num_chunks, impl=impl)
      elif fn == "levelwise_tree_lstm_inputs":
        h, c = L.levelwise_tree_lstm_inputs(x, p["w"], p["b"], parent, h0, c_root, p["u"],
                                            batch.num_chunks, impl=impl)
      elif fn == "levelwise_tree_lstm_by_level":
        h, c = L.levelwise_tree_lstm_by_level(x @ p["w"] + p["b"][None, :], parent, h0, c_root,
                                              p["u"], runs)
      else:
        h, c = L.levelwise_tree_lstm_inputs_by_level(x, p["w"], p["b"], parent, h0, c_root,
                                                     p["u"], runs)
      return (jnp.sum(jnp.where(mask, h * r_slots, 0.0))
              + 0.3 * jnp.sum(jnp.where(mask, c, 0.0)))

    def loss_node(p, xs, form):
      h_roots = [jnp.zeros(hid)] * len(exs)
      c_roots = [jnp.asarray(e.content, jnp.float64) @ p["wc"] for e in exs]
      if form == "fori_loop":
        states = [B.tree_lstm_states(x, jnp.asarray(e.parent), p["w"], p["u"], p["b"], h0, c0)
                  for x, e, h0, c0 in zip(xs, exs, h_roots, c_roots)]
      else:
        states = B.forest_states(xs, [e.parent for e in exs], p["w"], p["u"], p["b"], h_roots,
                                 c_roots)
      return sum(jnp.sum(h * r) + 0.3 * jnp.sum(c) for (h, c), r in zip(states, r_trees))

    xs_trees = [jnp.asarray(e.x, jnp.float64) for e in exs]
    refs = [jax.jit(jax.value_and_grad(lambda p, xs, form=form: loss_node(p, xs, form),
                                       argnums=(0, 1)))(params, xs_trees)
            for form in ("fori_loop", "python_list")]
    for fn, impl in KERNELS:
      v_lvl, (g_lvl, gx_lvl) = jax.jit(jax.value_and_grad(
          lambda p, x: loss_level(p, x, fn, impl), argnums=(0, 1)))(params, x64)
      for v_ref, (g_ref, gx_ref) in refs:
        np.testing.assert_allclose(v_lvl, v_ref, rtol=1e-5, err_msg=fn)
        chex.assert_trees_all_close(g_lvl, g_ref, rtol=1e-5, atol=1e-8, custom_message=fn)
        for got, want in zip(gather_nodes(batch, np.asarray(gx_lvl), exs), gx_ref):
          np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-8, err_msg=fn)
      # Padding slots receive no gradient.
      assert np.all(np.asarray(gx_lvl)[~batch.node_mask] == 0), fn


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
  kk = batch.num_chunks
  assert kk == 12
  xw = jnp.asarray(rng.normal(size=(batch.x.shape[0], 4 * hid)), jnp.float32)
  h0 = jnp.asarray(rng.normal(size=(4, hid)), jnp.float32)
  c0 = jnp.asarray(rng.normal(size=(4, hid)), jnp.float32)
  u = jnp.asarray(rng.normal(size=(hid, 4 * hid)) * 0.5, jnp.float32)
  r = jnp.asarray(rng.normal(size=(batch.x.shape[0], 2 * hid)), jnp.float32)
  parent = jnp.asarray(batch.parent)

  def run(impl, unroll):
    def loss(xw, h0, c0, u):
      h, c = L.levelwise_tree_lstm(xw, parent, h0, c0, u, kk, impl=impl, unroll=unroll)
      return jnp.sum(h * r[:, :hid]) + jnp.sum(jnp.tanh(c) * r[:, hid:]), (h, c)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(xw, h0, c0, u)

  want = run("scan", 1)
  # unroll=1 of "vjp" is the default, checked against the node-by-node baseline above.
  for impl, unroll in (("vjp", 5), ("vjp", True)):
    chex.assert_trees_all_close(run(impl, unroll), want, rtol=2e-5, atol=2e-6)
  # Given x, W, b (W x + b inside the scan): same values, and the gradients chain through W x + b.
  x = jnp.asarray(rng.normal(size=(batch.x.shape[0], 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 4 * hid)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=4 * hid), jnp.float32)

  def run_x(fused, impl):
    def loss(x, w, bias, c0, u):
      if fused:
        h, c = L.levelwise_tree_lstm_inputs(x, w, bias, parent, h0, c0, u, kk, impl=impl,
                                            unroll=2)
      else:
        h, c = L.levelwise_tree_lstm(x @ w + bias[None, :], parent, h0, c0, u, kk, impl="scan")
      return jnp.sum(h * r[:, :hid]) + jnp.sum(jnp.tanh(c) * r[:, hid:])
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))(x, w, bias, c0, u)

  want_x = run_x(False, None)
  for impl in L.LEVELWISE_IMPLS:
    chex.assert_trees_all_close(run_x(True, impl), want_x, rtol=2e-5, atol=2e-6)
  with pytest.raises(ValueError, match="impl"):
    L.levelwise_tree_lstm(xw, parent, h0, c0, u, kk, impl="nope")
  with pytest.raises(ValueError, match="multiple"):
    L.levelwise_tree_lstm(xw[:-1], parent[:-1], h0, c0, u, kk)


@pytest.mark.parametrize("width", [1, 3, 16])
def test_by_parents_impls_and_unroll_agree_with_the_chunk_scan(width):
  """tree_lstm_by_parents equals levelwise_tree_lstm in values and gradients (w.r.t. xw, the
  root states and U, float32) for both impls, unroll 1, 3 and full (width 3; 1 and full at the
  others): a star (many children on one
  parent row: duplicate scatter indices), a chain, a single node, unused parent chunks and
  padding slots, with a cotangent on c as well as h."""
  rng = np.random.default_rng(9)
  hid = 4
  exs = make_examples(rng, [[-1] + [0] * 11, random_parents(rng, 13), [-1, 0, 1, 2, 3], [-1]])
  k = T.num_chunks_needed([e.depth for e in exs], 3)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=3, num_chunks=k + 2, batch_trees=5,
                            parent_chunk=width, parent_buckets=(20,))
  assert batch.parent_chunks.shape == (20, width)
  n = batch.x.shape[0]
  xw = jnp.asarray(rng.normal(size=(n, 4 * hid)), jnp.float32)
  h0 = jnp.asarray(rng.normal(size=(5, hid)), jnp.float32)
  c0 = jnp.asarray(rng.normal(size=(5, hid)), jnp.float32)
  u = jnp.asarray(rng.normal(size=(hid, 4 * hid)) * 0.5, jnp.float32)
  r = jnp.asarray(rng.normal(size=(n, 2 * hid)), jnp.float32)
  mask = jnp.asarray(batch.node_mask)[:, None]
  parent = jnp.asarray(batch.parent)
  pc = jnp.asarray(batch.parent_chunks)

  def run(fn):
    def loss(xw, h0, c0, u):
      h, c = fn(xw, h0, c0, u)
      h = jnp.where(mask, h, jnp.zeros((), h.dtype))
      c = jnp.where(mask, c, jnp.zeros((), c.dtype))
      return jnp.sum(h * r[:, :hid]) + jnp.sum(jnp.tanh(c) * r[:, hid:]), (h, c)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(xw, h0, c0, u)

  want = run(lambda *a: L.levelwise_tree_lstm(a[0], parent, *a[1:], k + 2, impl="scan"))
  # Every unroll factor at width 3; the two ends at the other widths (each is a compile).
  for impl in L.LEVELWISE_IMPLS:
    for unroll in {1: (1,), 3: (1, 3, True), 16: (True,)}[width]:
      got = run(lambda *a: L.tree_lstm_by_parents(a[0], parent, pc, *a[1:], impl=impl,
                                                  unroll=unroll))
      chex.assert_trees_all_close(got, want, rtol=2e-5, atol=2e-6)
      # Padding slots get no gradient.
      assert np.all(np.asarray(got[1][0])[~batch.node_mask] == 0)
  # Forward-mode AD through impl="scan".
  tangent = jax.jvp(lambda xw: L.tree_lstm_by_parents(xw, parent, pc, h0, c0, u, impl="scan"),
                    (xw,), (jnp.ones_like(xw),))[1][0]
  chex.assert_tree_all_finite(tangent)
  with pytest.raises(ValueError, match="impl"):
    L.tree_lstm_by_parents(xw, parent, pc, h0, c0, u, impl="nope")
  with pytest.raises(ValueError, match="shapes"):
    L.tree_lstm_by_parents(xw, parent[:-1], pc, h0, c0, u)
  with pytest.raises(ValueError, match="disagree"):
    L.tree_lstm_by_parents(xw[:, 1:], parent, pc, h0, c0, u)


def test_by_level_equals_scan_with_padding_runs():
  """levelwise_tree_lstm_by_level (one step per level, static widths from chunk_runs) equals
  the scan on real nodes, in values and gradients, with several chunks per level, a single-node
  tree, unused bucket chunks at the end (a trailing depth-0 run) and padding slots."""
  rng = np.random.default_rng(8)
  hid = 4
  exs = make_examples(rng, [[-1] + [0] * 11, random_parents(rng, 13), [-1, 0, 1, 2, 3], [-1]])
  k = T.num_chunks_needed([e.depth for e in exs], 3)
  batch = T.make_tree_batch(exs, num_protos=4, chunk=3, num_chunks=k + 2, batch_trees=5)
  runs = L.chunk_runs(batch.chunk_depth)
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

  want = run(lambda *a: L.levelwise_tree_lstm(a[0], parent, *a[1:], k + 2))
  got = run(lambda *a: L.levelwise_tree_lstm_by_level(a[0], parent, *a[1:], runs))
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

  want_x = run_x(lambda x, w, bias, c0, u: L.levelwise_tree_lstm_by_level(
      x @ w + bias[None, :], parent, h0, c0, u, runs))
  got_x = run_x(lambda x, w, bias, c0, u: L.levelwise_tree_lstm_inputs_by_level(
      x, w, bias, parent, h0, c0, u, runs))
  chex.assert_trees_all_close(got_x, want_x, rtol=2e-5, atol=2e-6)
  with pytest.raises(ValueError, match="disagree"):
    L.levelwise_tree_lstm_inputs_by_level(x, w[1:], bias, parent, h0, c0, u, runs)
  with pytest.raises(ValueError, match="chunk_depth"):
    L.chunk_runs(np.zeros((0,), np.int32))
