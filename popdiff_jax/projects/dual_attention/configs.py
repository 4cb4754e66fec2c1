"""Configs of the dual-attention project: one frozen dataclass per part, and the named configs.

An :class:`ExperimentConfig` is ``data`` (which posts, split and features:
``data.posts.PostsConfig``), ``model`` (``models.dual_attention.DualAttentionConfig``: the
variant and its widths; the input widths are taken from the data) and ``train`` (the
optimisation). Every field is meant as an option of ``popdiff train <name>``
(``--model.variant textual``, ``--train.seed 1``, ``--data synthetic``,
``--data my_posts.csv --format csv``; the data options have no prefix).

The named configs (:data:`CONFIGS`) are the variants of Zhang et al.'s Tables I and II that
``benchmarks/results/popularity.json`` reports (rows ``paper == "dual_attention"``, ``split ==
"random"``, ``model`` = the variant; mean over seeds 0, 1, 2) with the settings that produced
them: paper widths (512-D embedding and LSTM, k = 128, O1 512 units), 5 epochs, best epoch on
validation accuracy, 400 LDA topics. Times are those of the H100 run that wrote the file: the
11 variants of one seed took about 130 s of training there, after about 60 s of features
(the 400-topic LDA on its CPU). Not measured on a small CPU; expect minutes per variant.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Callable

import tyro

from popdiff_jax import _validate as v
from popdiff_jax.data.posts import PostsConfig
from popdiff_jax.models.dual_attention import DualAttentionConfig

__all__ = ["TrainConfig", "ExperimentConfig", "CONFIGS", "get_config"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and model selection (Zhang et al. Sec. IV-A: Adam 1e-3 for 2 epochs, then
  1e-4; batch 128).

  Attributes:
    batch_size: posts per step (paper: 128); the global batch on several devices.
    num_epochs: maximum epochs (the paper does not say).
    lr_high: Adam's rate for the first ``high_epochs`` epochs (paper: 1e-3).
    lr_low: the rate afterwards (paper: 1e-4).
    high_epochs: epochs at ``lr_high`` (paper: 2).
    patience: epochs without a better validation accuracy before stopping; the best epoch on
      validation accuracy is kept.
    ccr_weight: weight of CCR's KL consistency terms (``losses.dual_attention_loss``).
    seed: the seed of the split, the features' fits, the initialisation and the shuffling.
    num_devices: data parallelism over this many devices (0 = all); batches that do not divide
      get masked padding rows.
  """

  batch_size: int = 128
  num_epochs: int = 6
  lr_high: float = 1e-3
  lr_low: float = 1e-4
  high_epochs: int = 2
  patience: int = 3
  ccr_weight: float = 0.5
  seed: int = 0
  num_devices: int = 1

  def __post_init__(self):
    v.positive(self, "batch_size", "num_epochs", "lr_high", "lr_low", "patience")
    v.non_negative(self, "high_epochs", "ccr_weight", "seed", "num_devices")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One dual-attention experiment: posts, model and training.

  Attributes:
    data: the posts, their split and features (``n_topics`` feeds the topic environment).
    model: the variant and its widths; ``vocab_size`` 0, ``image_dim`` 0 and ``topic_dim`` 0 are
      taken from the features.
    train: the optimisation.
  """

  data: Annotated[PostsConfig, tyro.conf.OmitArgPrefixes] = PostsConfig()
  model: DualAttentionConfig = DualAttentionConfig()
  train: TrainConfig = TrainConfig()


# ----------------------------------------------------------------------------- named configs

_TABLE_MODEL = DualAttentionConfig(embed_dim=512, hidden_dim=512, attn_dim=128, out_dim=512)
_TABLE_TRAIN = TrainConfig(num_epochs=5, patience=5)


def _table(variant: str) -> ExperimentConfig:
  return ExperimentConfig(model=dataclasses.replace(_TABLE_MODEL, variant=variant),
                          train=_TABLE_TRAIN)


def dual_attention() -> ExperimentConfig:
  """The full model (Table I, last row): explicit attention over caption words and implicit
  attention over the user environment.

  Command: ``popdiff train dual-attention --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention`` (``--data synthetic`` for generated posts).
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "dual_attention"``, ``split == "random"`` (accuracy 55.66 %, F1 60.68 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("dual_attention")


def visual() -> ExperimentConfig:
  """Baseline (Table I): the image alone, V̂ -> O1 -> O2.

  Command: ``popdiff train dual-attention-visual --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-visual``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "visual"``, ``split == "random"`` (accuracy 55.07 %, F1 51.16 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("visual")


def textual() -> ExperimentConfig:
  """Baseline (Table I): the caption alone, the LSTM's last state q_T -> O1 -> O2.

  Command: ``popdiff train dual-attention-textual --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-textual``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "textual"``, ``split == "random"`` (accuracy 52.98 %, F1 52.79 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("textual")


def early_fusion() -> ExperimentConfig:
  """Baseline (Table I): the concatenation [V̂, q_T] -> O1 -> O2.

  Command: ``popdiff train dual-attention-early-fusion --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-early-fusion``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "early_fusion"``, ``split == "random"`` (accuracy 54.46 %, F1 54.43 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("early_fusion")


def late_fusion() -> ExperimentConfig:
  """Baseline (Table I): the mean of a visual and a textual tower's probabilities.

  Command: ``popdiff train dual-attention-late-fusion --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-late-fusion``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "late_fusion"``, ``split == "random"`` (accuracy 55.02 %, F1 59.07 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("late_fusion")


def ccr() -> ExperimentConfig:
  """Baseline (Table I, CCR after You et al. 2016): visual, textual and fused heads, each
  with BCE, plus 0.5 x the KL divergence from the fused head to each of the others.

  Command: ``popdiff train dual-attention-ccr --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-ccr``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "ccr"``, ``split == "random"`` (accuracy 56.05 %, F1 63.70 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("ccr")


def similarity() -> ExperimentConfig:
  """Baseline (Table I, after Fang et al. 2015): the element-wise product of the
  L2-normalised V̂ and q_T -> O1 -> O2.

  Command: ``popdiff train dual-attention-similarity --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-similarity``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "similarity"``, ``split == "random"`` (accuracy 55.16 %, F1 56.90 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("similarity")


def e_attn() -> ExperimentConfig:
  """Ablation (Table II, E-attn): explicit attention alone, h_w = V̂ + Q̂ -> O1 -> O2.

  Command: ``popdiff train dual-attention-e-attn --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-e-attn``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "e_attn"``, ``split == "random"`` (accuracy 55.55 %, F1 57.23 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("e_attn")


def env() -> ExperimentConfig:
  """Ablation (Table II, Env): [V̂, q_T] and the environment through one FC layer.

  Command: ``popdiff train dual-attention-env --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-env``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "env"``, ``split == "random"`` (accuracy 55.18 %, F1 57.79 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("env")


def env_iattn() -> ExperimentConfig:
  """Ablation (Table II, Env + I-attn): [V̂, q_T] and the implicit-attention
  environment e_w.

  Command: ``popdiff train dual-attention-env-iattn --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-env-iattn``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "env_iattn"``, ``split == "random"`` (accuracy 54.40 %, F1 57.35 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("env_iattn")


def e_attn_env() -> ExperimentConfig:
  """Ablation (Table II, E-attn + Env): h_w = V̂ + Q̂ and the environment through one
  FC layer.

  Command: ``popdiff train dual-attention-e-attn-env --data-dir ../shared/data
  --train.seed 0 --workdir runs/dual-attention-e-attn-env``.
  Result: ``benchmarks/results/popularity.json``, row ``paper == "dual_attention"``,
  ``model == "e_attn_env"``, ``split == "random"`` (accuracy 55.80 %, F1 56.30 %).
  About 12 s of training per seed on an H100 after the features.
  """
  return _table("e_attn_env")


def tiny() -> ExperimentConfig:
  """The test configuration: 120 synthetic users, 6 LDA topics, 16-D widths, 4 epochs.

  The dual-attention part of ``popdiff reproduce popularity --data synthetic --quick``.
  Command: ``popdiff train dual-attention-tiny --workdir runs/da-tiny``. No result file (the
  tests check it learns the planted words). Seconds on a CPU after the features (about 10 s).
  """
  return ExperimentConfig(
      data=PostsConfig(source="synthetic", synthetic_users=120, n_topics=6, lda_iter=2, lsa_dim=8,
                       max_len=20),
      model=DualAttentionConfig(embed_dim=16, hidden_dim=16, attn_dim=8, out_dim=16),
      train=TrainConfig(batch_size=32, num_epochs=4, patience=4, lr_high=3e-3, high_epochs=4))


CONFIGS: dict[str, Callable[[], ExperimentConfig]] = {
    "dual-attention": dual_attention, "dual-attention-visual": visual,
    "dual-attention-textual": textual, "dual-attention-early-fusion": early_fusion,
    "dual-attention-late-fusion": late_fusion, "dual-attention-ccr": ccr,
    "dual-attention-similarity": similarity, "dual-attention-e-attn": e_attn,
    "dual-attention-env": env, "dual-attention-env-iattn": env_iattn,
    "dual-attention-e-attn-env": e_attn_env, "dual-attention-tiny": tiny,
}


def get_config(name: str) -> ExperimentConfig:
  """The named config ``name`` (a key of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown dual-attention config {name!r}; choose from {', '.join(CONFIGS)}")
  return CONFIGS[name]()
