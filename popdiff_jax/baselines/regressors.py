"""Popularity regressors that are no paper's model: the floors the papers' regressors are read
against.

* :class:`GradientBoostingConfig` / :func:`gradient_boosting`: scikit-learn's
  ``HistGradientBoostingRegressor`` on tabular features (what wins SMP challenges today; our
  baseline beside Meghawat et al.'s random forest and Conv1d).
* :class:`ImageModelConfig` / :func:`image_model`: the image input alone, through the ridge
  regression that ``features.build_features`` fits on the training posts (``image_score``:
  out-of-fold on training rows). It stands in for Meghawat et al.'s fine-tuned InceptionResNetV2
  image model (Sec. 3.3), which needs pixels; its score is also their 15th feature.

These are host (NumPy / scikit-learn) models: no JAX, no training step.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from popdiff_jax import _validate as v

__all__ = ["GradientBoostingConfig", "ImageModelConfig", "gradient_boosting", "image_model"]


@dataclasses.dataclass(frozen=True)
class GradientBoostingConfig:
  """``HistGradientBoostingRegressor`` settings (no early stopping).

  Attributes:
    max_iter: boosting iterations.
    learning_rate: shrinkage.
  """

  name: ClassVar[str] = "gradient_boosting"
  max_iter: int = 300
  learning_rate: float = 0.05

  def __post_init__(self):
    v.positive(self, "max_iter", "learning_rate")


@dataclasses.dataclass(frozen=True)
class ImageModelConfig:
  """The image-only regressor has no settings here (the ridge is fitted with the features)."""

  name: ClassVar[str] = "image_model"


def gradient_boosting(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                      config: GradientBoostingConfig = GradientBoostingConfig(), *,
                      seed: int = 0) -> np.ndarray:
  """Fits gradient boosting on the ``train`` rows and predicts the ``test`` rows.

  Args:
    x: float [N, F] features of all rows.
    y: float [N] targets.
    train, test: int row indices.
    config: the boosting settings.
    seed: scikit-learn's ``random_state``.

  Returns:
    float64 [len(test)] predictions.
  """
  from sklearn.ensemble import HistGradientBoostingRegressor

  gb = HistGradientBoostingRegressor(random_state=seed, early_stopping=False,
                                     max_iter=config.max_iter,
                                     learning_rate=config.learning_rate)
  return gb.fit(x[train], y[train]).predict(x[test])


def image_model(feats, rows: np.ndarray) -> np.ndarray:
  """The image model's predictions of ``rows``: ``feats.image_score`` (a ridge on the image
  input fitted on the training posts, out-of-fold on training rows), float [len(rows)]."""
  return feats.image_score[rows]
