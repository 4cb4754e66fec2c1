"""GPU suite (issue 6): NDM training throughput, peak memory and accuracy vs the PyTorch recipe.

Each configuration runs in its own subprocess (separate peak-memory counters; an out-of-memory is
caught there and recorded as a row with ``oom: true``) under a hard timeout, and the rows are
written after every configuration, so a cut-off run still leaves its finished rows.

Configurations (``bench`` / ``impl``):

* ``ndm_train/forest_twitter``: NDM on FOREST's Twitter split (12,629 items, cascades cut at 200),
  ``torch_recipe`` (benchmarks/_torch_ndm.py: dense logits + dense ``[B, L, U]`` mask, batches of
  32 padded to their longest cascade, Adam), ``jax_dense`` (the library's train step,
  ``experiments.next_user.make_train_step``: power-of-two length buckets, dense logits) and
  ``jax_lean`` (the same step with ``models.lean_softmax.lean_loss_fn``: no ``[B, L, U]``). Each
  trains the same epochs; throughput = training cascades / median epoch time after the first
  (compiling) epoch. Then Hits@10 / MAP@10 on the test split (``hits@10`` in the row, with the
  anchor's as ``anchor_hits@10``): the first ``--eval-cascades`` test cascades (default all;
  ``test_cascades`` says how many), packed into batches of 64 x 201 of ONE shape for every
  implementation; the JAX rows score with ``lean_eval_sums`` (equal to the dense metrics to
  1e-5, tests/test_lean_softmax.py), so evaluation costs one compile and bounded memory. The
  evaluation has its own time allowance (``eval_timeout``) on top of the training's.
* ``ndm_train/synthetic_1m``: 1,000,000 users, 1,024 cascades of lengths 2..500 (log-normal,
  median 20, 2% exactly 500; popularity-skewed users), seeded. Same three implementations.
* ``ndm_scaling/forest_twitter`` and ``ndm_scaling/synthetic_1m`` (only with ``--n-devices N``):
  ``jax_lean`` on 1 and on N devices of one host (``train.parallel.data_parallel``: batch split
  over a ``("data",)`` mesh, parameters replicated, gradients all-reduced by the compiler). Weak
  scaling: 32 cascades a device (``global_batch`` 32 N); ``--global-batch`` fixes it instead.
  ``ratio_vs_anchor`` of these rows is throughput over the 1-device row; ``step_ms`` the median
  step time.

Every row also times one fixed-shape step (the longest bucket, 32 rows a device) for the floor
analysis of benchmarks/README.md: FLOPs of the output projection ``6 B L F U`` against the
device's TF32 peak and the bytes the dense ``[B, L, U]`` tensor must cross (``16 B L U``), or for
the lean version the output weights (``12 F U``), against HBM bandwidth.

  python3 benchmarks/gpu_suite.py --data-dir .carry_data --out $OUT/gpu_suite.json   # on the GPU
  # only the forest/twitter training rows (torch recipe, JAX lean, JAX dense; with Hits@10):
  python3 benchmarks/gpu_suite.py --data-dir .carry_data --only real_torch real_lean real_dense \
      --budget 390 --out $OUT/gpu_suite_forest.json
  # 1 -> 2 GPU scaling rows on a two-GPU host:
  python3 benchmarks/gpu_suite.py --data-dir .carry_data --n-devices 2 \
      --only scale_real_1 scale_real_2 scale_synth_1 scale_synth_2 --out $OUT/gpu_scaling.json
  python benchmarks/gpu_suite.py --quick --out /tmp/gpu_suite_quick.json             # CPU smoke
  python benchmarks/gpu_suite.py --merge old.json new.json --out merged.json         # combine

Rows: ``bench``, ``impl``, ``device``, ``n_devices``, ``throughput``, ``unit``,
``peak_mem_bytes``, ``ratio_vs_anchor`` (throughput / the torch recipe's in the same run) plus
details (epochs, epoch seconds, step ms, Hits@10, fixed-shape step, floor, oom, errors).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

BATCH = 32
EVAL_BATCH = 64
LR = 1e-3
DIM, HEADS, WINDOW, DROPOUT = 64, 8, 3, 0.1
ANCHOR = "torch_recipe"

# Dense TF32 tensor-core peak (FLOP/s) and HBM bandwidth (B/s) from NVIDIA's data sheets.
PEAKS = {"H100 PCIe": (378e12, 2.0e12), "H100": (494.7e12, 3.35e12), "H200": (494.7e12, 4.8e12),
         "A100": (156e12, 2.0e12)}


# ------------------------------------------------------------------------------------------ data

def synthetic_cascades(num_users: int, num_cascades: int, max_len: int, seed: int = 0):
  """Seeded cascades over ``num_users`` users (vocabulary indices from 2): log-normal lengths
  (median 20, capped at ``max_len``, 2% exactly ``max_len``) and Zipf-like user popularity."""
  import numpy as np
  from popdiff_jax.data.cascades import Cascade
  rng = np.random.default_rng(seed)
  lengths = np.clip(np.round(20 * np.exp(1.2 * rng.standard_normal(num_cascades))), 2, max_len)
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
      extra = rng.choice(num_users, size=3 * n, replace=False)
      users = np.concatenate([users, extra[~np.isin(extra, users)][:n - len(users)]])
    users = users.astype(np.int32) + 2
    out.append(Cascade(users, np.arange(n, dtype=np.float64)))
  return out


def load_data(cfg: dict):
  """``(train, test, num_items, f_init, max_len)`` of a configuration's dataset."""
  from popdiff_jax.data.cascades import default_f_init, load_dataset
  if cfg["dataset"] == "synthetic":
    train = synthetic_cascades(cfg["num_users"], cfg["num_cascades"], cfg["max_len"])
    return train, [], cfg["num_users"] + 2, 0, cfg["max_len"]
  ds = load_dataset(cfg["dataset"], cfg.get("data_dir"))
  return ds.train, ds.test, len(ds.vocab), default_f_init(cfg["dataset"]), cfg["max_len"]


def floor(device: str, b: int, length: int, f: int, u: int, lean: bool, step_s: float) -> dict:
  """The fixed-shape step against the output projection's compute and memory floor."""
  flops = 6.0 * b * length * f * u
  nbytes = 12.0 * f * u if lean else 16.0 * b * length * u
  out = {"batch": b, "length": length, "features": f, "users": u, "step_seconds": step_s,
         "proj_flops": flops, "floor_bytes": nbytes,
         "achieved_proj_tflops": flops / step_s / 1e12 if step_s else None}
  peak = next((v for k, v in PEAKS.items() if k in device), None)
  if peak and step_s:
    t_flop, t_byte = flops / peak[0], nbytes / peak[1]
    out.update({"peak_tf32_flops": peak[0], "hbm_bytes_per_s": peak[1],
                "floor_seconds": max(t_flop, t_byte),
                "bound": "compute" if t_flop >= t_byte else "memory",
                "fraction_of_floor": max(t_flop, t_byte) / step_s})
  return out


# --------------------------------------------------------------------------------------- workers

def _write(path: str, row: dict) -> None:
  pathlib.Path(path).write_text(json.dumps(row))


def _is_oom(e: BaseException) -> bool:
  s = f"{type(e).__name__} {e}"
  return "RESOURCE_EXHAUSTED" in s or "out of memory" in s.lower() or "OutOfMemory" in s


def jax_worker(cfg: dict, result: str) -> None:
  import jax
  import optax
  from flax import nnx
  from popdiff_jax.data.batching import bucket_lengths, make_batches
  from popdiff_jax.experiments.next_user import make_train_step
  from popdiff_jax.models.lean_softmax import lean_eval_sums
  from popdiff_jax.models.ndm import NDM
  from popdiff_jax.train.parallel import data_parallel, make_mesh
  from popdiff_jax.train.state import create_train_state

  n_dev = int(cfg.get("n_devices", 1))
  devices = jax.devices()[:n_dev]
  dev = devices[0]
  # Weak scaling by default: BATCH cascades per device (global batch BATCH * n_dev).
  batch_size = cfg.get("global_batch") or BATCH * n_dev
  row = {"bench": cfg["bench"], "impl": cfg["impl"], "device": dev.device_kind,
         "n_devices": n_dev, "unit": "cascades/s", "throughput": None, "peak_mem_bytes": None,
         "oom": False, "jax": jax.__version__, "global_batch": batch_size}
  if len(devices) < n_dev:
    raise RuntimeError(f"{n_dev} devices asked for, {jax.device_count()} present")

  def peak():
    stats = [d.memory_stats() for d in devices]
    if not all(stats):
      return None
    per = [int(s.get("peak_bytes_in_use", 0)) for s in stats]
    if n_dev > 1:
      row["peak_mem_bytes_per_device"] = per
    return max(per)

  train, test, num_items, f_init, max_len = load_data(cfg)
  buckets = bucket_lengths(max_len)
  model = NDM(num_items, dim=DIM, num_heads=HEADS, window=WINDOW, f_init=f_init,
              dropout_rate=DROPOUT, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  del model
  tx = optax.adam(LR)
  lean = cfg["impl"].startswith("jax_lean")
  row["loss_per"] = cfg.get("loss_per", "prediction")
  train_step = make_train_step(graphdef, tx, jit=False, loss="lean" if lean else "dense",
                               loss_per=row["loss_per"])
  # Evaluation is the memory-lean one for both JAX rows (equal to the dense metrics to 1e-5,
  # tests/test_lean_softmax.py): bounded memory, and one compile for one padded shape.
  eval_step = jax.jit(lambda p, b: lean_eval_sums(p, graphdef, b, (10,)))
  state = create_train_state(params, tx)
  if n_dev == 1:
    step = jax.jit(train_step, donate_argnums=0)
    place = jax.device_put
  else:
    dp = data_parallel(train_step, make_mesh(n_dev), state, donate=True, pad=True)
    step, state = dp.step, dp.place_state(state)
    place = lambda bs: [dp.place_batch(b) for b in bs]  # noqa: E731
  base = jax.random.key(0)
  row.update({"num_items": num_items, "train_cascades": len(train), "max_len": max_len,
              "buckets": list(buckets), "f_init": f_init})
  epoch_s, n_step, loss = [], 0, None
  try:
    for epoch in range(cfg["epochs"]):
      batches = place(make_batches(train, batch_size, max_len=max_len, shuffle=True, seed=0,
                                   epoch=epoch))
      keys = jax.random.split(jax.random.fold_in(base, epoch), len(batches))
      jax.block_until_ready((batches, keys))
      t0 = time.perf_counter()
      for i, b in enumerate(batches):
        state, m = step(state, b, keys[i])
      jax.block_until_ready((state, m))
      epoch_s.append(time.perf_counter() - t0)
      loss = float(m["loss"])
      n_step += len(batches)
      row.update({"epochs": epoch + 1, "epoch_seconds": epoch_s, "last_loss": loss,
                  "peak_mem_bytes": peak(), "steps_per_epoch": len(batches)})
      if len(epoch_s) > 1:
        row["throughput"] = len(train) / statistics.median(epoch_s[1:])
        row["step_ms"] = 1e3 * statistics.median(epoch_s[1:]) / len(batches)
      _write(result, row)
    if test and not cfg.get("no_eval"):
      _evaluate_jax(cfg, row, result, eval_step, state.params, test, max_len, peak)
    # The fixed-shape step: the longest cascades (32 a device) in the longest bucket.
    longest = sorted(train, key=lambda c: -len(c.users))[:batch_size]
    fixed = place(make_batches(longest, batch_size, max_len=max_len,
                               buckets=(buckets[-1],)))[0]
    times = []
    for i in range(cfg["fixed_steps"] + 1):
      t0 = time.perf_counter()
      state, m = step(state, fixed, jax.random.fold_in(base, 10_000 + i))
      jax.block_until_ready((state, m))
      times.append(time.perf_counter() - t0)
    feat_dim = WINDOW * DIM + DIM * f_init
    # Per device: the floor is that of one device's share of the batch.
    row["fixed_shape"] = floor(dev.device_kind, -(-batch_size // n_dev), buckets[-1], feat_dim,
                               num_items, lean, statistics.median(times[1:]))
    row["peak_mem_bytes"] = peak()
  except Exception as e:  # noqa: BLE001 - recorded in the row
    if not _is_oom(e):
      raise
    row.update({"oom": True, "oom_after_steps": n_step, "error": str(e).splitlines()[0][:300],
                "peak_mem_bytes": peak()})
  _write(result, row)


def eval_batches(test, max_len: int, cap: int | None):
  """The first ``cap`` test cascades (file order; all when ``cap`` is 0/None) packed into batches
  of ``EVAL_BATCH`` rows of one shape (``max_len + 1`` tokens): one compile, same inputs for
  every implementation."""
  from popdiff_jax.data.batching import make_batches
  chosen = list(test) if not cap else list(test)[:cap]
  return chosen, make_batches(chosen, EVAL_BATCH, max_len=max_len, buckets=(max_len + 1,))


def _evaluate_jax(cfg, row, result, eval_step, params, test, max_len, peak) -> None:
  """Test Hits@10 / MAP@10 (lean, one shape), timed; written to the row as soon as known."""
  import jax
  import jax.numpy as jnp
  from popdiff_jax.metrics.ranking import finalize
  t0 = time.perf_counter()
  chosen, batches = eval_batches(test, max_len, cfg.get("eval_cascades"))
  total = None
  for b in batches:
    sums = eval_step(params, b)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  metrics = finalize(jax.device_get(total))
  row.update({f"test_{k}": v for k, v in metrics.items()})
  row.update({"test_cascades": len(chosen), "test_cascades_total": len(test),
              "eval": f"lean_eval_sums, batches of {EVAL_BATCH} x {max_len + 1}",
              "eval_seconds": round(time.perf_counter() - t0, 2),
              "peak_mem_bytes_with_eval": peak()})
  _write(result, row)


def torch_worker(cfg: dict, result: str) -> None:
  import numpy as np
  import torch

  sys.path.insert(0, str(REPO / "benchmarks"))
  from _torch_ndm import TorchNDM, loss_and_count, rank_counts
  from popdiff_jax.data.batching import pack, sequence_length
  from popdiff_jax.metrics.ranking import hits_and_map

  cuda = torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  torch.set_float32_matmul_precision(cfg["torch_precision"])
  torch.manual_seed(0)
  name = torch.cuda.get_device_name() if cuda else "cpu"
  row = {"bench": cfg["bench"], "impl": ANCHOR, "device": name, "n_devices": 1,
         "unit": "cascades/s", "throughput": None, "peak_mem_bytes": None, "oom": False,
         "torch": torch.__version__, "float32_matmul_precision": cfg["torch_precision"]}

  def sync():
    if cuda:
      torch.cuda.synchronize()

  def peak():
    return int(torch.cuda.max_memory_allocated()) if cuda else None

  def to_dev(b):
    return torch.as_tensor(b.users, device=device), torch.as_tensor(b.mask, device=device)

  train, test, num_items, f_init, max_len = load_data(cfg)
  model = TorchNDM(num_items, DIM, HEADS, WINDOW, f_init, DROPOUT).to(device)
  opt = torch.optim.Adam(model.parameters(), lr=LR)
  row.update({"num_items": num_items, "train_cascades": len(train), "max_len": max_len,
              "f_init": f_init})
  epoch_s, n_step, length = [], 0, None
  try:
    for epoch in range(cfg["epochs"]):
      order = np.random.default_rng([0, epoch]).permutation(len(train))
      batches = []
      for s in range(0, len(order), BATCH):
        chunk = [train[i] for i in order[s:s + BATCH]]
        longest = max(sequence_length(c, max_len) for c in chunk)
        batches.append(to_dev(pack(chunk, longest, len(chunk), max_len)))
      sync()
      model.train()
      t0 = time.perf_counter()
      for users, mask in batches:
        length = users.shape[1]
        loss, _ = loss_and_count(model, users, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_step += 1
      sync()
      epoch_s.append(time.perf_counter() - t0)
      row.update({"epochs": epoch + 1, "epoch_seconds": epoch_s,
                  "last_loss": float(loss.detach()), "peak_mem_bytes": peak()})
      if len(epoch_s) > 1:
        row["throughput"] = len(train) / statistics.median(epoch_s[1:])
      _write(result, row)
    longest = sorted(train, key=lambda c: -len(c.users))[:BATCH]
    length = max(sequence_length(c, max_len) for c in longest)
    users, mask = to_dev(pack(longest, length, BATCH, max_len))
    times = []
    for _ in range(cfg["fixed_steps"] + 1):
      sync()
      t0 = time.perf_counter()
      loss, _ = loss_and_count(model, users, mask)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      sync()
      times.append(time.perf_counter() - t0)
    # The recipe predicts from the first L - 1 positions of a batch padded to L.
    row["fixed_shape"] = floor(name, BATCH, length - 1, WINDOW * DIM + DIM * f_init, num_items,
                               False, statistics.median(times[1:]))
    row["peak_mem_bytes"] = peak()
    _write(result, row)
    if test:
      model.eval()
      t0 = time.perf_counter()
      chosen, test_batches = eval_batches(test, max_len, cfg.get("eval_cascades"))
      sums, count = {"hits@10": 0.0, "map@10": 0.0}, 0.0
      for b in test_batches:
        greater, equal, tm = rank_counts(model, *to_dev(b))
        hits, ap = hits_and_map(greater.astype(np.float32), equal.astype(np.float32), 10)
        w = tm.astype(np.float32)
        sums["hits@10"] += float((np.asarray(hits) * w).sum())
        sums["map@10"] += float((np.asarray(ap) * w).sum())
        count += float(w.sum())
      row.update({f"test_{k}": v / max(count, 1.0) for k, v in sums.items()})
      row.update({"test_cascades": len(chosen), "test_cascades_total": len(test),
                  "eval": f"rank_counts, batches of {EVAL_BATCH} x {max_len + 1}",
                  "eval_seconds": round(time.perf_counter() - t0, 2)})
  except torch.cuda.OutOfMemoryError as e:
    row.update({"oom": True, "oom_after_steps": n_step, "oom_batch_length": length,
                "error": str(e).splitlines()[0][:300], "peak_mem_bytes": peak()})
  _write(result, row)


# ---------------------------------------------------------------------------------------- driver

def configs(a) -> list[dict]:
  """The configurations in order of importance (a cut-off run keeps the rows that matter most).

  ``timeout`` bounds a worker's training (process start, compiles, epochs, fixed-shape step);
  ``eval_timeout`` is added on top for the test evaluation of the real set, so evaluation can
  never eat the training's time (the last run's JAX rows lost their Hits@10 that way).
  """
  if a.quick:
    real = {"dataset": "ndm/irvine", "max_len": 50, "epochs": 2, "fixed_steps": 2}
    synth = {"dataset": "synthetic", "num_users": 20_000, "num_cascades": 64, "max_len": 60,
             "epochs": 2, "fixed_steps": 2}
    timeout = 300
  else:
    real = {"dataset": "forest/twitter", "max_len": 200, "epochs": a.epochs, "fixed_steps": 5}
    synth = {"dataset": "synthetic", "num_users": 1_000_000, "num_cascades": 1024, "max_len": 500,
             "epochs": 3, "fixed_steps": 3}
    timeout = None
  real["eval_cascades"] = a.eval_cascades
  rb = "ndm_train/" + ("quick_real" if a.quick else "forest_twitter")
  sb = "ndm_train/" + ("quick_synthetic" if a.quick else "synthetic_1m")
  common = {"data_dir": a.data_dir, "torch_precision": a.torch_precision}
  # On an H100 a JAX worker spends ~60 s compiling its six length buckets, ~1 s training, ~10 s
  # compiling and running the one-shape evaluation.
  out = [
      {"name": "real_torch", "bench": rb, "impl": ANCHOR, **real, "timeout": 70,
       "eval_timeout": 20},
      {"name": "real_lean", "bench": rb, "impl": "jax_lean", **real, "timeout": 100,
       "eval_timeout": 40},
      {"name": "synth_lean", "bench": sb, "impl": "jax_lean", **synth, "timeout": 110},
      {"name": "synth_torch", "bench": sb, "impl": ANCHOR, **synth, "timeout": 50},
      {"name": "real_dense", "bench": rb, "impl": "jax_dense", **real, "timeout": 100,
       "eval_timeout": 40},
      {"name": "synth_dense", "bench": sb, "impl": "jax_dense", **synth, "timeout": 60},
      # Length buckets make batches of short cascades count as much as batches of long ones
      # under a per-prediction mean; these rows weigh every prediction equally
      # (NextUserConfig.loss_per="cascade": Σ NLL / B, the paper's summed loss up to a constant).
      # Not run unless named in --only.
      {"name": "real_lean_cascade", "bench": rb, "impl": "jax_lean_per_cascade", **real,
       "timeout": 100, "eval_timeout": 40, "loss_per": "cascade", "opt_in": True},
      {"name": "real_dense_cascade", "bench": rb, "impl": "jax_dense_per_cascade", **real,
       "timeout": 100, "eval_timeout": 40, "loss_per": "cascade", "opt_in": True},
  ]
  if a.n_devices > 1:
    # Scaling 1 -> N devices (JAX lean; weak scaling: 32 cascades a device unless
    # --global-batch), no evaluation.
    for tag, data, bench, t in (("real", real, "ndm_scaling/" + rb.split("/")[1], 110),
                                ("synth", synth, "ndm_scaling/" + sb.split("/")[1], 120)):
      for n in (1, a.n_devices):
        out.append({"name": f"scale_{tag}_{n}", "bench": bench, "impl": "jax_lean", **data,
                    "n_devices": n, "global_batch": a.global_batch, "timeout": t,
                    "eval_cascades": 0, "no_eval": True})
  for c in out:
    c.update(common)
    c.setdefault("eval_timeout", 0)
    if timeout:
      c["timeout"] = timeout
  return [c for c in out if (c["name"] in a.only if a.only else not c.get("opt_in"))]


def run_config(cfg: dict, timeout: float) -> dict:
  """Runs one configuration in a subprocess (``timeout``: training plus evaluation seconds)."""
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Shared by the workers: the JAX rows' identical evaluation program compiles once.
  env.setdefault("JAX_COMPILATION_CACHE_DIR",
                 str(pathlib.Path(tempfile.gettempdir()) / "popdiff_gpu_suite_jax_cache"))
  if cfg["impl"] == ANCHOR:
    env["JAX_PLATFORMS"] = "cpu"  # the torch process uses JAX only for host-side metrics
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    result = f.name
  pathlib.Path(result).write_text("{}")
  t0 = time.perf_counter()
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", json.dumps(cfg),
         "--result", result]
  try:
    proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
    timed_out = False
  except subprocess.TimeoutExpired as e:
    rc, timed_out = None, True
    tail = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
            else (e.stdout or ""))[-800:]
  row = json.loads(pathlib.Path(result).read_text() or "{}")
  os.unlink(result)
  row.setdefault("bench", cfg["bench"])
  row.setdefault("impl", cfg["impl"])
  for k in ("device", "throughput", "peak_mem_bytes"):
    row.setdefault(k, None)
  row.setdefault("n_devices", cfg.get("n_devices", 1))
  row.setdefault("unit", "cascades/s")
  row.setdefault("oom", False)
  row.setdefault("kind", "suite")
  row.update({"config": cfg["name"], "wall_seconds": round(time.perf_counter() - t0, 1),
              "timeout_s": round(timeout, 1)})
  if timed_out:
    row["timed_out"] = True
  if rc not in (0, None):
    row["error"] = row.get("error") or f"exit {rc}: {tail}"
  return row


def _anchor(rows: list[dict], r: dict) -> dict | None:
  """The torch recipe of the row's bench; for a scaling bench its 1-device row."""
  if r["bench"].startswith("ndm_scaling/"):
    return next((a for a in rows if a["bench"] == r["bench"] and a.get("n_devices") == 1
                 and a["impl"] == r["impl"]), None)
  return next((a for a in rows if a["bench"] == r["bench"] and a["impl"] == ANCHOR), None)


def add_ratios(rows: list[dict]) -> None:
  """``ratio_vs_anchor`` (throughput over the torch recipe's, or over the 1-device row for the
  scaling benches), ``mem_ratio_vs_anchor`` and ``hits@10`` beside the anchor's."""
  for r in rows:
    if "test_hits@10" in r:
      r["hits@10"] = r["test_hits@10"]
    anchor = _anchor(rows, r)
    r["ratio_vs_anchor"] = None
    if anchor is None:
      continue
    if anchor.get("throughput") and r.get("throughput"):
      r["ratio_vs_anchor"] = r["throughput"] / anchor["throughput"]
    if anchor.get("peak_mem_bytes") and r.get("peak_mem_bytes"):
      r["mem_ratio_vs_anchor"] = r["peak_mem_bytes"] / anchor["peak_mem_bytes"]
    r["anchor_oom"] = bool(anchor.get("oom"))
    if anchor.get("test_hits@10") is not None:
      r["anchor_hits@10"] = anchor["test_hits@10"]


def _suite_rows(rows: list[dict]) -> list[dict]:
  return [r for r in rows if r.get("kind", "suite") == "suite"]


def merge_results(paths: list[str]) -> dict:
  """Combines result files (``popdiff_jax.results.merge_results``: rows tagged with their file's
  ``run``, the files' metas under ``meta.runs``): a later suite row replaces an earlier one with
  the same ``bench``, ``impl`` and ``n_devices`` (e.g. a rerun of the forest rows into the full
  suite's file) and the ratios are recomputed; rows of another ``kind`` (``repeat``: a repeat
  call kept for its spread, its ratios against its own anchor) are kept as they are."""
  from popdiff_jax.results import merge_results as merge_files
  meta, rows = merge_files(paths)
  suite: list[dict] = []
  for r in _suite_rows(rows):
    key = (r["bench"], r["impl"], r.get("n_devices", 1))
    suite = [x for x in suite if (x["bench"], x["impl"], x.get("n_devices", 1)) != key] + [r]
  add_ratios(suite)
  return {"meta": meta, "rows": suite + [r for r in rows if r.get("kind", "suite") != "suite"]}


def markdown(result: dict) -> str:
  """The README tables of a result file: throughput / memory / accuracy, then the floors."""
  from popdiff_jax.utils.report import markdown_table
  rows = []
  for r in _suite_rows(result["rows"]):
    f = r.get("fixed_shape") or {}
    gib = r.get("peak_mem_bytes")
    rows.append({"bench": r["bench"], "impl": r["impl"], "GPUs": r.get("n_devices", 1),
                 "cascades/s": r.get("throughput"),
                 "x anchor": r.get("ratio_vs_anchor"),
                 "peak GiB": None if gib is None else gib / 2 ** 30,
                 "oom": "yes" if r.get("oom") else ("timeout" if r.get("timed_out") else ""),
                 "epochs": r.get("epochs"), "test Hits@10": r.get("test_hits@10"),
                 "step ms": r.get("step_ms"),
                 "step ms (fixed)": None if not f else 1e3 * f["step_seconds"],
                 "B x L": None if not f else f"{f['batch']} x {f['length']}",
                 "proj TFLOP/s": f.get("achieved_proj_tflops"),
                 "floor ms": None if "floor_seconds" not in f else 1e3 * f["floor_seconds"],
                 "bound": f.get("bound"), "of floor": f.get("fraction_of_floor")})
  cols1 = ["bench", "impl", "GPUs", "cascades/s", "x anchor", "peak GiB", "oom", "epochs",
           "test Hits@10", "step ms"]
  cols2 = ["bench", "impl", "B x L", "step ms (fixed)", "proj TFLOP/s", "floor ms", "bound",
           "of floor"]
  meta = result.get("meta", {})
  if isinstance(meta.get("runs"), list):
    head = "Merged from " + "; ".join(
        f"{m.get('note') or m.get('file') or m['run']} "
        f"(commit {m.get('commit', meta.get('commit'))}, {m.get('date', meta.get('date'))})"
        for m in meta["runs"])
  else:
    head = (f"Device {result['rows'][0].get('device') if result['rows'] else '?'}, commit "
            f"{meta.get('commit')}, {meta.get('date')}, suite wall {meta.get('wall_seconds')} s.")
  return "\n\n".join([head, markdown_table(rows, cols1), markdown_table(rows, cols2)])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=None,
                 help="folder holding forest/ (on the GPU: .carry_data)")
  p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_suite.json"))
  p.add_argument("--quick", action="store_true", help="tiny CPU configuration (smoke test)")
  p.add_argument("--epochs", type=int, default=6, help="epochs on forest/twitter (first: warm-up)")
  p.add_argument("--budget", type=float, default=400.0, help="seconds for the whole suite")
  p.add_argument("--only", nargs="*", default=None,
                 help="configuration names to run: real_torch real_lean real_dense synth_lean "
                      "synth_torch synth_dense, and with --n-devices N: scale_real_1 "
                      "scale_real_N scale_synth_1 scale_synth_N")
  p.add_argument("--n-devices", type=int, default=1,
                 help="add the 1 -> N device scaling rows (JAX lean, data parallel over N "
                      "devices of one host)")
  p.add_argument("--global-batch", type=int, default=None,
                 help="scaling rows: fixed global batch (strong scaling); default 32 a device "
                      "(weak scaling)")
  p.add_argument("--eval-cascades", type=int, default=0,
                 help="test cascades scored for Hits@10 (the first ones of the split; 0 = all)")
  p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                 help="merge result files into --out (later rows replace earlier ones with the "
                      "same bench, impl and n_devices) and stop")
  p.add_argument("--torch-precision", default="high", choices=("highest", "high"),
                 help="torch float32 matmul precision; 'high' = TF32, as JAX's default on GPUs")
  p.add_argument("--table", default=None, metavar="JSON",
                 help="print the Markdown tables of a finished result file (for the README)")
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
    print(markdown({"meta": meta, "rows": rows}))
    return 0
  if a.merge:
    merged = merge_results(a.merge)
    write_results(a.out, merged["rows"], merged["meta"])
    print(markdown(merged))
    return 0
  from popdiff_jax.utils.report import format_table
  t_start = time.perf_counter()
  # devices=False: the driver leaves the accelerator to the worker processes.
  meta = run_metadata(
      "gpu_suite", devices=False, packages=("torch",),
      config=dict({k: v for k, v in vars(a).items() if k not in ("worker", "result")},
                  batch_size=BATCH, lr=LR, dim=DIM, heads=HEADS, window=WINDOW))
  out = pathlib.Path(a.out)
  rows = []
  for cfg in configs(a):
    left = a.budget - (time.perf_counter() - t_start)
    if left < 15:
      rows.append({"bench": cfg["bench"], "impl": cfg["impl"], "config": cfg["name"],
                   "kind": "suite", "skipped": "suite budget spent", "throughput": None})
      continue
    rows.append(run_config(cfg, min(cfg["timeout"] + cfg["eval_timeout"], left - 5)))
    add_ratios(rows)
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_results(out, rows, meta)
    r = rows[-1]
    print(f"[{meta['wall_seconds']:6.1f}s] {cfg['name']}: throughput={r.get('throughput')} "
          f"peak={r.get('peak_mem_bytes')} oom={r.get('oom')} "
          f"hits@10={r.get('test_hits@10')} {r.get('error', '')[:300]}", flush=True)
  add_ratios(rows)
  write_results(out, rows, meta)
  cols = ["bench", "impl", "n_devices", "throughput", "ratio_vs_anchor", "peak_mem_bytes", "oom",
          "test_hits@10", "wall_seconds"]
  print(format_table(rows, cols, ".3f"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
