"""Configs of the multimodal-SMP project: one frozen dataclass per part, and the named configs.

An :class:`ExperimentConfig` is ``data`` (which posts, split and features, and which of the
tabular inputs the model reads: :class:`DataConfig`), ``model`` (the Conv1d network
``models.smp.SMPConv1dConfig``, the paper's random forest :class:`RandomForestConfig`, or the
floors of ``baselines.regressors``: the image model and gradient boosting) and ``train`` (the
Conv1d's optimisation and the scikit-learn workers). Every field is meant as an option of
``popdiff train <name>`` (``--image-score``, ``--data my_posts.csv --format csv``,
``--train.seed 1``; the data options have no prefix).

The named configs (:data:`CONFIGS`) are the rows of Meghawat et al.'s Table 3 (and our two extra
rows) that ``benchmarks/results/popularity.json`` reports (rows ``paper == "multimodal_smp"``,
one per split; mean over seeds 0, 1, 2) with the settings that produced them: random forest of
200 trees (min leaf 3); Conv1d with Adam 1e-3, up to 20 epochs with early stopping (patience 4)
on validation MSE; gradient boosting of 300 iterations at rate 0.05. Times are those of the H100
run that wrote the file: the six models on three splits took about 190 s per seed, about 40 s of
it the features (so about 50 s for the six models of one split).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Callable, ClassVar

import tyro

from popdiff_jax import _validate as v
from popdiff_jax.baselines.regressors import GradientBoostingConfig, ImageModelConfig
from popdiff_jax.data.posts import PostsConfig
from popdiff_jax.models.smp import SMPConv1dConfig

__all__ = ["DataConfig", "RandomForestConfig", "TrainConfig", "ExperimentConfig", "CONFIGS",
           "get_config"]


@dataclasses.dataclass(frozen=True)
class DataConfig(PostsConfig):
  """The posts (``data.posts.PostsConfig``) and the tabular inputs of the model.

  The inputs are the 14 CON-SOC features (``features.SMP_NAMES``, z-scored), optionally with the
  image model's score as a 15th (the paper's "multimodal" input, z-scored on training rows).

  Attributes:
    n_topics: LDA topics (SMP reads none: 0 skips LDA).
    image_score: add the image model's score as a 15th feature.
    comments: keep the comment count (counted after posting, like the likes it predicts: a
      forecaster before posting would not have it).
  """

  n_topics: int = 0
  image_score: bool = False
  comments: bool = True

  def __post_init__(self):
    super().__post_init__()
    v.one_of(self, "image_score", (False, True))
    v.one_of(self, "comments", (False, True))


@dataclasses.dataclass(frozen=True)
class RandomForestConfig:
  """Meghawat et al.'s random forest (Sec. 3.1; scikit-learn ``RandomForestRegressor``).

  Attributes:
    n_estimators: trees (the paper does not say; 200).
    min_samples_leaf: the smallest leaf (3).
  """

  name: ClassVar[str] = "random_forest"
  n_estimators: int = 200
  min_samples_leaf: int = 3

  def __post_init__(self):
    v.positive(self, "n_estimators", "min_samples_leaf")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The Conv1d's optimisation (the paper gives neither optimiser nor epochs) and the workers of
  the scikit-learn models.

  Attributes:
    batch_size: posts per step; the global batch on several devices.
    num_epochs: maximum epochs.
    learning_rate: Adam's rate (Keras' default, 1e-3).
    patience: epochs without a lower validation MSE before stopping; the best epoch is kept.
    seed: the seed of the split, the features' fits, the initialisation, shuffling and dropout,
      and the scikit-learn models' ``random_state``.
    num_devices: data parallelism of the Conv1d over this many devices (0 = all); batches that
      do not divide get masked padding rows.
    n_jobs: scikit-learn workers of the random forest.
  """

  batch_size: int = 128
  num_epochs: int = 30
  learning_rate: float = 1e-3
  patience: int = 5
  seed: int = 0
  num_devices: int = 1
  n_jobs: int = 1

  def __post_init__(self):
    v.positive(self, "batch_size", "num_epochs", "learning_rate", "patience", "n_jobs")
    v.non_negative(self, "seed", "num_devices")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One SMP experiment: posts, model and training.

  Attributes:
    data: the posts, their split and features, and the tabular inputs.
    model: ``SMPConv1dConfig`` (``num_features`` is taken from the inputs),
      ``RandomForestConfig``, ``ImageModelConfig`` or ``GradientBoostingConfig``.
    train: the Conv1d's optimisation and the scikit-learn workers.
  """

  data: Annotated[DataConfig, tyro.conf.OmitArgPrefixes] = DataConfig()
  model: SMPConv1dConfig | RandomForestConfig | ImageModelConfig | GradientBoostingConfig = (
      SMPConv1dConfig())
  train: TrainConfig = TrainConfig()


# ----------------------------------------------------------------------------- named configs

_TABLE_TRAIN = TrainConfig(num_epochs=20, patience=4)


def conv1d() -> ExperimentConfig:
  """The Conv1d network (Fig. 1) on the 14 CON-SOC features.

  Command: ``popdiff train smp-conv1d --data-dir ../shared/data --split random
  --train.seed 0 --workdir runs/smp-conv1d`` (``--data synthetic`` for generated posts).
  Result: ``benchmarks/results/popularity.json``, rows ``paper == "multimodal_smp"``,
  ``model == "conv1d"``, one per ``split`` (random: SRCC 0.974). Part of the ~50 s the six
  models of one split took on the H100 machine.
  """
  return ExperimentConfig(train=_TABLE_TRAIN)


def conv1d_multimodal() -> ExperimentConfig:
  """The Conv1d network on the 14 features and the image model's score (the paper's best).

  Command: ``popdiff train smp-conv1d-multimodal --data-dir ../shared/data
  --split random --train.seed 0 --workdir runs/smp-conv1d-multimodal``.
  Result: ``benchmarks/results/popularity.json``, rows ``model == "conv1d_multimodal"``
  (random: SRCC 0.973). Part of the ~50 s the six models of one split took on the H100
  machine.
  """
  return ExperimentConfig(data=DataConfig(image_score=True), train=_TABLE_TRAIN)


def random_forest() -> ExperimentConfig:
  """The random forest on the 14 CON-SOC features (Sec. 3.1).

  Command: ``popdiff train smp-random-forest --data-dir ../shared/data --split random
  --train.seed 0 --workdir runs/smp-rf``.
  Result: ``benchmarks/results/popularity.json``, rows ``model == "random_forest"`` (random:
  SRCC 0.980). Part of the ~50 s the six models of one split took on the H100 machine
  (scikit-learn on 2 of its CPU cores, ``--train.n-jobs 2``).
  """
  return ExperimentConfig(model=RandomForestConfig(), train=_TABLE_TRAIN)


def random_forest_no_comments() -> ExperimentConfig:
  """The random forest without the comment count (13 features; not in the paper): what a
  forecaster before posting could use.

  Command: ``popdiff train smp-random-forest-no-comments --data-dir ../shared/data
  --split user --train.seed 0 --workdir runs/smp-rf-nc``.
  Result: ``benchmarks/results/popularity.json``, rows ``model == "random_forest_no_comments"``
  (user: SRCC 0.354). Part of the ~50 s the six models of one split took on the H100 machine.
  """
  return ExperimentConfig(data=DataConfig(comments=False), model=RandomForestConfig(),
                          train=_TABLE_TRAIN)


def image_model() -> ExperimentConfig:
  """The image model alone (Sec. 3.3's role; here the ridge on the alt-text image input that the
  features fit, ``baselines.regressors.image_model``).

  Command: ``popdiff train smp-image-model --data-dir ../shared/data --split random
  --train.seed 0 --workdir runs/smp-image``.
  Result: ``benchmarks/results/popularity.json``, rows ``model == "image_model"`` (random:
  SRCC 0.426). Only the features' time (about 10-20 s there).
  """
  return ExperimentConfig(model=ImageModelConfig(), train=_TABLE_TRAIN)


def gradient_boosting() -> ExperimentConfig:
  """Gradient boosting on the 15 features (our baseline, ``baselines.regressors``).

  Command: ``popdiff train smp-gradient-boosting --data-dir ../shared/data
  --split random --train.seed 0 --workdir runs/smp-gb``.
  Result: ``benchmarks/results/popularity.json``, rows ``model == "gradient_boosting"`` (random:
  SRCC 0.980). Part of the ~50 s the six models of one split took on the H100 machine.
  """
  return ExperimentConfig(data=DataConfig(image_score=True), model=GradientBoostingConfig(),
                          train=_TABLE_TRAIN)


def tiny() -> ExperimentConfig:
  """The test configuration: the Conv1d on 120 synthetic users, batch 32, 4 epochs.

  The Conv1d part of ``popdiff reproduce popularity --data synthetic --quick`` (which runs the
  forest with 20 trees and boosting with 50 iterations beside it).
  Command: ``popdiff train smp-tiny --workdir runs/smp-tiny``. No result file. Seconds on a CPU
  after the features (about 5 s).
  """
  return ExperimentConfig(
      data=DataConfig(source="synthetic", synthetic_users=120, lda_iter=2, lsa_dim=8, max_len=20),
      train=TrainConfig(batch_size=32, num_epochs=4))


CONFIGS: dict[str, Callable[[], ExperimentConfig]] = {
    "smp-conv1d": conv1d, "smp-conv1d-multimodal": conv1d_multimodal,
    "smp-random-forest": random_forest,
    "smp-random-forest-no-comments": random_forest_no_comments,
    "smp-image-model": image_model, "smp-gradient-boosting": gradient_boosting,
    "smp-tiny": tiny,
}


def get_config(name: str) -> ExperimentConfig:
  """The named config ``name`` (a key of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown SMP config {name!r}; choose from {', '.join(CONFIGS)}")
  return CONFIGS[name]()
