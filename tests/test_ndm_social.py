"""NDM+SN (the fixed embedding block), the social embedding, the sweep's settings and the W^C
norms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax import ConfigError, models
from popdiff_jax.baselines.deepwalk import DeepWalkConfig
from popdiff_jax.data.batching import cascade_batch
from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm import analysis, experiment, protocol, social
from popdiff_jax.projects.ndm.configs import DataConfig, NextUserConfig, TrainConfig
from popdiff_jax.training import create_train_state, make_train_step

U, D, F = 21, 8, 4


def _frozen_table(seed=0):
  return np.random.default_rng(seed).normal(size=(U, F)).astype(np.float32)


def _batch(rng, b=4, length=10):
  """Ragged cascades of distinct users, Terminate appended."""
  return cascade_batch([rng.choice(np.arange(2, U), size=int(rng.integers(2, length)),
                                   replace=False) for _ in range(b)], max_len=length)


def _ndm_sn(table, **kw):
  """An NDM+SN with the fixed block filled: ``(model, variables)``."""
  model, v = models.init(NDMConfig(num_items=U, dim=D, num_heads=2, frozen_dim=F, **kw), 0)
  return model, model.update(v, "set_frozen_embedding", table)


def test_embed_puts_the_frozen_block_first(strict_dtypes):
  table = _frozen_table()
  model, v = _ndm_sn(table, f_init=0)
  module = model.bind(v.params, v.state)
  users = jnp.asarray(np.random.default_rng(1).integers(0, U, (3, 5)), jnp.int32)
  emb = np.asarray(module.embed(users))
  assert emb.shape == (3, 5, D)
  np.testing.assert_array_equal(emb[..., :F], table[np.asarray(users)])
  np.testing.assert_array_equal(emb[..., F:], np.asarray(module.embedding[...])[np.asarray(users)])
  assert module.embedding[...].shape == (U, D - F)
  assert "frozen_embedding" in v.state and "frozen_embedding" not in v.params
  with pytest.raises(ConfigError, match="frozen_dim"):
    NDMConfig(num_items=U, dim=D, frozen_dim=D)
  with pytest.raises(ValueError, match="frozen table"):
    model.update(v, "set_frozen_embedding", np.zeros((U, D), np.float32))


def test_decoding_uses_the_same_embedding_as_the_forward_pass(strict_dtypes):
  model, v = _ndm_sn(_frozen_table(), window=2, f_init=1)
  module = model.bind(v.params, v.state)
  rng = np.random.default_rng(2)
  users = jnp.asarray(np.stack([rng.choice(np.arange(2, U), 7, replace=False) for _ in range(2)]),
                      jnp.int32)
  mask = jnp.ones(users.shape, bool)
  batch = cascade_batch([list(np.asarray(u)) for u in users], max_len=7)
  full = np.asarray(model.apply(v.params, batch, state=v.state))
  cache = module.decode_init(users[:, :2], mask[:, :2], 7)
  for j in range(1, 6):
    np.testing.assert_allclose(np.asarray(module.decode_logits(cache)), full[:, j], rtol=1e-5,
                               atol=1e-5)
    cache = module.decode_step(cache, users[:, j + 1])


def test_frozen_block_is_bit_identical_after_training_steps():
  """The block is state, not a parameter: even AdamW's weight decay leaves it alone, and the
  optimiser holds no moments for it."""
  table = _frozen_table()
  model, v = _ndm_sn(table, window=2, f_init=0)
  train = TrainConfig(weight_decay=0.1, learning_rate=1e-2)
  tx = experiment.make_optimizer(train, D)
  state = create_train_state(v.params, tx, v.state)
  step = jax.jit(make_train_step(model, experiment.loss_fn(train, U), tx))
  rng = np.random.default_rng(4)
  for s in range(2):
    state, _ = step(state, _batch(rng), jax.random.key(s))
  np.testing.assert_array_equal(np.asarray(state.extra["frozen_embedding"][...]), table)
  for name in ("embedding", "w_c"):
    assert not np.array_equal(np.asarray(state.params[name][...]),
                              np.asarray(v.params[name][...]))
  n_train = sum(x.size for x in jax.tree.leaves(v.params))
  assert sum(x.size for x in jax.tree.leaves(state.opt_state)) == 2 * n_train + 1


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
  table, info = social.social_embedding(data, root, DeepWalkConfig(dim=4, walks_per_node=4,
                                                                   walk_length=10,
                                                                   batch_size=256))
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
  cfg = NextUserConfig(data=DataConfig(source="infvae/christianity", max_len=7),
                       model=NDMConfig(dim=8, num_heads=2, f_init=1, frozen_dim=4),
                       train=TrainConfig(num_epochs=1, batch_size=64))
  trained = experiment.train(data, cfg, tmp_path / "run", frozen_embedding=table, progress=False)
  np.testing.assert_array_equal(np.asarray(trained.variables.state["frozen_embedding"][...]),
                                table)
  assert trained.info["epochs"] == 1
  # The workdir rebuilds NDM+SN, fixed block included (it is part of the checkpointed state).
  _, again = experiment.load_trained(tmp_path / "run", data)
  np.testing.assert_array_equal(np.asarray(again.variables.state["frozen_embedding"][...]), table)
  scores = protocol.evaluate_f1(data, trained, runs=8, first_k=5, max_rows=128)
  assert 0.0 <= scores["macro_f1_first5"] <= 1.0 and 0.0 <= scores["micro_f1_first5"] <= 1.0
  assert scores["scored_cascades_first5"] == sum(len(c.users) >= 2 for c in data.test)
  params = trained.variables.params
  norms = analysis.wc_norms(params)
  w_c = np.asarray(params["w_c"][...], np.float64)
  assert set(norms) == {"W_init", "W_0", "W_1", "W_2"}
  np.testing.assert_allclose(norms["W_1"], np.sum(w_c[1] ** 2))
  np.testing.assert_allclose(norms["W_init"],
                             np.sum(np.asarray(params["w_c_init"][...], np.float64) ** 2))
  _, plain = models.init(NDMConfig(num_items=len(data.vocab), dim=8, window=2, f_init=0), 0)
  assert "frozen_embedding" not in plain.state
  assert set(analysis.wc_norms(plain.params)) == {"W_0", "W_1"}


def test_sensitivity_settings_vary_one_axis_at_a_time():
  configs = analysis.sensitivity_configs()
  assert len(configs) == 1 + 4 + 4 + 3 + 1
  assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)
  for c in configs:
    assert sum(c[k] != v for k, v in analysis.SENSITIVITY_BASE.items()) <= 1
  results = [dict(c, macro_f1=float(i)) for i, c in enumerate(configs)]
  rows = analysis.sensitivity_rows(results)
  assert len(rows) == sum(len(v) for v in analysis.SENSITIVITY_GRID.values())
  base = [r for r in rows if all(r[k] == v for k, v in analysis.SENSITIVITY_BASE.items())]
  assert {r["param"] for r in base} == {"h", "win", "d", "F_init"}
  assert {r["macro_f1"] for r in base} == {0.0}


def test_initial_norms_match_the_glorot_variances():
  from popdiff_jax.data.cascades import Cascade, CascadeDataset, UserVocab
  vocab = UserVocab(str(u) for u in range(398))
  data = CascadeDataset("toy", vocab, [Cascade(np.arange(2, 6, dtype=np.int32), np.arange(4.0))],
                        [], [], f_init=1)
  cfg = NextUserConfig(model=NDMConfig(dim=16, num_heads=1, window=3))
  norms = analysis.initial_wc_norms(cfg, data)
  d, u, win = 16, 400, 3
  for n in range(win):  # E||W_n||^2 = d u 2 / (win (d + u))
    np.testing.assert_allclose(norms[f"W_{n}"], d * u * 2 / (win * (d + u)), rtol=0.1)
  np.testing.assert_allclose(norms["W_init"], d * u * 2 / (d + u), rtol=0.1)
