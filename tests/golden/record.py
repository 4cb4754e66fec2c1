"""Golden recordings: short fixed-seed CPU runs of the current code path, one function per project.

``run_<project>() -> dict`` makes the calls and returns their numbers as plain Python values
(floats, ints, strings and nested lists / dicts); ``RUNNERS`` maps project names to them.

    python tests/golden/record.py [project ...]

writes ``tests/golden/<project>.json`` (all projects when none is named); ``tests/test_golden.py``
calls the same functions and compares every number with those files. See tests/golden/README.md.
Only data shipped in the package (the embedded Irvine set) or generated here (synthetic trees,
synthetic posts, a random graph) is used, never a data directory.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
  # The environment of tests/conftest.py (before JAX initialises its backends), so that the
  # recordings are made under the conditions of the test that checks them.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
PROJECTS = ("ndm", "diffusion_lstm", "popularity", "ic_baselines", "simulate")

# Fields of result rows that are not behaviour: wall times and the device name.
_DROP = {"train_seconds", "simulate_seconds", "seconds", "device"}


# JAX settings of every recording and of its test. Changing any of them changes the numbers (the
# XLA optimisation level does): re-record then.
JAX_SETTINGS = {
    # XLA's backend at optimisation level 0 (no expensive LLVM passes). Compilation is about 85 %
    # of these runs' time and takes a third as long at level 0 (NDM's train step: 2.2 s of CPU
    # against 7.3 s). On this machine (AMD EPYC, XLA 0.10.2 CPU) the ndm and simulate recordings
    # were bit-identical to the default level; diffusion_lstm and ic_baselines differed from it
    # within the test's tolerance (rtol 1e-5, atol 1e-6), the fusion DNN rows of popularity by up
    # to 1.8e-4 (4 epochs amplify a different rounding, e.g. no fused multiply-adds). So the
    # recordings hold this level's numbers, and only this level may be compared with them.
    "jax_disable_most_optimizations": True,
    # The persistent compilation cache (its directory comes from the caller). The recorded calls
    # build new jitted closures for every run, so programs identical to ones compiled a moment
    # before (the eval step of four NDM configurations, the retrained NDM of the protocol, the
    # fusion DNN's five feature studies, the untrained Diffusion-LSTM) would be compiled again.
    # A hit loads the same executable: the numbers do not depend on the cache.
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": -1,
}


def _jax_setting(name: str):
  try:
    return getattr(jax.config, name)
  except AttributeError:  # a flag without a context manager
    return jax.config.read(name)


@contextlib.contextmanager
def recording_environment(cache_dir: str | os.PathLike):
  """What every recording (and its test) runs under: ``JAX_SETTINGS``, the compilation cache in
  ``cache_dir``, and one thread for the native thread pools.

  The optimisation flag is not part of JAX's in-memory compilation caches, so they are cleared
  on entry (no program compiled at the default level by an earlier test is reused) and on exit
  (no later test reuses one compiled here). One native thread (OpenMP, BLAS; threadpoolctl): the
  popularity run's HistGradientBoostingRegressor took 13-26 s with two OpenMP threads on a
  shared 2-core machine against 0.8 s with one, with identical predictions; one thread also
  keeps BLAS reductions in one order. XLA's own thread pool is not affected. The previous
  settings come back when the block ends.
  """
  # threadpoolctl limits the libraries loaded when the block starts: load scikit-learn's OpenMP.
  import sklearn.ensemble  # noqa: F401
  from jax.experimental.compilation_cache import compilation_cache as cc
  from threadpoolctl import threadpool_limits

  settings = dict(JAX_SETTINGS, jax_compilation_cache_dir=str(cache_dir))
  old = {name: _jax_setting(name) for name in settings}
  jax.clear_caches()
  for name, value in settings.items():
    jax.config.update(name, value)
  cc.reset_cache()
  try:
    with threadpool_limits(limits=1):
      yield
  finally:
    for name, value in old.items():
      jax.config.update(name, value)
    cc.reset_cache()
    jax.clear_caches()


def _py(x):
  """Plain JSON-able Python values (floats keep full precision: json writes their repr)."""
  if isinstance(x, dict):
    return {str(k): _py(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_py(v) for v in x]
  if isinstance(x, (str, bool)) or x is None:
    return x
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x)
  a = np.asarray(x)
  if a.dtype == bool:
    return a.tolist()
  if np.issubdtype(a.dtype, np.integer):
    return a.astype(np.int64).tolist()
  return a.astype(np.float64).tolist()


def _clean(row: dict) -> dict:
  """A results row without its timing fields and device name."""
  return {k: _py(v) for k, v in row.items() if k not in _DROP and not k.endswith("_seconds")}


def _counts(freq, runs: int) -> np.ndarray:
  """Monte Carlo frequencies (``count / runs``) back as integer counts (exact, and shorter in
  JSON than float32 values written as float64)."""
  scaled = np.asarray(freq, np.float64) * runs
  counts = np.rint(scaled)
  if np.abs(scaled - counts).max(initial=0.0) > 1e-3:
    raise ValueError(f"frequencies are not multiples of 1/{runs}")
  return counts.astype(np.int64)


def _sparse_counts(freq, runs: int) -> dict:
  """A [C, U] frequency matrix of ``runs`` Monte Carlo runs as counts: its shape, the non-zero
  entries ([[row, column], ...] and their counts) and the row sums."""
  counts = _counts(freq, runs)
  rows, cols = np.nonzero(counts)
  return {"shape": list(counts.shape), "index": _py(np.stack([rows, cols], 1)),
          "count": _py(counts[rows, cols]), "row_sums": _py(counts.sum(1))}


def _count_sums(freq, runs: int) -> dict:
  """A [C, U] frequency matrix of ``runs`` Monte Carlo runs summarised as counts: row sums,
  column sums and the number of non-zero entries."""
  counts = _counts(freq, runs)
  return {"shape": list(counts.shape), "row_sums": _py(counts.sum(1)),
          "column_sums": _py(counts.sum(0)), "nonzero": int(np.count_nonzero(counts))}


def dumps(obj, indent: int = 0) -> str:
  """JSON with dicts one key a line and lists of numbers on one line (floats as repr)."""
  pad = " " * (indent + 1)
  if isinstance(obj, dict):
    if not obj:
      return "{}"
    items = [f"{pad}{json.dumps(k)}: {dumps(obj[k], indent + 1)}" for k in sorted(obj)]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
  if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
    if all(isinstance(v, list) and not any(isinstance(x, (dict, list)) for x in v) for v in obj):
      return "[\n" + ",\n".join(pad + json.dumps(v) for v in obj) + "\n" + " " * indent + "]"
    return ("[\n" + ",\n".join(pad + dumps(v, indent + 1) for v in obj) + "\n"
            + " " * indent + "]")
  return json.dumps(obj)


# ------------------------------------------------------------------------------------------- ndm


def irvine_slice():
  """The embedded Irvine set, read from the package (``data_dir=embedded_root()``, so neither
  ``POPDIFF_DATA_DIR`` nor a ``shared/data`` checkout is consulted), cut to the first 96 train,
  48 valid and 48 test cascades (tests/test_dp_experiments.py's slice: 3 training steps of 32,
  one length bucket at ``max_len`` 7)."""
  from popdiff_jax.data.cascades import embedded_root, load_dataset

  full = load_dataset("ndm/irvine", data_dir=embedded_root())
  return dataclasses.replace(full, train=full.train[:96], valid=full.valid[:48],
                             test=full.test[:48])


def ndm_configs() -> dict:
  """name -> NextUserConfig of the recorded next-user runs (the recorded model: d = 8, h = 2,
  cascades cut to 7 users, 2 epochs, the dense loss)."""
  from popdiff_jax.models.lstm import LSTMConfig
  from popdiff_jax.models.ndm import NDMConfig
  from popdiff_jax.baselines.popularity import PopularityConfig
  from popdiff_jax.projects.ndm.configs import DataConfig, NextUserConfig, TrainConfig

  base = NextUserConfig(data=DataConfig(source="ndm/irvine", max_len=7),
                        model=NDMConfig(dim=8, num_heads=2),
                        train=TrainConfig(num_epochs=2, patience=100, eval_batch_size=48,
                                          loss="dense"))
  return {
      "ndm": base,
      "lstm": base.replace(model=LSTMConfig(dim=8)),
      "popularity": base.replace(model=PopularityConfig()),
      "ndm_lean": base.replace(train={"loss": "lean", "lean_chunk": 256}),
      "ndm_loss_per_cascade": base.replace(train={"loss_per": "cascade"}),
      # The ``ndm-prior`` recipe (selected by MAP@10 counting Terminate, as recorded).
      "ndm_prior": base.replace(train={"bias_init": "log_frequency", "output_init_scale": 0.0,
                                       "weight_decay": 1.0,
                                       "select_by": "map@10_with_terminate"}),
      "ndm_noam": base.replace(train={"schedule": "noam"}),
  }


def recorded_ranking_keys(row: dict) -> dict:
  """A results row with the ranking metrics the recordings hold: they were measured with
  Terminate ranked among the users, which the package now reports as ``hits@k_with_terminate``
  (and ``val_..._with_terminate``) next to the users-only ``hits@k``; this maps those back to
  the recorded names and drops the users-only ones (checked by hand in
  tests/test_ranking_failures.py)."""
  out = {}
  for key, value in row.items():
    if key.endswith("_with_terminate"):
      out[key.removesuffix("_with_terminate")] = value
    elif key not in out:
      out[key] = value
  return out


def run_ndm() -> dict:
  """``projects.ndm.experiment.run`` for every config of ``ndm_configs``; then NDM's Monte Carlo
  protocol (``projects.ndm.protocol.evaluate_protocol``, 20 runs) on the ``"ndm"`` config
  trained again by ``projects.ndm.experiment.train``."""
  from popdiff_jax.projects.ndm import experiment
  from popdiff_jax.projects.ndm.protocol import evaluate_protocol

  data = irvine_slice()
  configs = ndm_configs()
  out = {"runs": {}}
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*are truncated to their first.*")
    for name, cfg in configs.items():
      with tempfile.TemporaryDirectory() as tmp:  # a fresh workdir: fit would resume from one
        row = experiment.run(data, cfg, tmp, progress=False)
        out["runs"][name] = _clean(recorded_ranking_keys(row))
    with tempfile.TemporaryDirectory() as tmp:
      trained = experiment.train(data, configs["ndm"], tmp, progress=False)
    out["protocol_train_info"] = _clean(recorded_ranking_keys(trained.info))
    out["protocol"] = _clean(evaluate_protocol(data, trained, runs=20, seed=0, progress=False))
  return out


# -------------------------------------------------------------------------------- diffusion_lstm


def diffusion_lstm_configs() -> dict:
  """row label -> config: ``projects.diffusion_lstm.configs.tiny`` with SGD (320 synthetic trees over
  200 users, split 240 / 40 / 40) with one node bucket of 8 chunks, so every training batch has
  one shape (one compilation per training phase); ``Diffusion-LSTM`` and ``random`` with two
  sampled generations per test root (the tiny default), the other three variants without (the
  sampled generator is the costliest program to compile, 11-26 s of wall time per model at
  XLA's default level on the recording machine; ``random`` reuses the full model's programs)."""
  from popdiff_jax.projects.diffusion_lstm import configs as C

  # The recorded optimiser: plain SGD at 0.2 then 0.02 (``tiny`` itself now uses Adam).
  sampled = C.tiny().replace(data={"buckets": (8,)},
                             train={"optimizer": "sgd", "learning_rate": 0.2,
                                    "learning_rate_low": 0.02})
  rest = sampled.replace(eval={"samples": 0})
  return {"Diffusion-LSTM": sampled, "random": sampled.replace(train={"random_weights": True}),
          "social-only": rest.replace(model={"variant": "social"}),
          "content-only": rest.replace(model={"variant": "content"}),
          "FC": rest.replace(model={"variant": "fc"})}


def run_diffusion_lstm() -> dict:
  """``projects.diffusion_lstm.data.prepare`` then ``projects.diffusion_lstm.experiment.run``
  on it for every config of ``diffusion_lstm_configs``."""
  from popdiff_jax.projects.diffusion_lstm import experiment as E
  from popdiff_jax.projects.diffusion_lstm.data import prepare

  configs = diffusion_lstm_configs()
  prepared = prepare(configs["Diffusion-LSTM"].data)
  with tempfile.TemporaryDirectory() as tmp:
    rows = E.run(list(configs.values()), prepared=prepared, workdir=tmp)
  return {"prepared": {"split": _py(prepared.info["split"]),
                       "tree_stats": _py(prepared.info["tree_stats"]),
                       "proto_x": _py(prepared.proto_x), "pos_counts": _py(prepared.pos_counts),
                       "neg_counts": _py(prepared.neg_counts)},
          "runs": {row["model"]: _clean(row) for row in rows}}


# ------------------------------------------------------------------------------------ popularity


def run_popularity() -> dict:
  """``projects.popularity_table.run_seed`` of ``popdiff reproduce popularity --data synthetic
  --quick`` on the random split, seed 0: every row of the three papers (random forest, gradient
  boosting, image model, Conv1d with and without the image score, fusion DNN and its five
  feature studies, the four dual-attention variants) on 120 generated users x 12 posts."""
  from popdiff_jax.data.posts import PostsSource
  from popdiff_jax.projects.popularity_table import QUICK, run_seed

  config = dataclasses.replace(QUICK, data=PostsSource(source="synthetic"), splits=("random",))
  with tempfile.TemporaryDirectory() as tmp:
    rows = run_seed(config, 0, "random", workdir=tmp, progress=False)
  return {"runs": {f"{r['paper']}/{r['model']}": _clean(r) for r in rows}}


# ---------------------------------------------------------------------------------- ic_baselines


def _fitted(model) -> dict:
  probs = np.asarray(model.probs, np.float64)
  return {"num_edges": int(model.edges.shape[0]), "edges_head": _py(model.edges[:16]),
          "edges_checksum": int(np.asarray(model.edges, np.int64).sum()),
          "probs_sum": float(probs.sum()), "probs_min": float(probs.min()),
          "probs_max": float(probs.max()), "probs_head": _py(probs[:16]),
          "losses": _py(model.losses)}


def _f1(scores) -> dict:
  return {k: _py(getattr(scores, k)) for k in scores._fields}


def run_ic_baselines() -> dict:
  """``baselines.ic.fit_embedded_ic`` and ``fit_netrate`` (20 Adam steps of 16 cascades,
  candidate edges up to lag 3) on the first 64 training cascades of the Irvine slice, then for
  each ``evaluate_ic_baseline`` (full and ``first_k=5``) and ``ic_size_msle`` on its first 32
  test cascades, 64 IC runs each."""
  from popdiff_jax.baselines import ic as icb

  data = irvine_slice()
  num_users = len(data.vocab)
  train, test = data.train[:64], data.test[:32]
  # max_lag=3: 2.1k candidate edges in 11 in-degree blocks instead of 8.8k in 17 (each block is
  # a gather in the IC engine's program, whose compilation is most of this run's time).
  fits = {
      "embedded_ic": icb.fit_embedded_ic(train, num_users, jax.random.key(0), dim=8, steps=20,
                                         batch_size=16, max_len=20, max_lag=3),
      "netrate": icb.fit_netrate(train, num_users, jax.random.key(1), steps=20, batch_size=16,
                                 max_len=20, max_lag=3),
  }
  out = {}
  for name, model in fits.items():
    full, probs = icb.evaluate_ic_baseline(model, test, num_users, jax.random.key(2), num_sims=64)
    first5, _ = icb.evaluate_ic_baseline(model, test, num_users, jax.random.key(3), num_sims=64,
                                         first_k=5)
    size_msle, pred, true = icb.ic_size_msle(model, test, num_users, jax.random.key(4),
                                             num_sims=64)
    out[name] = {"fit": _fitted(model), "f1": _f1(full), "f1_first5": _f1(first5),
                 "activation_counts": _count_sums(probs, 64),
                 "size_msle": float(size_msle),
                 "size_pred": _py(pred), "size_true": _py(true)}
  return out


# -------------------------------------------------------------------------------------- simulate


def run_simulate() -> dict:
  """``simulate.ic.simulate_ic`` on ``simulate.graph.random_graph(300, 1500, 0.15, seed=0)`` from
  three seed sets, 200 runs each, for ``method="dense"`` (also with ``max_active``) and
  ``"frontier"``; and ``simulate.sampler.simulate_dataset`` on an untrained NDM (the ``"ndm"``
  config of ``ndm_configs``, ``models.init`` with seed 0 over the Irvine vocabulary) continuing the
  first 8 test cascades of the Irvine slice from two users, budget 4, 20 runs each."""
  from popdiff_jax import models
  from popdiff_jax.models.ndm import NDMConfig
  from popdiff_jax.simulate.graph import random_graph
  from popdiff_jax.simulate.ic import simulate_ic
  from popdiff_jax.simulate.sampler import simulate_dataset

  graph, edges = random_graph(300, 1500, 0.15, seed=0)
  seeds = np.array([[0, -1], [1, 2], [7, -1]], np.int32)
  calls = {"dense": {"method": "dense"},
           "dense_max_active": {"method": "dense", "max_active": np.array([5, 10, 20])},
           "frontier": {"method": "frontier"}}
  out = {"graph": {"num_edges": int(edges.shape[0]), "edges_head": _py(edges[:16]),
                   "edges_checksum": int(np.asarray(edges, np.int64).sum())}, "ic": {}}
  for name, kw in calls.items():
    res = simulate_ic(graph, seeds, jax.random.key(0), 200, **kw)
    spread = np.asarray(res.spread)
    out["ic"][name] = {"mean_spread": _py(spread.astype(np.float64).mean(1)),
                       "spread": _py(spread),
                       "activation_counts": _py(_counts(res.activation_prob, 200)),
                       "rounds": int(res.rounds)}

  data = irvine_slice()
  num_items = len(data.vocab)
  model, variables = models.init(NDMConfig(num_items=num_items, dim=8, num_heads=2, f_init=0), 0)
  cascades = [c for c in data.test if len(c.users) >= 2][:8]
  freq, mean_new = simulate_dataset(model, variables, cascades, num_given=2,
                                    budgets=[4] * len(cascades), num_runs=20,
                                    key=jax.random.key(1), num_items=num_items, progress=False)
  out["sampler"] = {"infected_counts": _sparse_counts(freq, 20), "mean_new_users": _py(mean_new)}
  return out


RUNNERS = {"ndm": run_ndm, "diffusion_lstm": run_diffusion_lstm, "popularity": run_popularity,
           "ic_baselines": run_ic_baselines, "simulate": run_simulate}


def path_of(project: str) -> pathlib.Path:
  return HERE / f"{project}.json"


def write(project: str, result: dict) -> pathlib.Path:
  path = path_of(project)
  path.write_text(dumps(result) + "\n")
  return path


def main(argv: list[str]) -> int:
  unknown = sorted(set(argv) - set(RUNNERS))
  if unknown:
    print(f"unknown project(s) {unknown}; choose from {list(RUNNERS)}", file=sys.stderr)
    return 2
  jax.config.update("jax_numpy_rank_promotion", "raise")  # as tests/conftest.py
  with tempfile.TemporaryDirectory() as cache, recording_environment(cache):
    for project in argv or PROJECTS:
      t0 = time.perf_counter()
      path = write(project, RUNNERS[project]())
      print(f"{project}: {time.perf_counter() - t0:.1f} s -> {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
