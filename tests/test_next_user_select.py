"""``TrainConfig.select_by``: the kept epoch is the best one on the chosen validation metric; the
prior start (``bias_init``, ``output_init_scale``) begins at the popularity floor."""

import json

import numpy as np
import pytest

from popdiff_jax import ConfigError
from popdiff_jax.baselines.popularity import log_frequency_prior
from popdiff_jax.data.batching import make_batches
from popdiff_jax.data.cascades import Cascade, CascadeDataset, UserVocab
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm import experiment as ex
from popdiff_jax.projects.ndm.configs import DataConfig, NextUserConfig, TrainConfig


def _config(model=None, **train):
  return NextUserConfig(data=DataConfig(source="synthetic", max_len=8),
                        model=model or NDMConfig(dim=8, num_heads=2, f_init=0),
                        train=TrainConfig(batch_size=16, **train))


def _synthetic(seed=0, users=40):
  """Cascades of a few planted chains (u -> u+1 -> u+2 ...) with noise, so the models learn."""
  rng = np.random.default_rng(seed)
  vocab = UserVocab(str(u) for u in range(users))

  def cascade():
    start = int(rng.integers(2, len(vocab) - 6))
    n = 5  # one length: one bucket, one compile
    chain = list(range(start, start + n))
    if rng.random() < 0.5:
      chain[-1] = int(rng.choice([u for u in range(2, len(vocab)) if u not in chain[:-1]]))
    return Cascade(np.asarray(chain, np.int32), np.arange(n, dtype=np.float64))

  parts = [[cascade() for _ in range(n)] for n in (96, 32, 32)]
  return CascadeDataset("synthetic", vocab, *parts)


def test_kept_epoch_is_the_best_on_the_selection_metric(tmp_path):
  select_by, pick = "map@10", np.argmax
  data = _synthetic()
  cfg = _config(num_epochs=4, patience=100, learning_rate=1e-2, select_by=select_by)
  trained = ex.train(data, cfg, tmp_path, progress=False)
  history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  values = np.array([h[f"val_{select_by}"] for h in history])
  assert len(history) == 4
  assert trained.info["best_epoch"] == int(pick(values))  # first epoch reaching the best value
  # The returned parameters are those of that epoch: their validation metric is its value.
  again = ex.test_metrics(data, trained, split="valid")
  np.testing.assert_allclose(again[select_by], values[trained.info["best_epoch"]], rtol=1e-5)


def test_default_selection_is_validation_nll_with_patience(tmp_path):
  data = _synthetic(1)
  cfg = _config(num_epochs=8, patience=1, learning_rate=3e-2)
  assert cfg.train.select_by == "nll"
  trained = ex.train(data, cfg, tmp_path, progress=False)
  values = [json.loads(line)["val_nll"]
            for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  best = trained.info["best_epoch"]
  if trained.info["stopped_by"] == "patience":
    assert len(values) == best + 2 and min(values[best + 1:]) >= values[best]
  assert values[best] == min(values)


def test_unknown_selection_metric_is_refused():
  with pytest.raises(ConfigError, match="select_by"):
    TrainConfig(select_by="hits@7")


def _start_logits(data, cfg):
  """The untrained model's raw scores on the first validation batch."""
  model, variables = ex.build(ex.resolve(cfg, data), data)
  batch = make_batches(data.valid, 8, max_len=8)[0]
  return np.asarray(model.apply(variables.params, batch)), variables.params


def test_zero_output_init_starts_at_the_popularity_prior():
  data = _synthetic(2)
  ndm = NDMConfig(dim=8, num_heads=2, f_init=1)
  logits, _ = _start_logits(data, _config(ndm, bias_init="log_frequency", output_init_scale=0.0))
  prior = log_frequency_prior(data.train, len(data.vocab))
  np.testing.assert_allclose(logits, np.broadcast_to(prior, logits.shape), atol=1e-6)
  # Any other scale multiplies the Glorot tables of the same seed; the rest is untouched.
  _, half = _start_logits(data, _config(ndm, bias_init="log_frequency", output_init_scale=0.5))
  _, full = _start_logits(data, _config(ndm, bias_init="log_frequency"))
  for name in ("w_c", "w_c_init"):
    assert np.abs(np.asarray(full[name][...])).max() > 0
    np.testing.assert_allclose(np.asarray(half[name][...]), 0.5 * np.asarray(full[name][...]))
  np.testing.assert_array_equal(np.asarray(half["embedding"][...]),
                                np.asarray(full["embedding"][...]))


def test_zero_output_init_starts_the_lstm_at_the_popularity_prior():
  data = _synthetic(3)
  logits, _ = _start_logits(data, _config(LSTMConfig(dim=8), bias_init="log_frequency",
                                          output_init_scale=0.0))
  prior = log_frequency_prior(data.train, len(data.vocab))
  np.testing.assert_allclose(logits, np.broadcast_to(prior, logits.shape), atol=1e-6)
