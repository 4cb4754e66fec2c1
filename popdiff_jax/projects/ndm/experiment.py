"""Training and testing a next-user model (NDM, the LSTM baseline, the popularity floor).

``run(dataset, config, workdir)`` is the whole experiment: :func:`build` makes the model through
``popdiff_jax.models.init`` (with the data-dependent start of ``config.train``), :func:`train`
fits it with the library's one train step and ``fit`` (resuming from ``workdir``), keeps the
epoch chosen by validation ``config.train.select_by``, and ``run`` returns the test metrics as
one results row.

The loss is NDM's Eq. 8 (``losses.next_user_nll``, or ``losses.lean_next_user_nll`` with
``train.loss = "lean"``), normalised per prediction or per cascade (``train.loss_per``); the
metrics are Hits@k and MAP@k over all users with infected users masked (``metrics.ranking``).
With the leak-free split (``DataConfig.split = "leak_free"``) the dataset's unknown id is never
a candidate and, as a target, a miss, and :func:`run` tests the best checkpoint reloaded from
the workdir (:func:`reload_best`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popdiff_jax import losses
from popdiff_jax._errors import DataError
from popdiff_jax.baselines import popularity as pop
from popdiff_jax.data.batching import CascadeBatcher, make_batches
from popdiff_jax.data.cascades import CascadeDataset, warn_if_truncated
from popdiff_jax.metrics.ranking import lean_ranking_sums, next_user_sums
from popdiff_jax.models import Model, Variables
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.nn.streaming_softmax import auto_chunk
from popdiff_jax.projects.ndm.configs import NextUserConfig, TrainConfig
from popdiff_jax.training import (create_train_state, evaluate, fit, init_model, make_eval_step,
                                  make_train_step)
from popdiff_jax.training.checkpoint import Checkpointer, abstract_like
from popdiff_jax.training.workdir import claim, write_config
from popdiff_jax.types import CascadeBatch

__all__ = ["Trained", "build", "make_optimizer", "loss_fn", "metric_fn", "eval_step_for",
           "train", "load_trained", "reload_best", "test_metrics", "run", "result_row", "config_to_json",
           "config_from_json"]

KS = (10, 50, 100)
#: ``TrainConfig.loss = "auto"`` streams the loss when the dense scores would pass this share of
#: the device's memory.
LEAN_SHARE = 0.25


@dataclasses.dataclass
class Trained:
  """A trained next-user model.

  Attributes:
    config: the experiment config, with ``model.num_items`` and ``model.f_init`` resolved.
    model: the built model (None for the popularity floor).
    variables: its variables with the best parameters on validation (for the popularity floor:
      ``params`` is the score vector float32 [U]).
    info: training facts for the results row (epochs, best epoch, validation metrics, seconds).
  """

  config: NextUserConfig
  model: Model | None
  variables: Variables
  info: dict

  @property
  def f_init(self) -> int:
    """The F_init the model was built with (0 for the LSTM and the popularity floor)."""
    return int(getattr(self.config.model, "f_init", 0) or 0)


def resolve(config: NextUserConfig, dataset: CascadeDataset) -> NextUserConfig:
  """``config`` with the model's data-dependent fields set from ``dataset``: ``num_items`` and,
  for NDM, a ``None`` F_init taken from the dataset (0, said on stderr, when the data does not
  say: a file read by path)."""
  model = config.model
  if isinstance(model, (NDMConfig, LSTMConfig)):
    fields = {"num_items": len(dataset.vocab)}
    if isinstance(model, NDMConfig) and model.f_init is None:
      if dataset.f_init is None:
        print(f"popdiff: {dataset.name} does not say NDM's F_init; using 0 (the paper's value "
              "outside Twitter; --model.f-init 1 for Twitter-like data)", file=sys.stderr)
      fields["f_init"] = dataset.f_init or 0
    model = dataclasses.replace(model, **fields)
  return dataclasses.replace(config, model=model)


def build(config: NextUserConfig, dataset: CascadeDataset,
          frozen_embedding: np.ndarray | None = None) -> tuple[Model, Variables]:
  """The model of a (resolved) config, initialised from ``config.train.seed``.

  ``train.bias_init == "log_frequency"`` sets the output bias to the log training frequency of
  each user and ``train.output_init_scale`` scales the output weights (``init_output``);
  ``frozen_embedding`` (float [U, frozen_dim]) fills NDM+SN's fixed block.
  """
  model, variables = init_model(config.model, jax.random.key(config.train.seed))
  prior = None
  if config.train.bias_init == "log_frequency":
    prior = pop.log_frequency_prior(dataset.train, len(dataset.vocab))
  if prior is not None or config.train.output_init_scale != 1.0:
    variables = model.update(variables, "init_output", prior, config.train.output_init_scale)
  if frozen_embedding is not None:
    variables = model.update(variables, "set_frozen_embedding", frozen_embedding)
  return model, variables


def dense_scores_bytes(train: TrainConfig, max_len: int, num_items: int) -> int:
  """Bytes of the dense ``[B, L, U]`` float32 scores of the longest batch, times three (the
  scores, the softmax and its gradient live at once in a training step)."""
  return 3 * 4 * train.batch_size * (max_len + 1) * num_items


def device_memory_bytes() -> int | None:
  """The first device's memory (its allocator limit on a GPU/TPU; the RAM on a CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return None


def choose_loss(config: NextUserConfig, num_items: int) -> NextUserConfig:
  """``config`` with ``train.loss = "auto"`` resolved to ``dense`` or ``lean`` (module docstring);
  says so on stderr when it picks ``lean``."""
  if config.train.loss != "auto":
    return config
  need = dense_scores_bytes(config.train, config.data.max_len, num_items)
  have = device_memory_bytes()
  loss = "lean" if have is not None and need > LEAN_SHARE * have else "dense"
  if loss == "lean":
    print(f"popdiff: the dense [{config.train.batch_size}, {config.data.max_len + 1}, "
          f"{num_items}] scores would take ~{need / 2**30:.1f} GiB, over {LEAN_SHARE:.0%} of the "
          f"device's {have / 2**30:.1f} GiB: training with the lean (streamed) loss",
          file=sys.stderr)
  return config.replace(train={"loss": loss})


def _matrices(params: Any) -> Any:
  """Weight-decay mask: True for arrays with two or more axes (not biases or LayerNorm)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(train: TrainConfig, dim: int) -> optax.GradientTransformation:
  """Adam (AdamW when ``weight_decay`` > 0) with the schedule of ``train``."""
  if train.schedule == "noam":
    warmup = max(train.warmup, 1)

    def rate(step):
      s = jnp.maximum(step, 1).astype(jnp.float32)
      return dim ** -0.5 * jnp.minimum(s ** -0.5, s * warmup ** -1.5)
    betas = {"b1": 0.9, "b2": 0.98, "eps": 1e-9}
  else:
    rate, betas = train.learning_rate, {}
  if train.weight_decay:
    return optax.adamw(rate, weight_decay=train.weight_decay, mask=_matrices, **betas)
  return optax.adam(rate, **betas)


def _chunk(train: TrainConfig, batch: CascadeBatch, num_items: int) -> int:
  b, length = batch.users.shape
  return auto_chunk(b, length, num_items) if train.lean_chunk is None else train.lean_chunk


def loss_fn(train: TrainConfig, num_items: int):
  """The training loss ``(outputs, batch) -> (objective, {"loss": mean NLL per prediction})``.

  ``outputs`` are the raw scores (dense) or ``output_features`` (lean). The objective is the
  mean NLL per prediction, or Σ NLL / B for ``loss_per == "cascade"`` (the count is data, not a
  function of the parameters, so its gradient is -grad(Σ NLL) / B); the predictions of Terminate
  weigh ``train.terminate_weight``.
  """

  def fn(outputs, batch: CascadeBatch):
    if train.loss == "lean":
      feats, w, bias = outputs
      total, count = losses.lean_next_user_nll(feats, w, bias, batch.users, batch.mask,
                                               _chunk(train, batch, num_items),
                                               train.terminate_weight)
    else:
      total, count = losses.next_user_nll(outputs, batch.users, batch.mask,
                                          train.terminate_weight)
    mean = total / jnp.maximum(count, 1.0)
    if train.loss_per == "cascade":
      return mean * count / batch.users.shape[0], {"loss": mean}
    return mean, {}

  return fn


def metric_fn(train: TrainConfig, num_items: int, ks=KS, unknown: int | None = None):
  """``(outputs, batch) -> sums`` of Hits@k, MAP@k and NLL (dense or lean, as ``train.loss``);
  ``unknown``: the id of the users unseen in training (``CascadeDataset.unknown``): never a
  candidate, a miss as a target (``metrics.ranking.next_user_sums``)."""

  def fn(outputs, batch: CascadeBatch):
    if train.loss == "lean":
      feats, w, bias = outputs
      return lean_ranking_sums(feats, w, bias, batch.users, batch.mask, tuple(ks),
                               _chunk(train, batch, num_items), unknown)
    return next_user_sums(outputs, batch.users, batch.mask, tuple(ks), unknown)

  return fn


def _method(train: TrainConfig) -> str:
  return "output_features" if train.loss == "lean" else "__call__"


def eval_step_for(trained: Trained, unknown: int | None = None):
  """The jitted ``eval_step(params, state, batch) -> sums`` of a trained model (``unknown``: as
  :func:`metric_fn`)."""
  if trained.model is None:
    return pop.popularity_eval_step(KS, unknown)
  cfg = trained.config
  return make_eval_step(trained.model, metric_fn(cfg.train, cfg.model.num_items, KS, unknown),
                        method=_method(cfg.train))


def config_to_json(config: NextUserConfig, dataset_name: str) -> dict:
  """The workdir's ``config.json``: the dataset and every field of the config."""
  return {"dataset": dataset_name, "model_kind": config.model.name,
          "config": dataclasses.asdict(config)}


def config_from_json(text: str) -> tuple[str, NextUserConfig]:
  """Inverse of :func:`config_to_json` (given the file's text): ``(dataset name, config)``."""
  from popdiff_jax.projects.ndm.configs import DataConfig

  meta = json.loads(text)
  raw = meta["config"]
  kinds = {"ndm": NDMConfig, "lstm": LSTMConfig, "popularity": pop.PopularityConfig}
  model = kinds[meta["model_kind"]](**raw["model"])
  return meta["dataset"], NextUserConfig(data=DataConfig(**raw["data"]), model=model,
                                         train=TrainConfig(**raw["train"]))


def train(dataset: CascadeDataset, config: NextUserConfig,
          workdir: str | pathlib.Path | None = None, *, progress: bool = True,
          frozen_embedding: np.ndarray | None = None, desc: str | None = None,
          overwrite: bool = False, resume: bool = False) -> Trained:
  """Trains ``config.model`` on ``dataset.train``, keeping the epoch chosen by validation.

  Writes ``config.json`` beside the checkpoints, so ``load_trained(workdir)`` rebuilds the
  model. A rerun with the same workdir resumes after the last finished epoch.

  Args:
    dataset: the cascades (``data.cascades.load_dataset``).
    config: the experiment (``configs.get_config(name)``).
    workdir: checkpoint folder (a fresh temporary one if None).
    progress: progress bars.
    frozen_embedding: NDM+SN's fixed embedding block, float [U, frozen_dim]
      (``projects.ndm.social.social_embedding``).
    desc: the progress bar's label (default ``"<model> <dataset>"``).
    overwrite, resume: what to do when ``workdir`` holds a run of another config
      (``training.workdir.claim``: by default refuse, naming the fields that differ).

  Raises:
    WorkdirError: the workdir is in use by another process, or holds another config's run.
    TrainingDiverged: the loss became NaN or infinite (the finite epochs stay checkpointed).
  """
  max_len = config.data.max_len
  for part, what in ((dataset.train, "training"), (dataset.valid, "validation")):
    if not part:
      raise DataError(f"{dataset.name} has no {what} cascades (split {dataset.split!r}); a run "
                      "needs both, for training and for choosing the epoch")
  for part, what in ((dataset.train, "training"), (dataset.valid, "validation"),
                     (dataset.test, "test")):
    warn_if_truncated(part, max_len, f"{what} cascades of {dataset.name}")
  config = resolve(config, dataset)
  t0 = time.perf_counter()
  num_items = len(dataset.vocab)
  config = choose_loss(config, num_items)
  if isinstance(config.model, pop.PopularityConfig):
    scores = jnp.asarray(pop.popularity_scores(dataset.train, num_items))
    return Trained(config, None, Variables(scores, None),
                   {"epochs": 0, "train_seconds": time.perf_counter() - t0})
  if workdir is None:
    workdir = tempfile.mkdtemp(prefix="popdiff_")
  with claim(workdir, config_to_json(config, dataset.name), overwrite=overwrite, resume=resume):
    write_config(workdir, config_to_json(config, dataset.name))
    return _train(dataset, config, pathlib.Path(workdir), progress, frozen_embedding, desc, t0)


def _train(dataset, config, workdir, progress, frozen_embedding, desc, t0) -> Trained:
  max_len = config.data.max_len
  num_items = len(dataset.vocab)
  model, variables = build(config, dataset, frozen_embedding)
  tc = config.train
  tx = make_optimizer(tc, config.model.dim)
  step = make_train_step(model, loss_fn(tc, num_items), tx, method=_method(tc))
  eval_step = make_eval_step(model, metric_fn(tc, num_items, KS, dataset.unknown),
                             method=_method(tc))
  state = create_train_state(variables.params, tx, extra=variables.state)
  try:
    result = _fit(state, step, eval_step, dataset, config, workdir, progress, desc)
  except Exception as e:  # an XLA allocation failure: say what to change
    if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
      raise
    need = dense_scores_bytes(tc, max_len, num_items)
    raise MemoryError(
        f"out of device memory training {config.model.name} on {dataset.name}: the dense "
        f"[{tc.batch_size}, {max_len + 1}, {num_items}] scores take ~{need / 2**30:.1f} GiB; "
        "use --train.loss lean (streamed over blocks of users) or a smaller "
        "--train.batch-size / --data.max-len") from e
  info = {"epochs": len(result.history), "best_epoch": result.best.get("epoch"),
          "stopped_by": result.stopped_by, "train_seconds": time.perf_counter() - t0}
  if result.resumed_from is not None:
    info["resumed_after_epoch"] = result.resumed_from
  info.update({k: v for k, v in result.best.items() if k.startswith("val_")})
  return Trained(config, model, Variables(result.state.params, result.state.extra), info)


def _fit(state, step, eval_step, dataset, config, workdir, progress, desc):
  tc, max_len, num_items = config.train, config.data.max_len, len(dataset.vocab)
  valid_batches = make_batches(dataset.valid, tc.eval_batch_size, max_len=max_len)
  train_batcher = CascadeBatcher(dataset.train, tc.batch_size, max_len=max_len)
  return fit(
      state, train_step=step,
      train_batches=lambda epoch: train_batcher.batches(shuffle=True, seed=tc.seed, epoch=epoch),
      evaluate=lambda s: evaluate(eval_step, s.params, s.extra, valid_batches),
      workdir=workdir, num_epochs=tc.num_epochs, base_key=jax.random.key(tc.seed),
      monitor="epoch" if tc.select_by == "last" else f"val_{tc.select_by}",
      mode="min" if tc.select_by == "nll" else "max",
      patience=None if tc.select_by == "last" else tc.patience, desc=desc or f"{config.model.name} {dataset.name}",
      progress=progress, batch_size_of=lambda b: b.num_cascades,
      max_seconds=tc.max_train_seconds, num_devices=tc.num_devices,
      model_parallel=tc.model_parallel, table_rows=num_items, pad_batches=True,
      steps_per_call=tc.steps_per_call)


def load_trained(workdir: str | pathlib.Path, dataset: CascadeDataset | None = None,
                 data_dir: str | None = None) -> tuple[CascadeDataset, Trained]:
  """Rebuilds a model trained by :func:`train` from its workdir (best parameters on validation)."""
  workdir = pathlib.Path(workdir)
  name, config = config_from_json((workdir / "config.json").read_text())
  if dataset is None:
    data = config.data if data_dir is None else dataclasses.replace(config.data,
                                                                      data_dir=data_dir)
    dataset = data.load()
  config = resolve(config, dataset)
  model, variables = init_model(config.model, jax.random.key(config.train.seed))
  state = create_train_state(variables.params, make_optimizer(config.train, config.model.dim),
                             extra=variables.state)
  template = {"state": state, "best_params": variables.params}
  if jax.tree.leaves(variables.state):
    template["best_extra"] = variables.state
  restored, meta, _ = Checkpointer(workdir).restore(abstract_like(template))
  history = meta.get("history", [])
  best = [r for r in history if r.get("best")]
  info = {"epochs": len(history), "best_epoch": best[-1]["epoch"] if best else None}
  extra = restored.get("best_extra", restored["state"].extra)
  return dataset, Trained(config, model, Variables(restored["best_params"], extra), info)


def reload_best(workdir: str | pathlib.Path, dataset: CascadeDataset, trained: Trained) -> Trained:
  """The model :func:`train` kept, read back from its checkpoint in ``workdir`` (the parameters
  of the epoch chosen on validation, not those in memory), with ``trained.info``.

  The leak-free protocol tests this reloaded model; the popularity floor has no checkpoint and
  is returned as it is.
  """
  if trained.model is None:
    return trained
  _, reloaded = load_trained(workdir, dataset)
  return dataclasses.replace(reloaded, config=trained.config,
                             info={**trained.info, "reloaded_best_epoch": reloaded.info[
                                 "best_epoch"]})


def test_metrics(dataset: CascadeDataset, trained: Trained, split: str = "test") -> dict:
  """Hits@k, MAP@k (k = 10, 50, 100) and NLL per prediction on a split."""
  batches = make_batches(getattr(dataset, split), trained.config.train.eval_batch_size,
                         max_len=trained.config.data.max_len)
  return evaluate(eval_step_for(trained, dataset.unknown), trained.variables.params,
                  trained.variables.state, batches)


def run(dataset: CascadeDataset, config: NextUserConfig,
        workdir: str | pathlib.Path | None = None, *, progress: bool = True,
        name: str | None = None, frozen_embedding: np.ndarray | None = None,
        overwrite: bool = False, resume: bool = False) -> dict:
  """Trains ``config.model`` on ``dataset`` and returns its test metrics as one results row.

  With ``config.data.split == "leak_free"`` the test scores the checkpoint of the epoch chosen
  on validation, reloaded from ``workdir`` (:func:`reload_best`).

  Args:
    dataset, config, workdir, progress, frozen_embedding, overwrite, resume: as :func:`train`.
    name: the row's ``model`` (default: the model's name; the named config's name in tables).

  Returns:
    ``dataset``, ``model``, ``split``, ``hits@k``, ``map@k`` (k = 10, 50, 100), ``nll``,
    ``train_seconds``, ``epochs``, ``device`` and the validation metrics of the chosen epoch.
  """
  if workdir is None:
    workdir = tempfile.mkdtemp(prefix="popdiff_")
  trained = train(dataset, config, workdir, progress=progress,
                  frozen_embedding=frozen_embedding, overwrite=overwrite, resume=resume)
  if config.data.split == "leak_free":
    trained = reload_best(workdir, dataset, trained)
  return result_row(dataset, trained, name)


def result_row(dataset: CascadeDataset, trained: Trained, name: str | None = None) -> dict:
  """The results row of a trained model: what :func:`run` returns (test metrics, training
  facts, validation metrics of the kept epoch)."""
  row = {"dataset": dataset.name, "model": name or trained.config.model.name,
         "split": dataset.split, "device": jax.devices()[0].device_kind}
  row.update(trained.info)
  row["train_seconds"] = round(row["train_seconds"], 2)
  if trained.f_init:
    row["f_init"] = trained.f_init
  row.update(test_metrics(dataset, trained))
  return row


TABLE_COLUMNS = ("dataset", "model", "hits@10", "hits@50", "hits@100", "map@10", "map@50",
                 "map@100", "epochs", "stopped_by", "train_seconds")


def main(config: NextUserConfig, *, workdir: str | pathlib.Path, progress: bool = True,
         name: str | None = None, overwrite: bool = False, resume: bool = False) -> list[dict]:
  """``popdiff train``: loads ``config.data``, trains and tests; writes ``workdir/results.json``.

  Returns:
    The one results row, in a list.
  """
  dataset = config.data.load()
  frozen = None
  if isinstance(config.model, NDMConfig) and config.model.frozen_dim:
    from popdiff_jax.baselines.deepwalk import DeepWalkConfig
    from popdiff_jax.projects.ndm.social import social_embedding

    frozen, _ = social_embedding(dataset, config.data.data_dir,
                                 DeepWalkConfig(dim=config.model.frozen_dim))
  row = run(dataset, config, workdir, progress=progress, name=name, frozen_embedding=frozen,
            overwrite=overwrite, resume=resume)
  path = pathlib.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  (path / "results.json").write_text(json.dumps(row, indent=1))
  return [row]
