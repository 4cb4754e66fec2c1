"""Configs of the Diffusion-LSTM project: one frozen dataclass per part, and the named configs.

A :class:`TreePredictionConfig` is ``data`` (which trees, the prototypes, the batch layout),
``model`` (``DiffusionLSTMConfig``: the variant and its sizes), ``train`` (the two SGD phases)
and ``eval`` (teacher-forced evaluation and tree generation). Every field is an option of
``popdiff train <name>`` (``--model.hidden 64``, ``--train.learning-rate 0.2``,
``--data.chunk 1024``; the options naming the data have no prefix: ``--data twitter15``,
``--data my_trees.csv --labels my_labels.csv``, ``--format``, ``--data-dir``): the command line
is generated from these classes, so a default or a rule is written once, here. Each field is
checked when the config is built.

The fields default to the paper's protocol where the paper gives it (k = 100 prototypes, SGD 0.2
then 0.02, up to 30 + 30 epochs, terminal threshold 0.5, caps 10 / 100 / 150) and to our choices
where it does not. The named configs (:data:`CONFIGS`) are the five models of the paper's
Tables 1 and 2 under a CPU budget (Adam instead of SGD, hidden 64, a few epochs: see
``README.md``); each docstring gives the command, what that budget measured (one seed) and the
time. The results table (``benchmarks/results/diffusion_lstm.json``) trains the same five
configs to convergence on a GPU, up to 30 + 30 epochs with patience 3 (:data:`CONVERGE`,
``popdiff reproduce diffusion-lstm --converge --seeds 0 1 2``). On Twitter15
the CPU budget adds the overrides :data:`TWITTER15_CPU`::

  popdiff train <name> --data twitter15 --data.chunk 1024 --data.buckets 8 16 32 64 \\
      --data.parent-chunk 128 --train.epochs-high 3 --train.epochs-low 1 --eval.batch-trees 32
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Callable, Literal

import tyro

from popdiff_jax import _validate as v
from popdiff_jax.data.trees.formats import TREE_FORMATS
from popdiff_jax.data.trees.synthetic import SyntheticTreesConfig
from popdiff_jax.models.diffusion_lstm import DiffusionLSTMConfig

__all__ = ["DataConfig", "TrainConfig", "EvalConfig", "TreePredictionConfig", "DATASETS",
           "TWITTER15_CPU", "CONVERGE", "CONFIGS", "get_config", "row_label"]

#: The presets of ``DataConfig.source``, with the format each is in (synthetic: generated).
DATASETS = ("synthetic", "twitter15")
_PRESET_FORMAT = {"synthetic": None, "twitter15": "twitter15"}


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which trees, how their users become prototypes, and how trees are laid out in batches.

  Attributes:
    source: a preset, ``synthetic`` (the Pinterest-like generator, ``data.trees.synthetic``; no
      files; always the generator) or ``twitter15`` (the public propagation trees,
      ``twitter15_tree.tar.gz``), or the path of your own trees in one of the tree formats
      (``data.trees.TREE_FORMATS``): they are prepared as Twitter15 (``data.prepare_trees``).
      On the command line: ``--data``.
    format: the format of a path (``csv``, ``twitter15``, ``weibo``, ``parent_arrays``); None
      detects it where the path says it (a ``.csv`` file, a ``.tar.gz`` or a folder).
      ``--format``.
    labels: a label file for a path: a ``.csv`` with header ``tree,label``, or Twitter15's
      ``label:tree`` lines (``data.trees.read_labels``). ``--labels``.
    data_dir: folder holding ``twitter15_16_trees/`` (or that folder itself; default:
      ``$POPDIFF_DATA_DIR``, else ``../shared/data`` beside a checkout). Used by ``twitter15``
      only. ``--data-dir``.
    max_trees: read only the first trees (Twitter15: by name; None: all).
    synthetic: the generator's settings (``source == "synthetic"``).
    num_protos: k, the number of prototype users (paper: 100): k-means++ clusters of the
      training users' features; a node's input is its prototype's centroid.
    kmeans_iters: Lloyd iterations of k-means.
    kmeans_max_points: k-means runs on at most this many training nodes (a seeded sample).
    seed: the 6:1:1 split, the k-means seeding and its sample.
    chunk: C, node slots per chunk of a level-wise batch (``data.trees.batching``); each level
      is padded to a multiple of it.
    buckets: the allowed numbers of chunks K per batch.
    parent_chunk: W, nodes with children per sequential step of the tree LSTM
      (``TreeBatch.parent_chunks``, ``nn.tree_lstm.tree_lstm_by_parents``).
    parent_buckets: the allowed numbers of sequential steps S per batch. Each (K, S) pair of
      a run compiles once; neither changes which trees go together.
  """

  source: Annotated[str, tyro.conf.arg(name="data", prefix_name=False)] = "synthetic"
  format: Annotated[str | None, tyro.conf.arg(prefix_name=False)] = None
  labels: Annotated[str | None, tyro.conf.arg(prefix_name=False)] = None
  data_dir: Annotated[str | None, tyro.conf.arg(prefix_name=False)] = None
  max_trees: int | None = None
  synthetic: SyntheticTreesConfig = SyntheticTreesConfig()
  num_protos: int = 100
  kmeans_iters: int = 30
  kmeans_max_points: int = 200_000
  seed: int = 0
  chunk: int = 512
  buckets: tuple[int, ...] = (8, 16, 32, 64)
  parent_chunk: int = 64
  parent_buckets: tuple[int, ...] = (8, 16, 32, 64)

  def __post_init__(self):
    v.require(self, "source", isinstance(self.source, str) and bool(self.source.strip()),
              "must be a preset (synthetic, twitter15) or the path of trees")
    v.one_of(self, "format", (None, *TREE_FORMATS))
    v.require(self, "format", self.format is None or self.source not in DATASETS
              or self.format == _PRESET_FORMAT[self.source],
              "is the format of a path; a preset has its own (twitter15: 'twitter15', "
              "synthetic: none)")
    v.require(self, "labels", self.labels is None or self.source not in DATASETS,
              "is a label file for a path; the presets bring their own")
    v.positive(self, "max_trees", allow_none=True)
    v.positive(self, "num_protos", "kmeans_iters", "kmeans_max_points", "chunk", "parent_chunk")
    v.non_negative(self, "seed")
    for name in ("buckets", "parent_buckets"):
      v.require(self, name, len(getattr(self, name)) > 0 and all(
          isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in getattr(self, name)),
                "must be one or more positive integers")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The optimisation: two phases, the second at the lower rate from the first's best epoch.

  The paper trains with SGD at 0.2 and lowers the rate to 0.02 "when validation loss stops
  decreasing". Here each phase is a ``training.fit`` run that keeps the epoch of lowest
  validation loss and stops after ``patience`` epochs without a lower one; the second phase
  starts from the first's best parameters with a fresh optimiser state.

  Attributes:
    optimizer: ``sgd`` (the paper's) or ``adam``.
    learning_rate: the first phase's rate (paper: 0.2).
    learning_rate_low: the second phase's rate (paper: 0.02).
    epochs_high: at most this many epochs at ``learning_rate`` (paper: 30-60 in all).
    epochs_low: at most this many epochs at ``learning_rate_low``.
    patience: epochs without a lower validation loss before a phase stops.
    batch_trees: trees per training batch (B).
    seed: initialisation, shuffling, dropout and sampled generation.
    num_devices: data parallelism of training over this many devices (0 = all): each
      ``TreeBatch`` is split along its node and tree axes where they divide (else replicated),
      the state replicated; the steps equal the one-device steps up to float rounding.
    random_weights: never train: the model stays at its initialisation (the paper's
      random-weights baseline), whatever the epochs.
  """

  optimizer: Literal["sgd", "adam"] = "sgd"
  learning_rate: float = 0.2
  learning_rate_low: float = 0.02
  epochs_high: int = 30
  epochs_low: int = 30
  patience: int = 3
  batch_trees: int = 16
  seed: int = 0
  num_devices: int = 1
  random_weights: bool = False

  def __post_init__(self):
    v.one_of(self, "optimizer", ("sgd", "adam"))
    v.one_of(self, "random_weights", (False, True))
    v.positive(self, "learning_rate", "learning_rate_low", "patience", "batch_trees")
    v.non_negative(self, "epochs_high", "epochs_low", "seed", "num_devices")

  @property
  def trains(self) -> bool:
    """Whether any epoch is run (False: the model stays at its initialisation)."""
    return not self.random_weights and self.epochs_high + self.epochs_low > 0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Teacher-forced evaluation (Table 1) and tree generation (Table 2).

  Attributes:
    batch_trees: trees per evaluation batch.
    terminal_threshold: a generated node is terminal if ``p(terminal)`` exceeds it (paper: 0.5).
    threshold_grid: candidate prototype thresholds; the one with the lowest validation depth
      MAE is used on the test roots. One threshold is shared by all prototypes (the paper
      tunes "the prototype class prediction thresholds" and does not say whether per class).
    max_depth, max_width, max_size: generation caps (paper: depth 10, width 100, size 150).
    samples: additionally generate this many trees per test root with children drawn with
      probability ``p_u`` (0 = off; reported as ``*_sampled``).
  """

  batch_trees: int = 32
  terminal_threshold: float = 0.5
  threshold_grid: tuple[float, ...] = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
                                       0.9, 0.95, 0.99)
  max_depth: int = 10
  max_width: int = 100
  max_size: int = 150
  samples: int = 0

  def __post_init__(self):
    v.positive(self, "batch_trees", "max_depth", "max_width", "max_size")
    v.probability(self, "terminal_threshold")
    v.non_negative(self, "samples")
    v.require(self, "threshold_grid", len(self.threshold_grid) > 0 and all(
        isinstance(t, (int, float)) and 0.0 <= t <= 1.0 for t in self.threshold_grid),
              "must be one or more thresholds in [0, 1]")


@dataclasses.dataclass(frozen=True)
class TreePredictionConfig:
  """One Diffusion-LSTM experiment: data, model, training and evaluation.

  Attributes:
    data: the trees and their prototypes.
    model: the model (``variant`` selects Diffusion-LSTM or a baseline); ``input_dim``,
      ``content_dim`` and ``num_protos`` are set from the prepared data.
    train: the optimisation.
    eval: evaluation and generation.
  """

  data: DataConfig = DataConfig()
  model: DiffusionLSTMConfig = DiffusionLSTMConfig()
  train: TrainConfig = TrainConfig()
  eval: EvalConfig = EvalConfig()

  def replace(self, **parts) -> "TreePredictionConfig":
    """A copy with fields of the parts replaced: ``cfg.replace(train={"seed": 1})``."""
    out = {}
    for name, value in parts.items():
      if isinstance(value, dict):
        out[name] = dataclasses.replace(getattr(self, name), **value)
      else:
        out[name] = value
    return dataclasses.replace(self, **out)


def row_label(config: TreePredictionConfig) -> str:
  """The model's name in the results table: ``random`` for an untrained model, else the
  variant's (``Diffusion-LSTM``, ``social-only``, ``content-only``, ``FC``)."""
  if not config.train.trains:
    return "random"
  return {"full": "Diffusion-LSTM", "social": "social-only", "content": "content-only",
          "fc": "FC"}[config.model.variant]


# ----------------------------------------------------------------------------- named configs

#: The overrides of the Twitter15 rows of the results file: its trees are large (402 nodes and
#: a widest level of 310 on average, one node in ten with children), so wider chunks; fewer
#: epochs; smaller evaluation batches.
TWITTER15_CPU = {"data": {"source": "twitter15", "chunk": 1024, "buckets": (8, 16, 32, 64),
                          "parent_chunk": 128},
                 "train": {"epochs_high": 3, "epochs_low": 1},
                 "eval": {"batch_trees": 32}}


#: ``popdiff reproduce diffusion-lstm --converge``: every model trained until its validation loss
#: stops falling, within the paper's budget (30 + 30 epochs; each phase stops after 3 epochs
#: without a lower validation loss, and the best validation checkpoint is kept).
CONVERGE = {"epochs_high": 30, "epochs_low": 30, "patience": 3}


def _cpu(variant: str, random_weights: bool = False) -> TreePredictionConfig:
  """The CPU budget of the results file on the synthetic set (README: deviations)."""
  return TreePredictionConfig(
      data=DataConfig(source="synthetic", chunk=64, buckets=(4, 8, 16, 32), parent_chunk=16),
      model=DiffusionLSTMConfig(variant=variant, hidden=64, head_hidden=64, dropout_rate=0.3),
      train=TrainConfig(optimizer="adam", learning_rate=1e-3, learning_rate_low=1e-4,
                        epochs_high=8, epochs_low=3, patience=2, batch_trees=16,
                        random_weights=random_weights),
      eval=EvalConfig(batch_trees=256))


def diffusion_lstm() -> TreePredictionConfig:
  """Diffusion-LSTM (social input, content into the root memory), CPU budget.

  Command: ``popdiff train diffusion-lstm --data synthetic --workdir runs/dlstm``
  (Twitter15: add the overrides of :data:`TWITTER15_CPU`, module docstring).
  On this CPU budget (one seed):
  synthetic ``map_prototypes`` 0.0368, ``ap_terminal`` 0.816; Twitter15 ``map_prototypes``
  0.3585, ``ap_terminal`` 0.921. About 2.5 minutes (synthetic) and 3 minutes plus 4 minutes of
  data preparation (Twitter15) on a 2-core CPU.
  """
  return _cpu("full")


def social_only() -> TreePredictionConfig:
  """The social-only baseline (c0 = 0, no content), CPU budget.

  Command: ``popdiff train social-only --data synthetic --workdir runs/social``.
  On this CPU budget (one seed):
  synthetic ``map_prototypes`` 0.0295; Twitter15 0.2771. About 1.5 minutes (synthetic) and
  3 minutes (Twitter15) on a 2-core CPU.
  """
  return _cpu("social")


def content_only() -> TreePredictionConfig:
  """The content-only baseline (the content feature is every node's input, c0 = 0), CPU budget.

  Command: ``popdiff train content-only --data synthetic --workdir runs/content``.
  On this CPU budget (one seed):
  synthetic ``map_prototypes`` 0.0331; Twitter15 0.3180. About 1.5 minutes (synthetic) and
  4 minutes (Twitter15) on a 2-core CPU.
  """
  return _cpu("content")


def fc() -> TreePredictionConfig:
  """The FC baseline (three FC layers on [node, content], no memory), CPU budget.

  Command: ``popdiff train fc --data synthetic --workdir runs/fc``.
  On this CPU budget (one seed): synthetic
  ``map_prototypes`` 0.0154; Twitter15 0.2249. About 1 minute (synthetic) and 2.5 minutes
  (Twitter15) on a 2-core CPU.
  """
  return _cpu("fc")


def random_weights() -> TreePredictionConfig:
  """The random-weights baseline: the full model at its initialisation, never trained.

  Command: ``popdiff train random --data synthetic --workdir runs/random``.
  On this CPU budget (one seed): synthetic
  ``map_prototypes`` 0.0139, ``ap_terminal`` 0.641; Twitter15 0.0289, 0.875. About 20 seconds
  (evaluation and generation only).
  """
  return _cpu("full", random_weights=True)


def diffusion_lstm_paper() -> TreePredictionConfig:
  """Diffusion-LSTM with the paper's recipe: SGD 0.2 then 0.02, up to 30 + 30 epochs, hidden
  128, dropout 0.5 (the field defaults).

  Command: ``popdiff train diffusion-lstm-paper --data twitter15 --data.chunk 1024
  --workdir runs/dlstm-paper``. No result file: on a CPU it does not reach convergence within
  a budget of minutes (hours for Twitter15); on the synthetic set a few hundred SGD steps stay
  at chance (README).
  """
  return TreePredictionConfig()


def tiny() -> TreePredictionConfig:
  """The test configuration: 320 small synthetic trees, k = 8, hidden 16, Adam, 3 + 2 epochs
  (seconds on a CPU; ``tests/test_trees_experiment.py``). It suits small files of your own too:
  ``popdiff train diffusion-lstm-tiny --data popdiff_jax/data/examples/trees.csv --labels
  popdiff_jax/data/examples/tree_labels.csv --workdir runs/tiny`` (the 64 example trees)."""
  return TreePredictionConfig(
      data=DataConfig(source="synthetic", synthetic=SyntheticTreesConfig(
          num_users=200, num_trees=320, seed=1), num_protos=8, kmeans_iters=10, chunk=64,
                      buckets=(4, 8, 16, 32), parent_chunk=16),
      model=DiffusionLSTMConfig(hidden=16, head_hidden=16, dropout_rate=0.1),
      train=TrainConfig(optimizer="adam", learning_rate=1e-2, learning_rate_low=1e-3,
                        epochs_high=3, epochs_low=2, patience=2, batch_trees=32),
      eval=EvalConfig(batch_trees=64, threshold_grid=(0.3, 0.5, 0.7), samples=2))


CONFIGS: dict[str, Callable[[], TreePredictionConfig]] = {
    "diffusion-lstm": diffusion_lstm, "social-only": social_only, "content-only": content_only,
    "fc": fc, "random": random_weights, "diffusion-lstm-paper": diffusion_lstm_paper,
    "diffusion-lstm-tiny": tiny,
}


def get_config(name: str) -> TreePredictionConfig:
  """The named config ``name`` (a key of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown Diffusion-LSTM config {name!r}; choose from {', '.join(CONFIGS)}")
  return CONFIGS[name]()


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
  """``popdiff reproduce diffusion-lstm``: named configs on the tree datasets, Tables 1 and 2.

  The Twitter15 rows take :data:`TWITTER15_CPU` on top of each named config; every ``--train.*``
  and ``--eval.*`` option given overrides that field in every config. With several seeds a row
  is the mean over them, with ``<metric>_std`` beside each metric.

  Attributes:
    datasets: tree datasets to run (``synthetic`` needs no data; ``twitter15`` reads
      ``twitter15_16_trees/`` under ``data_dir``).
    configs: named configs to run on each (``popdiff configs`` lists them).
    seeds: training seeds (the data's split and prototypes keep ``data.seed``).
    data_dir: folder holding ``twitter15_16_trees/`` (default: ``$POPDIFF_DATA_DIR``).
    workdir: checkpoints, one subfolder per dataset and model; reused = resumed.
    converge: train every model to convergence on validation (:data:`CONVERGE`: up to 30 + 30
      epochs, patience 3) instead of the named configs' CPU budgets (a few epochs); the GPU
      tables use it. ``--train.*`` options still apply on top.
    out: the result file to write (e.g. ``benchmarks/results/diffusion_lstm.json``); rows of
      the datasets not run are kept from it.
    train: training options for every run.
    eval: evaluation options for every run.
  """

  datasets: tuple[str, ...] = DATASETS
  configs: tuple[str, ...] = ("random", "fc", "content-only", "social-only", "diffusion-lstm")
  seeds: tuple[int, ...] = (0,)
  data_dir: str | None = None
  workdir: str = "runs/reproduce_diffusion_lstm"
  converge: bool = False
  out: str | None = None
  train: TrainConfig = TrainConfig()
  eval: EvalConfig = EvalConfig()

  def __post_init__(self):
    unknown = [c for c in self.configs if c not in CONFIGS]
    v.require(self, "configs", not unknown, f"unknown named config(s) {unknown}; choose from "
              f"{', '.join(CONFIGS)}")
    bad = [d for d in self.datasets if d not in DATASETS]
    v.require(self, "datasets", not bad, f"unknown dataset(s) {bad}; choose from {DATASETS}")
    v.require(self, "seeds", len(self.seeds) > 0, "give at least one seed")
