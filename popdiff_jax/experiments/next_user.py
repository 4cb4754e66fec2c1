"""Training and evaluating next-user models (NDM, LSTM, popularity) on a cascade dataset.

``run(dataset, config, workdir)`` is the whole experiment: it builds the model, trains it with the
pure jitted ``train_step`` below through ``train.loop.fit`` (resuming from ``workdir``), selects the
epoch by validation NLL (or ``config.select_by``) and returns the test metrics as one results row.
"""

from __future__ import annotations

import dataclasses
import pathlib
import json
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from popdiff_jax.data.batching import CascadeBatch, make_batches
from popdiff_jax.data.cascades import (CascadeDataset, default_f_init, load_dataset,
                                       warn_if_truncated)
from popdiff_jax.metrics.ranking import finalize, ranking_sums
from popdiff_jax.models.lstm import LSTMNextUser
from popdiff_jax.models.ndm import NDM
from popdiff_jax.models.next_user import (mask_infected, masked_nll, next_user_nll,
                                          shift_targets)
from popdiff_jax.models.popularity_baseline import popularity_logits, popularity_scores
from popdiff_jax.train.checkpoint import Checkpointer, abstract_like
from popdiff_jax.train.loop import fit
from popdiff_jax.train.parallel import fit_arguments
from popdiff_jax.train.state import TrainState, apply_gradients, create_train_state

MODELS = ("ndm", "lstm", "popularity")
SELECT_METRICS = ("nll",) + tuple(f"{m}@{k}" for m in ("hits", "map") for k in (10, 50, 100))


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
    embedding_dropout: NDM only: dropout on the input user embeddings (not in the paper; 0).
    weight_decay: decoupled weight decay (AdamW) on the matrices (embeddings, projections, W^C),
      not on biases or LayerNorm (not in the paper; 0 = plain Adam). On small sets (Irvine,
      Android) NDM's |U| x win*d output table overfits within a few epochs; with weight decay the
      per-user bias carries the popularity prior and the matrices only what the data supports.
    bias_init: the per-user output bias at initialisation (NDM's Eq. 7 bias, the LSTM's output
      layer bias): ``"zeros"`` (the paper is silent; default) or ``"log_frequency"``: log of the
      add-one training frequency of each user, so the untrained model already ranks like the
      popularity baseline. At Adam's 1e-3 a zero bias moves by at most ~0.1 in the few dozen
      steps a small set such as Irvine (12 steps an epoch) trains for before overfitting, too
      little to learn the prior.
    output_init_scale: W^C (and W^C_init) of NDM's Eq. 7, or the LSTM's output kernel, are
      multiplied by this after their initialisation (not in the paper; 1 = unchanged). With 0
      the untrained model scores every user by its bias alone (with
      ``bias_init="log_frequency"``: exactly the popularity baseline) instead of the bias plus
      random logits (standard deviation over users 0.40 on Irvine, 0.19 on Android, 0.25 on
      Christianity for NDM, against 0.7-0.9 for the log-frequency prior itself); early stopping on
      a small set (Irvine: 2-5 epochs of 12 steps) may end before Adam has removed that noise.
      The first step's gradient reaches only the output table; from the second on every
      parameter trains.
    batch_size: cascades per step (authors' code: 32).
    max_len: cascades are cut to this many users (NDM's loader advises truncation; FOREST uses 200).
    num_epochs: maximum epochs. The authors' code trains a fixed 20 epochs with no validation set;
      we stop on validation NLL (``patience``) within at most 50, so small sets such as Irvine
      (12 steps an epoch) get past the warm-up.
    patience: early stopping on the validation metric ``select_by``.
    select_by: the validation metric that picks the kept epoch and drives early stopping:
      ``"nll"`` (default, minimised) or a ranking metric ``"hits@k"`` / ``"map@k"`` (k = 10, 50,
      100; maximised). NLL keeps improving on the tail of the distribution while the top-10
      ranking has already stopped improving (or the reverse), so on small sets the epoch that
      ranks best on validation is not the NLL-best one. Not in the paper (its code trains a
      fixed 20 epochs); only validation metrics are ever used for the choice.
    schedule: ``"constant"`` (Adam at ``learning_rate``; the paper says only "Adam") or ``"noam"``
      (the authors' code: Adam b=(0.9, 0.98), eps=1e-9, lr = d^-0.5 min(s^-0.5, s w^-1.5), w =
      ``warmup``). Default constant: Noam's warm-up takes 1000 steps to reach its peak, more than
      Irvine's whole training (12 steps an epoch), which left NDM below the popularity baseline.
    learning_rate: for ``"constant"`` (1e-3, about the rate Noam runs at after its warm-up).
    warmup: warm-up steps of ``"noam"`` (authors' code: 1000). The peak rate is
      ``d^-0.5 warmup^-0.5`` (0.0040 for d = 64), so shortening the warm-up raises the peak.
    eval_batch_size: rows per evaluation batch.
    max_train_seconds: optional time budget: training stops after the first epoch past it.
    num_devices: data parallelism over this many devices (``train.parallel``; 0 = all devices,
      across hosts). Batches are split over the devices; ``batch_size`` is the global batch; when
      it does not divide by the data-parallel width, batches get masked padding rows.
    model_parallel: width of the mesh's ``"model"`` axis: the user tables (embedding, W^C, bias,
      and their Adam moments) are split over it, for vocabularies too large for one device.
    steps_per_call: optimiser steps per dispatched call (``lax.scan`` over same-shaped batches).
    loss: ``"dense"`` (the paper's softmax over the ``[B, L, U]`` scores; default) or ``"lean"``
      (``models.lean_softmax``: the same loss and Hits@k / MAP@k streamed over blocks of users,
      never holding ``[B, L, U]``; equal to dense up to float rounding). NDM and LSTM; for
      large vocabularies or long cascades.
    lean_chunk: users per block of the lean loss and metrics; None picks ``auto_chunk`` for each
      batch shape (blocks of at most ~2^26 scores).
    loss_per: how a batch's NLL is normalised (not in the paper, which states Eq. 8 over all
      predictions): ``"prediction"`` (default: the mean per prediction of each batch) or
      ``"cascade"`` (Σ NLL / B, B the rows of a batch: the authors' ``size_average=False`` sum up
      to a constant). Batches are grouped by length bucket, so under the per-prediction mean a
      batch of 32 short cascades moves the parameters as much as a batch of 32 long ones, and the
      predictions of short cascades weigh more than in the authors' randomly composed batches;
      ``"cascade"`` weighs every prediction alike. On FOREST-Twitter (H100 GPU suite) it gave NDM
      test Hits@10 0.236 against 0.214 with the per-prediction mean after the same 6 epochs.
    seed: initialisation, shuffling and dropout seed.
  """

  model: str = "ndm"
  dim: int = 64
  num_heads: int = 8
  window: int = 3
  f_init: int | None = None
  dropout_rate: float = 0.1
  embedding_dropout: float = 0.0
  weight_decay: float = 0.0
  bias_init: str = "zeros"
  output_init_scale: float = 1.0
  batch_size: int = 32
  max_len: int = 200
  num_epochs: int = 50
  patience: int = 5
  select_by: str = "nll"
  schedule: str = "constant"
  learning_rate: float = 1e-3
  warmup: int = 1000
  eval_batch_size: int = 64
  max_train_seconds: float | None = None
  num_devices: int = 1
  model_parallel: int = 1
  steps_per_call: int = 1
  loss: str = "dense"
  lean_chunk: int | None = None
  loss_per: str = "prediction"
  seed: int = 0


def build_model(config: NextUserConfig, num_items: int, f_init: int = 0) -> nnx.Module:
  """The flax module of ``config.model`` (not for ``"popularity"``, which has no parameters)."""
  rngs = nnx.Rngs(params=config.seed)
  if config.model == "ndm":
    return NDM(num_items, dim=config.dim, num_heads=config.num_heads, window=config.window,
               f_init=f_init, dropout_rate=config.dropout_rate,
               embedding_dropout=config.embedding_dropout, rngs=rngs)
  if config.model == "lstm":
    return LSTMNextUser(num_items, dim=config.dim, dropout_rate=config.dropout_rate, rngs=rngs)
  raise ValueError(f"unknown trainable model {config.model!r}; choose from {MODELS}")


def _matrices(params: Any) -> Any:
  """Weight-decay mask: True for arrays with two or more axes (not biases or LayerNorm)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: NextUserConfig) -> optax.GradientTransformation:
  """Adam (AdamW when ``config.weight_decay`` > 0) with the schedule of ``config``."""
  if config.schedule == "noam":
    warmup = max(config.warmup, 1)

    def rate(step):
      s = jnp.maximum(step, 1).astype(jnp.float32)
      return config.dim ** -0.5 * jnp.minimum(s ** -0.5, s * warmup ** -1.5)
    betas = {"b1": 0.9, "b2": 0.98, "eps": 1e-9}
  elif config.schedule == "constant":
    rate, betas = config.learning_rate, {}
  else:
    raise ValueError(f"schedule must be 'noam' or 'constant', got {config.schedule!r}")
  if config.weight_decay:
    return optax.adamw(rate, weight_decay=config.weight_decay, mask=_matrices, **betas)
  return optax.adam(rate, **betas)


def loss_fn(params: nnx.State, graphdef: nnx.GraphDef, batch: CascadeBatch,
            dropout_key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """Mean NLL per prediction of a batch (Eq. 8), and the number of predictions."""
  model = nnx.merge(graphdef, params)
  logits = model(batch.users, batch.mask, dropout_key)
  nll_sum, count = next_user_nll(logits, batch.users, batch.mask)
  return nll_sum / jnp.maximum(count, 1.0), count


def _check_loss(loss: str) -> bool:
  """Whether ``loss`` names the lean loss (raises on an unknown name)."""
  if loss not in ("dense", "lean"):
    raise ValueError(f"loss must be 'dense' or 'lean', got {loss!r}")
  return loss == "lean"


LOSS_WEIGHTINGS = ("prediction", "cascade")


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    jit: bool = True, loss: str = "dense",
                    chunk: int | None = None, loss_per: str = "prediction") -> Callable:
  """``train_step(state, batch, key) -> (state, metrics)``, jitted (donating the old state) unless
  ``jit=False`` (for wrapping, e.g. in ``chex.assert_max_traces``, before jitting). ``loss="lean"``
  takes ``models.lean_softmax.lean_loss_fn`` (blocks of ``chunk`` users) instead of ``loss_fn``.
  ``loss_per="cascade"`` minimises Σ NLL / B (B = rows of the batch) instead of the mean NLL per
  prediction (see ``NextUserConfig.loss_per``); ``metrics["loss"]`` is the mean NLL per prediction
  either way."""
  if loss_per not in LOSS_WEIGHTINGS:
    raise ValueError(f"loss_per must be one of {LOSS_WEIGHTINGS}, got {loss_per!r}")
  if _check_loss(loss):
    from popdiff_jax.models.lean_softmax import lean_loss_fn
    objective = lambda p, g, b, k: lean_loss_fn(p, g, b, k, chunk)  # noqa: E731
  else:
    objective = loss_fn

  def train_step(state: TrainState, batch: CascadeBatch, key: jax.Array):
    def weighted(params):
      mean, count = objective(params, graphdef, batch, key)
      if loss_per == "cascade":  # count is data, not a function of params: Σ NLL / B
        return mean * count / batch.users.shape[0], mean
      return mean, mean

    (_, mean), grads = jax.value_and_grad(weighted, has_aux=True)(state.params)
    return apply_gradients(state, grads, tx), {"loss": mean}

  return jax.jit(train_step, donate_argnums=0) if jit else train_step


def make_eval_step(graphdef: nnx.GraphDef | None, ks=(10, 50, 100), loss: str = "dense",
                   chunk: int | None = None) -> Callable:
  """``eval_step(params, batch) -> sums`` of NLL, Hits@k and MAP@k; for ``graphdef=None`` the
  params are the popularity baseline's score vector. ``loss="lean"`` (NDM / LSTM) streams over
  blocks of ``chunk`` users (``models.lean_softmax.lean_eval_sums``): the same sums without
  ``[B, L, U]``."""
  if graphdef is not None and _check_loss(loss):
    from popdiff_jax.models.lean_softmax import lean_eval_sums
    return jax.jit(lambda params, batch: lean_eval_sums(params, graphdef, batch, tuple(ks), chunk))

  @jax.jit
  def eval_step(params: Any, batch: CascadeBatch) -> dict[str, jax.Array]:
    if graphdef is None:
      logits = popularity_logits(params, batch.users)
    else:
      logits = nnx.merge(graphdef, params)(batch.users, batch.mask, None)
    targets, target_mask = shift_targets(batch.users, batch.mask)
    masked = mask_infected(logits, batch.users, batch.mask)
    sums = ranking_sums(masked, targets, target_mask, ks)
    sums["nll"], _ = masked_nll(masked, targets, target_mask)
    return sums

  return eval_step


def evaluate(eval_step: Callable, params: Any, batches: list[CascadeBatch]) -> dict[str, float]:
  """Means of the eval metrics over every target of ``batches``."""
  total = None
  for batch in batches:
    sums = eval_step(params, batch)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  return finalize(jax.device_get(total))


@dataclasses.dataclass
class Trained:
  """A trained next-user model.

  Attributes:
    config: its hyperparameters.
    graphdef: the flax graph definition (None for the popularity baseline).
    params: the best parameters on validation (the score vector for the popularity baseline).
    f_init: the F_init used.
    info: training facts for the results row (epochs, best epoch, validation metrics, seconds).
  """

  config: NextUserConfig
  graphdef: nnx.GraphDef | None
  params: Any
  f_init: int
  info: dict

  def logits_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(users, mask) -> raw scores [B, L, U]`` in evaluation mode (pure, jit-able)."""
    if self.graphdef is None:
      return lambda params, users, mask: popularity_logits(params, users)
    graphdef = self.graphdef
    return lambda params, users, mask: nnx.merge(graphdef, params)(users, mask, None)


def log_frequency_prior(cascades, num_items: int) -> np.ndarray:
  """``log((count_u + 1) / sum(count + 1))`` over training cascades (Terminate once per cascade)."""
  counts = np.expm1(np.nan_to_num(popularity_scores(cascades, num_items), neginf=0.0)) + 1.0
  return np.log(counts / counts.sum()).astype(np.float32)


def _resolve_f_init(dataset_name: str, config: NextUserConfig) -> int:
  return default_f_init(dataset_name) if config.f_init is None else config.f_init


def train(dataset: CascadeDataset, config: NextUserConfig,
          workdir: str | pathlib.Path | None = None, *, progress: bool = True,
          model: nnx.Module | None = None,
          wrap_optimizer: Callable[[optax.GradientTransformation],
                                   optax.GradientTransformation] | None = None,
          desc: str | None = None) -> Trained:
  """Trains ``config.model`` on ``dataset.train``, selecting the epoch by validation
  ``config.select_by`` (NLL by default).

  Writes ``config.json`` beside the checkpoints, so ``load_trained(workdir)`` can rebuild the model.
  A rerun with the same workdir resumes after the last finished epoch.

  Args:
    dataset, config, workdir, progress: the data, hyperparameters, checkpoint folder (a fresh
      temporary one if None) and progress bars.
    model: a model built by the caller instead of ``build_model(config, ...)`` (NDM+SN's NDM with a
      fixed embedding block, ``experiments.ndm_extras``); ``bias_init`` and ``output_init_scale``
      still apply. No ``config.json`` is written then (``load_trained`` could not rebuild it).
    wrap_optimizer: applied to ``make_optimizer(config)`` (e.g. ``freeze_non_params``).
    desc: the progress bar's label (default ``"<model> <dataset>"``).
  """
  max_len = config.max_len
  for part, what in ((dataset.train, "training"), (dataset.valid, "validation"),
                     (dataset.test, "test")):
    warn_if_truncated(part, max_len, f"{what} cascades of {dataset.name}")
  num_items = len(dataset.vocab)
  t0 = time.perf_counter()
  f_init = _resolve_f_init(dataset.name, config)
  if config.select_by not in SELECT_METRICS:
    raise ValueError(f"select_by must be one of {SELECT_METRICS}, got {config.select_by!r}")
  if config.loss_per not in LOSS_WEIGHTINGS:
    raise ValueError(f"loss_per must be one of {LOSS_WEIGHTINGS}, got {config.loss_per!r}")
  if config.model == "popularity":
    params = jnp.asarray(popularity_scores(dataset.train, num_items))
    return Trained(config, None, params, f_init, {"epochs": 0,
                                                  "train_seconds": time.perf_counter() - t0})
  if workdir is None:
    workdir = tempfile.mkdtemp(prefix="popdiff_")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if model is None:
    (workdir / "config.json").write_text(json.dumps(
        {"dataset": dataset.name, "config": dataclasses.asdict(config)}, indent=1))
    model = build_model(config, num_items, f_init)
  if config.bias_init not in ("zeros", "log_frequency"):
    raise ValueError(f"bias_init must be 'zeros' or 'log_frequency', got {config.bias_init!r}")
  head = getattr(model, "out", None)  # the LSTM's output layer; NDM keeps W^C and bias itself
  bias = head.bias if head is not None else getattr(model, "bias", None)
  if config.bias_init == "log_frequency" and bias is not None:
    bias[...] = jnp.asarray(log_frequency_prior(dataset.train, num_items))
  if config.output_init_scale != 1.0:
    tables = ((head.kernel,) if head is not None else
              (getattr(model, "w_c", None), getattr(model, "w_c_init", None)))
    for table in tables:
      if table is not None:
        table[...] = table[...] * config.output_init_scale
  graphdef, params = nnx.split(model)
  tx = make_optimizer(config)
  if wrap_optimizer is not None:
    tx = wrap_optimizer(tx)
  eval_step = make_eval_step(graphdef, loss=config.loss, chunk=config.lean_chunk)
  valid_batches = make_batches(dataset.valid, config.eval_batch_size, max_len=max_len)
  state = create_train_state(params, tx)
  step_fn = make_train_step(graphdef, tx, jit=False, loss=config.loss, chunk=config.lean_chunk,
                            loss_per=config.loss_per)
  # Batches are padded with masked rows to a multiple of the data-parallel width (none dropped).
  state, step_args = fit_arguments(step_fn, state, config.num_devices, config.model_parallel,
                                   table_rows=num_items, donate=True, pad=True)
  result = fit(
      state, **step_args, steps_per_call=config.steps_per_call,
      train_batches=lambda epoch: make_batches(dataset.train, config.batch_size, max_len=max_len,
                                               shuffle=True, seed=config.seed, epoch=epoch),
      evaluate=lambda s: evaluate(eval_step, s.params, valid_batches),
      workdir=workdir, num_epochs=config.num_epochs, base_key=jax.random.key(config.seed),
      monitor=f"val_{config.select_by}", mode="min" if config.select_by == "nll" else "max",
      patience=config.patience, desc=desc or f"{config.model} {dataset.name}", progress=progress,
      batch_size_of=lambda b: b.num_cascades, max_seconds=config.max_train_seconds)
  info = {"epochs": len(result.history), "best_epoch": result.best.get("epoch"),
          "stopped_by": result.stopped_by, "train_seconds": time.perf_counter() - t0}
  if result.resumed_from is not None:
    info["resumed_after_epoch"] = result.resumed_from
  info.update({k: v for k, v in result.best.items() if k.startswith("val_")})
  return Trained(config, graphdef, result.state.params, f_init, info)


def load_trained(workdir: str | pathlib.Path, dataset: CascadeDataset | None = None,
                 data_dir: str | None = None) -> tuple[CascadeDataset, Trained]:
  """Rebuilds a model trained by ``train`` from its workdir (best parameters on validation)."""
  workdir = pathlib.Path(workdir)
  meta = json.loads((workdir / "config.json").read_text())
  config = NextUserConfig(**meta["config"])
  if dataset is None:
    dataset = load_dataset(meta["dataset"], data_dir)
  f_init = _resolve_f_init(dataset.name, config)
  graphdef, params = nnx.split(build_model(config, len(dataset.vocab), f_init))
  state = create_train_state(params, make_optimizer(config))
  restored, ckpt_meta, _ = Checkpointer(workdir).restore(
      abstract_like({"state": state, "best_params": params}))
  history = ckpt_meta.get("history", [])
  best = [r for r in history if r.get("best")]
  info = {"epochs": len(history), "best_epoch": best[-1]["epoch"] if best else None}
  return dataset, Trained(config, graphdef, restored["best_params"], f_init, info)


def test_metrics(dataset: CascadeDataset, trained: Trained, split: str = "test") -> dict[str, float]:
  """Hits@k, MAP@k (k = 10, 50, 100) and NLL per prediction on a split."""
  batches = make_batches(getattr(dataset, split), trained.config.eval_batch_size,
                         max_len=trained.config.max_len)
  return evaluate(make_eval_step(trained.graphdef, loss=trained.config.loss,
                                 chunk=trained.config.lean_chunk), trained.params, batches)


def run(dataset: CascadeDataset, config: NextUserConfig, workdir: str | pathlib.Path | None = None,
        *, progress: bool = True) -> dict:
  """Trains ``config.model`` on ``dataset`` and returns its test metrics as one results row.

  Returns:
    ``dataset``, ``model``, ``split``, ``hits@k``, ``map@k`` (k = 10, 50, 100), ``nll``,
    ``train_seconds``, ``epochs``, ``device`` and the validation metrics of the chosen epoch.
  """
  trained = train(dataset, config, workdir, progress=progress)
  row = {"dataset": dataset.name, "model": config.model, "split": dataset.split,
         "device": jax.devices()[0].device_kind}
  row.update(trained.info)
  row["train_seconds"] = round(row["train_seconds"], 2)
  if trained.f_init:
    row["f_init"] = trained.f_init
  row.update(test_metrics(dataset, trained))
  return row
