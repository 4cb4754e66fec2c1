"""The NDM paper's protocol as an option of the F1 evaluation (Terminate masked or allowed while
sampling; runs 100 or 1000), on a tiny example worked out by hand; Terminate's weight in the
loss; the authors' recipe as a named config."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax import losses, models
from popdiff_jax.data.cascades import Cascade, CascadeDataset, UserVocab
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm import protocol
from popdiff_jax.projects.ndm.configs import DataConfig, NextUserConfig, get_config
from popdiff_jax.projects.ndm.experiment import Trained
from popdiff_jax.types import TERMINATE

U = 8


def _deterministic_ndm():
  """An NDM whose scores are its bias alone (W^C scaled to 0): Terminate 100, user 5 50, user 6
  40, every other user -50, so sampling is deterministic: Terminate if allowed, else 5, then 6."""
  cfg = NDMConfig(num_items=U, dim=4, num_heads=1, window=1, f_init=0)
  model, v = models.init(cfg, 0)
  bias = np.full(U, -50.0, np.float32)
  bias[TERMINATE], bias[5], bias[6] = 100.0, 50.0, 40.0
  v = model.update(v, "init_output", bias, 0.0)
  config = NextUserConfig(data=DataConfig(source="toy", max_len=10), model=cfg)
  return Trained(config, model, v, {})


def _toy_data():
  vocab = UserVocab(str(u) for u in range(U - 2))
  test = [Cascade(np.array([2, 6, 7], np.int32), np.arange(3.0)),   # truth {6, 7}, budget 2
          Cascade(np.array([3, 5], np.int32), np.arange(2.0))]      # truth {5}, budget 1
  return CascadeDataset("toy", vocab, test, test, test)


def test_paper_protocol_by_hand():
  trained, data = _deterministic_ndm(), _toy_data()
  # Terminate masked: cascade 1 infects {5, 6}: pre = rec = 1/2, f = 1/2; cascade 2 infects {5}:
  # f = 1. Macro = 3/4; pooled: 2 true of 3 predicted, 2 of 3 truths: Micro = 2/3.
  runs, terminate = protocol.protocol_settings("paper")
  assert (runs, terminate) == (100, "masked")
  got = protocol.evaluate_f1(data, trained, runs=runs, terminate=terminate)
  np.testing.assert_allclose(got["macro_f1"], 0.75, rtol=1e-6)
  np.testing.assert_allclose(got["micro_f1"], 2 / 3, rtol=1e-6)
  # Terminate allowed: every run stops at once, nothing is infected: every F1 is 0.
  got = protocol.evaluate_f1(data, trained, runs=1000, terminate="allowed")
  assert got["macro_f1"] == 0.0 and got["micro_f1"] == 0.0
  assert protocol.protocol_settings("project") == (1000, "allowed")
  with pytest.raises(ValueError, match="protocol"):
    protocol.protocol_settings("mine")


def test_size_is_scored_only_for_a_model_that_learned_to_end():
  trained = _deterministic_ndm()
  vocab = UserVocab(str(u) for u in range(U - 2))
  long = Cascade(np.array([2, 3, 4, 5, 6, 7], np.int32), np.arange(6.0))  # size 6, prefix 5
  data = CascadeDataset("toy", vocab, [long], [long], [long])
  # Terminate has the largest score: every run ends at once, predicted size 5 against 6.
  got = protocol.evaluate_protocol(data, trained, runs=4, progress=False)
  np.testing.assert_allclose(got["msle"], (np.log(6.0) - np.log(5.0)) ** 2, rtol=1e-5)
  assert "msle_note" not in got
  # Trained with Terminate's weight 0 (the authors' recipe) the model has no end to sample.
  no_end = trained.config.replace(train={"terminate_weight": 0.0})
  got = protocol.evaluate_protocol(data, dataclasses.replace(trained, config=no_end), runs=4, progress=False)
  assert np.isnan(got["msle"]) and "weight 0" in got["msle_note"]
  assert 0.0 <= got["macro_f1"] <= 1.0


def test_terminate_weight_zero_drops_terminate_targets_from_the_loss():
  rng = np.random.default_rng(0)
  users = jnp.asarray([[4, 7, 2, TERMINATE, 0], [5, TERMINATE, 0, 0, 0]], jnp.int32)
  mask = users > 0
  logits = jnp.asarray(rng.normal(size=(2, 5, U)), jnp.float32)
  full, n_full = losses.next_user_nll(logits, users, mask)
  none, n_none = losses.next_user_nll(logits, users, mask, terminate_weight=0.0)
  assert float(n_full) == 4 and float(n_none) == 2  # two of the four targets are Terminate
  masked = np.asarray(jax.nn.log_softmax(jnp.where(
      jnp.arange(U)[None, None] == 0, -jnp.inf, logits), -1))
  # The two user targets: step 0 -> 7 (4 blocked) and step 1 -> 2 (4, 7 blocked), row 0.
  def nll(step, target, blocked):
    z = np.asarray(logits[0, step], np.float64).copy()
    z[[0, *blocked]] = -np.inf
    return -(z[target] - np.log(np.exp(z[np.isfinite(z)]).sum()))
  np.testing.assert_allclose(float(none), nll(0, 7, [4]) + nll(1, 2, [4, 7]), rtol=1e-5)
  assert float(none) < float(full)
  del masked


def test_paper_recipe_is_the_authors_training():
  cfg = get_config("paper-recipe")
  t = cfg.train
  assert (t.terminate_weight, t.schedule, t.warmup, t.num_epochs, t.select_by, t.loss_per) == (
      0.0, "noam", 1000, 20, "last", "cascade")


def test_last_epoch_is_kept_without_early_stopping(tmp_path):
  from popdiff_jax.data.cascades import load_dataset
  from popdiff_jax.projects.ndm import experiment

  data = load_dataset("ndm/irvine")
  data = dataclasses.replace(data, train=data.train[:64], valid=data.valid[:32])
  cfg = get_config("ndm-tiny").replace(train={"num_epochs": 3, "select_by": "last",
                                              "patience": 1, "terminate_weight": 0.0})
  trained = experiment.train(data, cfg, tmp_path, progress=False)
  assert trained.info["epochs"] == 3 and trained.info["best_epoch"] == 2
