"""Evaluation of tree prediction (Hu et al. 2018, Sec. 4.4 and 4.5), host-side NumPy.

* Per-node (teacher forced): average precision per class over all nodes (non-interpolated, as
  scikit-learn's ``average_precision_score``: Σ_n (R_n − R_{n−1}) P_n over distinct score thresholds);
  AP of the terminal class, mAP over the k prototypes, mAP over all k + 1 classes. A class with no
  positive node has no AP and is left out of the means (the paper does not say; reported as a count).
* Generation: depth MAE computed per ground-truth depth and then averaged over depths; histogram
  intersection HI(d1, d2) = Σ_j min(d1_j, d2_j) of normalised feature histograms over non-root nodes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "per_class_ap", "ap_summary", "depth_mae_per_depth",
           "histogram_intersection", "mean_histogram_intersection"]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """Non-interpolated AP of one class.

  Args:
    scores: (n,) float scores.
    labels: (n,) {0, 1}.

  Returns:
    AP, or nan when there is no positive.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels) > 0
  n_pos = int(labels.sum())
  if n_pos == 0:
    return float("nan")
  order = np.argsort(-scores, kind="mergesort")
  s, y = scores[order], labels[order]
  # Ties share one threshold: take the cumulative counts at the last index of each score value.
  last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
  tp = np.cumsum(y)[last].astype(np.float64)
  fp = (last + 1) - tp
  precision = tp / (tp + fp)
  recall = tp / n_pos
  d_recall = np.diff(np.r_[0.0, recall])
  return float(np.sum(d_recall * precision))


def per_class_ap(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
                 ) -> np.ndarray:
  """AP per class over the masked nodes.

  Args:
    scores: (N, K1) probabilities (or any monotone scores).
    targets: (N, K1) {0, 1}.
    mask: optional (N,) bool, True for real nodes.

  Returns:
    (K1,) AP per class, nan for classes without positives.
  """
  if mask is not None:
    scores, targets = scores[mask], targets[mask]
  return np.asarray([average_precision(scores[:, j], targets[:, j])
                     for j in range(scores.shape[1])])


def ap_summary(ap: np.ndarray) -> dict:
  """The paper's Table 1 columns from per-class AP (last class = terminal)."""
  protos = ap[:-1]
  return {
    "ap_terminal": float(ap[-1]),
    "map_prototypes": float(np.nanmean(protos)) if np.isfinite(protos).any() else float("nan"),
    "map_all": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
    "classes_without_positives": int(np.isnan(ap).sum()),
  }


def depth_mae_per_depth(pred_depth: np.ndarray, true_depth: np.ndarray) -> float:
  """MAE of the generated depth, computed separately per ground-truth depth, then averaged.

  Args:
    pred_depth: (T,) depths of generated trees.
    true_depth: (T,) depths of the ground-truth trees.
  """
  pred = np.asarray(pred_depth, np.float64)
  true = np.asarray(true_depth)
  per = [np.abs(pred[true == d] - d).mean() for d in np.unique(true)]
  return float(np.mean(per)) if per else float("nan")


def histogram_intersection(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
  """HI(d1, d2) = Σ_j min(d1_j, d2_j) over the last axis (inputs already normalised)."""
  return np.minimum(h1, h2).sum(-1)


def mean_histogram_intersection(gen_counts: np.ndarray, true_counts: np.ndarray,
                                feature_of: np.ndarray) -> float:
  """Mean HI between generated and true trees' mean feature histograms over non-root nodes.

  Args:
    gen_counts: (T, k) non-root nodes per prototype in each generated tree.
    true_counts: (T, k) the same for the ground-truth trees.
    feature_of: (k, F) nonnegative histogram feature of each prototype (rows sum to 1; the paper:
      a user's category distribution; identity for a histogram of prototypes).

  Returns:
    Mean over trees with at least one true non-root node; a generated tree without non-root
    nodes has an all-zero histogram (HI 0).
  """
  gen = gen_counts @ feature_of
  tru = true_counts @ feature_of
  gsum = gen.sum(-1, keepdims=True)
  tsum = tru.sum(-1, keepdims=True)
  gen = np.where(gsum > 0, gen / np.maximum(gsum, 1e-12), 0.0)
  keep = tsum[:, 0] > 0
  tru = tru / np.maximum(tsum, 1e-12)
  hi = histogram_intersection(gen, tru)
  return float(hi[keep].mean()) if keep.any() else float("nan")
