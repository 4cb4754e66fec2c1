"""Configs of the fusion-DNN project: one frozen dataclass per part, and the named configs.

An :class:`ExperimentConfig` is ``data`` (which posts, split and features, and which feature
group is kept alone or zeroed: :class:`DataConfig`), ``model``
(``models.fusion_dnn.FusionDNNConfig``; the input widths are taken from the data) and ``train``
(the optimisation). Every field is meant as an option of ``popdiff train <name>``
(``--split time``, ``--only user``, ``--data my_posts.csv --format csv``, ``--train.seed 1``;
the data options have no prefix).

The named configs (:data:`CONFIGS`) are the rows of Ding et al.'s Tables 1-3 that
``benchmarks/results/popularity.json`` reports (rows ``paper == "fusion_dnn"``; mean over seeds
0, 1, 2) with the settings that produced them (the paper's recipe: Adam 1e-4 decayed x0.9 per
epoch, coupled L2 1e-3, batch 128, 10 epochs; widths 512-256-128-64). The univariate and
ablation rows use the time split, as the paper's Tables 2-3 do. Times are those of the H100 run
that wrote the file: 15 runs of one seed took about 180 s there (about 12 s each) after about
10 s of features per split.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Callable

import tyro

from popdiff_jax import _validate as v
from popdiff_jax.data.posts import PostsConfig
from popdiff_jax.models.fusion_dnn import FusionDNNConfig

__all__ = ["FUSION_GROUPS", "DataConfig", "TrainConfig", "ExperimentConfig", "CONFIGS",
           "get_config"]

#: The feature groups of the univariate study and the ablation (Ding et al. Tables 2-3;
#: ``experiment.column_keep`` lists their columns).
FUSION_GROUPS = ("user", "visual", "text", "time_location", "deep_image", "deep_text",
                 "tags_count", "caption_length")


@dataclasses.dataclass(frozen=True)
class DataConfig(PostsConfig):
  """The posts (``data.posts.PostsConfig``) and the feature groups the model sees.

  Attributes:
    n_topics: LDA topics (the fusion DNN reads none: 0 skips LDA).
    only: keep this group alone (univariate study, Table 2), the other columns zeroed.
    drop: zero this group (ablation, Table 3). Inputs are z-scored, so zero is the training
      mean. At most one of ``only`` and ``drop``.
  """

  n_topics: int = 0
  only: str | None = None
  drop: str | None = None

  def __post_init__(self):
    super().__post_init__()
    v.one_of(self, "only", (None,) + FUSION_GROUPS)
    v.one_of(self, "drop", (None,) + FUSION_GROUPS)
    v.require(self, "drop", self.only is None or self.drop is None,
              "cannot be set together with only")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation (Ding et al. Sec. 4.2 and their PyTorch code path).

  Attributes:
    batch_size: posts per step (paper: 128); the global batch on several devices. Batches are
      never padded (BatchNorm would count padding rows in its statistics).
    num_epochs: epochs (paper: 10). No early stopping; the kept epoch is the one of lowest
      training loss (normally the last, under the decaying rate).
    learning_rate: Adam's initial rate (paper: 1e-4).
    decay: the rate is multiplied by this after every epoch (paper: 0.9).
    weight_decay: PyTorch's coupled ``Adam(weight_decay=...)``: the L2 term's gradient is added
      before Adam's scaling (paper: 1e-3).
    seed: the seed of the split, the features' fits, the initialisation and the shuffling.
    num_devices: data parallelism over this many devices (0 = all).
  """

  batch_size: int = 128
  num_epochs: int = 10
  learning_rate: float = 1e-4
  decay: float = 0.9
  weight_decay: float = 1e-3
  seed: int = 0
  num_devices: int = 1

  def __post_init__(self):
    v.positive(self, "batch_size", "num_epochs", "learning_rate", "decay")
    v.non_negative(self, "weight_decay", "seed", "num_devices")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One fusion-DNN experiment: posts, model and training.

  Attributes:
    data: the posts, their split and features, and the feature group kept or zeroed.
    model: the widths; ``image_dim``, ``text_dim`` and ``numeric_dim`` 0 are taken from the data.
    train: the optimisation.
  """

  data: Annotated[DataConfig, tyro.conf.OmitArgPrefixes] = DataConfig()
  model: FusionDNNConfig = FusionDNNConfig()
  train: TrainConfig = TrainConfig()


# ----------------------------------------------------------------------------- named configs


def fusion_dnn() -> ExperimentConfig:
  """The full model on every feature (Table 1).

  Command: ``popdiff train fusion-dnn --data-dir ../shared/data --split time
  --train.seed 0 --workdir runs/fusion-dnn`` (``--split`` ``time`` = Set-I, ``user`` =
  Set-II, ``random`` = Set-III; ``--data synthetic`` for generated posts).
  Result: ``benchmarks/results/popularity.json``, rows ``paper == "fusion_dnn"``,
  ``model == "fusion_dnn"``, one per ``split`` (time: MAE 1.137, SRCC 0.778). About 12 s per
  seed on an H100 after the features.
  """
  return ExperimentConfig(data=DataConfig(split="time"))


def _only(group: str) -> ExperimentConfig:
  return ExperimentConfig(data=DataConfig(split="time", only=group))


def _drop(group: str) -> ExperimentConfig:
  return ExperimentConfig(data=DataConfig(split="time", drop=group))


def only_user() -> ExperimentConfig:
  """Univariate study (Table 2): user information alone (log followers, followings, posts).

  Command: ``popdiff train fusion-dnn-only-user --data-dir ../shared/data --train.seed 0
  --workdir runs/fusion-only-user``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "fusion_dnn"``,
  ``model == "only_user"``, ``split == "time"`` (SRCC 0.875). About 12 s per seed on an H100.
  """
  return _only("user")


def only_visual() -> ExperimentConfig:
  """Univariate study (Table 2): the deep image feature and the post type alone.

  Command: ``popdiff train fusion-dnn-only-visual --data-dir ../shared/data --train.seed 0
  --workdir runs/fusion-only-visual``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_visual"``,
  ``split == "time"`` (SRCC 0.354). About 12 s per seed on an H100.
  """
  return _only("visual")


def only_text() -> ExperimentConfig:
  """Univariate study (Table 2): the deep text feature, tag count and caption length alone.

  Command: ``popdiff train fusion-dnn-only-text --data-dir ../shared/data --train.seed 0
  --workdir runs/fusion-only-text``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_text"``,
  ``split == "time"`` (SRCC 0.346). About 12 s per seed on an H100.
  """
  return _only("text")


def only_time_location() -> ExperimentConfig:
  """Univariate study (Table 2): post age, hour, weekday and has-location alone.

  Command: ``popdiff train fusion-dnn-only-time-location --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-only-time-location``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_time_location"``,
  ``split == "time"`` (SRCC 0.090). About 12 s per seed on an H100.
  """
  return _only("time_location")


def only_deep_image() -> ExperimentConfig:
  """Univariate study (Table 2): the deep image feature alone.

  Command: ``popdiff train fusion-dnn-only-deep-image --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-only-deep-image``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_deep_image"``,
  ``split == "time"`` (SRCC 0.348). About 12 s per seed on an H100.
  """
  return _only("deep_image")


def only_deep_text() -> ExperimentConfig:
  """Univariate study (Table 2): the deep text feature alone.

  Command: ``popdiff train fusion-dnn-only-deep-text --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-only-deep-text``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_deep_text"``,
  ``split == "time"`` (SRCC 0.304). About 12 s per seed on an H100.
  """
  return _only("deep_text")


def only_tags_count() -> ExperimentConfig:
  """Univariate study (Table 2): the tag count alone.

  Command: ``popdiff train fusion-dnn-only-tags-count --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-only-tags-count``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_tags_count"``,
  ``split == "time"`` (SRCC 0.244). About 12 s per seed on an H100.
  """
  return _only("tags_count")


def only_caption_length() -> ExperimentConfig:
  """Univariate study (Table 2): the caption length alone.

  Command: ``popdiff train fusion-dnn-only-caption-length --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-only-caption-length``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "only_caption_length"``,
  ``split == "time"`` (SRCC 0.274). About 12 s per seed on an H100.
  """
  return _only("caption_length")


def drop_user() -> ExperimentConfig:
  """Ablation (Table 3): every feature but the user information.

  Command: ``popdiff train fusion-dnn-drop-user --data-dir ../shared/data --train.seed 0
  --workdir runs/fusion-drop-user``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "drop_user"``,
  ``split == "time"`` (SRCC 0.434). About 12 s per seed on an H100.
  """
  return _drop("user")


def drop_deep_text() -> ExperimentConfig:
  """Ablation (Table 3): every feature but the deep text feature.

  Command: ``popdiff train fusion-dnn-drop-deep-text --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-drop-deep-text``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "drop_deep_text"``,
  ``split == "time"`` (SRCC 0.844). About 12 s per seed on an H100.
  """
  return _drop("deep_text")


def drop_deep_image() -> ExperimentConfig:
  """Ablation (Table 3): every feature but the deep image feature.

  Command: ``popdiff train fusion-dnn-drop-deep-image --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-drop-deep-image``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "drop_deep_image"``,
  ``split == "time"`` (SRCC 0.786). About 12 s per seed on an H100.
  """
  return _drop("deep_image")


def drop_tags_count() -> ExperimentConfig:
  """Ablation (Table 3): every feature but the tag count.

  Command: ``popdiff train fusion-dnn-drop-tags-count --data-dir ../shared/data
  --train.seed 0 --workdir runs/fusion-drop-tags-count``.
  Result: ``benchmarks/results/popularity.json``, row ``model == "drop_tags_count"``,
  ``split == "time"`` (SRCC 0.777). About 12 s per seed on an H100.
  """
  return _drop("tags_count")


def tiny() -> ExperimentConfig:
  """The test configuration: 120 synthetic users, widths 32-16, 4 epochs at 1e-3.

  The fusion-DNN part of ``popdiff reproduce popularity --data synthetic --quick``.
  Command: ``popdiff train fusion-dnn-tiny --workdir runs/fusion-tiny``. No result file.
  Seconds on a CPU after the features (about 5 s).
  """
  return ExperimentConfig(
      data=DataConfig(source="synthetic", synthetic_users=120, lda_iter=2, lsa_dim=8, max_len=20),
      model=FusionDNNConfig(hidden=(32, 16)),
      train=TrainConfig(batch_size=32, num_epochs=4, learning_rate=1e-3))


CONFIGS: dict[str, Callable[[], ExperimentConfig]] = {
    "fusion-dnn": fusion_dnn, "fusion-dnn-only-user": only_user,
    "fusion-dnn-only-visual": only_visual, "fusion-dnn-only-text": only_text,
    "fusion-dnn-only-time-location": only_time_location,
    "fusion-dnn-only-deep-image": only_deep_image, "fusion-dnn-only-deep-text": only_deep_text,
    "fusion-dnn-only-tags-count": only_tags_count,
    "fusion-dnn-only-caption-length": only_caption_length, "fusion-dnn-drop-user": drop_user,
    "fusion-dnn-drop-deep-text": drop_deep_text, "fusion-dnn-drop-deep-image": drop_deep_image,
    "fusion-dnn-drop-tags-count": drop_tags_count, "fusion-dnn-tiny": tiny,
}


def get_config(name: str) -> ExperimentConfig:
  """The named config ``name`` (a key of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown fusion-DNN config {name!r}; choose from {', '.join(CONFIGS)}")
  return CONFIGS[name]()
