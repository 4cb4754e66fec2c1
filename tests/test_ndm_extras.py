"""NDM+SN (frozen embedding block), the social embedding, the sweep's settings and the W^C norms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from popdiff_jax.data.batching import make_batches
from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.experiments import ndm_extras as ex
from popdiff_jax.experiments import next_user as nu
from popdiff_jax.functional import cascade_batch
from popdiff_jax.models.deepwalk import DeepWalkConfig
from popdiff_jax.models.ndm import NDM
from popdiff_jax.train.state import create_train_state

U, D, F = 21, 8, 4


def _frozen_table(seed=0):
  return np.random.default_rng(seed).normal(size=(U, F)).astype(np.float32)


def _batch(rng, b=4, length=10):
  """Ragged cascades of distinct users, Terminate appended (``functional.cascade_batch``)."""
  return cascade_batch([rng.choice(np.arange(2, U), size=int(rng.integers(2, length)),
                                   replace=False) for _ in range(b)], max_len=length)


def _cfg(**kw):
  return nu.NextUserConfig(dim=D, num_heads=2, window=2, **kw)


def test_embed_puts_the_frozen_block_first(strict_dtypes):
  table = _frozen_table()
  model = NDM(U, dim=D, num_heads=2, frozen_embedding=jnp.asarray(table), rngs=nnx.Rngs(0))
  users = jnp.asarray(np.random.default_rng(1).integers(0, U, (3, 5)), jnp.int32)
  emb = np.asarray(model.embed(users))
  assert emb.shape == (3, 5, D)
  np.testing.assert_array_equal(emb[..., :F], table[np.asarray(users)])
  np.testing.assert_array_equal(emb[..., F:], np.asarray(model.embedding[...])[np.asarray(users)])
  assert model.embedding[...].shape == (U, D - F)
  with pytest.raises(ValueError):
    NDM(U, dim=D, frozen_embedding=jnp.zeros((U, D)), rngs=nnx.Rngs(0))


def test_decoding_uses_the_same_embedding_as_the_forward_pass(strict_dtypes):
  model = NDM(U, dim=D, num_heads=2, window=2, f_init=1,
              frozen_embedding=jnp.asarray(_frozen_table()), rngs=nnx.Rngs(0))
  rng = np.random.default_rng(2)
  users = jnp.asarray(np.stack([rng.choice(np.arange(2, U), 7, replace=False) for _ in range(2)]),
                      jnp.int32)
  mask = jnp.ones(users.shape, bool)
  full = np.asarray(model(users, mask))
  cache = model.decode_init(users[:, :2], mask[:, :2], 7)
  for j in range(1, 6):
    np.testing.assert_allclose(np.asarray(model.decode_logits(cache)), full[:, j], rtol=1e-5,
                               atol=1e-5)
    cache = model.decode_step(cache, users[:, j + 1])


def _train_steps(cfg, table, wrap, steps=2):
  graphdef, params = nnx.split(ex.build_ndm(cfg, U, 0, table))
  before = jax.tree.map(np.array, params)  # the step donates its input state
  tx = nu.make_optimizer(cfg)
  tx = ex.freeze_non_params(tx) if wrap else tx
  state = create_train_state(params, tx)
  step = nu.make_train_step(graphdef, tx)
  rng = np.random.default_rng(4)
  for s in range(steps):
    state, _ = step(state, _batch(rng), jax.random.key(s))
  return before, state


def test_frozen_block_is_bit_identical_after_training_steps():
  """With ``freeze_non_params`` even AdamW's weight decay leaves the block alone."""
  table = _frozen_table()
  before, state = _train_steps(_cfg(weight_decay=0.1, learning_rate=1e-2), table, wrap=True)
  np.testing.assert_array_equal(np.asarray(state.params["frozen_embedding"][...]), table)
  for name in ("embedding", "w_c"):
    assert not np.array_equal(np.asarray(state.params[name][...]), np.asarray(before[name][...]))
  # The optimiser holds no state for the frozen block (Adam: two moments per trained entry).
  n_train = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(before)
                if "frozen" not in jax.tree_util.keystr(path))
  assert sum(x.size for x in jax.tree.leaves(state.opt_state)) == 2 * n_train + 1


def test_unwrapped_adam_keeps_the_block_but_adamw_moves_it():
  """``next_user.train``'s optimiser as is: stop_gradient suffices for Adam (any gradient entry
  would move Adam's update by about the learning rate, so the block gets none), not for AdamW."""
  table = _frozen_table()
  _, state = _train_steps(_cfg(learning_rate=1e-2), table, wrap=False)
  np.testing.assert_array_equal(np.asarray(state.params["frozen_embedding"][...]), table)
  _, state = _train_steps(_cfg(weight_decay=0.1, learning_rate=1e-2), table, wrap=False, steps=1)
  assert not np.array_equal(np.asarray(state.params["frozen_embedding"][...]), table)


def _write_social_dataset(root):
  """A tiny Inf-VAE-format dataset: a graph with users outside the cascades and cascade users
  outside the graph."""
  folder = root / "infvae" / "christianity"
  folder.mkdir(parents=True)
  rng = np.random.default_rng(6)
  names = [f"n{i}" for i in range(30)]
  edges = {tuple(sorted(rng.choice(30, 2, replace=False))) for _ in range(80)}
  folder.joinpath("graph.txt").write_text(
      f"30 {len(edges)}\n" + "".join(f"{names[a]} {names[b]}\n" for a, b in sorted(edges)))
  pool = names[:24] + ["x1", "x2", "x3"]  # x*: no graph; n24..n29: graph only

  def lines(k):
    out = []
    for _ in range(k):
      users = rng.choice(pool, size=int(rng.integers(3, 9)), replace=False)
      out.append(" ".join([users[0]] + [f"{u} {float(t)}" for t, u in enumerate(users[1:], 1)]))
    return "\n".join(out) + "\n"

  for split, k in (("train", 40), ("val", 8), ("test", 8)):
    folder.joinpath(f"{split}.txt").write_text(lines(k))
  return root


def test_social_embedding_then_ndm_sn_trains_and_scores(tmp_path):
  root = _write_social_dataset(tmp_path)
  data = load_dataset("infvae/christianity", root)
  table, info = ex.social_embedding(data, root, DeepWalkConfig(dim=4, walks_per_node=4,
                                                               walk_length=10, batch_size=256))
  # The table: graph users covered (unit RMS), users outside the graph, padding, Terminate zero.
  assert table.shape == (len(data.vocab), 4) and table.dtype == np.float32
  assert info["graph_nodes"] == 30
  in_graph = np.array([data.vocab.user(i).startswith("n") for i in range(2, len(data.vocab))])
  rows = table[2:]
  assert np.all(rows[~in_graph] == 0) and np.all(table[:2] == 0)
  assert np.all(np.any(rows[in_graph] != 0, axis=1))
  np.testing.assert_allclose(np.sqrt(np.mean(rows[in_graph] ** 2)), 1.0, rtol=1e-5)
  assert info["users_in_graph"] == int(in_graph.sum())
  # NDM+SN: the block stays as it was; the F1 protocol and the norms run on the trained model.
  cfg = nu.NextUserConfig(dim=8, num_heads=2, num_epochs=1, batch_size=64, max_len=7, f_init=1)
  trained = ex.train(data, cfg, tmp_path / "run", frozen_embedding=table, progress=False)
  np.testing.assert_array_equal(np.asarray(trained.params["frozen_embedding"][...]), table)
  assert trained.info["epochs"] == 1
  scores = ex.evaluate_f1(data, trained, runs=8, first_k=5, max_rows=128)
  assert 0.0 <= scores["macro_f1_first5"] <= 1.0 and 0.0 <= scores["micro_f1_first5"] <= 1.0
  assert scores["scored_cascades_first5"] == sum(len(c.users) >= 2 for c in data.test)
  norms = ex.wc_norms(trained.params)
  w_c = np.asarray(trained.params["w_c"][...], np.float64)
  assert set(norms) == {"W_init", "W_0", "W_1", "W_2"}
  np.testing.assert_allclose(norms["W_1"], np.sum(w_c[1] ** 2))
  np.testing.assert_allclose(norms["W_init"],
                             np.sum(np.asarray(trained.params["w_c_init"][...], np.float64) ** 2))
  _, plain = nnx.split(ex.build_ndm(dataclasses.replace(cfg, window=2), len(data.vocab), 0))
  assert "frozen_embedding" not in plain
  assert set(ex.wc_norms(plain)) == {"W_0", "W_1"}


def test_sensitivity_settings_vary_one_axis_at_a_time():
  configs = ex.sensitivity_configs()
  assert len(configs) == 1 + 4 + 4 + 3 + 1
  assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)
  for c in configs:
    assert sum(c[k] != v for k, v in ex.SENSITIVITY_BASE.items()) <= 1
  results = [dict(c, macro_f1=float(i)) for i, c in enumerate(configs)]
  rows = ex.sensitivity_rows(results)
  assert len(rows) == sum(len(v) for v in ex.SENSITIVITY_GRID.values())
  base = [r for r in rows if all(r[k] == v for k, v in ex.SENSITIVITY_BASE.items())]
  assert {r["param"] for r in base} == {"h", "win", "d", "F_init"}
  assert {r["macro_f1"] for r in base} == {0.0}


def test_initial_norms_match_the_glorot_variances():
  cfg = nu.NextUserConfig(dim=16, num_heads=1, window=3)
  norms = ex.initial_wc_norms(cfg, 400, 1)
  d, u, win = 16, 400, 3
  for n in range(win):  # E||W_n||^2 = d u 2 / (win (d + u))
    np.testing.assert_allclose(norms[f"W_{n}"], d * u * 2 / (win * (d + u)), rtol=0.1)
  np.testing.assert_allclose(norms["W_init"], d * u * 2 / (d + u), rtol=0.1)
