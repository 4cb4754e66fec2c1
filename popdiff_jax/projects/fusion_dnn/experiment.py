"""Training and testing the multi-feature fusion DNN (Ding, Wang & Wang, ACM MM 2019).

The protocol of Sec. 4: the popularity score ``log(1 + likes)`` of every post is regressed from
the deep image feature, the deep text feature and the numerical features; optionally one feature
group is kept alone (univariate study, Table 2) or zeroed (ablation, Table 3), see
:func:`column_keep`. The target is z-scored with the training mean and deviation (the paper
regresses raw log views with ~2k steps per epoch; with ~100 here and Adam at 1e-4 an
unstandardised output could not reach a mean of ~11) and predictions are mapped back before any
metric. Training: masked MSE (``losses.masked_mse``) with PyTorch's coupled L2 through the
library's one train step and ``fit``; BatchNorm statistics travel in ``TrainState.extra``. The
fixed 10 epochs of the paper have no early stopping: ``fit`` monitors the training loss and keeps
the epoch with the lowest one (its parameters and its running statistics). Test row: MAE, MSE and
Spearman's rho (``metrics.popularity.regression_metrics``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from typing import Callable

import jax
import numpy as np
import optax

from popdiff_jax import losses
from popdiff_jax.data.posts import (iterate_batches, load_posts, make_arrays, predict_rows,
                                    standardize)
from popdiff_jax.features.pipeline import NUMERIC_GROUPS
from popdiff_jax.metrics.popularity import regression_metrics
from popdiff_jax.models import Model, Variables
from popdiff_jax.projects.fusion_dnn.configs import FUSION_GROUPS, ExperimentConfig, TrainConfig
from popdiff_jax.training import (create_train_state, fit, init_model, make_predict_step,
                                  make_train_step)
from popdiff_jax.types import PostBatch

__all__ = ["INPUTS", "Trained", "column_keep", "resolve", "make_optimizer", "loss_fn",
           "row_name", "train", "predict", "train_and_test", "run"]

#: The ``PostBatch`` fields the model reads.
INPUTS = ("image", "text", "numeric")


@dataclasses.dataclass
class Trained:
  """A trained fusion DNN.

  Attributes:
    config: the experiment config with the model's input widths resolved.
    model: the built model.
    variables: the kept epoch's parameters and BatchNorm statistics.
    history: one row per epoch.
    mean, std: the training target's mean and deviation (``pred * std + mean`` is the score).
    predict_step: the model's jitted ``(params, state, batch) -> predictions``.
  """

  config: ExperimentConfig
  model: Model
  variables: Variables
  history: list[dict]
  mean: float
  std: float
  predict_step: Callable


def column_keep(feats, *, only: str | None = None, drop: str | None = None) -> dict:
  """0/1 column vectors for the univariate study (``only``: keep one group) or the ablation
  (``drop``: zero one group).

  Groups (Ding et al. Tables 2-3): user (log followers, followings, posts), visual (deep image
  + post type), text (deep text + tag count + caption length), time_location (post age, hour,
  weekday, has-location), deep_image, deep_text, tags_count, caption_length. Inputs are
  z-scored, so zero is the training mean.

  Returns:
    ``{"image": float32 [Di], "text": float32 [Dt], "numeric": float32 [Dn]}``, or ``{}`` when
    neither is given.
  """
  members = {
      "user": {"numeric": NUMERIC_GROUPS["user"]},
      "visual": {"image": "all", "numeric": NUMERIC_GROUPS["post_type"]},
      "text": {"text": "all",
               "numeric": NUMERIC_GROUPS["tags_count"] + NUMERIC_GROUPS["caption_length"]},
      "time_location": {"numeric": NUMERIC_GROUPS["time_location"]},
      "deep_image": {"image": "all"},
      "deep_text": {"text": "all"},
      "tags_count": {"numeric": NUMERIC_GROUPS["tags_count"]},
      "caption_length": {"numeric": NUMERIC_GROUPS["caption_length"]},
  }
  dims = {"image": feats.image.shape[1], "text": feats.text.shape[1],
          "numeric": feats.numeric.shape[1]}
  group = only if only is not None else drop
  if group is None:
    return {}
  if group not in members:
    raise ValueError(f"unknown feature group {group!r}; expected one of {FUSION_GROUPS}")
  sel = {k: np.zeros(d, np.float32) for k, d in dims.items()}
  for k, cols in members[group].items():
    if cols == "all":
      sel[k][:] = 1.0
    else:
      sel[k][list(cols)] = 1.0
  if only is not None:
    return sel
  return {k: (1.0 - x).astype(np.float32) for k, x in sel.items()}


def resolve(config: ExperimentConfig, feats) -> ExperimentConfig:
  """``config`` with the model's input widths set from the features."""
  model = dataclasses.replace(config.model, image_dim=int(feats.image.shape[1]),
                              text_dim=int(feats.text.shape[1]),
                              numeric_dim=int(feats.numeric.shape[1]))
  return dataclasses.replace(config, model=model)


def make_optimizer(train: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """PyTorch's ``Adam(lr, weight_decay)`` with the rate multiplied by ``decay`` every epoch:
  the L2 term's gradient is added before the Adam scaling (coupled, not AdamW)."""
  schedule = optax.exponential_decay(train.learning_rate, steps_per_epoch, train.decay,
                                     staircase=True)
  return optax.chain(optax.add_decayed_weights(train.weight_decay), optax.scale_by_adam(),
                     optax.scale_by_learning_rate(schedule))


def loss_fn(outputs, batch: PostBatch):
  """``(predictions, batch) -> (masked MSE on the standardised target, {})``."""
  return losses.masked_mse(outputs, batch.target, batch.mask), {}


def row_name(config: ExperimentConfig) -> str:
  """The results table's ``model``: ``fusion_dnn``, ``only_<group>`` or ``drop_<group>``."""
  if config.data.only:
    return f"only_{config.data.only}"
  if config.data.drop:
    return f"drop_{config.data.drop}"
  return "fusion_dnn"


def train(feats, split, config: ExperimentConfig, *, workdir: str | pathlib.Path,
          progress: bool = False, arrays: PostBatch | None = None) -> Trained:
  """Trains the fusion DNN on the training posts for ``config.train.num_epochs`` epochs.

  Args:
    feats: the ``features.FeatureSet`` of all posts.
    split: the ``data.instagram.Split``.
    config: the experiment; of ``config.data`` only ``only`` / ``drop`` are read.
    workdir: the run's folder; earlier checkpoints there are removed first.
    progress: progress bars.
    arrays: the model's ``PostBatch`` arrays with the standardised target (default: built
      from ``feats`` and ``config.data``).

  Returns:
    :class:`Trained`.
  """
  config = resolve(config, feats)
  tc = config.train
  target, mean, std = standardize(feats.score, split.train)
  if arrays is None:
    keep = column_keep(feats, only=config.data.only, drop=config.data.drop)
    arrays = make_arrays(feats, use=INPUTS, target=target, column_keep=keep)
  # Every run starts from its seed: a checkpoint another run left in the folder would be resumed.
  shutil.rmtree(pathlib.Path(workdir) / "checkpoints", ignore_errors=True)
  model, variables = init_model(config.model, tc.seed)
  tx = make_optimizer(tc, max(split.train.size // tc.batch_size, 1))
  step = make_train_step(model, loss_fn, tx)
  predict_step = make_predict_step(model)

  def evaluate(state):
    pred = predict_rows(predict_step, state.params, state.extra, arrays, split.val,
                        tc.batch_size)
    return regression_metrics(feats.score[split.val], pred.astype(np.float64) * std + mean)

  result = fit(
      create_train_state(variables.params, tx, extra=variables.state), train_step=step,
      train_batches=lambda epoch: iterate_batches(arrays, split.train, tc.batch_size,
                                                  shuffle_seed=tc.seed * 1000 + epoch,
                                                  drop_last=True),
      evaluate=evaluate if split.val.size else None, workdir=workdir,
      num_epochs=tc.num_epochs, base_key=jax.random.key(tc.seed), monitor="train_loss",
      mode="min", patience=None, desc=row_name(config), progress=progress,
      # BatchNorm must not see padding rows in its batch statistics.
      num_devices=tc.num_devices, pad_batches=False)
  return Trained(config, model, Variables(result.state.params, result.state.extra),
                 result.history, mean, std, predict_step)


def predict(trained: Trained, arrays: PostBatch, rows: np.ndarray) -> np.ndarray:
  """Predicted scores ``log(1 + likes)`` of ``rows``, float64 [n]."""
  pred = predict_rows(trained.predict_step, trained.variables.params,
                      trained.variables.state, arrays, rows, trained.config.train.batch_size)
  return pred.astype(np.float64) * trained.std + trained.mean


def train_and_test(feats, split, config: ExperimentConfig, *, workdir: str | pathlib.Path,
                   progress: bool = False) -> tuple[dict, np.ndarray]:
  """Trains the fusion DNN (optionally one group alone or one zeroed) and tests it.

  Args:
    feats, split, config, progress: as :func:`train`.
    workdir: the root folder: the run goes to ``workdir/fusion[_only_<g>|_drop_<g>]``.

  Returns:
    ``(row, predictions)``: ``row`` has the test ``mae``, ``mse``, ``srcc``, ``n_train``,
    ``n_test`` and ``epochs_run``; ``predictions`` float64 [n_test] on the score's scale.
  """
  target, _, _ = standardize(feats.score, split.train)
  keep = column_keep(feats, only=config.data.only, drop=config.data.drop)
  arrays = make_arrays(feats, use=INPUTS, target=target, column_keep=keep)
  name = row_name(config)
  run_dir = pathlib.Path(workdir) / ("fusion" if name == "fusion_dnn" else f"fusion_{name}")
  trained = train(feats, split, config, workdir=run_dir, progress=progress, arrays=arrays)
  pred = predict(trained, arrays, split.test)
  row = regression_metrics(feats.score[split.test], pred)
  row.update({"n_train": int(split.train.size), "n_test": int(split.test.size),
              "epochs_run": len(trained.history)})
  return row, pred


def run(config: ExperimentConfig, workdir: str | pathlib.Path = "runs/fusion_dnn", *,
        progress: bool = True) -> dict:
  """Loads the posts of ``config.data``, trains and tests; returns one results row.

  Returns:
    ``paper``, ``model`` (:func:`row_name`), ``split``, the test metrics of
    :func:`train_and_test`, ``seed`` and ``seconds`` (features and training).
  """
  t0 = time.perf_counter()
  posts = load_posts(config.data, seed=config.train.seed, workdir=workdir)
  row, _ = train_and_test(posts.feats, posts.split, config,
                          workdir=pathlib.Path(workdir) / "runs", progress=progress)
  return {"paper": "fusion_dnn", "model": row_name(config), "split": config.data.split, **row,
          "seed": config.train.seed, "seconds": round(time.perf_counter() - t0, 2)}


TABLE_COLUMNS = ("paper", "model", "split", "mae", "mse", "srcc", "n_test", "epochs_run")


def main(config: ExperimentConfig, *, workdir: str | pathlib.Path, progress: bool = True,
         name: str | None = None, overwrite: bool = False, resume: bool = False) -> list[dict]:
  """``popdiff train``: :func:`run` in a claimed workdir; writes ``workdir/results.json``."""
  from popdiff_jax.projects import run_in_workdir

  del name
  return run_in_workdir(workdir, config, lambda: [run(config, workdir, progress=progress)],
                        overwrite=overwrite, resume=resume)
