"""``NextUserConfig.select_by``: the kept epoch is the best one on the chosen validation metric."""

import json

import numpy as np
import pytest

from popdiff_jax.data.batching import make_batches
from popdiff_jax.data.cascades import Cascade, CascadeDataset, UserVocab
from popdiff_jax.experiments import next_user as nu


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
  cfg = nu.NextUserConfig(dim=8, num_heads=2, f_init=0, max_len=8, batch_size=16, num_epochs=4,
                          patience=None, learning_rate=1e-2, select_by=select_by)
  trained = nu.train(data, cfg, tmp_path, progress=False)
  history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  values = np.array([h[f"val_{select_by}"] for h in history])
  assert len(history) == 4
  assert trained.info["best_epoch"] == int(pick(values))  # first epoch reaching the best value
  # The returned parameters are those of that epoch: their validation metric is its value.
  again = nu.test_metrics(data, trained, split="valid")
  np.testing.assert_allclose(again[select_by], values[trained.info["best_epoch"]], rtol=1e-5)


def test_default_selection_is_validation_nll_with_patience(tmp_path):
  data = _synthetic(1)
  cfg = nu.NextUserConfig(dim=8, num_heads=2, f_init=0, max_len=8, batch_size=16, num_epochs=8,
                          patience=1, learning_rate=3e-2)
  assert cfg.select_by == "nll"
  trained = nu.train(data, cfg, tmp_path, progress=False)
  values = [json.loads(line)["val_nll"]
            for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  best = trained.info["best_epoch"]
  if trained.info["stopped_by"] == "patience":
    assert len(values) == best + 2 and min(values[best + 1:]) >= values[best]
  assert values[best] == min(values)


def test_unknown_selection_metric_is_refused(tmp_path):
  with pytest.raises(ValueError, match="select_by"):
    nu.train(_synthetic(), nu.NextUserConfig(dim=8, num_heads=2, f_init=0, select_by="hits@7"), tmp_path)


def test_zero_output_init_starts_at_the_popularity_prior(tmp_path):
  data = _synthetic(2)
  base = dict(dim=8, num_heads=2, f_init=1, max_len=8, num_epochs=0, bias_init="log_frequency")
  start = nu.train(data, nu.NextUserConfig(output_init_scale=0.0, **base), tmp_path / "a",
                   progress=False)
  batch = make_batches(data.valid, 8, max_len=8)[0]
  logits = np.asarray(start.logits_fn()(start.params, batch.users, batch.mask))
  prior = nu.log_frequency_prior(data.train, len(data.vocab))
  np.testing.assert_allclose(logits, np.broadcast_to(prior, logits.shape), atol=1e-6)
  # Any other scale multiplies the Glorot tables of the same seed; the rest is untouched.
  half = nu.train(data, nu.NextUserConfig(output_init_scale=0.5, **base), tmp_path / "b",
                  progress=False).params
  full = nu.train(data, nu.NextUserConfig(**base), tmp_path / "c", progress=False).params
  for name in ("w_c", "w_c_init"):
    assert np.abs(np.asarray(full[name][...])).max() > 0
    np.testing.assert_allclose(np.asarray(half[name][...]), 0.5 * np.asarray(full[name][...]))
  np.testing.assert_array_equal(np.asarray(half["embedding"][...]),
                                np.asarray(full["embedding"][...]))
