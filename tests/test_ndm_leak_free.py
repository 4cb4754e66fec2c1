"""The leak-free protocol of the next-user models (``DataConfig.split = "leak_free"``), one test
per guard: a time-ordered split; the vocabulary, the popularity prior, the log-frequency bias
and the social graph and embedding fitted on the training part only (test cascades changed,
they stay the same; a test-only user is unknown); causal models (no score depends on a later
position); unseen users never hit; the test scores the reloaded checkpoint of the epoch chosen
on validation."""

import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax import models
from popdiff_jax.baselines import popularity as pop
from popdiff_jax.baselines.deepwalk import DeepWalkConfig
from popdiff_jax.data.cascades import UNKNOWN, load_dataset
from popdiff_jax.metrics.ranking import lean_ranking_sums, next_user_sums
from popdiff_jax.models import Variables
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm import experiment
from popdiff_jax.projects.ndm.configs import ReproduceConfig, get_config
from popdiff_jax.projects.ndm.social import social_embedding
from popdiff_jax.projects.ndm.tables import next_user
from popdiff_jax.training import create_train_state
from popdiff_jax.training.checkpoint import Checkpointer, abstract_like
from popdiff_jax.types import TERMINATE, CascadeBatch

NUM_CASCADES = 20  # start times 0..19: training 0-15, validation 16-17, test 18-19


def _write(tmp_path, test_users=None, name="c"):
  """A csv of 20 cascades over users u00..u11 (cascade i starts at time 20 - i, so the file's
  order is not the time order) and a graph over them; ``test_users`` replaces the users of the
  two latest cascades (the test part)."""
  rng = np.random.default_rng(0)
  rows, cascades = [], {}
  for i in range(NUM_CASCADES):
    start = float(NUM_CASCADES - i)
    users = [f"u{u:02d}" for u in rng.choice(12, size=int(rng.integers(2, 6)), replace=False)]
    if test_users is not None and start >= NUM_CASCADES - 1:
      users = test_users[int(start) - (NUM_CASCADES - 1)]
    cascades[f"c{i:02d}"] = users
    rows += [(f"c{i:02d}", u, start + j) for j, u in enumerate(users)]
  path, graph = tmp_path / f"{name}.csv", tmp_path / f"{name}_graph.csv"
  with path.open("w", newline="") as f:
    csv.writer(f).writerows([("cascade", "user", "time"), *rows])
  users = sorted({u for us in cascades.values() for u in us})
  edges = [(a, b) for a in users for b in users if a < b and hash((a, b)) % 3 == 0]
  edges += [("u00", users[-1]), (users[-1], "u01")]  # the newest user's edges, if any
  with graph.open("w", newline="") as f:
    csv.writer(f).writerows([("source", "target"), *edges])
  return load_dataset(str(path), format="csv", graph=str(graph), split="leak_free")


def _starts(part):
  return [float(c.times[0]) for c in part]


def test_split_is_time_ordered(tmp_path):
  data = _write(tmp_path)
  assert [len(data.train), len(data.valid), len(data.test)] == [16, 2, 2]
  train, valid, test = _starts(data.train), _starts(data.valid), _starts(data.test)
  assert max(train) <= min(valid) and max(valid) <= min(test)
  assert data.split.startswith("leak_free")
  # The example cascades, too.
  ex = get_config("ndm-tiny-examples").data
  ex = dataclasses.replace(ex, split="leak_free").load()
  assert max(_starts(ex.train)) <= min(_starts(ex.valid)) <= max(_starts(ex.valid)) <= min(
      _starts(ex.test))


def test_everything_fitted_from_training_only(tmp_path):
  base = _write(tmp_path, name="base")
  changed = _write(tmp_path, test_users=[["u03", "new_user", "u07"], ["new_user", "u11"]],
                   name="changed")
  # The test part did change, and its new user is not in the vocabulary: it is the unknown id.
  assert "new_user" not in changed.vocab and changed.unknown == len(changed.vocab) - 1
  assert changed.vocab.user(changed.unknown) == UNKNOWN
  assert any(changed.unknown in c.users for c in changed.test)
  assert [c.users.tolist() for c in changed.test] != [c.users.tolist() for c in base.test]
  assert all(changed.unknown not in c.users for c in changed.train)
  # Everything fitted from data is unchanged.
  assert [base.vocab.user(i) for i in range(len(base.vocab))] == [
      changed.vocab.user(i) for i in range(len(changed.vocab))]
  u = len(base.vocab)
  np.testing.assert_array_equal(pop.popularity_scores(base.train, u),
                                pop.popularity_scores(changed.train, u))
  np.testing.assert_array_equal(pop.log_frequency_prior(base.train, u),
                                pop.log_frequency_prior(changed.train, u))
  np.testing.assert_array_equal(base.graph, changed.graph)
  walk = DeepWalkConfig(dim=4, walks_per_node=2, walk_length=6, batch_size=256)
  np.testing.assert_array_equal(social_embedding(base, config=walk)[0],
                                social_embedding(changed, config=walk)[0])
  # The validation and test users that training never saw are all the unknown id.
  seen = {int(x) for c in base.train for x in c.users}
  for c in base.valid + base.test:
    assert all(int(x) in seen or int(x) == base.unknown for x in c.users)


@pytest.mark.parametrize("config", [NDMConfig(num_items=12, dim=8, num_heads=2, f_init=1),
                                    LSTMConfig(num_items=12, dim=8)], ids=["ndm", "lstm"])
def test_scores_are_causal(config):
  """Permuting every position after t leaves the scores at positions <= t unchanged."""
  model, v = models.init(config, 0)
  rng = np.random.default_rng(1)
  length = 8
  users = np.stack([np.r_[rng.permutation(np.arange(2, 12))[:length - 1], TERMINATE]
                    for _ in range(3)]).astype(np.int32)
  times = np.cumsum(rng.uniform(0.0, 5.0, users.shape), axis=1).astype(np.float32)
  mask = np.ones(users.shape, bool)
  scores = jax.jit(lambda u, t: model.apply(v.params, CascadeBatch(u, t, jnp.asarray(mask)),
                                            state=v.state))
  base = np.asarray(scores(users, times))
  for t in range(length - 1):
    order = np.r_[np.arange(t + 1), t + 1 + rng.permutation(length - t - 1)]
    assert not np.array_equal(order, np.arange(length)) or t == length - 2
    got = np.asarray(scores(users[:, order], times[:, order]))
    np.testing.assert_array_equal(got[:, :t + 1], base[:, :t + 1], err_msg=f"t = {t}")


def test_unknown_users_are_never_candidates_and_always_misses():
  unknown, u = 7, 8
  logits = np.zeros((1, 4, u), np.float32)
  logits[..., unknown], logits[..., 5], logits[..., TERMINATE] = 100.0, 50.0, 10.0
  logits = jnp.asarray(logits)

  def hits(cascade, unk):
    users = jnp.asarray([cascade], jnp.int32)
    return next_user_sums(logits, users, users > 0, (1,), unk)

  # User 5 after user 2: below the unknown id's score (a miss) unless that id is no candidate.
  assert float(hits([2, 5, TERMINATE, 0], None)["hits@1"]) == 0.0
  assert float(hits([2, 5, TERMINATE, 0], unknown)["hits@1"]) == 1.0
  # An unknown target: the top score, yet a miss; it still counts, and is left out of the NLL.
  assert float(hits([2, unknown, TERMINATE, 0], None)["hits@1"]) == 1.0
  free = hits([2, unknown, TERMINATE, 0], unknown)
  assert float(free["hits@1"]) == 0.0 and float(free["map@1"]) == 0.0
  assert float(free["count[hits@1]"]) == 1.0 and float(free["count"]) == 2.0
  assert float(free["count[nll]"]) == 1.0 and np.isfinite(float(free["nll"]))
  users = jnp.asarray([[2, 5, unknown, TERMINATE, 0]], jnp.int32)
  mask = users > 0
  feats = jnp.asarray(np.random.default_rng(2).normal(size=(1, 5, 4)).astype(np.float32))
  w = jnp.asarray(np.random.default_rng(3).normal(size=(4, u)).astype(np.float32))
  dense = next_user_sums(feats @ w, users, mask, (1, 3), unknown)
  lean = lean_ranking_sums(feats, w, None, users, mask, (1, 3), 4, unknown)
  assert set(dense) == set(lean)
  for k in dense:
    np.testing.assert_allclose(lean[k], dense[k], rtol=1e-5, err_msg=k)


def test_test_scores_the_reloaded_best_checkpoint(tmp_path, monkeypatch):
  """Validation says epoch 0 is best (of 3): the row's test metrics are those of epoch 0's
  checkpoint read back from disk, not of the last epoch, nor of the parameters in memory."""
  cfg = get_config("ndm-tiny-examples")
  cfg = cfg.replace(data={"split": "leak_free"},
                    train={"num_epochs": 3, "patience": 5, "learning_rate": 0.05})
  dataset = cfg.data.load()
  real_evaluate, real_train = experiment.evaluate, experiment.train
  script = iter([{"nll": 1.0}, {"nll": 2.0}, {"nll": 3.0}])

  def scripted(*args):  # the three validations, then the real test evaluation
    return next(script, None) or real_evaluate(*args)

  def train_then_spoil(*args, **kwargs):  # what is in memory must not be what is tested
    trained = real_train(*args, **kwargs)
    spoiled = jax.tree.map(lambda p: p + 1.0, trained.variables.params)
    return dataclasses.replace(trained, variables=Variables(spoiled, trained.variables.state))

  monkeypatch.setattr(experiment, "evaluate", scripted)
  monkeypatch.setattr(experiment, "train", train_then_spoil)
  row = experiment.run(dataset, cfg, tmp_path / "run", progress=False)
  assert row["epochs"] == 3 and row["best_epoch"] == 0 and row["reloaded_best_epoch"] == 0
  _, best = experiment.load_trained(tmp_path / "run", dataset)
  expect = experiment.test_metrics(dataset, best)
  for k, x in expect.items():
    assert row[k] == pytest.approx(x, rel=1e-6), k
  # The last epoch's parameters (the checkpoint's state) score otherwise.
  _, fresh = models.init(best.config.model, jax.random.key(0))
  state = create_train_state(fresh.params, experiment.make_optimizer(best.config.train, 8),
                             extra=fresh.state)
  restored, _, _ = Checkpointer(tmp_path / "run").restore(
      abstract_like({"state": state, "best_params": fresh.params}))
  last = dataclasses.replace(best, variables=Variables(restored["state"].params,
                                                       best.variables.state))
  assert experiment.test_metrics(dataset, last)["nll"] != pytest.approx(row["nll"])


def test_reproduce_runs_protocols_side_by_side():
  opts = ReproduceConfig(datasets=("ndm/irvine",), configs=("ndm", "popularity"), seeds=(0, 1),
                         protocols=("files", "leak_free"))
  jobs = next_user.jobs(opts)
  assert len(jobs) == 8 and "ndm/irvine|ndm|s1|leak_free" in jobs
  assert next_user._parse("ndm/irvine|ndm|s1|leak_free") == ("ndm/irvine", "ndm", 1,
                                                              "leak_free")
  assert next_user._parse("ndm/irvine|ndm|s1") == ("ndm/irvine", "ndm", 1, None)
  with pytest.raises(Exception, match="protocols"):
    ReproduceConfig(protocols=("by-user",))
