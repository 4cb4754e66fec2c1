"""NDM's remaining experiments (Yang et al.): NDM+SN (Sec. 5.4), parameter sensitivity (Sec. 5.6,
Fig. 8) and interpretability (Sec. 5.7, Table 4).

* NDM+SN: the first ``d/2 = 32`` of NDM's 64 embedding dimensions are fixed to DeepWalk embeddings
  of the social graph (``social_embedding``), the other 32 are trained
  (``train(..., frozen_embedding=)``). The fixed block is a ``models.ndm.FrozenEmbedding`` behind
  ``stop_gradient``, and the optimiser is wrapped by ``freeze_non_params`` so that it updates
  ``nnx.Param`` leaves only (AdamW's weight decay would otherwise shrink the fixed block, gradient
  or not).
* Sensitivity: one axis at a time from the paper's Lastfm defaults (h = 8, win = 3, d = 64,
  F_init = 0) over ``SENSITIVITY_GRID``, scored by the Monte Carlo F1 protocol.
* Interpretability: squared Frobenius norms of the learned ``W^C_init, W^C_0, W^C_1, W^C_2``
  (``wc_norms``) of an NDM trained with F_init = 1, beside their values at initialisation
  (``initial_wc_norms``).

Choices where the paper is silent (all said again in the README):

* DeepWalk runs on the *whole* social graph (also users who never appear in a cascade: they carry
  paths between cascade users), undirected; a cascade user absent from the graph (many in
  ``topolstm_twitter``), padding and Terminate get a zero fixed block.
* The DeepWalk vectors are scaled by one global factor so that their root-mean-square entry over
  the users in the graph is 1, the scale of the trained block's N(0, 1) initialisation; the geometry
  (angles, relative distances) is unchanged.
* The Monte Carlo F1 here (``evaluate_f1``) is ``experiments.ndm_protocol``'s F1 part (same
  simulator, same truth sets and metrics) without the size MSLE, with the number of runs per cascade
  and the simulator's chunk size as arguments (GPU memory of many parallel runs).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from popdiff_jax.data.cascades import (DATASETS, NUM_SPECIAL, CascadeDataset, dataset_folder,
                                       default_f_init, read_graph)
from popdiff_jax.experiments import next_user
from popdiff_jax.experiments.next_user import NextUserConfig, Trained
from popdiff_jax.metrics.infection import infection_f1, truth_masks
from popdiff_jax.models.deepwalk import DeepWalkConfig, deepwalk
from popdiff_jax.models.ndm import NDM
from popdiff_jax.simulate.sampler import simulate_dataset

# Datasets with a social graph (NDM+SN) and the four of Table 4 (Twitter: FOREST's copy, as in
# ndm_protocol.PAPER_TABLES).
SOCIAL_DATASETS = ("infvae/android", "infvae/christianity", "topolstm_twitter")
NORM_DATASETS = ("ndm/lastfm", "ndm/memetracker", "ndm/irvine", "forest/twitter")

# Sec. 5.6: the paper's base point and the values of Fig. 8, on ndm/lastfm.
SENSITIVITY_DATASET = "ndm/lastfm"
SENSITIVITY_BASE = {"num_heads": 8, "window": 3, "dim": 64, "f_init": 0}
SENSITIVITY_GRID = {"num_heads": (1, 2, 4, 8, 16), "window": (1, 2, 3, 4, 5),
                    "dim": (16, 32, 64, 128), "f_init": (0, 1)}
PARAM_LABELS = {"num_heads": "h", "window": "win", "dim": "d", "f_init": "F_init"}

# Table 4: ||W||_F^2 of the learned projections (F_init = 1 on all four datasets).
PAPER_NORMS = {
    "ndm/lastfm": {"W_init": 32.3, "W_0": 60.0, "W_1": 49.2, "W_2": 49.1},
    "ndm/memetracker": {"W_init": 13.3, "W_0": 16.6, "W_1": 13.3, "W_2": 13.0},
    "ndm/irvine": {"W_init": 13.9, "W_0": 13.9, "W_1": 13.7, "W_2": 13.7},
    "forest/twitter": {"W_init": 130.3, "W_0": 93.6, "W_1": 91.5, "W_2": 91.5},
}


def sensitivity_configs() -> list[dict]:
  """The distinct NDM settings of the sweep: the base point, then one axis changed at a time."""
  out = [dict(SENSITIVITY_BASE)]
  for param, values in SENSITIVITY_GRID.items():
    for v in values:
      point = dict(SENSITIVITY_BASE, **{param: v})
      if point not in out:
        out.append(point)
  return out


def sensitivity_rows(results: list[dict]) -> list[dict]:
  """Fig. 8's rows ``(param, value, ...)`` from results that carry their settings.

  Args:
    results: dicts with the four setting keys (``num_heads``, ``window``, ``dim``, ``f_init``) and
      the scores; the base run serves every axis.

  Returns:
    One row per (axis, value) found, with ``param`` the paper's symbol and ``value``.
  """
  rows = []
  for param, values in SENSITIVITY_GRID.items():
    for v in values:
      point = dict(SENSITIVITY_BASE, **{param: v})
      for r in results:
        if all(r.get(k) == point[k] for k in point):
          rows.append({"param": PARAM_LABELS[param], "value": v, **r})
          break
  return rows


# ---------------------------------------------------------------------------------- social graph


def social_graph(name: str, data_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
  """The whole social graph of a dataset, over all its users (not only those in cascades).

  Returns:
    ``(edges int32 [E, 2], names)``: node ``i`` is the user named ``names[i]``.

  Raises:
    ValueError: the dataset has no graph.
  """
  spec = DATASETS[name]
  if not spec.graph:
    raise ValueError(f"dataset {name!r} has no social graph")
  pairs = read_graph(dataset_folder(name, data_dir) / spec.graph, spec.graph_header)
  index: dict[str, int] = {}
  edges = np.array([[index.setdefault(u, len(index)), index.setdefault(v, len(index))]
                    for u, v in pairs], np.int32).reshape(-1, 2)
  return edges, list(index)


def social_embedding(dataset: CascadeDataset, data_dir: str | None = None,
                     config: DeepWalkConfig = DeepWalkConfig()) -> tuple[np.ndarray, dict]:
  """DeepWalk vectors of the dataset's social graph as a table over its vocabulary.

  Args:
    dataset: a dataset with a graph (``SOCIAL_DATASETS``).
    data_dir: where its files are.
    config: DeepWalk's settings (``dim`` is the size of the fixed block, 32 in the paper).

  Returns:
    ``(table float32 [U, dim], info)``: row ``i`` is vocabulary index ``i``'s vector scaled to unit
    RMS over the users in the graph; zeros for users outside the graph, padding and Terminate.
    ``info`` counts the graph and the vocabulary users it covers, and DeepWalk's loss.
  """
  t0 = time.perf_counter()
  edges, names = social_graph(dataset.name, data_dir)
  vectors, (loss_first, loss_last) = deepwalk(edges, len(names), config, return_loss=True)
  rows = np.array([dataset.vocab.index(n) if n in dataset.vocab else -1 for n in names])
  inside = rows >= 0
  table = np.zeros((len(dataset.vocab), config.dim), np.float32)
  table[rows[inside]] = vectors[inside]
  covered = table[NUM_SPECIAL:][np.any(table[NUM_SPECIAL:] != 0, axis=1)]
  rms = float(np.sqrt(np.mean(covered ** 2))) if covered.size else 1.0
  table /= max(rms, 1e-12)
  users = len(dataset.vocab) - NUM_SPECIAL
  info = {"graph_nodes": len(names), "graph_edges": int(len(edges)),
          "users_in_graph": int(inside.sum()), "users": users,
          "user_coverage": round(float(inside.sum()) / max(users, 1), 4),
          "deepwalk_loss_first": round(loss_first, 4), "deepwalk_loss_last": round(loss_last, 4),
          "deepwalk_seconds": round(time.perf_counter() - t0, 2),
          "deepwalk": dataclasses.asdict(config)}
  return table, info


# --------------------------------------------------------------------------------------- training


def freeze_non_params(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """``tx`` on the ``nnx.Param`` leaves of an ``nnx.State``; every other variable gets a zero
  update (and no optimiser state)."""

  def labels(params):
    return jax.tree.map(lambda v: "train" if isinstance(v, nnx.Param) else "frozen", params,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))

  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def build_ndm(config: NextUserConfig, num_items: int, f_init: int,
              frozen_embedding: np.ndarray | None = None) -> NDM:
  """``next_user.build_model`` for NDM, with the optional fixed embedding block."""
  if config.model != "ndm":
    raise ValueError(f"NDM+SN needs model='ndm', got {config.model!r}")
  return NDM(num_items, dim=config.dim, num_heads=config.num_heads, window=config.window,
             f_init=f_init, dropout_rate=config.dropout_rate,
             embedding_dropout=config.embedding_dropout,
             frozen_embedding=None if frozen_embedding is None else jnp.asarray(frozen_embedding),
             rngs=nnx.Rngs(params=config.seed))


def train(dataset: CascadeDataset, config: NextUserConfig,
          workdir: str | pathlib.Path | None = None, *, frozen_embedding: np.ndarray | None = None,
          progress: bool = True) -> Trained:
  """``next_user.train`` of NDM with an optional fixed embedding block (NDM+SN).

  The same loop, loss, batches, optimiser and options as ``next_user.train`` (one device only), on
  the model of ``build_ndm``; the optimiser is wrapped by ``freeze_non_params`` (a no-op without a
  fixed block). No ``config.json`` is written: ``next_user.load_trained`` cannot rebuild the fixed
  block, so score the model in the same process.

  Args:
    dataset: the data.
    config: an NDM config (``f_init=None`` takes the dataset's default).
    workdir: checkpoints (a rerun resumes); a fresh temporary folder if None.
    frozen_embedding: float [U, f] fixed first ``f`` embedding dimensions, or None for plain NDM.
    progress: progress bars.

  Returns:
    The trained model (epoch kept by validation ``config.select_by``); ``params`` holds the fixed
    block too.
  """
  if config.num_devices != 1 or config.model_parallel != 1:
    raise ValueError("ndm_extras.train runs on one device (num_devices = model_parallel = 1)")
  f_init = default_f_init(dataset.name) if config.f_init is None else config.f_init
  model = build_ndm(config, len(dataset.vocab), f_init, frozen_embedding)
  desc = f"ndm{'+sn' if frozen_embedding is not None else ''} {dataset.name}"
  return next_user.train(dataset, config, workdir, progress=progress, model=model,
                         wrap_optimizer=freeze_non_params, desc=desc)


# --------------------------------------------------------------------------------------- evaluation


def evaluate_f1(dataset: CascadeDataset, trained: Trained, *, runs: int, first_k: int | None = None,
                seed: int = 0, max_rows: int = 2 ** 15, progress: bool = False) -> dict:
  """NDM's Monte Carlo identification F1 (Tables 2-3) on the test split.

  Given ``u_0`` of each test cascade (cut to ``max_len``), ``runs`` simulations each infect at most
  ``|G|`` users (``first_k=5``: at most five, with ``G`` the next five users: the early stage).

  Args:
    dataset: the data.
    trained: an NDM (or LSTM) from ``train`` / ``next_user.train``.
    runs: Monte Carlo runs per cascade (paper: 1000).
    first_k: None for Table 2, 5 for Table 3.
    seed: the simulations' seed (``ndm_protocol`` folds in 0 for the full and 1 for the early F1).
    max_rows: runs advanced together (bounds the decoding cache: ``max_rows x h x L x d``).
    progress: a progress bar.

  Returns:
    ``macro_f1``, ``micro_f1`` (suffixed ``_first5`` for ``first_k=5``), ``scored_cascades``,
    ``seconds``.
  """
  t0 = time.perf_counter()
  max_len = trained.config.max_len
  num_items = len(dataset.vocab)
  cut = [c._replace(users=c.users[:max_len], times=c.times[:max_len])
         for c in dataset.test if len(c.users) >= 2]
  budgets = [len(c.users) - 1 if first_k is None else min(first_k, len(c.users) - 1) for c in cut]
  key = jax.random.fold_in(jax.random.key(seed), 0 if first_k is None else 1)
  freq, _ = simulate_dataset(trained.graphdef, trained.params, cut, num_given=1, budgets=budgets,
                             num_runs=runs, key=key, num_items=num_items, max_rows=max_rows,
                             progress=progress, desc=f"F1 {dataset.name}")
  truth, exclude = truth_masks(cut, num_items, num_given=1, first_k=first_k)
  scores = infection_f1(freq, truth, exclude)
  suffix = "" if first_k is None else f"_first{first_k}"
  return {f"macro_f1{suffix}": float(scores.macro_f1), f"micro_f1{suffix}": float(scores.micro_f1),
          f"scored_cascades{suffix}": int(np.asarray(scores.scored).sum()),
          f"f1_seconds{suffix}": round(time.perf_counter() - t0, 1)}


def wc_norms(params: Any) -> dict[str, float]:
  """Table 4: ``||W||_F^2`` of ``W^C_init`` (if F_init = 1) and of ``W^C_n``, n < win.

  Args:
    params: a trained NDM's state (``Trained.params``).

  Returns:
    ``W_init`` (absent without F_init) and ``W_0 .. W_{win-1}``.
  """
  w_c = np.asarray(params["w_c"][...], np.float64)  # [win, d, U]
  out = {f"W_{n}": float(np.sum(w_c[n] ** 2)) for n in range(w_c.shape[0])}
  if "w_c_init" in params:
    out = {"W_init": float(np.sum(np.asarray(params["w_c_init"][...], np.float64) ** 2)), **out}
  return out


def initial_wc_norms(config: NextUserConfig, num_items: int, f_init: int) -> dict[str, float]:
  """``wc_norms`` of a freshly initialised NDM (same seed as ``train``): the baseline of Table 4.

  Glorot initialisation gives ``W^C_n`` (one [win, d, U] array) a variance of ``2 / (win (d + U))``
  and ``W^C_init`` (a [d, U] array) ``2 / (d + U)``, so ``W^C_init`` starts ``win`` times larger
  (the authors' PyTorch Conv1d and Linear defaults differ the same way); compare the learned norms
  with these.
  """
  _, params = nnx.split(build_ndm(config, num_items, f_init))
  return wc_norms(params)
