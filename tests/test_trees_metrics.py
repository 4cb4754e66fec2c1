"""Tree metrics against scikit-learn and hand-computed values."""

import numpy as np
import pytest

from popdiff_jax.metrics import trees as TM

# Our own functions run under jax_numpy_dtype_promotion="strict" (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_dtypes")

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_average_precision_matches_sklearn_with_ties():
  rng = np.random.default_rng(0)
  for _ in range(5):
    y = (rng.random(200) < 0.2).astype(int)
    s = np.round(rng.random(200), 1)  # many ties
    assert TM.average_precision(s, y) == pytest.approx(sklearn_metrics.average_precision_score(y, s))
  assert np.isnan(TM.average_precision(np.ones(3), np.zeros(3)))


def test_per_class_ap_mask_and_summary():
  rng = np.random.default_rng(1)
  s = rng.random((50, 4))
  t = (rng.random((50, 4)) < 0.3).astype(np.float32)
  t[:, 1] = 0
  mask = rng.random(50) < 0.8
  ap = TM.per_class_ap(s, t, mask)
  assert np.isnan(ap[1])
  assert ap[0] == pytest.approx(sklearn_metrics.average_precision_score(t[mask, 0], s[mask, 0]))
  summ = TM.ap_summary(ap)
  assert summ["ap_terminal"] == ap[3]
  assert summ["map_prototypes"] == pytest.approx(np.mean(ap[[0, 2]]))
  assert summ["map_all"] == pytest.approx(np.mean(ap[[0, 2, 3]]))
  assert summ["classes_without_positives"] == 1


def test_depth_mae_is_averaged_over_true_depths():
  true = np.array([1, 1, 1, 1, 3])
  pred = np.array([1, 1, 1, 2, 0])
  # depth 1: MAE 0.25; depth 3: MAE 3 -> mean 1.625 (a plain mean would give 0.8).
  assert TM.depth_mae_per_depth(pred, true) == pytest.approx(1.625)


def test_histogram_intersection():
  assert TM.histogram_intersection(np.array([0.5, 0.5, 0]), np.array([0.2, 0.3, 0.5])) == \
    pytest.approx(0.5)
  feat = np.eye(3)
  gen = np.array([[2, 2, 0], [0, 0, 0], [1, 0, 0]], float)
  tru = np.array([[1, 1, 2], [0, 1, 0], [0, 0, 0]], float)
  # tree 0: HI([.5,.5,0],[.25,.25,.5]) = .5; tree 1: empty generation -> 0; tree 2 has no true
  # non-root node -> left out.
  assert TM.mean_histogram_intersection(gen, tru, feat) == pytest.approx(0.25)
