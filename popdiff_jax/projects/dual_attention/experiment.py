"""Training and testing the dual-attention classifier or one of its baselines (Zhang et al. 2019).

The protocol of Sec. IV-A: per user, the top quarter of posts by likes is "popular" (1) and the
bottom quarter not (0); the middle half is unlabelled and left out (``data.instagram``). The model
is trained on the labelled training posts with the masked binary cross-entropy of Eq. (7)
(``losses.dual_attention_loss``) by Adam at ``lr_high`` for ``high_epochs`` epochs, then
``lr_low``, through the library's one train step (``training.make_train_step``) and ``fit``; the
epoch with the best validation accuracy is kept, and the test row holds accuracy, precision,
recall and F1 (``metrics.popularity.classification_metrics``, fractions in [0, 1]).

* :func:`train_and_test` runs it on prepared features (what ``popdiff reproduce popularity``,
  ``projects.popularity_table``, calls: features built once for many runs).
* :func:`run` loads the posts of ``config.data`` first and returns one results row.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from typing import Callable
import jax
import jax.numpy as jnp
import numpy as np
import optax

from popdiff_jax import losses
from popdiff_jax.data.posts import iterate_batches, load_posts, make_arrays, predict_rows
from popdiff_jax.metrics.popularity import classification_metrics
from popdiff_jax.models import Model, Variables
from popdiff_jax.projects.dual_attention.configs import ExperimentConfig, TrainConfig
from popdiff_jax.training import (create_train_state, fit, init_model, make_predict_step,
                                  make_train_step)
from popdiff_jax.types import PostBatch

__all__ = ["INPUTS", "Trained", "resolve", "labelled_rows", "make_optimizer", "loss_fn",
           "train", "predict", "train_and_test", "run"]

#: The ``PostBatch`` fields the model reads.
INPUTS = ("tokens", "token_mask", "image", "env_image", "env_topic")


@dataclasses.dataclass
class Trained:
  """A trained dual-attention model.

  Attributes:
    config: the experiment config with the model's input widths resolved.
    model: the built model.
    variables: the variables of the best epoch on validation accuracy.
    history: one row per epoch (``training.fit``'s ``metrics.jsonl``).
    best: the history row of the kept epoch.
    predict_step: the model's jitted ``(params, state, batch) -> outputs``.
  """

  config: ExperimentConfig
  model: Model
  variables: Variables
  history: list[dict]
  best: dict
  predict_step: Callable


def resolve(config: ExperimentConfig, feats) -> ExperimentConfig:
  """``config`` with the model's data-dependent widths set from the features: a ``vocab_size``
  of 0 becomes ``max(tokens) + 1``; ``image_dim`` and ``topic_dim`` those of the features."""
  model = config.model
  vocab = model.vocab_size or int(feats.tokens.max()) + 1
  model = dataclasses.replace(model, vocab_size=vocab, image_dim=int(feats.image.shape[1]),
                              topic_dim=int(feats.env_topic.shape[1]))
  return dataclasses.replace(config, model=model)


def labelled_rows(feats, split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The labelled (top or bottom quarter) rows of the train, validation and test parts."""
  labelled = feats.label >= 0
  return tuple(part[labelled[part]] for part in (split.train, split.val, split.test))


def make_optimizer(train: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam at ``lr_high`` for ``high_epochs`` epochs, then at ``lr_low`` (Sec. IV-A)."""
  schedule = optax.piecewise_constant_schedule(
      train.lr_high, {train.high_epochs * steps_per_epoch: train.lr_low / train.lr_high})
  return optax.adam(schedule)


def loss_fn(variant: str, ccr_weight: float = 0.5):
  """``(outputs, batch) -> (Eq. (7) loss, {"accuracy": masked accuracy at 0.5})``."""

  def fn(outputs: dict, batch: PostBatch):
    loss = losses.dual_attention_loss(outputs, batch.label, batch.mask, variant, ccr_weight)
    correct = jnp.where(batch.mask, (outputs["prob"] > 0.5) == (batch.label > 0.5), False)
    return loss, {"accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1)}

  return fn


def train(feats, split, config: ExperimentConfig, *, workdir: str | pathlib.Path,
          progress: bool = False, arrays: PostBatch | None = None) -> Trained:
  """Trains ``config.model`` on the labelled training posts; keeps the best validation epoch.

  Args:
    feats: the ``features.FeatureSet`` of all posts.
    split: the ``data.instagram.Split``.
    config: the experiment (``configs.get_config(name)``); ``config.data`` is not read.
    workdir: the run's folder (``metrics.jsonl``, ``checkpoints/``); earlier checkpoints there
      are removed first.
    progress: progress bars.
    arrays: the model's ``PostBatch`` arrays (default: :func:`make_arrays` of ``feats``).

  Returns:
    :class:`Trained`.
  """
  config = resolve(config, feats)
  tc = config.train
  # Every run starts from its seed: a checkpoint another run left in the folder would be resumed.
  shutil.rmtree(pathlib.Path(workdir) / "checkpoints", ignore_errors=True)
  train_rows, val_rows, _ = labelled_rows(feats, split)
  if arrays is None:
    arrays = make_arrays(feats, use=INPUTS)
  model, variables = init_model(config.model, tc.seed)
  tx = make_optimizer(tc, max(train_rows.size // tc.batch_size, 1))
  step = make_train_step(model, loss_fn(config.model.variant, tc.ccr_weight), tx)
  predict_step = make_predict_step(model)

  def evaluate(state):
    out = predict_rows(predict_step, state.params, state.extra, arrays, val_rows, tc.batch_size)
    return classification_metrics(feats.label[val_rows], out["prob"] > 0.5)

  result = fit(
      create_train_state(variables.params, tx, extra=variables.state), train_step=step,
      train_batches=lambda epoch: iterate_batches(arrays, train_rows, tc.batch_size,
                                                  shuffle_seed=tc.seed * 1000 + epoch,
                                                  drop_last=True),
      evaluate=evaluate, workdir=workdir, num_epochs=tc.num_epochs,
      base_key=jax.random.key(tc.seed), monitor="val_accuracy", mode="max",
      patience=tc.patience, desc=config.model.variant, progress=progress,
      num_devices=tc.num_devices, pad_batches=True)
  return Trained(config, model, Variables(result.state.params, result.state.extra),
                 result.history, result.best, predict_step)


def predict(trained: Trained, arrays: PostBatch, rows: np.ndarray) -> dict:
  """The model's outputs on ``rows`` (``prob`` [n], ``attention`` [n, T], ``logit`` [n],
  ``aux_logits`` [n, 3]), as NumPy arrays."""
  return predict_rows(trained.predict_step, trained.variables.params,
                      trained.variables.state, arrays, rows, trained.config.train.batch_size)


def train_and_test(feats, split, config: ExperimentConfig, *, workdir: str | pathlib.Path,
                   progress: bool = False) -> tuple[dict, dict]:
  """Trains one variant and tests it on the labelled test posts.

  Args:
    feats, split, config, progress: as :func:`train`.
    workdir: the root folder: the run goes to ``workdir/dual_attention_<variant>``.

  Returns:
    ``(row, extras)``: ``row`` has the test ``accuracy``, ``precision``, ``recall``, ``f1``,
    ``n_train``, ``n_test``, ``epochs_run`` and ``best_epoch``; ``extras`` has ``trained``
    (:class:`Trained`), ``arrays``, ``test`` (the test rows), ``probs`` [n_test], ``attention``
    [n_test, T] and ``history``.
  """
  arrays = make_arrays(feats, use=INPUTS)
  trained = train(feats, split, config, progress=progress, arrays=arrays,
                  workdir=pathlib.Path(workdir) / f"dual_attention_{config.model.variant}")
  train_rows, _, test = labelled_rows(feats, split)
  out = predict(trained, arrays, test)
  row = classification_metrics(feats.label[test], out["prob"] > 0.5)
  row.update({"n_train": int(train_rows.size), "n_test": int(test.size),
              "epochs_run": len(trained.history), "best_epoch": trained.best.get("epoch")})
  return row, {"trained": trained, "arrays": arrays, "test": test, "probs": out["prob"],
               "attention": out["attention"], "history": trained.history}


def run(config: ExperimentConfig, workdir: str | pathlib.Path = "runs/dual_attention", *,
        progress: bool = True) -> dict:
  """Loads the posts of ``config.data``, trains and tests; returns one results row.

  Returns:
    ``paper``, ``model`` (the variant), ``split``, the test metrics of :func:`train_and_test`,
    ``seed`` and ``seconds`` (features and training).
  """
  t0 = time.perf_counter()
  posts = load_posts(config.data, seed=config.train.seed, workdir=workdir)
  row, _ = train_and_test(posts.feats, posts.split, config,
                          workdir=pathlib.Path(workdir) / "runs", progress=progress)
  return {"paper": "dual_attention", "model": config.model.variant, "split": config.data.split,
          **row, "seed": config.train.seed, "seconds": round(time.perf_counter() - t0, 2)}


TABLE_COLUMNS = ("paper", "model", "split", "accuracy", "precision", "recall", "f1",
                 "n_test", "epochs_run", "best_epoch")


def main(config: ExperimentConfig, *, workdir: str | pathlib.Path, progress: bool = True,
         name: str | None = None, overwrite: bool = False, resume: bool = False) -> list[dict]:
  """``popdiff train``: :func:`run` in a claimed workdir; writes ``workdir/results.json``."""
  from popdiff_jax.projects import run_in_workdir

  del name
  return run_in_workdir(workdir, config, lambda: [run(config, workdir, progress=progress)],
                        overwrite=overwrite, resume=resume)
