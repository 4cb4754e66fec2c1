"""Training and testing Diffusion-LSTM and its baselines (Hu et al. Sec. 4).

``run(configs)`` is the whole experiment: it prepares each dataset once
(``projects.diffusion_lstm.data.prepare``), and for each config :func:`train` builds the model
through ``popdiff_jax.models.init`` and fits it with the library's one train step
(``training.make_train_step``) and ``training.fit`` in the paper's two SGD phases;
:func:`evaluate_nodes` computes the teacher-forced per-node AP of Table 1 on the test trees
(``training.make_predict_step``, ``metrics.trees``) and :func:`evaluate_generation` the
generation metrics of Table 2 (``simulate.trees.generate_trees``). Each config gives one result
row.

The loss is Eq. 2, the class-balanced binary cross-entropy (``losses.weighted_bce``) with
weights from the training target counts; validation and test losses are its mean per real node.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import tempfile
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popdiff_jax import losses
from popdiff_jax.data.trees import bucket_tree_batches
from popdiff_jax.metrics import trees as tm
from popdiff_jax.models import Model, Variables
from popdiff_jax.projects.diffusion_lstm.configs import (TreePredictionConfig, get_config,
                                                         row_label)
from popdiff_jax.projects.diffusion_lstm.data import PreparedTrees, prepare
from popdiff_jax.simulate.trees import generate_trees
from popdiff_jax.training.workdir import claim, write_config
from popdiff_jax.training import (create_train_state, evaluate, fit, init_model, make_eval_step,
                                  make_predict_step, make_train_step)
from popdiff_jax.types import TreeBatch

__all__ = ["Trained", "resolve", "build", "make_optimizer", "loss_fn", "metric_fn", "batches",
           "train", "evaluate_nodes", "evaluate_generation", "run"]


@dataclasses.dataclass
class Trained:
  """A trained (or, for ``random``, initialised) model.

  Attributes:
    config: the experiment config with the model's data-dependent fields set.
    model: the built model.
    variables: its variables; ``params`` from the best epoch on validation of the last phase.
    info: training facts for the results row (epochs, seconds, best validation loss, history).
  """

  config: TreePredictionConfig
  model: Model
  variables: Variables
  info: dict

  @property
  def params(self) -> Any:
    """The parameters (``variables.params``)."""
    return self.variables.params


def resolve(config: TreePredictionConfig, prepared: PreparedTrees) -> TreePredictionConfig:
  """``config`` with ``model.input_dim``, ``content_dim`` and ``num_protos`` from the data."""
  model = dataclasses.replace(config.model, input_dim=prepared.input_dim,
                              content_dim=prepared.content_dim,
                              num_protos=prepared.num_protos)
  return dataclasses.replace(config, model=model)


def _keys(config: TreePredictionConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The initialisation key and the base keys of the two training phases."""
  k_init, k_fit1, k_fit2 = jax.random.split(jax.random.key(config.train.seed), 3)
  return k_init, k_fit1, k_fit2


def build(config: TreePredictionConfig) -> tuple[Model, Variables]:
  """The model of a resolved config and its initial variables."""
  return init_model(config.model, _keys(config)[0])


def make_optimizer(config: TreePredictionConfig, learning_rate: float
                   ) -> optax.GradientTransformation:
  """Plain SGD (the paper's) or Adam at ``learning_rate``."""
  if config.train.optimizer == "sgd":
    return optax.sgd(learning_rate)
  return optax.adam(learning_rate)


def _class_weights(prepared: PreparedTrees) -> tuple[jax.Array, jax.Array]:
  return losses.class_weights(prepared.pos_counts, prepared.neg_counts)


def loss_fn(w_pos: jax.Array, w_neg: jax.Array):
  """The training loss ``(logits, batch) -> (Eq. 2, {})`` with the given class weights."""

  def fn(logits: jax.Array, batch: TreeBatch):
    return losses.weighted_bce(logits, batch.targets, batch.node_mask, w_pos, w_neg), {}

  return fn


def metric_fn(w_pos: jax.Array, w_neg: jax.Array):
  """``(logits, batch) -> {"loss": Eq. 2 summed over the real nodes, "count": their number}``."""

  def fn(logits: jax.Array, batch: TreeBatch):
    n = batch.node_mask.sum()
    loss = losses.weighted_bce(logits, batch.targets, batch.node_mask, w_pos, w_neg)
    return {"loss": loss * jnp.maximum(n, 1).astype(loss.dtype), "count": n}

  return fn


def batches(examples: Sequence, config: TreePredictionConfig, *, batch_trees: int,
            order: np.ndarray | None = None) -> list[TreeBatch]:
  """Level-wise batches of ``examples`` (in ``order`` if given) with the config's layout."""
  ex = list(examples) if order is None else [examples[i] for i in order]
  return bucket_tree_batches(ex, num_protos=config.data.num_protos, batch_trees=batch_trees,
                             chunk=config.data.chunk, buckets=config.data.buckets,
                             parent_chunk=config.data.parent_chunk,
                             parent_buckets=config.data.parent_buckets)


def train(prepared: PreparedTrees, config: TreePredictionConfig,
          workdir: str | os.PathLike | None = None, *, progress: bool = False,
          name: str | None = None, overwrite: bool = False, resume: bool = False) -> Trained:
  """Builds and trains ``config.model`` on ``prepared.train`` in two phases (``TrainConfig``).

  Each phase is one ``training.fit`` run (early stopping on the validation loss, checkpoints
  under ``workdir/<name>/phase<p>_lr<rate>``, resumed when the folder exists); the second
  starts from the first's best parameters at ``learning_rate_low`` with a fresh optimiser
  state. ``workdir/<name>`` is claimed for the config (``training.workdir.claim``: a second
  process, or another config, is refused). A config with no epochs returns the initial
  parameters.

  Args:
    prepared: the dataset (``data.prepare``).
    config: the experiment.
    workdir: checkpoint folder (a fresh temporary one if None).
    progress: progress bars.
    name: the run's folder under ``workdir`` (default: the model's variant).
    overwrite, resume: what to do when that folder holds another config's run
      (``training.workdir.claim``).

  Returns:
    :class:`Trained` with the best parameters of the last phase.
  """
  config = resolve(config, prepared)
  _, k_fit1, k_fit2 = _keys(config)
  model, variables = build(config)
  info = {"epochs": 0, "train_seconds": 0.0}
  tc = config.train
  if not tc.trains:
    return Trained(config, model, variables, info)
  if workdir is None:
    workdir = tempfile.mkdtemp(prefix="popdiff_trees_")
  name = name or config.model.variant
  folder = pathlib.Path(workdir) / name
  record = {part: dataclasses.asdict(getattr(config, part)) for part in ("data", "model", "train")}
  with claim(folder, record, overwrite=overwrite, resume=resume):
    write_config(folder, record)
    return _train(prepared, config, model, variables, folder, name, progress)


def _train(prepared, config, model, variables, folder, name, progress) -> Trained:
  tc = config.train
  _, k_fit1, k_fit2 = _keys(config)
  w_pos, w_neg = _class_weights(prepared)
  eval_step = make_eval_step(model, metric_fn(w_pos, w_neg))
  val_batches = batches(prepared.val, config, batch_trees=config.eval.batch_trees)

  def train_batches(epoch):
    order = np.random.default_rng((tc.seed, epoch)).permutation(len(prepared.train))
    return batches(prepared.train, config, batch_trees=tc.batch_trees, order=order)

  t0 = time.perf_counter()
  history: list[dict] = []
  state = None
  for phase, (lr, epochs, key) in enumerate(((tc.learning_rate, tc.epochs_high, k_fit1),
                                             (tc.learning_rate_low, tc.epochs_low, k_fit2))):
    if epochs <= 0:
      continue
    tx = make_optimizer(config, lr)
    step = make_train_step(model, loss_fn(w_pos, w_neg), tx)
    state = (create_train_state(variables.params, tx, extra=variables.state) if state is None
             else create_train_state(state.params, tx, extra=state.extra))
    result = fit(state, train_step=step, train_batches=train_batches,
                 evaluate=lambda s: evaluate(eval_step, s.params, s.extra, val_batches),
                 workdir=folder / f"phase{phase}_lr{lr}",
                 num_epochs=epochs, base_key=key, monitor="val_loss", mode="min",
                 patience=tc.patience, desc=f"{name} lr={lr}", progress=progress,
                 num_devices=tc.num_devices)
    state = result.state
    history += [dict(r, lr=lr) for r in result.history]
  info = {"epochs": len(history), "train_seconds": round(time.perf_counter() - t0, 2),
          "best_val_loss": min(r["val_loss"] for r in history), "history": history}
  return Trained(config, model, Variables(state.params, state.extra), info)


def evaluate_nodes(trained: Trained, prepared: PreparedTrees,
                   examples: Sequence | None = None) -> dict:
  """Teacher-forced per-node evaluation (Table 1) over all real nodes of ``examples``.

  Args:
    trained: the model.
    prepared: the dataset (its class weights give the loss).
    examples: the trees (default: ``prepared.test``).

  Returns:
    ``ap_terminal``, ``map_prototypes``, ``map_all``, ``classes_without_positives``
    (``metrics.trees.ap_summary``), ``loss`` (Eq. 2 per node) and ``nodes``.
  """
  config = trained.config
  examples = prepared.test if examples is None else examples
  test_batches = batches(examples, config, batch_trees=config.eval.batch_trees)
  predict = make_predict_step(trained.model)
  probs, targets = [], []
  for b in test_batches:
    p = jax.nn.sigmoid(predict(trained.params, trained.variables.state, b))
    probs.append(np.asarray(p)[b.node_mask])
    targets.append(b.targets[b.node_mask])
  out = tm.ap_summary(tm.per_class_ap(np.concatenate(probs), np.concatenate(targets)))
  eval_step = make_eval_step(trained.model, metric_fn(*_class_weights(prepared)))
  out["loss"] = evaluate(eval_step, trained.params, trained.variables.state,
                        test_batches)["loss"]
  out["nodes"] = int(sum(int(b.node_mask.sum()) for b in test_batches))
  return out


def _true_tree_facts(examples, k):
  depth = np.asarray([int(e.depth.max()) for e in examples])
  counts = np.zeros((len(examples), k))
  for i, e in enumerate(examples):
    np.add.at(counts[i], e.proto[1:], 1.0)
  return depth, counts


def evaluate_generation(trained: Trained, prepared: PreparedTrees, key: jax.Array) -> dict:
  """Tree generation (Table 2): the prototype threshold tuned on validation by depth MAE, then
  the test metrics from each test root.

  Args:
    trained: the model.
    prepared: the dataset.
    key: the key of the sampled generation (``eval.samples`` trees per root).

  Returns:
    ``depth_mae``, ``hist_intersection``, ``proto_threshold``, ``gen_mean_size``,
    ``gen_mean_depth``, ``val_depth_mae_grid`` and, with samples, ``depth_mae_sampled`` and
    ``hist_intersection_sampled``.
  """
  ec = trained.config.eval
  k = prepared.num_protos
  caps = dict(terminal_threshold=ec.terminal_threshold, max_depth=ec.max_depth,
              max_width=ec.max_width, max_size=ec.max_size)
  proto_x = jnp.asarray(prepared.proto_x)

  def generate(examples, thresholds, keys=None):
    content = jnp.asarray(np.stack([e.content for e in examples]))
    root_x = jnp.asarray(np.stack([e.x[0] for e in examples]))
    return generate_trees(trained.model, trained.params, content, root_x, proto_x, thresholds,
                          keys, **caps)

  v_depth, _ = _true_tree_facts(prepared.val, k)
  maes = [tm.depth_mae_per_depth(np.asarray(generate(
      prepared.val, jnp.full((k,), thr, jnp.float32)).depth), v_depth)
          for thr in ec.threshold_grid]
  best = float(ec.threshold_grid[int(np.nanargmin(maes))])
  t_depth, t_counts = _true_tree_facts(prepared.test, k)
  g = generate(prepared.test, jnp.full((k,), best, jnp.float32))
  out = {"depth_mae": tm.depth_mae_per_depth(np.asarray(g.depth), t_depth),
         "hist_intersection": tm.mean_histogram_intersection(
             np.asarray(g.proto_counts), t_counts, prepared.hist_feats),
         "proto_threshold": best, "gen_mean_size": float(np.mean(np.asarray(g.size))),
         "gen_mean_depth": float(np.mean(np.asarray(g.depth))),
         "val_depth_mae_grid": [round(float(m), 4) for m in maes]}
  if ec.samples:
    gs = generate(prepared.test, jnp.zeros((k,), jnp.float32),
                  jax.random.split(key, ec.samples))
    out["depth_mae_sampled"] = float(np.mean([tm.depth_mae_per_depth(d, t_depth)
                                              for d in np.asarray(gs.depth)]))
    out["hist_intersection_sampled"] = float(np.mean([
        tm.mean_histogram_intersection(c, t_counts, prepared.hist_feats)
        for c in np.asarray(gs.proto_counts)]))
  return out


def _row(trained: Trained, prepared: PreparedTrees, name: str) -> dict:
  nodes = evaluate_nodes(trained, prepared)
  gen = evaluate_generation(trained, prepared, jax.random.key(trained.config.train.seed + 1))
  info = trained.info
  row = {"dataset": prepared.name, "model": name, "variant": trained.config.model.variant,
         "ap_terminal": nodes["ap_terminal"], "map_prototypes": nodes["map_prototypes"],
         "map_all": nodes["map_all"], "depth_mae": gen["depth_mae"],
         "hist_intersection": gen["hist_intersection"], "test_loss": nodes["loss"],
         "test_nodes": nodes["nodes"],
         "classes_without_positives": nodes["classes_without_positives"],
         "epochs": info["epochs"], "train_seconds": info["train_seconds"],
         **{k: v for k, v in gen.items() if k not in ("depth_mae", "hist_intersection")}}
  if "history" in info:
    row["val_loss_by_epoch"] = [round(r["val_loss"], 5) for r in info["history"]]
  return row


def _folder_name(name: str) -> str:
  """A dataset's name as one folder name: a preset as it is, a path with its separators
  replaced (``/data/my trees.csv`` -> ``data_my_trees.csv``), never a path outside the workdir."""
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"


def run(configs: TreePredictionConfig | str | Sequence[TreePredictionConfig | str], *,
        prepared: PreparedTrees | None = None, workdir: str | os.PathLike | None = None,
        progress: bool = False) -> list[dict]:
  """Trains and tests each config; returns one result row per config, in order.

  Configs with the same ``data`` share one prepared dataset (prepared once, in the order they
  first appear).

  Args:
    configs: a config, a named config (``configs.CONFIGS``), or a list of them.
    prepared: an already prepared dataset to use for every config (its ``data`` is not read).
    workdir: where checkpoints and ``metrics.jsonl`` go, under ``<dataset>/<model>`` (a path's
      separators replaced by ``_``)
      (default: a temporary directory, removed afterwards). The same workdir again resumes.
    progress: progress bars.

  Returns:
    Rows with ``dataset``, ``model`` (``configs.row_label``), ``variant``, ``ap_terminal``,
    ``map_prototypes``, ``map_all`` (Table 1), ``depth_mae``, ``hist_intersection``
    (Table 2), ``test_loss``, ``test_nodes``, ``classes_without_positives``, ``epochs``,
    ``train_seconds``, ``proto_threshold``, ``gen_mean_size``, ``gen_mean_depth``,
    ``val_depth_mae_grid``, with samples ``depth_mae_sampled`` and
    ``hist_intersection_sampled``, and for trained models ``val_loss_by_epoch``.
  """
  if isinstance(configs, (str, TreePredictionConfig)):
    configs = [configs]
  configs = [get_config(c) if isinstance(c, str) else c for c in configs]
  tmp = None
  if workdir is None:
    tmp = tempfile.TemporaryDirectory()
    workdir = tmp.name
  datasets: dict = {}
  rows = []
  try:
    for config in configs:
      data = prepared
      if data is None:
        if config.data not in datasets:
          datasets[config.data] = prepare(config.data)
        data = datasets[config.data]
      name = row_label(config)
      trained = train(data, config, pathlib.Path(workdir) / _folder_name(data.name),
                      progress=progress)
      rows.append(_row(trained, data, name))
  finally:
    if tmp is not None:
      tmp.cleanup()
  return rows


TABLE_COLUMNS = ("dataset", "model", "ap_terminal", "map_prototypes", "map_all", "depth_mae",
                 "hist_intersection", "epochs")
METRICS = ("ap_terminal", "map_prototypes", "map_all", "depth_mae", "hist_intersection",
           "test_loss")


def main(config: TreePredictionConfig, *, workdir: str | pathlib.Path, progress: bool = True,
         name: str | None = None, overwrite: bool = False, resume: bool = False) -> list[dict]:
  """``popdiff train``: prepares ``config.data``, trains and tests; writes ``results.json``."""
  prepared = prepare(config.data)
  label = row_label(config)
  trained = train(prepared, config, workdir, progress=progress, name=label,
                  overwrite=overwrite, resume=resume)
  rows = [_row(trained, prepared, label)]
  (pathlib.Path(workdir) / "results.json").write_text(json.dumps(rows, indent=1, default=float))
  return rows


def seed_mean(rows: Sequence[dict], seeds: Sequence[int]) -> dict:
  """One row from the rows of several seeds: the metrics' mean with ``<metric>_std`` (population
  standard deviation) and ``seeds``; the other fields from the first row."""
  out = dict(rows[0])
  for key in METRICS:
    values = [r[key] for r in rows if r.get(key) is not None]
    if values:
      out[key] = float(np.mean(values))
      out[f"{key}_std"] = float(np.std(values))
  out["seeds"] = list(seeds)
  return out


def reproduce_main(args: Sequence[str], progress: bool = True) -> int:
  """The ``popdiff reproduce diffusion-lstm`` command (options from ``configs.ReproduceConfig``)."""
  import tyro

  from popdiff_jax.projects.diffusion_lstm import configs as C
  from popdiff_jax.results import read_results, run_metadata, write_results
  from popdiff_jax.utils.report import format_table

  opts = tyro.cli(C.ReproduceConfig, args=list(args), prog="popdiff reproduce diffusion-lstm",
                  description=C.ReproduceConfig.__doc__.splitlines()[0])
  train_over = {f.name: getattr(opts.train, f.name) for f in dataclasses.fields(opts.train)
                if getattr(opts.train, f.name) != getattr(C.TrainConfig(), f.name)}
  eval_over = {f.name: getattr(opts.eval, f.name) for f in dataclasses.fields(opts.eval)
               if getattr(opts.eval, f.name) != getattr(C.EvalConfig(), f.name)}
  meta = run_metadata("diffusion_lstm", config=dataclasses.asdict(opts),
                      paper_table1_full_model={"ap_terminal": 0.932, "map_prototypes": 0.214,
                                               "map_all": 0.221},
                      paper_table2_full_model={"depth_mae": 1.85, "hist_intersection": 0.708})
  out = pathlib.Path(opts.out) if opts.out else None
  kept = []
  if out is not None and out.exists():
    _, old = read_results(out)
    kept = [r for r in old if r["dataset"] not in opts.datasets]
  rows = []
  for dataset in opts.datasets:
    prepared = None
    for name in opts.configs:
      per_seed = []
      for seed in opts.seeds:
        cfg = C.get_config(name)
        if dataset == "twitter15":
          cfg = cfg.replace(**C.TWITTER15_CPU)
        if opts.converge:
          cfg = cfg.replace(train=C.CONVERGE)
        cfg = cfg.replace(data={"source": dataset, "data_dir": opts.data_dir},
                          train={**train_over, "seed": seed}, eval=eval_over)
        if prepared is None:
          prepared = prepare(cfg.data)
        (row,) = run(cfg, prepared=prepared, workdir=pathlib.Path(opts.workdir) / f"seed{seed}",
                     progress=progress)
        per_seed.append(row)
      rows.append(seed_mean(per_seed, opts.seeds))
      print(format_table(rows[-1:], TABLE_COLUMNS), flush=True)
      if out is not None:  # after every row: a run cut short keeps the rows it finished
        write_results(out, kept + rows, meta)
  print("\nDiffusion-LSTM (test trees; AP teacher-forced, generation from the test roots)")
  print(format_table(rows, TABLE_COLUMNS))
  return 0
