"""Training and evaluating next-user models (NDM, LSTM, popularity) on a cascade dataset.

``run(dataset, config, workdir)`` is the whole experiment: it builds the model, trains it with the
pure jitted ``train_step`` below through ``train.loop.fit`` (resuming from ``workdir``), selects the
epoch by validation loss and returns the test metrics as one results row.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from popdiff_jax.data.batching import CascadeBatch, make_batches
from popdiff_jax.data.cascades import CascadeDataset, default_f_init, warn_if_truncated
from popdiff_jax.metrics.ranking import finalize, ranking_sums
from popdiff_jax.models.lstm import LSTMNextUser
from popdiff_jax.models.ndm import NDM
from popdiff_jax.models.next_user import mask_infected, next_user_nll, shift_targets
from popdiff_jax.models.popularity_baseline import popularity_logits, popularity_scores
from popdiff_jax.train.loop import fit
from popdiff_jax.train.state import TrainState, apply_gradients, create_train_state

MODELS = ("ndm", "lstm", "popularity")


@dataclasses.dataclass(frozen=True)
class NextUserConfig:
  """Hyperparameters of one next-user experiment; defaults follow NDM's paper and released code.

  Attributes:
    model: ``"ndm"``, ``"lstm"`` or ``"popularity"``.
    dim: embedding size d (paper: 64).
    num_heads: NDM heads h (paper: 8).
    window: NDM window win (paper: 3).
    f_init: NDM's F_init; None takes the dataset's default (1 on Twitter, Sec. 5.2).
    dropout_rate: attention / hidden dropout (paper: 0.1).
    batch_size: cascades per step (authors' code: 32).
    max_len: cascades are cut to this many users (NDM's loader advises truncation; FOREST uses 200).
    num_epochs: maximum epochs (authors' code: 20).
    patience: early stopping on validation loss.
    schedule: ``"noam"`` (authors' code: Adam b=(0.9, 0.98), eps=1e-9, lr = d^-0.5 min(s^-0.5,
      s w^-1.5), w = ``warmup``) or ``"constant"`` (Adam at ``learning_rate``).
    learning_rate: for ``"constant"``.
    warmup: warm-up steps of ``"noam"`` (authors' code: 1000).
    eval_batch_size: rows per evaluation batch.
    seed: initialisation, shuffling and dropout seed.
  """

  model: str = "ndm"
  dim: int = 64
  num_heads: int = 8
  window: int = 3
  f_init: int | None = None
  dropout_rate: float = 0.1
  batch_size: int = 32
  max_len: int = 200
  num_epochs: int = 20
  patience: int = 5
  schedule: str = "noam"
  learning_rate: float = 1e-3
  warmup: int = 1000
  eval_batch_size: int = 64
  seed: int = 0


def build_model(config: NextUserConfig, num_items: int, f_init: int = 0) -> nnx.Module:
  """The flax module of ``config.model`` (not for ``"popularity"``, which has no parameters)."""
  rngs = nnx.Rngs(params=config.seed)
  if config.model == "ndm":
    return NDM(num_items, dim=config.dim, num_heads=config.num_heads, window=config.window,
               f_init=f_init, dropout_rate=config.dropout_rate, rngs=rngs)
  if config.model == "lstm":
    return LSTMNextUser(num_items, dim=config.dim, dropout_rate=config.dropout_rate, rngs=rngs)
  raise ValueError(f"unknown trainable model {config.model!r}; choose from {MODELS}")


def make_optimizer(config: NextUserConfig) -> optax.GradientTransformation:
  if config.schedule == "noam":
    def noam(step):
      s = jnp.maximum(step, 1).astype(jnp.float32)
      return config.dim ** -0.5 * jnp.minimum(s ** -0.5, s * config.warmup ** -1.5)
    return optax.adam(noam, b1=0.9, b2=0.98, eps=1e-9)
  if config.schedule == "constant":
    return optax.adam(config.learning_rate)
  raise ValueError(f"schedule must be 'noam' or 'constant', got {config.schedule!r}")


def loss_fn(params: nnx.State, graphdef: nnx.GraphDef, batch: CascadeBatch,
            dropout_key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """Mean NLL per prediction of a batch (Eq. 8), and the number of predictions."""
  model = nnx.merge(graphdef, params)
  logits = model(batch.users, batch.mask, dropout_key)
  nll_sum, count = next_user_nll(logits, batch.users, batch.mask)
  return nll_sum / jnp.maximum(count, 1.0), count


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    jit: bool = True) -> Callable:
  """``train_step(state, batch, key) -> (state, metrics)``, jitted (donating the old state) unless
  ``jit=False`` (for wrapping, e.g. in ``chex.assert_max_traces``, before jitting)."""

  def train_step(state: TrainState, batch: CascadeBatch, key: jax.Array):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, graphdef, batch, key)
    return apply_gradients(state, grads, tx), {"loss": loss}

  return jax.jit(train_step, donate_argnums=0) if jit else train_step


def make_eval_step(graphdef: nnx.GraphDef | None, ks=(10, 50, 100)) -> Callable:
  """``eval_step(params, batch) -> sums`` of NLL, Hits@k and MAP@k; for ``graphdef=None`` the
  params are the popularity baseline's score vector."""

  @jax.jit
  def eval_step(params: Any, batch: CascadeBatch) -> dict[str, jax.Array]:
    if graphdef is None:
      logits = popularity_logits(params, batch.users)
    else:
      logits = nnx.merge(graphdef, params)(batch.users, batch.mask, None)
    targets, target_mask = shift_targets(batch.users, batch.mask)
    masked = mask_infected(logits, batch.users, batch.mask)
    sums = ranking_sums(masked, targets, target_mask, ks)
    log_probs = jax.nn.log_softmax(masked, axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    sums["nll"] = jnp.where(target_mask, -picked, 0.0).sum()
    return sums

  return eval_step


def evaluate(eval_step: Callable, params: Any, batches: list[CascadeBatch]) -> dict[str, float]:
  """Means of the eval metrics over every target of ``batches``."""
  total = None
  for batch in batches:
    sums = eval_step(params, batch)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  return finalize(jax.device_get(total))


def run(dataset: CascadeDataset, config: NextUserConfig, workdir: str | pathlib.Path | None = None,
        *, progress: bool = True) -> dict:
  """Trains ``config.model`` on ``dataset`` and returns its test metrics.

  Args:
    dataset: a loaded ``CascadeDataset``.
    config: hyperparameters.
    workdir: where checkpoints and ``metrics.jsonl`` go (a rerun resumes); None: a temporary dir.
    progress: show progress bars.

  Returns:
    A results row: ``dataset``, ``model``, ``split``, ``hits@k``, ``map@k`` (k = 10, 50, 100),
    ``nll``, ``train_seconds``, ``epochs``, ``device``, and the validation metrics of the chosen epoch.
  """
  max_len = config.max_len
  train, valid, test = dataset.train, dataset.valid, dataset.test
  for part, what in ((train, "training"), (valid, "validation"), (test, "test")):
    warn_if_truncated(part, max_len, f"{what} cascades of {dataset.name}")
  valid_batches = make_batches(valid, config.eval_batch_size, max_len=max_len)
  test_batches = make_batches(test, config.eval_batch_size, max_len=max_len)
  num_items = len(dataset.vocab)
  row = {"dataset": dataset.name, "model": config.model, "split": dataset.split,
         "device": jax.devices()[0].device_kind}
  t0 = time.perf_counter()
  if config.model == "popularity":
    params = jnp.asarray(popularity_scores(train, num_items))
    eval_step = make_eval_step(None)
    row["epochs"] = 0
  else:
    f_init = default_f_init(dataset.name) if config.f_init is None else config.f_init
    model = build_model(config, num_items, f_init)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config)
    state = create_train_state(params, tx)
    eval_step = make_eval_step(graphdef)
    if workdir is None:
      import tempfile
      workdir = tempfile.mkdtemp(prefix="popdiff_")
    result = fit(
        state, train_step=make_train_step(graphdef, tx),
        train_batches=lambda epoch: make_batches(train, config.batch_size, max_len=max_len,
                                                 shuffle=True, seed=config.seed, epoch=epoch),
        evaluate=lambda s: evaluate(eval_step, s.params, valid_batches),
        workdir=workdir, num_epochs=config.num_epochs, base_key=jax.random.key(config.seed),
        monitor="val_nll", mode="min", patience=config.patience,
        desc=f"{config.model} {dataset.name}", progress=progress,
        batch_size_of=lambda b: b.num_cascades)
    params = result.state.params
    row["epochs"] = len(result.history)
    row["best_epoch"] = result.best.get("epoch")
    row.update({k: v for k, v in result.best.items() if k.startswith("val_")})
    if f_init:
      row["f_init"] = f_init
  row["train_seconds"] = round(time.perf_counter() - t0, 2)
  row.update(evaluate(eval_step, params, test_batches))
  return row
