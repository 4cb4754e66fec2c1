"""Configs of the NDM project: one frozen dataclass per part, and the named configs.

A :class:`NextUserConfig` is ``data`` (which cascades), ``model`` (NDM, the LSTM baseline or the
popularity floor, with their hyperparameters) and ``train`` (the optimisation). Every field is an
option of ``popdiff train <name>`` (``--data forest/twitter``, ``--data my.csv --format csv``,
``--model.dim 32``, ``--train.learning-rate 3e-4``; the data options have no prefix): the
command line is generated from these classes, so a default or a rule is written once, here. Each
field is checked when the config is built.

The named configs (:data:`CONFIGS`) are the variants the results tables report; each docstring
gives the command that runs it, the result it should reach (file and key under
``benchmarks/results/``) and how long it takes.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Annotated, Callable, Literal

import tyro

from popdiff_jax import _validate as v
from popdiff_jax.baselines.popularity import PopularityConfig
from popdiff_jax.data.cascades import SPLITS
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig

__all__ = ["DataConfig", "TrainConfig", "NextUserConfig", "TableRun", "ReproduceConfig",
           "SELECT_METRICS", "CONFIGS", "EXAMPLES", "get_config"]

_RANKING = tuple(f"{m}@{k}" for m in ("hits", "map") for k in (10, 50, 100))
SELECT_METRICS = ("nll", "last") + _RANKING + tuple(f"{r}_with_terminate" for r in _RANKING)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which cascades, and how they are split and cut.

  Attributes:
    source: a registered dataset (``popdiff data summary`` lists them; ``ndm/*`` ship with the
      package), or the path of a file or folder of cascades in one of the formats
      (``data.cascades.FORMATS``). On the command line: ``--data``.
    format: the format of a path (``csv``, ``ndm``, ``forest``, ``mshgat``, ``infvae``,
      ``topolstm``); None detects it where the files say it unambiguously.
    graph: a social graph file for a path (``source,target`` CSV for the ``csv`` format).
    data_dir: folder holding the registered datasets' folders (default: ``$POPDIFF_DATA_DIR``,
      else ``../shared/data`` beside a checkout; embedded sets need none).
    split: the data's own split files (``files``; a single file is split 80/10/10, seeded), a
      seeded random / time-ordered re-split 80/10/10 (``random``, ``time``), or ``leak_free``:
      the leak-free protocol. All cascades are ordered by their first infection time and split
      80/10/10 (training the earliest, test the latest); the vocabulary, the popularity
      floor, the log-frequency bias and NDM+SN's social graph come from the training part
      only; a user absent from it maps to one unknown id (``data.cascades.UNKNOWN``: never a
      candidate; a target it is counts as a miss); the epoch is chosen on validation and its
      checkpoint is reloaded for the test. Command: ``popdiff train ndm --split leak_free``;
      the table's rows: ``popdiff reproduce ndm --protocols leak_free``.
    max_len: cascades are cut to this many users (FOREST's 200; a cut cascade gets no
      Terminate).
  """

  source: Annotated[str, tyro.conf.arg(name="data")] = "ndm/memetracker"
  format: str | None = None
  graph: str | None = None
  data_dir: str | None = None
  split: Literal["files", "random", "time", "leak_free"] = "files"
  max_len: int = 200

  def __post_init__(self):
    v.positive(self, "max_len")
    v.one_of(self, "split", SPLITS)

  def load(self):
    """The ``CascadeDataset`` this config names (``data.cascades.load_dataset``)."""
    from popdiff_jax.data.cascades import load_dataset

    return load_dataset(self.source, self.data_dir, format=self.format, graph=self.graph,
                        split=self.split)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation, model selection and the devices of one next-user run.

  Attributes:
    batch_size: cascades per step (the authors' code: 32); the global batch on several devices.
    num_epochs: maximum epochs. The authors train a fixed 20 epochs with no validation set; we
      stop on validation (``patience``) within at most 50, so small sets such as Irvine (12 steps
      an epoch) get past their first epochs.
    patience: epochs without improvement of ``select_by`` before stopping (>= 1).
    select_by: the validation metric that keeps the best epoch and drives early stopping:
      ``nll`` (minimised) or ``hits@k`` / ``map@k`` (k = 10, 50, 100; users only) or their
      ``_with_terminate`` forms (maximised); ``last`` keeps the last epoch and never stops early
      (the authors' code). Only validation metrics ever choose.
    schedule: ``constant`` (Adam at ``learning_rate``; the paper says only "Adam") or ``noam``
      (the authors' code: Adam b = (0.9, 0.98), eps = 1e-9, lr = d^-0.5 min(s^-0.5, s w^-1.5),
      w = ``warmup``). Noam needs 1,000 warm-up steps, more than Irvine's whole training.
    learning_rate: Adam's rate for ``constant``.
    warmup: Noam's warm-up steps (the authors' code: 1000).
    weight_decay: decoupled weight decay (AdamW) on the matrices (embeddings, projections, W^C),
      not on biases or LayerNorm (not in the paper; 0 = plain Adam).
    bias_init: the per-user output bias at initialisation (NDM's Eq. 7 bias, the LSTM's output
      bias): ``zeros`` (the paper is silent) or ``log_frequency``: the log training frequency
      of each user, so the untrained model already ranks like the popularity floor.
    output_init_scale: NDM's W^C (and W^C_init), or the LSTM's output kernel, are multiplied by
      this after initialisation (not in the paper; 1 = unchanged). With 0 and
      ``bias_init="log_frequency"`` the untrained model is exactly the popularity floor.
    loss: ``dense`` (the softmax over the ``[B, L, U]`` scores), ``lean`` (streamed over
      blocks of users, never holding ``[B, L, U]``; equal up to float rounding; for large
      vocabularies or long cascades) or ``auto``: ``lean`` when the dense scores of the longest
      batch would take more than ``LEAN_SHARE`` of the device's memory, else ``dense`` (the
      run says which it chose and why).
    lean_chunk: users per block of the lean loss and metrics; None sizes it per batch shape.
    loss_per: how a batch's NLL is normalised: ``prediction`` (the mean per prediction of each
      batch) or ``cascade`` (Σ NLL / B: every prediction weighs alike across the length buckets,
      the authors' summed loss up to a constant).
    terminate_weight: the weight of the predictions of Terminate in the loss (1: Eq. 8 as the
      paper states it; 0: the authors' code, whose loss gives the end token zero weight, so the
      model almost never predicts it).
    eval_batch_size: cascades per evaluation batch.
    max_train_seconds: optional time budget: training stops after the first epoch past it.
    seed: initialisation, shuffling and dropout seed (the same seed gives the same bits on a
      CPU).
    num_devices: data parallelism over this many devices (0 = all, across hosts); batches that
      do not divide get masked padding rows.
    model_parallel: width of the mesh's ``model`` axis: the user tables (embedding, W^C, bias
      and their Adam moments) are split over it, for vocabularies too large for one device.
    steps_per_call: optimiser steps per dispatched call (a ``lax.scan`` over same-shaped
      batches; same trajectory, less launch overhead on a GPU).
  """

  batch_size: int = 32
  num_epochs: int = 50
  patience: int = 5
  select_by: str = "nll"
  schedule: Literal["constant", "noam"] = "constant"
  learning_rate: float = 1e-3
  warmup: int = 1000
  weight_decay: float = 0.0
  bias_init: Literal["zeros", "log_frequency"] = "zeros"
  output_init_scale: float = 1.0
  loss: Literal["auto", "dense", "lean"] = "auto"
  lean_chunk: int | None = None
  loss_per: Literal["prediction", "cascade"] = "prediction"
  terminate_weight: float = 1.0
  eval_batch_size: int = 64
  max_train_seconds: float | None = None
  seed: int = 0
  num_devices: int = 1
  model_parallel: int = 1
  steps_per_call: int = 1

  def __post_init__(self):
    v.positive(self, "batch_size", "num_epochs", "patience", "learning_rate", "warmup",
               "eval_batch_size", "model_parallel", "steps_per_call")
    v.positive(self, "lean_chunk", "max_train_seconds", allow_none=True)
    v.non_negative(self, "weight_decay", "output_init_scale", "num_devices", "seed",
                   "terminate_weight")
    v.one_of(self, "select_by", SELECT_METRICS)
    v.one_of(self, "schedule", ("constant", "noam"))
    v.one_of(self, "bias_init", ("zeros", "log_frequency"))
    v.one_of(self, "loss", ("auto", "dense", "lean"))
    v.one_of(self, "loss_per", ("prediction", "cascade"))


@dataclasses.dataclass(frozen=True)
class NextUserConfig:
  """One next-user experiment: data, model and training.

  Attributes:
    data: the cascades.
    model: ``NDMConfig`` (Yang et al.), ``LSTMConfig`` (the RNN baseline) or
      ``PopularityConfig`` (the frequency floor); ``num_items`` and a ``None`` F_init are taken
      from the data.
    train: the optimisation.
  """

  data: Annotated[DataConfig, tyro.conf.OmitArgPrefixes] = DataConfig()
  model: NDMConfig | LSTMConfig | PopularityConfig = NDMConfig()
  train: TrainConfig = TrainConfig()

  def replace(self, **parts) -> "NextUserConfig":
    """A copy with fields of the parts replaced: ``cfg.replace(train={"seed": 1})``."""
    out = {}
    for name, value in parts.items():
      if isinstance(value, dict):
        out[name] = dataclasses.replace(getattr(self, name), **value)
      else:
        out[name] = value
    return dataclasses.replace(self, **out)


# ----------------------------------------------------------------------------- named configs


def ndm() -> NextUserConfig:
  """NDM as the paper configures it: d = 64, h = 8, win = 3, dropout 0.1, Adam 1e-3.

  Command: ``popdiff train ndm --data ndm/memetracker --workdir runs/ndm``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "ndm"`` (ndm/memetracker,
  the dataset's own split: test ``hits@10`` 0.403). About 10 minutes on a 2-core CPU for
  ndm/memetracker, a minute on a GPU. Leak-free (``DataConfig.split``): ``popdiff train ndm
  --split leak_free``; the table's rows ``protocol == "leak_free"`` come from ``popdiff reproduce
  ndm --protocols leak_free --seeds 0 1 2``.
  """
  return NextUserConfig(model=NDMConfig())


def lstm() -> NextUserConfig:
  """The LSTM baseline (NDM Sec. 5.2) with NDM's training recipe.

  Command: ``popdiff train lstm --data ndm/memetracker --workdir runs/lstm``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "lstm"``. Minutes on a CPU.
  Leak-free: ``popdiff train lstm --split leak_free`` (rows ``protocol == "leak_free"``).
  """
  return NextUserConfig(model=LSTMConfig())


def popularity() -> NextUserConfig:
  """The popularity floor: users ranked by their training frequency (no training).

  Command: ``popdiff train popularity --data ndm/irvine --workdir runs/pop``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "popularity"``. Seconds.
  Leak-free: ``--split leak_free`` (counts of the training part; rows ``protocol ==
  "leak_free"``).
  """
  return NextUserConfig(model=PopularityConfig())


def ndm_reg() -> NextUserConfig:
  """NDM with the output bias started at the log training frequency and AdamW weight decay 1.0.

  Beyond the paper: on small sets NDM's |U| x win·d output table overfits within a few epochs;
  with weight decay the per-user bias carries the popularity prior.
  Command: ``popdiff train ndm-reg --data forest/twitter --workdir runs/ndm-reg``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "ndm-reg"``.
  """
  return NextUserConfig(model=NDMConfig(),
                        train=TrainConfig(bias_init="log_frequency", weight_decay=1.0))


def ndm_prior() -> NextUserConfig:
  """NDM started at the popularity floor: log-frequency bias, W^C scaled to 0, weight decay 1.0,
  epochs selected by validation MAP@10.

  Beyond the paper (the untrained model is exactly the popularity baseline, and training moves
  away from it only where the data supports it).
  Command: ``popdiff train ndm-prior --data ndm/irvine --workdir runs/ndm-prior``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "ndm-prior"``. Minutes on a
  CPU for the small sets.
  """
  return NextUserConfig(model=NDMConfig(),
                        train=TrainConfig(bias_init="log_frequency", output_init_scale=0.0,
                                          weight_decay=1.0, select_by="map@10"))


def ndm_prior_w1() -> NextUserConfig:
  """``ndm-prior`` with window 1 (fewer free parameters per user: d instead of 3d).

  Command: ``popdiff train ndm-prior-w1 --data ndm/irvine --workdir runs/w1``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "ndm-prior-w1"``.
  """
  cfg = ndm_prior()
  return dataclasses.replace(cfg, model=NDMConfig(window=1))


def lstm_prior() -> NextUserConfig:
  """The LSTM with the same prior start as ``ndm-prior`` (log-frequency bias, output kernel
  scaled to 0, epochs selected by validation MAP@10), without weight decay.

  Command: ``popdiff train lstm-prior --data ndm/irvine --workdir runs/lstm-prior``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "lstm-prior"``, and
  ``ndm_small_sets.jsonl``, rows ``name == "lstm-prior"`` (Irvine test ``hits@10_with_terminate``
  0.177 ± 0.006 over seeds 0-2). Under a minute a seed on a 2-core CPU for the small sets.
  """
  return NextUserConfig(model=LSTMConfig(),
                        train=TrainConfig(bias_init="log_frequency", output_init_scale=0.0,
                                          select_by="map@10"))


def ndm_casc() -> NextUserConfig:
  """NDM with the loss summed per cascade (Σ NLL / B), the authors' form of Eq. 8.

  Command: ``popdiff train ndm-casc --data ndm/memetracker --workdir runs/ndm-casc``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "ndm-casc"``.
  """
  return NextUserConfig(model=NDMConfig(), train=TrainConfig(loss_per="cascade"))


def lstm_casc() -> NextUserConfig:
  """The LSTM with the loss summed per cascade.

  Command: ``popdiff train lstm-casc --data ndm/memetracker --workdir runs/lstm-casc``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "lstm-casc"``.
  """
  return NextUserConfig(model=LSTMConfig(), train=TrainConfig(loss_per="cascade"))


def ndm_prior_casc() -> NextUserConfig:
  """``ndm-prior`` with the loss summed per cascade.

  Command: ``popdiff train ndm-prior-casc --data ndm/irvine --workdir runs/npc``.
  Result: ``benchmarks/results/ndm_next_user.json``, rows ``model == "ndm-prior-casc"``.
  """
  return ndm_prior().replace(train={"loss_per": "cascade"})


def ndm_noam() -> NextUserConfig:
  """NDM with the authors' Noam schedule (Adam (0.9, 0.98, 1e-9), warm-up 1000).

  Command: ``popdiff train ndm-noam --data ndm/memetracker --workdir runs/noam``.
  """
  return NextUserConfig(model=NDMConfig(), train=TrainConfig(schedule="noam"))


def paper_recipe() -> NextUserConfig:
  """NDM trained as the authors' released code does: Terminate weight 0 in the loss, the loss
  summed per cascade, Adam (0.9, 0.98, 1e-9) with the Noam schedule (warm-up 1000), 20 epochs,
  the last epoch kept (no validation selection). Evaluate it with the paper protocol
  (``protocol="paper"``: 100 runs, Terminate masked while sampling).

  Command: ``popdiff train paper-recipe --data ndm/memetracker --workdir runs/paper-recipe``.
  Result: ``benchmarks/results/ndm_paper_protocol.json``, rows ``recipe == "paper-recipe"``
  (the paper: Macro-F1 0.139 on ndm/memetracker). Minutes on a GPU.
  """
  return NextUserConfig(model=NDMConfig(),
                        train=TrainConfig(terminate_weight=0.0, loss_per="cascade",
                                          schedule="noam", warmup=1000, num_epochs=20,
                                          select_by="last", patience=20))


def ndm_sn() -> NextUserConfig:
  """NDM+SN (Sec. 5.4): the first d/2 = 32 embedding dimensions fixed to DeepWalk embeddings of
  the social graph (``projects.ndm.social``), the other 32 trained.

  Needs a dataset with a social graph (``infvae/android``, ``infvae/christianity``,
  ``topolstm_twitter``). Command: ``popdiff train ndm-sn --data infvae/android
  --workdir runs/ndm-sn``. Result: ``benchmarks/results/ndm_sn.json``.
  """
  return NextUserConfig(data=DataConfig(source="infvae/android"),
                        model=NDMConfig(frozen_dim=32))


# The variants of the small-set study (``popdiff reproduce ndm-small-sets``): one change each.

def ndm_w1() -> NextUserConfig:
  """NDM with window 1 (d instead of 3d output weights per user).

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-w1
  --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-w1"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). About 3 minutes a seed on a 2-core CPU.
  """
  return NextUserConfig(model=NDMConfig(window=1))


def ndm_d32() -> NextUserConfig:
  """NDM with d = 32.

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-d32
  --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-d32"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). About 3 minutes a seed on a 2-core CPU.
  """
  return NextUserConfig(model=NDMConfig(dim=32))


def ndm_d16() -> NextUserConfig:
  """NDM with d = 16.

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-d16
  --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-d16"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). About 3 minutes a seed on a 2-core CPU.
  """
  return NextUserConfig(model=NDMConfig(dim=16))


def ndm_h1() -> NextUserConfig:
  """NDM with one attention head.

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-h1
  --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-h1"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). About 90 s a seed on a 2-core CPU.
  """
  return NextUserConfig(model=NDMConfig(num_heads=1))


def ndm_reg_map() -> NextUserConfig:
  """``ndm-reg`` with epochs selected by validation MAP@10.

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine infvae/android
  --configs ndm-reg-map --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-reg-map"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). 1-6 minutes a seed on a 2-core CPU.
  """
  return ndm_reg().replace(train={"select_by": "map@10"})


def ndm_small() -> NextUserConfig:
  """``ndm-reg-map`` with d = 32 and window 1 (the fewest parameters per user).

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-small
  --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-small"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). About 100 s a seed on a 2-core CPU.
  """
  return NextUserConfig(model=NDMConfig(dim=32, window=1),
                        train=ndm_reg_map().train)


def ndm_zero() -> NextUserConfig:
  """``ndm-prior`` with epochs selected by validation NLL (the untrained model is the
  popularity floor).

  Command: ``popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-zero
  --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-zero"`` (mean ± std
  over seeds in ``ndm_small_sets.jsonl.summary.json``). About 2 minutes a seed on a 2-core CPU.
  """
  return ndm_prior().replace(train={"select_by": "nll"})


def ndm_prior_wd3() -> NextUserConfig:
  """``ndm-prior`` with weight decay 3.0.

  Command: ``popdiff reproduce ndm-small-sets --datasets infvae/christianity
  --configs ndm-prior-wd3 --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-prior-wd3"`` (mean ±
  std over seeds in ``ndm_small_sets.jsonl.summary.json``). About 90 s a seed on a 2-core CPU.
  """
  return ndm_prior().replace(train={"weight_decay": 3.0})


def ndm_prior_drop3() -> NextUserConfig:
  """``ndm-prior`` with dropout 0.3.

  Command: ``popdiff reproduce ndm-small-sets --datasets infvae/christianity
  --configs ndm-prior-drop3 --seeds 0 1 2``.
  Result: ``benchmarks/results/ndm_small_sets.jsonl``, rows ``name == "ndm-prior-drop3"`` (mean ±
  std over seeds in ``ndm_small_sets.jsonl.summary.json``). About 100 s a seed on a 2-core CPU.
  """
  return ndm_prior().replace(model={"dropout_rate": 0.3})


def ndm_patience3() -> NextUserConfig:
  """NDM as the paper configures it, early stopping after 3 epochs without improvement: the
  model of the NDM+SN, sensitivity and W^C-norm tables.

  Commands: ``popdiff reproduce ndm-social``, ``popdiff reproduce ndm-sensitivity``,
  ``popdiff reproduce ndm-norms`` (``--config ndm-patience3`` is their default).
  Result: ``benchmarks/results/ndm_sn.json`` (rows ``model == "NDM"``; NDM+SN fixes half the
  embedding), ``ndm_sensitivity.json`` (the base point h = 8, win = 3, d = 64, F_init = 0 and one
  axis changed at a time), ``ndm_norms.json`` (F_init = 1). Minutes per model on one GPU.
  """
  return NextUserConfig(model=NDMConfig(), train=TrainConfig(patience=3))


def tiny() -> NextUserConfig:
  """The test configuration: a tiny NDM for 2 epochs on ndm/irvine cut to 7 users (seconds)."""
  return NextUserConfig(data=DataConfig(source="ndm/irvine", max_len=7),
                        model=NDMConfig(dim=8, num_heads=2),
                        train=TrainConfig(num_epochs=2, eval_batch_size=48))


EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "data" / "examples"


def tiny_examples() -> NextUserConfig:
  """The tables' tiny CPU mode: a tiny NDM for one epoch on the example cascades
  (``popdiff_jax/data/examples``: 60 cascades over 30 users, with a follower graph), F_init 1
  (so that the norm table has W^C_init; every tiny table trains this one architecture, and
  NDM+SN its variant).

  Command: ``popdiff reproduce ndm-protocol --tiny`` (every ``popdiff reproduce`` table of
  this project has ``--tiny``; the result goes to ``runs/tiny/``). Seconds once compiled
  (compiling takes ~20 s on a CPU core).
  """
  return NextUserConfig(data=DataConfig(source=str(EXAMPLES / "cascades.csv"), format="csv",
                                        graph=str(EXAMPLES / "graph.csv"), max_len=7),
                        model=NDMConfig(dim=8, num_heads=2, f_init=1),
                        train=TrainConfig(num_epochs=1, batch_size=16, eval_batch_size=16))


CONFIGS: dict[str, Callable[[], NextUserConfig]] = {
    "ndm": ndm, "lstm": lstm, "popularity": popularity, "ndm-reg": ndm_reg,
    "ndm-prior": ndm_prior, "ndm-prior-w1": ndm_prior_w1, "lstm-prior": lstm_prior,
    "ndm-casc": ndm_casc, "lstm-casc": lstm_casc, "ndm-prior-casc": ndm_prior_casc,
    "ndm-noam": ndm_noam, "paper-recipe": paper_recipe, "ndm-sn": ndm_sn, "ndm-w1": ndm_w1,
    "ndm-d32": ndm_d32, "ndm-d16": ndm_d16, "ndm-h1": ndm_h1, "ndm-reg-map": ndm_reg_map,
    "ndm-small": ndm_small, "ndm-zero": ndm_zero, "ndm-prior-wd3": ndm_prior_wd3,
    "ndm-prior-drop3": ndm_prior_drop3, "ndm-patience3": ndm_patience3, "ndm-tiny": tiny,
    "ndm-tiny-examples": tiny_examples,
}


def get_config(name: str) -> NextUserConfig:
  """The named config ``name`` (a key of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown NDM config {name!r}; choose from {', '.join(CONFIGS)}")
  return CONFIGS[name]()


@dataclasses.dataclass(frozen=True)
class TableRun:
  """How a results table of this project is run and written (``popdiff reproduce ...``).

  A table is a list of jobs (one model on one dataset with one seed, usually); each job writes
  its rows to a part file in ``<workdir>/parts/`` after every stage it finishes, and the result
  file is rewritten from the parts after every one, so a run cut short keeps what it measured.
  A rerun with the same options keeps the finished parts and resumes the trainings.

  Attributes:
    out: the result file (default: ``benchmarks/results/<file>`` of the checkout, or
      ``runs/tiny/<file>`` with ``tiny``).
    merge: keep the rows of ``out`` that this run does not measure again (other datasets,
      models, protocols), each tagged with its ``run`` (``results.merge_runs``); False writes
      this run's rows only.
    workdir: trainings and job parts (default: ``runs/<table>``; ``runs/tiny/<table>`` with
      ``tiny``).
    parallel: jobs at once, each in its own process (1: one after the other in this process).
      Processes may share one GPU (each gets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``); each
      compiles its own programs, so more than ~8 on a 16-core host spend their time compiling.
    budget: seconds for the whole call: no job starts after the deadline, trainings stop in
      time for the evaluation that follows, and (``parallel > 1``) a process still running at
      the deadline is killed; its part keeps the stages it finished.
    tiny: the table's tiny CPU mode (seconds once compiled): small data and models, written to
      ``runs/tiny/`` unless ``out`` is given. Other options still apply on top.
  """

  out: str | None = None
  merge: bool = True
  workdir: str | None = None
  parallel: int = 1
  budget: float | None = None
  tiny: bool = False

  def __post_init__(self):
    v.positive(self, "parallel")
    v.positive(self, "budget", allow_none=True)


@dataclasses.dataclass(frozen=True)
class ReproduceConfig(TableRun):
  """``popdiff reproduce ndm``: the next-user table (``ndm_next_user.json``), named configs x
  datasets x seeds.

  Every data option (``--data-dir``, ``--split``, ``--max-len``, ``--format``, ``--graph``) and
  ``--train.*`` option given overrides that field in every named config (e.g.
  ``--train.num-epochs 2`` for a quick look, with ``--out`` elsewhere); the data source is taken
  from ``datasets``, and the split from ``protocols`` when given. Rows: ``dataset``, ``model``
  (the config's name), ``protocol`` (the split: ``files``, ``random``, ``time`` or
  ``leak_free``), ``seeds``, Hits@k and MAP@k (users only, and
  ``*_with_terminate``), ``nll``, the validation metrics of the kept epoch, ``epochs``,
  ``stopped_by``; over several seeds their means, ``<metric>_std`` and ``per_seed``.

  The whole table on one GPU (seven datasets, ~25 minutes; the 28 jobs share the GPU)::

    XLA_FLAGS=--xla_gpu_autotune_level=0 popdiff reproduce ndm --data-dir .carry_data \\
      --datasets ndm/memetracker ndm/irvine ndm/lastfm forest/twitter forest/memetracker \\
      infvae/christianity infvae/android --configs ndm lstm popularity ndm-prior \\
      --parallel 7 --train.max-train-seconds 240

  Its leak-free rows (``DataConfig.split``), three seeds, beside the rows of the dataset's own
  split (one GPU, ~15 minutes)::

    XLA_FLAGS=--xla_gpu_autotune_level=0 popdiff reproduce ndm --data-dir .carry_data \\
      --datasets ndm/memetracker forest/twitter --configs ndm lstm popularity \\
      --protocols leak_free --seeds 0 1 2 --parallel 9 --train.max-train-seconds 240

  Attributes:
    datasets: datasets to run (default: the three NDM sets shipped with the package).
    configs: named configs to run on each (``popdiff configs`` lists them).
    seeds: each config runs once per seed (``train.seed``).
    protocols: the splits to run side by side, each job's ``--split`` (``files``, ``random``,
      ``time``, ``leak_free``); empty: the ``--split`` given.
    workdir: one subfolder per dataset, config, seed and protocol; reused = resumed.
    data: data options for every run.
    train: training options for every run.
  """

  datasets: tuple[str, ...] = ("ndm/irvine", "ndm/memetracker", "ndm/lastfm")
  configs: tuple[str, ...] = ("ndm", "lstm", "popularity")
  seeds: tuple[int, ...] = (0,)
  protocols: tuple[Literal["files", "random", "time", "leak_free"], ...] = ()
  workdir: str | None = "runs/reproduce_ndm"
  data: Annotated[DataConfig, tyro.conf.OmitArgPrefixes] = DataConfig()
  train: TrainConfig = TrainConfig()

  def __post_init__(self):
    super().__post_init__()
    for p in self.protocols:
      v.require(self, "protocols", p in SPLITS, f"splits of {', '.join(SPLITS)}; got {p!r}")
    unknown = [c for c in self.configs if c not in CONFIGS]
    v.require(self, "configs", not unknown, f"unknown named config(s) {unknown}; choose from "
              f"{', '.join(CONFIGS)}")
    v.require(self, "seeds", len(self.seeds) > 0, "give at least one seed")
