"""Popularity metrics from arrays: classification (Zhang et al. 2019, Table I) and regression
(Ding et al. 2019 and Meghawat et al. 2018: MAE, MSE, Spearman rank correlation).

NumPy functions on host arrays (evaluation happens after the jitted steps have produced
predictions). An optional boolean ``mask`` selects the valid rows (padding excluded); empty
selections give 0 rather than NaN for the rates and NaN for the correlation.
"""

from __future__ import annotations

import numpy as np


def _select(mask, *arrays):
  if mask is None:
    return [np.asarray(a) for a in arrays]
  mask = np.asarray(mask, bool)
  return [np.asarray(a)[mask] for a in arrays]


def classification_metrics(y_true, y_pred, mask=None) -> dict[str, float]:
  """Accuracy, precision, recall and F1 of binary predictions (positive class 1).

  Args:
    y_true: [N] labels in {0, 1}.
    y_pred: [N] predicted labels in {0, 1}.
    mask: optional bool [N] valid rows.

  Returns:
    dict with ``accuracy``, ``precision`` = TP / max(TP + FP, 1), ``recall`` = TP / max(TP + FN, 1)
    and ``f1`` = 2PR / (P + R) (0 when P + R = 0).
  """
  t, p = _select(mask, y_true, y_pred)
  t = t.astype(bool)
  p = p.astype(bool)
  tp = float(np.sum(t & p))
  fp = float(np.sum(~t & p))
  fn = float(np.sum(t & ~p))
  n = t.size
  precision = tp / max(tp + fp, 1.0)
  recall = tp / max(tp + fn, 1.0)
  f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
  return {"accuracy": float(np.sum(t == p)) / max(n, 1), "precision": precision, "recall": recall,
          "f1": f1}


def rankdata(x) -> np.ndarray:
  """Ranks 1..N of ``x`` with ties given their average rank (scipy's ``method="average"``)."""
  x = np.asarray(x)
  order = np.argsort(x, kind="stable")
  xs = x[order]
  # Runs of equal values share the mean of their positions.
  starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
  ends = np.r_[starts[1:], xs.size]
  avg = (starts + ends + 1) / 2.0
  ranks = np.empty(x.size, np.float64)
  ranks[order] = np.repeat(avg, ends - starts)
  return ranks


def spearman(y_true, y_pred) -> float:
  """Spearman's rho: the Pearson correlation of average ranks (NaN when either side is constant)."""
  a = rankdata(np.asarray(y_true, np.float64).ravel())
  b = rankdata(np.asarray(y_pred, np.float64).ravel())
  a = a - a.mean()
  b = b - b.mean()
  denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
  return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def regression_metrics(y_true, y_pred, mask=None) -> dict[str, float]:
  """MAE, MSE and Spearman's rho (``srcc``) of real-valued predictions.

  Args:
    y_true: [N] targets (log popularity).
    y_pred: [N] predictions.
    mask: optional bool [N] valid rows.
  """
  t, p = _select(mask, y_true, y_pred)
  t = t.astype(np.float64)
  p = p.astype(np.float64)
  err = p - t
  n = max(t.size, 1)
  return {"mae": float(np.sum(np.abs(err)) / n), "mse": float(np.sum(err * err) / n),
          "srcc": spearman(t, p) if t.size > 1 else float("nan")}
