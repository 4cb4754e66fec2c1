"""Training and testing the multimodal-SMP regressors (Meghawat et al., MIPR 2018).

The protocol of Sec. 3-4: the popularity score ``log(1 + likes)`` of every post is regressed from
the 14 CON-SOC features (:func:`inputs`; with ``data.image_score`` the image model's score as a
15th, the paper's "multimodal" input) by

* the Conv1d network (``models.smp``): the target z-scored with the training mean and deviation,
  masked MSE (``losses.masked_mse``) with Adam through the library's one train step and ``fit``,
  the epoch of lowest validation MSE kept (early stopping), predictions mapped back;
* the random forest (Sec. 3.1; scikit-learn, :class:`~.configs.RandomForestConfig`);
* the floors of ``baselines.regressors``: the image model alone and gradient boosting.

The test row holds MAE, MSE and Spearman's rho (``metrics.popularity.regression_metrics``).
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
from popdiff_jax.baselines import regressors
from popdiff_jax.data.posts import (iterate_batches, load_posts, make_arrays, predict_rows,
                                    standardize)
from popdiff_jax.metrics.popularity import regression_metrics
from popdiff_jax.models import Model, Variables
from popdiff_jax.models.smp import SMPConv1dConfig
from popdiff_jax.projects.multimodal_smp.configs import ExperimentConfig, RandomForestConfig
from popdiff_jax.training import (create_train_state, fit, init_model, make_predict_step,
                                  make_train_step)
from popdiff_jax.types import PostBatch

__all__ = ["COMMENTS_COLUMN", "Trained", "inputs", "random_forest", "loss_fn", "row_name",
           "train_conv1d", "predict", "train_and_test", "run"]

#: The column of the comment count among the 14 CON-SOC features (``features.SMP_NAMES``).
COMMENTS_COLUMN = 1


@dataclasses.dataclass
class Trained:
  """A trained Conv1d regressor.

  Attributes:
    config: the experiment config with ``model.num_features`` resolved.
    model: the built model.
    variables: the variables of the best epoch on validation MSE.
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


def inputs(feats, split, data) -> np.ndarray:
  """The tabular inputs of ``data`` (a ``configs.DataConfig``): the 14 CON-SOC features, plus
  the image model's score z-scored on the training rows as a 15th when ``data.image_score``,
  less the comment count unless ``data.comments``.

  Returns:
    float32 [N, F].
  """
  x = feats.smp
  if data.image_score:
    s = feats.image_score.astype(np.float64)
    m, sd = s[split.train].mean(), s[split.train].std() or 1.0
    x = np.concatenate([x, ((s - m) / sd)[:, None].astype(np.float32)], axis=1)
  if not data.comments:
    x = np.delete(x, COMMENTS_COLUMN, axis=1)
  return x


def random_forest(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                  config: RandomForestConfig = RandomForestConfig(), *, seed: int = 0,
                  n_jobs: int = 1) -> np.ndarray:
  """Fits Meghawat et al.'s random forest on the ``train`` rows and predicts the ``test`` rows.

  Args:
    x: float [N, F] features; y: float [N] targets; train, test: int row indices.
    config: the forest's settings.
    seed: scikit-learn's ``random_state``.
    n_jobs: scikit-learn workers.

  Returns:
    float64 [len(test)] predictions.
  """
  from sklearn.ensemble import RandomForestRegressor

  rf = RandomForestRegressor(n_estimators=config.n_estimators,
                             min_samples_leaf=config.min_samples_leaf, random_state=seed,
                             n_jobs=n_jobs)
  return rf.fit(x[train], y[train]).predict(x[test])


def loss_fn(outputs, batch: PostBatch):
  """``(predictions, batch) -> (masked MSE on the standardised target, {})``."""
  return losses.masked_mse(outputs, batch.target, batch.mask), {}


def row_name(config: ExperimentConfig) -> str:
  """The results table's ``model``: ``conv1d``, ``random_forest``, ``image_model`` or
  ``gradient_boosting``, with ``_multimodal`` when the image score is an input (except for
  gradient boosting, whose table row always has it) and ``_no_comments`` without the comment
  count."""
  name = "conv1d" if config.model.name == "smp_conv1d" else config.model.name
  if name == "image_model":
    return name
  if name == "gradient_boosting":
    suffix = "" if config.data.image_score else "_no_image"
  else:
    suffix = "_multimodal" if config.data.image_score else ""
  return name + suffix + ("" if config.data.comments else "_no_comments")


def train_conv1d(feats, split, config: ExperimentConfig, *, workdir: str | pathlib.Path,
                 progress: bool = False, arrays: PostBatch | None = None) -> Trained:
  """Trains the Conv1d regressor with early stopping on validation MSE.

  Args:
    feats: the ``features.FeatureSet`` of all posts.
    split: the ``data.instagram.Split``.
    config: the experiment, ``config.model`` an ``SMPConv1dConfig``; of ``config.data`` only
      the input fields are read.
    workdir: the run's folder; earlier checkpoints there are removed first.
    progress: progress bars.
    arrays: the model's ``PostBatch`` arrays with the standardised target (default: built
      from ``feats`` and ``config.data``).

  Returns:
    :class:`Trained`.
  """
  tc = config.train
  target, mean, std = standardize(feats.score, split.train)
  if arrays is None:
    arrays = make_arrays(feats, use=("features",), features=inputs(feats, split, config.data),
                         target=target)
  config = dataclasses.replace(config, model=dataclasses.replace(
      config.model, num_features=int(arrays.features.shape[1])))
  # Every run starts from its seed: a checkpoint another run left in the folder would be resumed.
  shutil.rmtree(pathlib.Path(workdir) / "checkpoints", ignore_errors=True)
  model, variables = init_model(config.model, tc.seed)
  tx = optax.adam(tc.learning_rate)
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
      num_epochs=tc.num_epochs, base_key=jax.random.key(tc.seed),
      monitor="val_mse" if split.val.size else "train_loss", mode="min",
      patience=tc.patience, desc=row_name(config), progress=progress,
      num_devices=tc.num_devices, pad_batches=True)
  return Trained(config, model, Variables(result.state.params, result.state.extra),
                 result.history, mean, std, predict_step)


def predict(trained: Trained, arrays: PostBatch, rows: np.ndarray) -> np.ndarray:
  """The Conv1d's predicted scores ``log(1 + likes)`` of ``rows``, float64 [n]."""
  pred = predict_rows(trained.predict_step, trained.variables.params,
                      trained.variables.state, arrays, rows, trained.config.train.batch_size)
  return pred.astype(np.float64) * trained.std + trained.mean


def train_and_test(feats, split, config: ExperimentConfig, *, workdir: str | pathlib.Path,
                   progress: bool = False) -> tuple[dict, np.ndarray]:
  """Fits the model of ``config`` on the training posts and tests it.

  Args:
    feats, split, config, progress: as :func:`train_conv1d` (any model of ``config``).
    workdir: the root folder: a Conv1d run goes to ``workdir/smp_conv1d[_multimodal]``; the
      scikit-learn models write nothing.

  Returns:
    ``(row, predictions)``: ``row`` has the test ``mae``, ``mse``, ``srcc``, ``n_train``,
    ``n_test`` (and ``epochs_run`` for the Conv1d); ``predictions`` float64 [n_test].
  """
  model, tc = config.model, config.train
  y = feats.score.astype(np.float64)
  if isinstance(model, SMPConv1dConfig):
    x = inputs(feats, split, config.data)
    target, _, _ = standardize(feats.score, split.train)
    arrays = make_arrays(feats, use=("features",), features=x, target=target)
    name = "smp_" + row_name(config)
    trained = train_conv1d(feats, split, config, workdir=pathlib.Path(workdir) / name,
                           progress=progress, arrays=arrays)
    pred = predict(trained, arrays, split.test)
    extra = {"epochs_run": len(trained.history)}
  elif isinstance(model, RandomForestConfig):
    pred = random_forest(inputs(feats, split, config.data), y, split.train, split.test, model,
                         seed=tc.seed, n_jobs=tc.n_jobs)
    extra = {}
  elif isinstance(model, regressors.GradientBoostingConfig):
    pred = regressors.gradient_boosting(inputs(feats, split, config.data), y, split.train,
                                        split.test, model, seed=tc.seed)
    extra = {}
  elif isinstance(model, regressors.ImageModelConfig):
    pred = regressors.image_model(feats, split.test)
    extra = {}
  else:
    raise TypeError(f"not an SMP model config: {type(model).__name__}")
  row = regression_metrics(y[split.test], pred)
  row.update({"n_train": int(split.train.size), "n_test": int(split.test.size), **extra})
  return row, pred


def run(config: ExperimentConfig, workdir: str | pathlib.Path = "runs/multimodal_smp", *,
        progress: bool = True) -> dict:
  """Loads the posts of ``config.data``, fits and tests; returns one results row.

  Returns:
    ``paper``, ``model`` (:func:`row_name`), ``split``, the test metrics of
    :func:`train_and_test`, ``seed`` and ``seconds`` (features and training).
  """
  t0 = time.perf_counter()
  posts = load_posts(config.data, seed=config.train.seed, workdir=workdir)
  row, _ = train_and_test(posts.feats, posts.split, config,
                          workdir=pathlib.Path(workdir) / "runs", progress=progress)
  return {"paper": "multimodal_smp", "model": row_name(config), "split": config.data.split,
          **row, "seed": config.train.seed, "seconds": round(time.perf_counter() - t0, 2)}


TABLE_COLUMNS = ("paper", "model", "split", "mae", "mse", "srcc", "n_test")


def main(config: ExperimentConfig, *, workdir: str | pathlib.Path, progress: bool = True,
         name: str | None = None, overwrite: bool = False, resume: bool = False) -> list[dict]:
  """``popdiff train``: :func:`run` in a claimed workdir; writes ``workdir/results.json``."""
  from popdiff_jax.projects import run_in_workdir

  del name
  return run_in_workdir(workdir, config, lambda: [run(config, workdir, progress=progress)],
                        overwrite=overwrite, resume=resume)
