"""NDM training speed as a user sees it: the library's ``train`` against the PyTorch recipe.

Every JAX row is one call of the library's entry point,
``popdiff_jax.projects.ndm.experiment.train(dataset, config, workdir)``: the named config
(``ndm-casc`` by default) with ``select_by="last"`` so every run trains the same epochs, i.e.
the library's batching (length buckets), its compiled train step, validation after every epoch
and a checkpoint after every epoch, exactly as ``popdiff train`` runs them. The anchor
(``torch_recipe``, benchmarks/_torch_ndm.py) is the authors' recipe: the same NDM (d = 64,
h = 8, win = 3, dropout 0.1, F_init from the data), batch 32, Adam 1e-3, random batches padded to
their longest cascade, dense ``[B, L, U]`` scores and mask, validation after every epoch.

Timing, the same on both sides: an epoch's ``seconds`` are ``fit``'s history (``metrics.jsonl``
in the workdir), from building the epoch's batches to the end of its last step (host batching
and copies included; validation and checkpoint excluded); the recipe times the same span.
``throughput`` = training cascades / the median epoch after the first; ``compile_s`` = the first
epoch's seconds minus that median (for JAX: compiling the train step of every length bucket);
``train_wall_s`` is the whole call (build, compiles, validation, checkpoints). ``val_hits@10`` is
the last epoch's validation Hits@10, users only (Terminate neither a target nor a candidate:
``metrics.ranking``'s ``hits@10``; the recipe computes it the same way).

Configurations, each in its own subprocess under a hard timeout (separate peak-memory counters:
``peak_bytes_in_use`` of the JAX device with preallocation off, ``max_memory_allocated`` in
PyTorch; an out-of-memory error is a row with ``oom: true``), the result file rewritten after
every row, in this order:

* ``ndm_train/memetracker`` and ``ndm_train/forest_twitter`` (kind ``ndm_train``): the recipe,
  then ``jax`` (``train.loss="auto"``: the loss a user gets, named in ``loss``), ``--repeats``
  times, interleaved, all in one call; each JAX row's ``ratio_vs_anchor_same_call`` is over the
  recipe row of its own repeat. One JAX compilation cache for the whole call (a fresh folder), so
  the first repeat compiles cold and the others load (``compile_cache``). Kind ``summary``: per
  bench and impl, the median, min and max over the repeats.
* ``ndm_scaling_users/synthetic`` (kind ``scaling_users``): ``--users`` users (default 1e3 ..
  1e6), a fixed set of cascades (the same seeded lengths, one length bucket), ``jax_lean``
  (``train.loss="lean"``), ``jax_dense`` and the recipe; the 1,000,000-user ``jax_lean`` row runs
  right after the first repeat.

  python3 benchmarks/gpu_suite.py --data-dir .carry_data --out $OUT/gpu_suite.json    # GPU
  python benchmarks/gpu_suite.py --quick --out /tmp/gpu_suite_quick.json              # CPU
  python benchmarks/gpu_suite.py --table benchmarks/results/gpu_suite.json            # tables
  python benchmarks/gpu_suite.py --plot benchmarks/results/gpu_suite.json             # figure

Rows: ``bench``, ``impl``, ``timed`` (``fit`` / ``recipe``), ``throughput`` (cascades/s),
``ratio_vs_anchor_same_call``, ``val_hits@10``, ``peak_mem_bytes``, ``device``, plus ``kind``,
``repeat``, ``num_users``, ``loss``, ``compile_s``, ``compile_cache``, ``epoch_seconds``,
``history``, ``train_wall_s``, ``outside_epochs_s`` (validation, checkpoints, building the model),
``anchor_val_hits@10``, ``oom``, ``timed_out``, ``error``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

ANCHOR = "torch_recipe"
BATCH = 32
LR = 1e-3
#: The keys every row has (a reader of the result file depends on them).
KEYS = ("bench", "impl", "timed", "throughput", "ratio_vs_anchor_same_call", "val_hits@10",
        "peak_mem_bytes", "device")
#: The real sets: bench suffix -> registered dataset.
REAL = {"memetracker": "ndm/memetracker", "forest_twitter": "forest/twitter"}
SCALING_BENCH = "ndm_scaling_users/synthetic"


# ------------------------------------------------------------------------------------------ data

def synthetic_cascades(num_users: int, num_cascades: int, max_len: int, seed: int = 0,
                       min_len: int = 2):
  """Seeded cascades over ``num_users`` users (vocabulary indices from 2): log-normal lengths
  (median 20, clipped to ``min_len .. max_len``, 2% exactly ``max_len``) and Zipf-like user
  popularity; the users of a cascade are distinct."""
  import numpy as np
  from popdiff_jax.data.cascades import Cascade
  rng = np.random.default_rng(seed)
  lengths = np.clip(np.round(20 * np.exp(1.2 * rng.standard_normal(num_cascades))), min_len,
                    max_len)
  lengths[rng.random(num_cascades) < 0.02] = max_len
  lengths = lengths.astype(np.int64)
  weights = 1.0 / (np.arange(num_users) + 10.0) ** 0.8
  draws = rng.choice(num_users, size=int(lengths.sum() * 2 + 64), p=weights / weights.sum())
  out, pos = [], 0
  for n in lengths:
    cand = draws[pos:pos + 2 * n]
    pos += 2 * n
    _, first = np.unique(cand, return_index=True)
    users = cand[np.sort(first)][:n]
    if len(users) < n:  # top up with uniform users not yet in the cascade
      extra = rng.choice(num_users, size=min(num_users, 3 * n), replace=False)
      users = np.concatenate([users, extra[~np.isin(extra, users)][:n - len(users)]])
    users = users.astype(np.int32) + 2
    out.append(Cascade(users, np.arange(n, dtype=np.float64)))
  return out


def _numbered_vocab(num_users: int):
  """A ``UserVocab`` whose raw ids are ``"0" .. str(num_users - 1)``, without a million strings."""
  from popdiff_jax.data.cascades import UserVocab
  from popdiff_jax.types import NUM_SPECIAL

  class NumberedUsers(UserVocab):
    def __init__(self):
      super().__init__()
      self._n = num_users

    def add(self, user):
      raise TypeError("a generated vocabulary is fixed")

    def __len__(self):
      return self._n + NUM_SPECIAL

    def __contains__(self, user):
      return str(user).isdigit() and int(user) < self._n

    def index(self, user):
      if user not in self:
        raise KeyError(user)
      return int(user) + NUM_SPECIAL

    def user(self, index):
      return super().user(index) if index < NUM_SPECIAL else str(index - NUM_SPECIAL)

  return NumberedUsers()


def synthetic_dataset(cfg: dict):
  """The ``CascadeDataset`` of a scaling configuration (the same cascades for every user count:
  ``num_train`` + ``num_valid`` from one seeded draw of lengths; users drawn over
  ``num_users``)."""
  from popdiff_jax.data.cascades import CascadeDataset
  n_train, n_valid = cfg["num_train"], cfg["num_valid"]
  cascades = synthetic_cascades(cfg["num_users"], n_train + n_valid, cfg["max_len"],
                                min_len=cfg["min_len"])
  return CascadeDataset(name=f"synthetic/{cfg['num_users']}",
                        vocab=_numbered_vocab(cfg["num_users"]), train=cascades[:n_train],
                        valid=cascades[n_train:], test=[], split="generated", f_init=0)


def dataset_for(cfg: dict):
  """The dataset of a configuration: generated, or ``load_dataset`` of a registered one."""
  if cfg["dataset"] == "synthetic":
    return synthetic_dataset(cfg)
  from popdiff_jax.data.cascades import load_dataset
  return load_dataset(cfg["dataset"], cfg.get("data_dir"))


def next_user_config(cfg: dict):
  """The library config a JAX configuration trains: the named config with the suite's sizes,
  a fixed number of epochs (``select_by="last"``: no early stopping) and the chosen loss."""
  from popdiff_jax.projects.ndm.configs import get_config
  base = get_config(cfg["config"])
  model = dataclasses.replace(base.model, dim=cfg["dim"], num_heads=cfg["heads"])
  return base.replace(
      data={"source": cfg["dataset"], "data_dir": cfg.get("data_dir"), "max_len": cfg["max_len"]},
      model=model,
      train={"num_epochs": cfg["epochs"], "select_by": "last", "batch_size": BATCH,
             "learning_rate": LR, "loss": cfg["loss"], "seed": 0,
             "steps_per_call": cfg.get("steps_per_call", 1)})


# ---------------------------------------------------------------------------------- measurements

def summarize_history(history: list[dict], num_train: int) -> dict:
  """Throughput, compile time and accuracy from per-epoch rows (``fit``'s or the recipe's)."""
  seconds = [float(r["seconds"]) for r in history if not r.get("partial")]
  out = {"epochs": len(seconds), "epoch_seconds": seconds, "throughput": None,
         "compile_s": None, "val_hits@10": None}
  if len(seconds) >= 2:
    steady = statistics.median(seconds[1:])
    out["throughput"] = num_train / steady if steady > 0 else None
    out["compile_s"] = round(seconds[0] - steady, 3)
    out["median_epoch_s"] = steady
  done = [r for r in history if not r.get("partial")]
  if done:
    last = done[-1]
    out["val_hits@10"] = last.get("val_hits@10")
    out["val_map@10"] = last.get("val_map@10")
    out["train_loss"] = last.get("train_loss")
  return out


def read_history(workdir: str | os.PathLike) -> list[dict]:
  """``fit``'s per-epoch rows of a workdir (``metrics.jsonl``; [] when none finished)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: str, row: dict) -> None:
  pathlib.Path(path).write_text(json.dumps(row))


def _is_oom(e: BaseException) -> bool:
  s = f"{type(e).__name__} {e}"
  return (isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in s or "out of memory" in s.lower()
          or "OutOfMemory" in s)


def _base_row(cfg: dict, timed: str, device: str) -> dict:
  row = {k: None for k in KEYS}
  row.update({"bench": cfg["bench"], "impl": cfg["impl"], "kind": cfg["kind"], "timed": timed,
              "device": device, "unit": "cascades/s", "oom": False,
              "repeat": cfg.get("repeat"), "num_users": cfg.get("num_users"),
              "dataset": cfg["dataset"], "max_len": cfg["max_len"], "dim": cfg["dim"],
              "heads": cfg["heads"]})
  return row


# --------------------------------------------------------------------------------------- workers

def jax_worker(cfg: dict, result: str) -> None:
  """One call of ``experiment.train``; the driver adds the epochs from the workdir."""
  import jax
  from popdiff_jax.projects.ndm import experiment

  devices = jax.devices()
  row = _base_row(cfg, "fit", devices[0].device_kind)
  row["jax"] = jax.__version__

  def peak():
    stats = devices[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

  t0 = time.perf_counter()
  dataset = dataset_for(cfg)
  config = next_user_config(cfg)
  row.update({"num_items": len(dataset.vocab), "train_cascades": len(dataset.train),
              "valid_cascades": len(dataset.valid), "config": cfg["config"],
              "loss_requested": cfg["loss"],
              "data_seconds": round(time.perf_counter() - t0, 2),
              # the loss "auto" resolves to on this device (the same call train makes)
              "loss": experiment.choose_loss(config, len(dataset.vocab)).train.loss})
  _write(result, row)
  t0 = time.perf_counter()
  try:
    trained = experiment.train(dataset, config, cfg["workdir"], progress=False)
    row["loss"] = trained.config.train.loss
    row["train_wall_s"] = round(trained.info["train_seconds"], 2)
  except Exception as e:  # noqa: BLE001 - an out-of-memory is a result; anything else is not
    if not _is_oom(e):
      raise
    row.update({"oom": True, "error": str(e).splitlines()[0][:300],
                "train_wall_s": round(time.perf_counter() - t0, 2)})
  row["peak_mem_bytes"] = peak()
  _write(result, row)


def torch_worker(cfg: dict, result: str) -> None:
  """The recipe (benchmarks/_torch_ndm.py) on the same data and epochs."""
  import torch

  sys.path.insert(0, str(REPO / "benchmarks"))
  import _torch_ndm

  cuda = torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  torch.set_float32_matmul_precision(cfg["torch_precision"])
  torch.manual_seed(0)
  row = _base_row(cfg, "recipe", torch.cuda.get_device_name() if cuda else "cpu")
  row.update({"torch": torch.__version__, "float32_matmul_precision": cfg["torch_precision"],
              "ratio_vs_anchor_same_call": None})

  def sync():
    if cuda:
      torch.cuda.synchronize()

  def peak():
    return int(torch.cuda.max_memory_allocated()) if cuda else None

  t0 = time.perf_counter()
  dataset = dataset_for(cfg)
  f_init = int(dataset.f_init or 0)
  row.update({"num_items": len(dataset.vocab), "train_cascades": len(dataset.train),
              "valid_cascades": len(dataset.valid), "f_init": f_init,
              "data_seconds": round(time.perf_counter() - t0, 2)})
  _write(result, row)

  def on_epoch(history):
    row.update(summarize_history(history, len(dataset.train)))
    row.update({"history": history, "peak_mem_bytes": peak(),
                "train_wall_s": round(time.perf_counter() - t0, 2)})
    _write(result, row)

  t0 = time.perf_counter()
  try:
    model = _torch_ndm.TorchNDM(len(dataset.vocab), cfg["dim"], cfg["heads"], 3, f_init,
                                0.1).to(device)
    _torch_ndm.train(model, dataset.train, dataset.valid, epochs=cfg["epochs"], device=device,
                     max_len=cfg["max_len"], batch_size=BATCH, lr=LR, sync=sync,
                     on_epoch=on_epoch)
  except Exception as e:  # noqa: BLE001 - an out-of-memory is a result; anything else is not
    if not _is_oom(e):
      raise
    row.update({"oom": True, "error": str(e).splitlines()[0][:300], "peak_mem_bytes": peak()})
  row["train_wall_s"] = round(time.perf_counter() - t0, 2)
  _write(result, row)


# ---------------------------------------------------------------------------------------- driver

def plan(a) -> list[dict]:
  """The configurations, in order of importance (a run cut by ``--budget`` keeps the first).

  ``timeout`` is a configuration's hard limit (process start, data, compiles, epochs,
  validation, checkpoints).
  """
  if a.quick:
    real = {"ndm/irvine": "irvine"}
    sizes = {"dim": 8, "heads": 2}
    main = {"max_len": 7, "epochs": 3}
    scale = {"max_len": 7, "min_len": 2, "num_train": 96, "num_valid": 32, "epochs": 2}
    t_jax, t_jax_warm, t_torch, t_scale = 300, 300, 300, 300
  else:
    real = {v: k for k, v in REAL.items()}
    sizes = {"dim": 64, "heads": 8}
    main = {"max_len": 200, "epochs": a.epochs}
    # One length bucket (17..32 tokens): each configuration compiles one train and one
    # validation shape, so the table measures the users, not the compiler.
    scale = {"max_len": 31, "min_len": 16, "num_train": 2048, "num_valid": 256,
             "epochs": a.scaling_epochs}
    t_jax, t_jax_warm, t_torch, t_scale = 180, 90, 90, 120
  data_dir = os.path.abspath(a.data_dir) if a.data_dir else None
  common = {"data_dir": data_dir, "torch_precision": a.torch_precision, "config": a.config,
            "steps_per_call": a.steps_per_call, **sizes}
  users = a.users or ([100, 1000] if a.quick else [1_000, 10_000, 100_000, 1_000_000])

  def scaling(n, impl):
    loss = {"jax_lean": "lean", "jax_dense": "dense"}.get(impl, "dense")
    return {"name": f"users_{n}_{impl}", "group": "scaling", "kind": "scaling_users",
            "bench": SCALING_BENCH, "impl": impl, "dataset": "synthetic", "num_users": n,
            "loss": loss, "timeout": t_scale, **scale, **common}

  out = []
  for rep in range(1, a.repeats + 1):
    for dataset, tag in real.items():
      base = {"group": "main", "kind": "ndm_train", "bench": f"ndm_train/{tag}",
              "dataset": dataset, "repeat": rep, "loss": "auto", **main, **common}
      out.append({**base, "name": f"{tag}_{ANCHOR}_{rep}", "impl": ANCHOR, "timeout": t_torch})
      out.append({**base, "name": f"{tag}_jax_{rep}", "impl": "jax",
                  "timeout": t_jax if rep == 1 else t_jax_warm})
    if rep == 1:  # the largest set with the lean loss: trains on one device at all?
      out.append(scaling(max(users), "jax_lean"))
  for n in sorted(users):
    for impl in (ANCHOR, "jax_lean", "jax_dense"):
      if not (n == max(users) and impl == "jax_lean"):
        out.append(scaling(n, impl))
  if a.only:
    out = [c for c in out if c["name"] in a.only or c["group"] in a.only]
  return out


def run_config(cfg: dict, timeout: float, cache_dir: str) -> dict:
  """Runs one configuration in a subprocess; the row it wrote, completed by the driver."""
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
  if cfg["impl"] == ANCHOR:
    env["JAX_PLATFORMS"] = "cpu"  # the recipe's process uses the library only to read data
  scratch = tempfile.mkdtemp(prefix=f"gpu_suite_{cfg['name']}_")
  workdir = os.path.join(scratch, "run")  # the library's workdir: checkpoints, metrics.jsonl
  cfg = dict(cfg, workdir=workdir)
  result = os.path.join(scratch, "row.json")
  pathlib.Path(result).write_text("{}")
  t0 = time.perf_counter()
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", json.dumps(cfg),
         "--result", result]
  timed_out = False
  try:
    proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
  except subprocess.TimeoutExpired as e:
    rc, timed_out = None, True
    err = e.stderr or b""
    tail = (err.decode(errors="replace") if isinstance(err, bytes) else err)[-800:]
  row = json.loads(pathlib.Path(result).read_text() or "{}")
  if cfg["impl"] != ANCHOR:
    history = read_history(workdir)
    row["history"] = history
    row.update(summarize_history(history, row.get("train_cascades") or 0))
    # The first run of a set's shapes in this call compiles; later repeats load the cache.
    row["compile_cache"] = "warm" if (cfg.get("repeat") or 1) > 1 else "cold"
  shutil.rmtree(scratch, ignore_errors=True)
  if row.get("train_wall_s") and row.get("epoch_seconds"):
    # validation (its compiles included), checkpoints, building the model
    row["outside_epochs_s"] = round(row["train_wall_s"] - sum(row["epoch_seconds"]), 2)
  for k in KEYS:
    row.setdefault(k, None)
  for k in ("bench", "impl", "kind", "repeat", "num_users"):
    row.setdefault(k, cfg.get(k))
  row.setdefault("timed", "recipe" if cfg["impl"] == ANCHOR else "fit")
  row.setdefault("oom", False)
  row.update({"config_name": cfg["name"], "wall_seconds": round(time.perf_counter() - t0, 1),
              "timeout_s": round(timeout, 1)})
  if timed_out:
    row["timed_out"] = True
  if rc not in (0, None):
    row["error"] = row.get("error") or f"exit {rc}: {tail}"
  return row


def _anchor_of(rows: list[dict], r: dict) -> dict | None:
  """The recipe row measured with ``r``: the same bench and repeat, or the same user count."""
  for a in rows:
    if a["impl"] != ANCHOR or a["bench"] != r["bench"] or a is r:
      continue
    if r.get("kind") == "scaling_users" and a.get("num_users") == r.get("num_users"):
      return a
    if r.get("kind") == "ndm_train" and a.get("repeat") == r.get("repeat"):
      return a
  return None


def add_ratios(rows: list[dict]) -> None:
  """``ratio_vs_anchor_same_call`` (throughput over the recipe's of the same repeat or user
  count), ``mem_ratio_vs_anchor`` and the recipe's ``anchor_val_hits@10`` beside each row."""
  for r in rows:
    if r.get("kind") not in ("ndm_train", "scaling_users"):
      continue
    if r["impl"] == ANCHOR:
      r["ratio_vs_anchor_same_call"] = 1.0 if r.get("throughput") else None
      continue
    a = _anchor_of(rows, r)
    r["ratio_vs_anchor_same_call"] = None
    if a is None:
      continue
    if a.get("throughput") and r.get("throughput"):
      r["ratio_vs_anchor_same_call"] = r["throughput"] / a["throughput"]
    if a.get("peak_mem_bytes") and r.get("peak_mem_bytes"):
      r["mem_ratio_vs_anchor"] = r["peak_mem_bytes"] / a["peak_mem_bytes"]
    r["anchor_val_hits@10"] = a.get("val_hits@10")
    r["anchor_oom"] = bool(a.get("oom"))


def _spread(values: list) -> tuple:
  vals = [v for v in values if v is not None]
  if not vals:
    return None, None, None
  return statistics.median(vals), min(vals), max(vals)


def summaries(rows: list[dict], target: float = 5.0) -> list[dict]:
  """Kind ``summary``: per (bench, impl) of the ``ndm_train`` rows, the median, min and max over
  the repeats of throughput, ratio and validation Hits@10; ``compile_s`` of the cold repeat."""
  out = []
  keys = dict.fromkeys((r["bench"], r["impl"]) for r in rows if r.get("kind") == "ndm_train")
  for bench, impl in keys:
    reps = [r for r in rows if r.get("kind") == "ndm_train" and r["bench"] == bench
            and r["impl"] == impl]
    s = {k: None for k in KEYS}
    s.update({"bench": bench, "impl": impl, "kind": "summary", "timed": reps[0].get("timed"),
              "device": next((r["device"] for r in reps if r.get("device")), None),
              "repeats": len(reps), "measured": sum(1 for r in reps if r.get("throughput")),
              "loss": next((r.get("loss") for r in reps if r.get("loss")), None),
              "oom": any(r.get("oom") for r in reps)})
    for key in ("throughput", "ratio_vs_anchor_same_call", "val_hits@10", "anchor_val_hits@10",
                "compile_s", "train_wall_s"):
      med, lo, hi = _spread([r.get(key) for r in reps])
      s[key], s[f"{key}_min"], s[f"{key}_max"] = med, lo, hi
    cold = [r.get("compile_s") for r in reps if r.get("compile_cache") == "cold"]
    s["compile_s_cold"] = cold[0] if cold else None
    s["peak_mem_bytes"] = max((r["peak_mem_bytes"] for r in reps if r.get("peak_mem_bytes")),
                              default=None)
    if impl != ANCHOR and s["ratio_vs_anchor_same_call_min"] is not None:
      s["target_ratio"] = target
      s["meets_target"] = s["ratio_vs_anchor_same_call_min"] >= target
    out.append(s)
  return out


def markdown(meta: dict, rows: list[dict]) -> str:
  """The README tables of a result file: the training summary, then the scaling over users."""
  from popdiff_jax.utils.report import markdown_table

  def gib(v):
    return None if v is None else v / 2 ** 30

  def rng(r, key, fmt):
    if r.get(key) is None:
      return None
    lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
    return f"{r[key]:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]" if lo is not None else f"{r[key]:{fmt}}"

  main = [{"bench": r["bench"], "impl": r["impl"], "loss": r.get("loss"),
           "repeats": f"{r.get('measured')}/{r.get('repeats')}",
           "cascades/s [min, max]": rng(r, "throughput", ".0f"),
           "x recipe [min, max]": rng(r, "ratio_vs_anchor_same_call", ".2f"),
           "val Hits@10": rng(r, "val_hits@10", ".3f"),
           "compile s (cold)": r.get("compile_s_cold"),
           "peak GiB": gib(r.get("peak_mem_bytes"))}
          for r in rows if r.get("kind") == "summary"]
  scale = [{"users": r.get("num_users"), "impl": r["impl"], "loss": r.get("loss"),
            "cascades/s": r.get("throughput"), "x recipe": r.get("ratio_vs_anchor_same_call"),
            "peak GiB": gib(r.get("peak_mem_bytes")),
            "oom": "yes" if r.get("oom") else ("timeout" if r.get("timed_out") else ""),
            "val Hits@10": r.get("val_hits@10"), "compile s": r.get("compile_s")}
           for r in sorted((r for r in rows if r.get("kind") == "scaling_users"),
                           key=lambda r: (r.get("num_users") or 0, r["impl"]))]
  device = meta.get("device") or next((r["device"] for r in rows if r.get("device")), "?")
  head = (f"Device {device}, commit {meta.get('commit')}, {meta.get('date')}, suite wall "
          f"{meta.get('wall_seconds')} s.")
  return "\n\n".join([
      head,
      markdown_table(main, ["bench", "impl", "loss", "repeats", "cascades/s [min, max]",
                            "x recipe [min, max]", "val Hits@10", "compile s (cold)",
                            "peak GiB"]),
      markdown_table(scale, ["users", "impl", "loss", "cascades/s", "x recipe", "peak GiB",
                             "oom", "val Hits@10", "compile s"])])


def plot(rows: list[dict], png: str | os.PathLike) -> pathlib.Path:
  """Log-log cascades/s and peak memory against users (the ``scaling_users`` rows)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  scale = [r for r in rows if r.get("kind") == "scaling_users"]
  fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
  for i, impl in enumerate(sorted({r["impl"] for r in scale})):
    mine = sorted((r for r in scale if r["impl"] == impl), key=lambda r: r["num_users"])
    color = f"C{i}"
    for ax, key in ((ax_t, "throughput"), (ax_m, "peak_mem_bytes")):
      scale_by = 2 ** -30 if key == "peak_mem_bytes" else 1.0
      pts = [(r["num_users"], r[key] * scale_by) for r in mine
             if r.get(key) and not r.get("oom")]
      if pts:
        ax.plot(*zip(*pts), marker="o", color=color, label=impl)
      for r in mine:  # out of memory: marked at the top of the panel
        if r.get("oom"):
          ax.annotate(f"{impl} OOM", (r["num_users"], 0.97 - 0.05 * i), color=color, fontsize=7,
                      xycoords=("data", "axes fraction"), ha="center")
  ax_t.set(xscale="log", yscale="log", xlabel="users", ylabel="training cascades / s",
           title="NDM training throughput")
  ax_m.set(xscale="log", yscale="log", xlabel="users", ylabel="peak device memory (GiB)",
           title="NDM peak memory")
  for ax in (ax_t, ax_m):
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
    else:
      ax.text(0.5, 0.5, "not measured (no device memory counters)", ha="center",
              transform=ax.transAxes, fontsize=8)
  fig.tight_layout()
  png = pathlib.Path(png)
  png.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(png, dpi=120)
  plt.close(fig)
  return png


def main(argv=None) -> int:
  """The command line (module docstring); returns the exit status."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=None,
                 help="folder holding forest/ (on the GPU machine: .carry_data)")
  p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_suite.json"))
  p.add_argument("--quick", action="store_true",
                 help="tiny CPU configuration: ndm/irvine, d = 8, 100 and 1000 users")
  p.add_argument("--repeats", type=int, default=3, help="repeats of the training comparison")
  p.add_argument("--epochs", type=int, default=6,
                 help="epochs on memetracker and forest/twitter (the first compiles)")
  p.add_argument("--scaling-epochs", type=int, default=3, help="epochs of the scaling rows")
  p.add_argument("--users", type=int, nargs="*", default=None,
                 help="user counts of the scaling table (default 1e3 1e4 1e5 1e6)")
  p.add_argument("--config", default="ndm-casc",
                 help="the named NDM config the JAX rows train (ndm-casc: the loss summed per "
                      "cascade, every prediction weighed alike, as the recipe's random batches)")
  p.add_argument("--steps-per-call", type=int, default=1,
                 help="TrainConfig.steps_per_call of the JAX rows (the library default: 1)")
  p.add_argument("--budget", type=float, default=470.0,
                 help="seconds for the whole call; a configuration that would start with less "
                      "than 20 s left is recorded as skipped")
  p.add_argument("--only", nargs="*", default=None,
                 help="configuration names or groups (main, scaling) to run")
  p.add_argument("--torch-precision", default="high", choices=("highest", "high"),
                 help="torch float32 matmul precision; 'high' = TF32, as JAX's default on GPUs")
  p.add_argument("--table", default=None, metavar="JSON",
                 help="print the Markdown tables of a result file and stop")
  p.add_argument("--plot", default=None, metavar="JSON", nargs="?", const="",
                 help="draw the scaling figure of a result file (default --out) and stop")
  p.add_argument("--png", default=None,
                 help="the figure's path (default: ndm_scaling.png beside the JSON)")
  p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  p.add_argument("--result", default=None, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.worker:
    cfg = json.loads(a.worker)
    try:
      (torch_worker if cfg["impl"] == ANCHOR else jax_worker)(cfg, a.result)
    except Exception:  # noqa: BLE001 - the driver records the traceback tail
      traceback.print_exc()
      return 1
    return 0

  from popdiff_jax.results import read_results, run_metadata, write_results
  if a.table:
    meta, rows = read_results(a.table)
    print(markdown(meta, rows))
    return 0
  if a.plot is not None:
    src = pathlib.Path(a.plot or a.out)
    _, rows = read_results(src)
    print(plot(rows, a.png or src.with_name("ndm_scaling.png")))
    return 0
  from popdiff_jax.utils.report import format_table
  t_start = time.perf_counter()
  # devices=False: the driver leaves the accelerator to the worker processes.
  meta = run_metadata(
      "gpu_suite", devices=False, packages=("torch",),
      config=dict({k: v for k, v in vars(a).items() if k not in ("worker", "result")},
                  batch_size=BATCH, lr=LR),
      throughput="training cascades / median epoch seconds after the first epoch; epoch "
                 "seconds as training.fit records them (batching and steps; validation and "
                 "checkpoint excluded), the recipe timed over the same span",
      accuracy="val_hits@10 of the last epoch, users only (metrics.ranking hits@10)")
  out = pathlib.Path(a.out)
  cache_dir = tempfile.mkdtemp(prefix="gpu_suite_jax_cache_")
  rows: list[dict] = []
  try:
    for cfg in plan(a):
      left = a.budget - (time.perf_counter() - t_start)
      if left < 20:
        row = {k: None for k in KEYS}
        row.update({k: cfg.get(k) for k in ("bench", "impl", "kind", "repeat", "num_users")})
        row.update({"timed": "recipe" if cfg["impl"] == ANCHOR else "fit",
                    "config_name": cfg["name"], "skipped": "suite budget spent"})
        rows.append(row)
      else:
        rows.append(run_config(cfg, min(cfg["timeout"], left - 5), cache_dir))
      add_ratios(rows)
      meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
      write_results(out, rows + summaries(rows), meta)
      r = rows[-1]
      print(f"[{meta['wall_seconds']:6.1f}s] {cfg['name']}: throughput={r.get('throughput')} "
            f"x={r.get('ratio_vs_anchor_same_call')} val_hits@10={r.get('val_hits@10')} "
            f"peak={r.get('peak_mem_bytes')} compile_s={r.get('compile_s')} "
            f"oom={r.get('oom')} {r.get('skipped') or (r.get('error') or '')[:300]}",
            flush=True)
  finally:
    shutil.rmtree(cache_dir, ignore_errors=True)
  final = rows + summaries(rows)
  write_results(out, final, meta)
  print(format_table([r for r in final if r.get("kind") != "ndm_train"],
                     ["kind", "bench", "impl", "num_users", "throughput",
                      "ratio_vs_anchor_same_call", "val_hits@10", "peak_mem_bytes", "oom"],
                     ".3f"))
  if any(r.get("kind") == "scaling_users" for r in final):
    try:
      print("figure:", plot(final, a.png or out.with_name("ndm_scaling.png")))
    except ImportError:
      print(f"no matplotlib here: python benchmarks/gpu_suite.py --plot {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
