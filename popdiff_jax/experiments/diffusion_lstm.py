"""Diffusion-LSTM experiments: data preparation, training, teacher-forced evaluation, generation.

Protocol (Hu et al. 2018, Sec. 4): trees split 6:1:1 at random (seeded); users mapped to k = 100
prototypes by k-means++ on training users' features, unseen users to the nearest centroid; SGD with
learning rate 0.2, lowered to 0.02 when the validation loss stops falling (here: two calls of the
shared ``fit`` loop, the second from the best parameters of the first, each stopping after
``patience`` epochs without improvement of the validation loss); per-node AP teacher-forced on
the test trees (Table 1 columns); generation from each test root with prototype thresholds tuned
on validation trees by depth MAE (one threshold shared by all prototypes, chosen on a grid:
the paper does not say whether thresholds are per class), terminal threshold 0.5, caps depth 10,
width 100, size 150 (Table 2 columns).

A node's input is its prototype's feature (the centroid, i.e. the members' mean feature, Sec. 3.1):
the model works on prototype users, exactly as in generation, where children are prototypes.
(Feeding each user's own feature instead let the FC baseline memorise users: on the synthetic set
it overfitted to chance-level test mAP while a lookup by prototype reached 0.055.)

Datasets:
  * ``"twitter15"``: the public Twitter15 propagation trees with behavioural user features and
    root content features (:mod:`popdiff_jax.data.user_features`); histogram intersection over
    the prototype histogram of non-root nodes (no categories exist).
  * ``"synthetic"``: :mod:`popdiff_jax.data.synthetic_trees`; users' social features as in the
    paper (k-means over training users); HI over the mean category distribution (the paper's).

Models: ``"Diffusion-LSTM"``, ``"social-only"``, ``"content-only"``, ``"FC"``, ``"random"`` (the
full model at its random initialisation, never trained).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popdiff_jax._errors import DataError
from popdiff_jax.data.cascades import resolve_data_dir
from popdiff_jax.data import synthetic_trees as syn
from popdiff_jax.data import trees as tr
from popdiff_jax.data import user_features as uf
from popdiff_jax.metrics import trees as tm
from popdiff_jax.models import diffusion_lstm as dl
from popdiff_jax.train.loop import fit
from popdiff_jax.train.parallel import fit_arguments
from popdiff_jax.train.state import TrainState, apply_gradients, create_train_state

__all__ = ["DiffusionLSTMConfig", "PreparedTrees", "MODELS", "prepare_twitter15",
           "prepare_synthetic", "prepare", "make_train_step", "make_eval_fn", "evaluate_nodes",
           "evaluate_generation", "train_model", "run", "split_indices"]

MODELS = {"Diffusion-LSTM": "full", "social-only": "social", "content-only": "content",
          "FC": "fc", "random": "full"}


@dataclasses.dataclass(frozen=True)
class DiffusionLSTMConfig:
  """One experiment's settings (paper defaults where the paper gives them).

  ``python benchmarks/diffusion_lstm.py`` runs both datasets with the CPU-sized overrides it
  prints; :meth:`tiny` is the test configuration.

  ``num_devices`` (not in the paper): data parallelism of training over that many devices (0 =
  all) through ``train.parallel.fit_arguments``: the arrays of each ``TreeBatch`` are split over
  the devices along their leading axis (node slots, tree slots) where it divides, else
  replicated; the state is replicated and the compiler inserts the communication (a node's
  parent state may live on another device) and the gradient all-reduce, so the steps equal the
  one-device steps up to float rounding. Tree batches are never padded (their node axis is
  ``K * C`` chunks); evaluation and generation run on the replicated parameters.
  """
  num_protos: int = 100
  hidden: int = 128
  head_hidden: int = 128
  dropout: float = 0.5
  optimizer: str = "sgd"
  lr: float = 0.2
  lr_low: float = 0.02
  epochs_high: int = 30
  epochs_low: int = 30
  patience: int = 3
  batch_trees: int = 16
  chunk: int = 512
  buckets: tuple = (8, 16, 32, 64)
  eval_batch_trees: int = 32
  seed: int = 0
  kmeans_iters: int = 30
  kmeans_max_points: int = 200_000
  max_depth: int = 10
  max_width: int = 100
  max_size: int = 150
  threshold_grid: tuple = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
  gen_samples: int = 0
  max_trees: int | None = None
  num_devices: int = 1

  @staticmethod
  def tiny(**kw) -> "DiffusionLSTMConfig":
    base = dict(num_protos=8, hidden=16, head_hidden=16, dropout=0.1, epochs_high=3, epochs_low=2,
                patience=2, batch_trees=32, chunk=64, buckets=(4, 8, 16, 32), eval_batch_trees=64,
                kmeans_iters=10, threshold_grid=(0.3, 0.5, 0.7), gen_samples=2)
    base.update(kw)
    return DiffusionLSTMConfig(**base)


@dataclasses.dataclass
class PreparedTrees:
  """A dataset ready for the model (host NumPy).

  Attributes:
    name: dataset name.
    train, val, test: lists of TreeExample.
    proto_x: (k, D) float32 prototype features (centroids: members' mean feature).
    hist_feats: (k, F_h) float32 histogram feature of each prototype (rows sum to 1).
    pos_counts, neg_counts: (k + 1,) training target counts for the Eq. 2 weights.
    info: dict of provenance and counts (cleaning report, split sizes, tree statistics).
  """
  name: str
  train: list
  val: list
  test: list
  proto_x: np.ndarray
  hist_feats: np.ndarray
  pos_counts: np.ndarray
  neg_counts: np.ndarray
  info: dict


def split_indices(n: int, seed: int, ratios=(6, 1, 1)) -> tuple[np.ndarray, ...]:
  """A seeded random split of n items in the paper's 6:1:1 ratio."""
  perm = np.random.default_rng(seed).permutation(n)
  tot = sum(ratios)
  a = int(round(n * ratios[0] / tot))
  b = a + int(round(n * ratios[1] / tot))
  return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def _target_counts(examples, k):
  pos = np.zeros(k + 1)
  n = 0
  for e in examples:
    pos += tr.node_targets(e.parent, e.proto, k).sum(0)
    n += e.parent.shape[0]
  return pos, n - pos


def _tree_summary(trees) -> dict:
  st = [tr.tree_stats(t) for t in trees]
  return {k: round(float(np.mean([s[k] for s in st])), 3) for k in ("size", "width", "depth")}


def prepare_twitter15(data_dir: str | os.PathLike, cfg: DiffusionLSTMConfig) -> PreparedTrees:
  """Twitter15 trees from ``data_dir/twitter15_tree.tar.gz`` (and ``twitter15/label.txt``)."""
  data_dir = pathlib.Path(data_dir)
  trees, report = tr.read_twitter15(data_dir / "twitter15_tree.tar.gz",
                                    label_path=(data_dir / "twitter15" / "label.txt"
                                                if (data_dir / "twitter15" / "label.txt").exists()
                                                else None),
                                    max_trees=cfg.max_trees)
  i_tr, i_va, i_te = split_indices(len(trees), cfg.seed)
  train = [trees[i] for i in i_tr]
  table = uf.fit_behaviour(train)
  feats = [uf.behaviour_features(t, table) for t in trees]
  x_train = np.concatenate([feats[i] for i in i_tr])
  rng = np.random.default_rng(cfg.seed)
  pts = x_train if x_train.shape[0] <= cfg.kmeans_max_points else \
      x_train[rng.choice(x_train.shape[0], cfg.kmeans_max_points, replace=False)]
  km = uf.kmeans(jax.random.key(cfg.seed), pts, cfg.num_protos, iters=cfg.kmeans_iters)
  cents = np.asarray(km.centroids)
  # One nearest-centroid pass over all nodes (one compile), split back per tree.
  sizes = np.asarray([f.shape[0] for f in feats])
  protos = np.split(np.asarray(uf.nearest_centroid(jnp.asarray(np.concatenate(feats)),
                                                   km.centroids)).astype(np.int32),
                    np.cumsum(sizes)[:-1])
  content = uf.twitter_content_features(trees)
  mu, sd = content[i_tr].mean(0), content[i_tr].std(0)
  content = (content - mu) / np.where(sd > 0, sd, 1.0)
  examples = []
  for t, proto, c in zip(trees, protos, content):
    examples.append(tr.TreeExample(t.name, t.parent, t.depth, cents[proto].astype(np.float32),
                                   proto, c.astype(np.float32)))
  tr_ex = [examples[i] for i in i_tr]
  pos, neg = _target_counts(tr_ex, cfg.num_protos)
  info = {"cleaning": report.as_dict(), "trees": len(trees),
          "split": [len(i_tr), len(i_va), len(i_te)], "tree_stats": _tree_summary(trees),
          "feature_columns": list(uf.BEHAVIOUR_COLUMNS), "kmeans_points": int(pts.shape[0]),
          "kmeans_inertia": float(km.inertia),
          "test_nodes_with_user_history": float(np.mean(np.concatenate(
              [feats[i][:, 0] > 0 for i in i_te]))),
          "histogram": "prototype histogram of non-root nodes"}
  return PreparedTrees("twitter15", tr_ex, [examples[i] for i in i_va],
                       [examples[i] for i in i_te], cents.astype(np.float32),
                       np.eye(cfg.num_protos, dtype=np.float32), pos, neg, info)


def prepare_synthetic(cfg: DiffusionLSTMConfig,
                      gen: syn.SyntheticTreesConfig = syn.SyntheticTreesConfig()) -> PreparedTrees:
  """The synthetic Pinterest-like set; prototypes from k-means over users seen in training."""
  data = syn.make_synthetic_trees(gen)
  trees = data.trees
  i_tr, i_va, i_te = split_indices(len(trees), cfg.seed)
  seen = np.unique(np.concatenate([trees[i].user.astype(np.int64) for i in i_tr]))
  km = uf.kmeans(jax.random.key(cfg.seed), data.social[seen], cfg.num_protos,
                 iters=cfg.kmeans_iters)
  cents = np.asarray(km.centroids).astype(np.float32)
  user_proto = np.asarray(uf.nearest_centroid(jnp.asarray(data.social), km.centroids))
  # A prototype's histogram feature: its training members' mean category distribution.
  hist = np.zeros((cfg.num_protos, data.category_dist.shape[1]))
  np.add.at(hist, user_proto[seen], data.category_dist[seen])
  hist = hist / np.maximum(hist.sum(1, keepdims=True), 1e-12)
  examples = []
  for t, c in zip(trees, data.content):
    u = t.user.astype(np.int64)
    examples.append(tr.TreeExample(t.name, t.parent, t.depth, cents[user_proto[u]],
                                   user_proto[u].astype(np.int32), c))
  tr_ex = [examples[i] for i in i_tr]
  pos, neg = _target_counts(tr_ex, cfg.num_protos)
  info = {"trees": len(trees), "split": [len(i_tr), len(i_va), len(i_te)],
          "tree_stats": _tree_summary(trees), "generator": dataclasses.asdict(gen),
          "histogram": "mean category distribution of non-root nodes"}
  return PreparedTrees("synthetic", tr_ex, [examples[i] for i in i_va],
                       [examples[i] for i in i_te], cents, hist.astype(np.float32), pos, neg, info)


def prepare(dataset: str, cfg: DiffusionLSTMConfig, data_dir: str | None = None) -> PreparedTrees:
  """Dispatch on the dataset name (``"twitter15"`` or ``"synthetic"``)."""
  if dataset == "twitter15":
    if data_dir is None:
      root = resolve_data_dir(None)
      if root is None:
        raise DataError("Twitter15 trees are not shipped with the package; pass data_dir= (or set "
                        "POPDIFF_DATA_DIR) to the folder holding twitter15_16_trees/")
      data_dir = root / "twitter15_16_trees"
    return prepare_twitter15(data_dir, cfg)
  if dataset == "synthetic":
    return prepare_synthetic(cfg)
  raise ValueError(f"unknown dataset {dataset!r}")


# ------------------------------------------------------------------------------------------------
# Steps.


def make_train_step(graphdef, tx: optax.GradientTransformation, w_pos: jax.Array,
                    w_neg: jax.Array, jit: bool = True):
  """The pure jitted ``train_step(state, batch, key) -> (state, metrics)`` (Eq. 2 loss); un-jitted
  with ``jit=False`` (for ``train.parallel``).

  Not donated: the shared ``fit`` loop keeps references to the best parameters between steps.
  """

  def train_step(state: TrainState, batch: tr.TreeBatch, key: jax.Array):
    def loss_fn(params):
      logits = dl.apply_model(graphdef, params, batch, key)
      return dl.weighted_bce(logits, batch.targets, batch.node_mask, w_pos, w_neg)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return apply_gradients(state, grads, tx), {"loss": loss}

  return jax.jit(train_step) if jit else train_step


def make_eval_fn(graphdef, w_pos: jax.Array, w_neg: jax.Array):
  """Jitted ``eval_step(params, batch) -> (probs (N, k+1), loss_sum, node_count)``, no dropout."""

  @jax.jit
  def eval_step(params, batch: tr.TreeBatch):
    logits = dl.apply_model(graphdef, params, batch, None)
    n = batch.node_mask.sum()
    loss = dl.weighted_bce(logits, batch.targets, batch.node_mask, w_pos, w_neg)
    return jax.nn.sigmoid(logits), loss * jnp.maximum(n, 1).astype(loss.dtype), n

  return eval_step


def _batches(examples, cfg: DiffusionLSTMConfig, k: int, *, batch_trees: int,
             order: np.ndarray | None = None) -> list[tr.TreeBatch]:
  ex = list(examples) if order is None else [examples[i] for i in order]
  return tr.bucket_tree_batches(ex, num_protos=k, batch_trees=batch_trees, chunk=cfg.chunk,
                                buckets=cfg.buckets)


def evaluate_nodes(eval_step, params, batches: Sequence[tr.TreeBatch]) -> dict:
  """Teacher-forced per-node evaluation: loss and the Table 1 AP columns over all real nodes."""
  probs, tgts, loss_sum, n_sum = [], [], 0.0, 0
  for b in batches:
    p, ls, n = eval_step(params, b)
    m = b.node_mask
    probs.append(np.asarray(p)[m])
    tgts.append(b.targets[m])
    loss_sum += float(ls)
    n_sum += int(n)
  ap = tm.per_class_ap(np.concatenate(probs), np.concatenate(tgts))
  out = tm.ap_summary(ap)
  out["loss"] = loss_sum / max(n_sum, 1)
  out["nodes"] = n_sum
  return out


def _true_tree_facts(examples, k):
  depth = np.asarray([int(e.depth.max()) for e in examples])
  counts = np.zeros((len(examples), k))
  for i, e in enumerate(examples):
    np.add.at(counts[i], e.proto[1:], 1.0)
  return depth, counts


def evaluate_generation(graphdef, params, prepared: PreparedTrees, cfg: DiffusionLSTMConfig,
                        key: jax.Array) -> dict:
  """Tree generation (Table 2): threshold tuned on validation by depth MAE, then test metrics."""
  k = cfg.num_protos
  gen_kw = dict(max_depth=cfg.max_depth, max_width=cfg.max_width, max_size=cfg.max_size)
  proto_x = jnp.asarray(prepared.proto_x)

  @jax.jit
  def gen(params, content, root_x, thr):
    return dl.generate_trees(graphdef, params, content, root_x, proto_x, thr, **gen_kw)

  @jax.jit
  def gen_sampled(params, content, root_x, keys):
    return dl.generate_trees(graphdef, params, content, root_x, proto_x,
                             jnp.zeros((k,), jnp.float32), keys=keys, **gen_kw)

  def roots(examples):
    return (jnp.asarray(np.stack([e.content for e in examples])),
            jnp.asarray(np.stack([e.x[0] for e in examples])))

  v_content, v_root = roots(prepared.val)
  v_depth, _ = _true_tree_facts(prepared.val, k)
  maes = []
  for thr in cfg.threshold_grid:
    g = gen(params, v_content, v_root, jnp.full((k,), thr, jnp.float32))
    maes.append(tm.depth_mae_per_depth(np.asarray(g.depth), v_depth))
  best = float(cfg.threshold_grid[int(np.nanargmin(maes))])
  t_content, t_root = roots(prepared.test)
  t_depth, t_counts = _true_tree_facts(prepared.test, k)
  g = gen(params, t_content, t_root, jnp.full((k,), best, jnp.float32))
  out = {"depth_mae": tm.depth_mae_per_depth(np.asarray(g.depth), t_depth),
         "hist_intersection": tm.mean_histogram_intersection(
             np.asarray(g.proto_counts), t_counts, prepared.hist_feats),
         "proto_threshold": best, "gen_mean_size": float(np.mean(np.asarray(g.size))),
         "gen_mean_depth": float(np.mean(np.asarray(g.depth))),
         "val_depth_mae_grid": [round(float(m), 4) for m in maes]}
  if cfg.gen_samples:
    gs = gen_sampled(params, t_content, t_root, jax.random.split(key, cfg.gen_samples))
    out["depth_mae_sampled"] = float(np.mean([tm.depth_mae_per_depth(d, t_depth)
                                              for d in np.asarray(gs.depth)]))
    out["hist_intersection_sampled"] = float(np.mean([
        tm.mean_histogram_intersection(c, t_counts, prepared.hist_feats)
        for c in np.asarray(gs.proto_counts)]))
  return out


def train_model(prepared: PreparedTrees, variant: str, cfg: DiffusionLSTMConfig, *,
                workdir: str | os.PathLike, train: bool = True, progress: bool = False):
  """Initialises (and with ``train`` trains) one model; returns (graphdef, params, info)."""
  k = cfg.num_protos
  key = jax.random.key(cfg.seed)
  k_init, k_fit1, k_fit2 = jax.random.split(key, 3)
  ex0 = prepared.train[0]
  graphdef, params = dl.init_model(k_init, input_dim=ex0.x.shape[1],
                                   content_dim=ex0.content.shape[0], num_protos=k,
                                   variant=variant, hidden=cfg.hidden,
                                   head_hidden=cfg.head_hidden, dropout_rate=cfg.dropout)
  w_pos, w_neg = dl.class_weights(prepared.pos_counts, prepared.neg_counts)
  eval_step = make_eval_fn(graphdef, w_pos, w_neg)
  val_batches = _batches(prepared.val, cfg, k, batch_trees=cfg.eval_batch_trees)
  info = {"epochs": 0, "train_seconds": 0.0}
  if not train:
    return graphdef, params, info

  def train_batches(epoch):
    order = np.random.default_rng((cfg.seed, epoch)).permutation(len(prepared.train))
    return _batches(prepared.train, cfg, k, batch_trees=cfg.batch_trees, order=order)

  def evaluate(state):
    out = {"loss": 0.0}
    loss_sum, n_sum = 0.0, 0
    for b in val_batches:
      _, ls, n = eval_step(state.params, b)
      loss_sum += float(ls)
      n_sum += int(n)
    out["loss"] = loss_sum / max(n_sum, 1)
    return out

  t0 = time.perf_counter()
  history = []
  state = None
  for phase, (lr, epochs, kf) in enumerate(((cfg.lr, cfg.epochs_high, k_fit1),
                                            (cfg.lr_low, cfg.epochs_low, k_fit2))):
    if epochs <= 0:
      continue
    tx = optax.sgd(lr) if cfg.optimizer == "sgd" else optax.adam(lr)
    step = make_train_step(graphdef, tx, w_pos, w_neg, jit=False)
    state = create_train_state(params if state is None else state.params, tx)
    state, step_args = fit_arguments(step, state, cfg.num_devices)
    res = fit(state, **step_args, train_batches=train_batches, evaluate=evaluate,
              workdir=pathlib.Path(workdir) / f"{variant}_phase{phase}_lr{lr}",
              num_epochs=epochs, base_key=kf, monitor="val_loss", mode="min",
              patience=cfg.patience, desc=f"{variant} lr={lr}", progress=progress)
    state = res.state
    history += [dict(r, lr=lr) for r in res.history]
  info = {"epochs": len(history), "train_seconds": round(time.perf_counter() - t0, 2),
          "best_val_loss": min(r["val_loss"] for r in history), "history": history}
  return graphdef, state.params, info


def run(dataset: str | PreparedTrees, model: str | Sequence[str] = tuple(MODELS), *,
        cfg: DiffusionLSTMConfig = DiffusionLSTMConfig(), workdir: str | None = None,
        data_dir: str | None = None, progress: bool = False) -> list[dict]:
  """Trains and evaluates models on one dataset; returns one result row per model.

  Args:
    dataset: ``"twitter15"``, ``"synthetic"``, or an already prepared dataset.
    model: a name of MODELS or a list of them.
    cfg: the configuration.
    workdir: where checkpoints and metrics.jsonl go (default: a temporary directory).
    data_dir: Twitter15 folder (default $POPDIFF_DATA_DIR/twitter15_16_trees).
    progress: show progress bars.

  Returns:
    Rows with dataset, model, ap_terminal, map_prototypes, map_all, depth_mae,
    hist_intersection and details (epochs, seconds, threshold, sampled generation).
  """
  prepared = dataset if isinstance(dataset, PreparedTrees) else prepare(dataset, cfg, data_dir)
  models = [model] if isinstance(model, str) else list(model)
  tmp = None
  if workdir is None:
    tmp = tempfile.TemporaryDirectory()
    workdir = tmp.name
  k = cfg.num_protos
  test_batches = _batches(prepared.test, cfg, k, batch_trees=cfg.eval_batch_trees)
  rows = []
  try:
    for name in models:
      variant = MODELS[name]
      graphdef, params, info = train_model(prepared, variant, cfg,
                                           workdir=pathlib.Path(workdir) / prepared.name,
                                           train=name != "random", progress=progress)
      w_pos, w_neg = dl.class_weights(prepared.pos_counts, prepared.neg_counts)
      nodes = evaluate_nodes(make_eval_fn(graphdef, w_pos, w_neg), params, test_batches)
      gen = evaluate_generation(graphdef, params, prepared, cfg, jax.random.key(cfg.seed + 1))
      row = {"dataset": prepared.name, "model": name, "variant": variant,
             "ap_terminal": nodes["ap_terminal"], "map_prototypes": nodes["map_prototypes"],
             "map_all": nodes["map_all"], "depth_mae": gen["depth_mae"],
             "hist_intersection": gen["hist_intersection"], "test_loss": nodes["loss"],
             "test_nodes": nodes["nodes"],
             "classes_without_positives": nodes["classes_without_positives"],
             "epochs": info["epochs"], "train_seconds": info["train_seconds"],
             **{k2: v for k2, v in gen.items() if k2 not in ("depth_mae", "hist_intersection")}}
      if "history" in info:
        row["val_loss_by_epoch"] = [round(r["val_loss"], 5) for r in info["history"]]
      rows.append(row)
  finally:
    if tmp is not None:
      tmp.cleanup()
  return rows
