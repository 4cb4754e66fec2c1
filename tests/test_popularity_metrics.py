"""Popularity metrics against scikit-learn and SciPy on random inputs."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from popdiff_jax.metrics import popularity as pm


@pytest.mark.parametrize("seed", range(5))
def test_classification_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 300))
  t = rng.integers(0, 2, n)
  p = rng.integers(0, 2, n)
  got = pm.classification_metrics(t, p)
  assert got["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
  assert got["precision"] == pytest.approx(skm.precision_score(t, p, zero_division=0))
  assert got["recall"] == pytest.approx(skm.recall_score(t, p, zero_division=0))
  assert got["f1"] == pytest.approx(skm.f1_score(t, p, zero_division=0))


def test_classification_mask_and_degenerate():
  rng = np.random.default_rng(7)
  t = rng.integers(0, 2, 50)
  p = rng.integers(0, 2, 50)
  mask = rng.random(50) < 0.6
  assert pm.classification_metrics(t, p, mask) == pytest.approx(
      pm.classification_metrics(t[mask], p[mask]))
  got = pm.classification_metrics(np.zeros(4), np.zeros(4))
  assert got == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize("seed", range(5))
def test_regression_matches_sklearn_scipy(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(3, 400))
  t = rng.normal(size=n) * 3 + 10
  p = t + rng.normal(size=n)
  if seed % 2:  # ties in both arrays exercise average ranks
    t = np.round(t)
    p = np.round(p)
  got = pm.regression_metrics(t, p)
  assert got["mae"] == pytest.approx(skm.mean_absolute_error(t, p))
  assert got["mse"] == pytest.approx(skm.mean_squared_error(t, p))
  assert got["srcc"] == pytest.approx(stats.spearmanr(t, p).statistic)
  np.testing.assert_allclose(pm.rankdata(p), stats.rankdata(p))


def test_spearman_constant_is_nan():
  assert np.isnan(pm.spearman(np.ones(5), np.arange(5.0)))
