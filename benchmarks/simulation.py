"""Independent Cascade simulation throughput: popdiff_jax's `simulate_ic` against cynetdiff.

Graphs: seeded random directed graphs (`popdiff_jax.simulate.random_graph`: distinct loop-free edges
drawn uniformly) with nodes = edges / 10 (mean out-degree 10), every edge with probability p in
{0.01, 0.1} (branching factor 0.1: subcritical; 1.0: critical); 10 seeds (nodes 0..9). Sizes 1e4,
1e5, 1e6 and 1e7 edges; the 1e5 (10k nodes) and 1e6 (100k nodes) graphs are the targets (kind "ic"
and "scaling"), the others scaling rows only (kind "scaling").

Protocol: `simulate_ic` (the public entry point, `method="auto"` unless --methods says otherwise) is
called once to compile and warm up, then `--repeats` times with fresh keys, each call ended by
`jax.block_until_ready`; rows give the median. cynetdiff (Cython, one CPU core, one run at a time as
its documentation does) runs in the same process on the same edge list for up to `--anchor-seconds`
(at least 100 runs unless one run takes longer than the cap: `anchor_capped`); where a single run
does not finish within `--anchor-cap` seconds the anchor is skipped and the row says so. The spread
distributions are compared by a two-sample Kolmogorov-Smirnov test (`ks_p`) and a chi-square test
on a shared histogram (`chi2_p`).

Work and its bound. `edge_tests_per_s` = `ICResult.edge_tests` / median time: the (edge, run)
liveness tests the engine evaluated (dense: every padded slot of every run, every round; frontier:
every out-edge of every activation). `bound_edge_tests_per_s` = min(memory bound, integer bound) for
the engine that ran, from the device constants in DEVICES:

  memory bound  = HBM bandwidth / bytes per test
  integer bound = int32 ops/s / integer ops per test,   int32 ops/s = 64 x SMs x clock
                  (64 int32 add/mul/shift/logic per clock per SM on sm_90)

  dense:    bytes/test = 8 / 32 (the source word read and the state write, per 32 runs);
            ops/test = 14 (`popdiff_jax.simulate.ic.DENSE_OPS_PER_TEST`)  -> integer-bound
  frontier: bytes/test = 96 + 192 p: the streamed arrays of one iteration per item (popped-entry
            gathers, marker scan, CSR reads of edge, target and threshold, the bitset probe, two
            dedupe passes, the rank scan, ring and counter writes), plus, for the share p of live
            items, six random 32-byte sectors (bitset probe and update, claim table, winner
            lookup, ring append, counters); ops/test ~ 40          -> memory-bound

Usage:
  python benchmarks/simulation.py --gpu --out $OUT/ic_simulation.json --png $OUT/ic_scaling.png
  python benchmarks/simulation.py --quick --out /tmp/ic_quick.json --png /tmp/ic_quick.png   # CPU
  python benchmarks/simulation.py --plot                 # the PNG from the JSON, nothing rerun
  python benchmarks/simulation.py --merge A.json B.json --out C.json   # runs of several calls

NDM sampler (``--ndm-users``, off unless given): Monte Carlo continuations per second of the
incremental sampler (``popdiff_jax.simulate.sampler.simulate``) against the same loop recomputing
NDM's forward pass at every step; rows of kind "ndm_sampler".
"""

from __future__ import annotations

import argparse
import array
import os
import pathlib
import platform
import sys
import time
import traceback

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from popdiff_jax.results import merge_results, read_results, run_metadata, write_results  # noqa: E402
from popdiff_jax.simulate import random_graph, simulate_ic  # noqa: E402
from popdiff_jax.simulate.ic import DENSE_OPS_PER_TEST, resolve_method  # noqa: E402

# Device constants: HBM bandwidth (bytes/s), SM count, boost clock (Hz). Matched by substring of
# the JAX device kind, first match wins.
DEVICES = (("H200", {"hbm_bytes_per_s": 4.8e12, "sms": 132, "clock_hz": 1.98e9}),
           ("H100", {"hbm_bytes_per_s": 3.35e12, "sms": 132, "clock_hz": 1.98e9}))
FRONTIER_BYTES = (96.0, 192.0)  # per test: streamed, plus per live test (x p)
FRONTIER_OPS = 40.0
DENSE_BYTES = 8.0 / 32.0

# (edges, S for p = 0.01, S for p = 0.1) per mode; nodes = edges / 10.
# One S per graph, so that both p share one compilation.
GPU_PLAN = ((1_000_000, 1 << 20, 1 << 20), (100_000, 1 << 20, 1 << 20), (10_000, 1 << 20, 1 << 20),
            (10_000_000, 1 << 16, 1 << 16))
QUICK_PLAN = ((10_000, 4096, 4096), (100_000, 4096, 4096))


def device_constants(kind: str):
  for name, c in DEVICES:
    if name in kind:
      return c
  return None


def bound(method: str, p: float, kind: str):
  """(bound edge tests/s, which bound, memory bound, integer bound) for the engine on the device."""
  c = device_constants(kind)
  if c is None:
    return None, None, None, None
  ints = 64.0 * c["sms"] * c["clock_hz"]
  if method == "dense":
    mem, ops = c["hbm_bytes_per_s"] / DENSE_BYTES, ints / DENSE_OPS_PER_TEST
  else:
    mem = c["hbm_bytes_per_s"] / (FRONTIER_BYTES[0] + FRONTIER_BYTES[1] * p)
    ops = ints / FRONTIER_OPS
  return min(mem, ops), ("memory" if mem <= ops else "integer"), mem, ops


def _csr(edges, n):
  order = np.argsort(edges[:, 0], kind="stable")
  e = edges[order]
  starts = np.searchsorted(e[:, 0], np.arange(n)).astype(np.uint32)
  return starts, e[:, 1].astype(np.uint32)


def bench_cynetdiff(edges, n, p, seeds, max_sims, max_seconds, cap_seconds):
  """cynetdiff's IC model one run at a time, as its documentation does.

  Returns (sims/s or None, spreads, note): None when one run takes longer than cap_seconds.
  """
  from cynetdiff.models import IndependentCascadeModel
  starts, targets = _csr(edges, n)
  model = IndependentCascadeModel(array.array("I", starts.tobytes()),
                                  array.array("I", targets.tobytes()),
                                  activation_prob=float(p), rng=12345)
  model.set_seeds([int(s) for s in seeds])
  t0 = time.perf_counter()
  model.reset_model()
  model.advance_until_completion()
  first = time.perf_counter() - t0
  if first > cap_seconds:
    return None, np.asarray([model.get_num_activated_nodes()]), \
        f"one cynetdiff run took {first:.1f} s > cap {cap_seconds} s: no anchor"
  for _ in range(min(20, int(max_seconds / max(first, 1e-6) / 10))):  # warm-up
    model.reset_model()
    model.advance_until_completion()
  spreads = []
  t0 = time.perf_counter()
  while len(spreads) < max_sims and (len(spreads) < 100 or time.perf_counter() - t0 < max_seconds):
    model.reset_model()
    model.advance_until_completion()
    spreads.append(model.get_num_activated_nodes())
    if time.perf_counter() - t0 > max_seconds and len(spreads) >= 2:
      break
  dt = time.perf_counter() - t0
  note = None if len(spreads) >= 100 else f"capped at {max_seconds} s: {len(spreads)} runs"
  return len(spreads) / dt, np.asarray(spreads), note


def bench_ndlib(edges, n, p, seeds, max_sims, max_seconds):
  """ndlib's IndependentCascadesModel with the per-edge threshold p. Returns (sims/s, spreads)."""
  import networkx as nx
  import ndlib.models.ModelConfig as mc
  from ndlib.models.epidemics import IndependentCascadesModel
  g = nx.DiGraph()
  g.add_nodes_from(range(n))
  g.add_edges_from(map(tuple, edges.tolist()))
  config = mc.Configuration()
  config.add_model_initial_configuration("Infected", [int(s) for s in seeds])
  for u, v in g.edges():
    config.add_edge_configuration("threshold", (u, v), float(p))
  np.random.seed(0)
  spreads = []
  t0 = time.perf_counter()
  while len(spreads) < max_sims and (len(spreads) < 2 or time.perf_counter() - t0 < max_seconds):
    model = IndependentCascadesModel(g)
    model.set_initial_status(config)
    while True:
      it = model.iteration(node_status=False)
      if it["node_count"].get(1, 0) == 0:
        break
    spreads.append(it["node_count"].get(1, 0) + it["node_count"].get(2, 0))
  dt = time.perf_counter() - t0
  return len(spreads) / dt, np.asarray(spreads)


def bench_popdiff(graph, seeds, sims, repeats, method, long_s=8.0):
  """Median wall time of `simulate_ic`. Returns (sims/s, spreads of set 0, info)."""
  t0 = time.perf_counter()
  res = jax.block_until_ready(simulate_ic(graph, seeds, jax.random.key(0), sims, method=method))
  compile_s = time.perf_counter() - t0
  times, tests = [], []
  for r in range(repeats):
    t0 = time.perf_counter()
    res = jax.block_until_ready(simulate_ic(graph, seeds, jax.random.key(r + 1), sims,
                                            method=method))
    times.append(time.perf_counter() - t0)
    tests.append(float(res.edge_tests))
    if sum(times) > long_s:  # a long call: fewer repeats, the device is lent for minutes
      break
  med = float(np.median(times))
  return sims / med, np.asarray(res.spread[0]), {
      "median_s": med, "times_s": times, "compile_and_first_s": compile_s,
      "rounds": int(res.rounds), "edge_tests": float(np.mean(tests)),
      "edge_tests_per_s": float(np.mean(tests)) / med}


def profile_rounds(graph, seeds, sims_list, repeats, p, kind, method="frontier"):
  """Where the frontier engine's time goes on one graph: rows of kind "profile" (one per S) and
  one of kind "profile_fit".

  For each S the engine runs `rounds` iterations of its loop and `edge_tests` tests; the
  non-negative least-squares fit of time = a x rounds + b x edge_tests (no intercept) over the S
  splits it into a fixed cost per iteration (a: launches, the queue's prefix sums, the loop's
  condition) and a marginal cost per test (b). 1 / b, the marginal edge tests/s, is what the
  kernel reaches once an iteration's work is large; `fixed_share` is a x rounds / time at the
  largest S: the part of the run that no bandwidth can shorten.
  """
  rows = []
  for s in sims_list:
    _, _, info = bench_popdiff(graph, seeds, s, repeats, method)
    rows.append({"kind": "profile", "impl": "popdiff_jax", "method": method, "sims": s, "p": p,
                 **{k: info[k] for k in ("median_s", "times_s", "rounds", "edge_tests",
                                         "edge_tests_per_s", "compile_and_first_s")},
                 "s_per_round": info["median_s"] / info["rounds"],
                 "tests_per_round": info["edge_tests"] / info["rounds"]})
  a_mat = np.array([[r["rounds"], r["edge_tests"]] for r in rows], dtype=float)
  t = np.array([r["median_s"] for r in rows])
  scale = a_mat.max(0)
  from scipy.optimize import nnls  # both costs >= 0
  (a, b), _ = nnls(a_mat / scale, t)
  a, b = a / scale[0], b / scale[1]
  pred = a_mat @ np.array([a, b])
  bnd, which, _, _ = bound(method, p, kind)
  big = rows[-1]
  fit = {"kind": "profile_fit", "impl": "popdiff_jax", "method": method, "p": p,
         "sims": [r["sims"] for r in rows], "per_round_s": float(a), "per_test_s": float(b),
         "marginal_edge_tests_per_s": float(1.0 / b) if b > 0 else None,  # None: no cost seen
         "bound_edge_tests_per_s": bnd, "bound": which,
         "marginal_fraction_of_bound": float(1.0 / b / bnd) if b > 0 and bnd else None,
         "fixed_share": float(a * big["rounds"] / big["median_s"]),
         "max_rel_residual": float(np.max(np.abs(pred - t) / t))}
  return rows, fit


def two_sample(a, b):
  """KS and chi-square (shared histogram, bins with >= 5 expected) between two spread samples."""
  from scipy import stats
  ks = stats.ks_2samp(a, b)
  hi = int(max(a.max(), b.max())) + 1
  edges = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, 21)).astype(int))
  edges = np.concatenate([edges, [hi + 1]])
  ca, _ = np.histogram(a, edges)
  cb, _ = np.histogram(b, edges)
  keep = (ca + cb) > 0
  table = np.stack([ca[keep], cb[keep]])
  chi_p = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table)[1])
  return {"ks_stat": float(ks.statistic), "ks_p": float(ks.pvalue), "chi2_p": chi_p,
          "n_popdiff": int(a.size), "n_anchor": int(b.size)}


def plot(json_path, png_path):
  """Log-log scaling plot (sims/s and edge tests/s against edges) from the kind-"scaling" rows."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  meta, rows = read_results(json_path)
  rows = [r for r in rows if r.get("kind") == "scaling" and r.get("sims_per_s")]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  groups = {}
  for r in rows:
    dev = "CPU, 1 core" if r["impl"] == "cynetdiff" else r.get("device", "")
    label = f"{r['impl']} p={r['p']:g} ({dev}{', ' + r['run'] if r.get('run') else ''})"
    groups.setdefault(label, []).append(r)
  for label, rs in sorted(groups.items()):
    rs = sorted(rs, key=lambda r: r["edges"])
    x = [r["edges"] for r in rs]
    style = dict(marker="o" if "popdiff" in label else "s",
                 linestyle="-" if "p=0.1" in label else "--")
    axes[0].plot(x, [r["sims_per_s"] for r in rs], label=label, **style)
    ys = [(r["edges"], r.get("edge_tests_per_s")) for r in rs if r.get("edge_tests_per_s")]
    if ys:
      axes[1].plot(*zip(*ys), label=label, **style)
    bs = [(r["edges"], r.get("bound_edge_tests_per_s")) for r in rs
          if r.get("bound_edge_tests_per_s")]
    if bs:
      axes[1].plot(*zip(*bs), color="grey", linestyle=":", linewidth=1)
  for ax, yl in zip(axes, ("simulations / s", "edge tests / s (dotted: bound)")):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("edges (nodes = edges / 10)")
    ax.set_ylabel(yl)
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend(fontsize=7)
  runs = {r.get("run") for r in rows}
  commits = sorted({str(m.get("commit")) for m in meta.get("runs", [meta])
                    if m.get("run") in runs or not meta.get("runs")} - {"None"})
  fig.suptitle(f"IC simulation, 10 seeds: popdiff_jax (method auto) vs cynetdiff "
               f"(commit {', '.join(commits) or meta.get('commit') or '?'})", fontsize=10)
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  return png_path


def bench_ndm_sampler(num_users, num_runs, steps, repeats, recompute: bool):
  """Runs/s of the NDM sampler: ``recompute`` False = incremental decoding (the library), True = a
  forward pass over the whole padded sequence at every step (the anchor). Returns a dict."""
  import jax.numpy as jnp
  from flax import nnx

  from popdiff_jax.models.ndm import NDM
  from popdiff_jax.simulate.sampler import simulate

  model = NDM(num_users, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  rng = np.random.default_rng(0)
  prefix = jnp.asarray(rng.integers(2, num_users, size=(num_runs, 1)), jnp.int32)
  mask = jnp.ones((num_runs, 1), bool)

  if not recompute:
    def run(key):
      out = simulate(graphdef, params, prefix, mask, jnp.full((num_runs,), steps, jnp.int32), key,
                     num_runs=1, num_steps=steps)
      return out.new_users
  else:
    @jax.jit
    def run(key):
      m = nnx.merge(graphdef, params)
      length = steps + 1
      users = jnp.zeros((num_runs, length), jnp.int32).at[:, 0].set(prefix[:, 0])
      rows = jnp.arange(num_runs)

      def body(t, carry):
        users, blocked = carry
        valid = jnp.arange(length)[None, :] <= t
        logits = m(users, jnp.broadcast_to(valid, users.shape))[:, t]  # full forward, row t
        logits = jnp.where(blocked, -jnp.inf, logits)
        user = jax.random.categorical(jax.random.fold_in(key, t), logits).astype(jnp.int32)
        return users.at[:, t + 1].set(user), blocked.at[rows, user].set(True)

      blocked = jnp.zeros((num_runs, num_users), bool).at[:, :2].set(True)
      blocked = blocked.at[rows, prefix[:, 0]].set(True)
      users, _ = jax.lax.fori_loop(0, steps, body, (users, blocked))
      return (users[:, 1:] > 1).sum(-1)

  t0 = time.perf_counter()
  jax.block_until_ready(run(jax.random.key(0)))
  compile_s = time.perf_counter() - t0
  times = []
  for r in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(jax.random.key(r + 1)))
    times.append(time.perf_counter() - t0)
  med = float(np.median(times))
  return {"impl": "popdiff_jax[ndm_sampler_recompute]" if recompute else "popdiff_jax[ndm_sampler]",
          "users": num_users, "runs": num_runs, "steps": steps, "runs_per_s": num_runs / med,
          "user_steps_per_s": num_runs * steps / med, "median_s": med, "times_s": times,
          "compile_and_first_s": compile_s, "mean_new_users": float(np.asarray(out).mean())}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  mode = ap.add_mutually_exclusive_group()
  mode.add_argument("--gpu", action="store_true", help="the GPU plan (GPU_PLAN), ~6 min")
  mode.add_argument("--quick", action="store_true", help="the CPU plan (QUICK_PLAN), ~1-2 min")
  mode.add_argument("--plot", action="store_true", help="only remake --png from --out")
  mode.add_argument("--merge", nargs="+", metavar="JSON", help="merge result files into --out")
  ap.add_argument("--edges", default=None, help="comma list of edge counts (overrides the plan)")
  ap.add_argument("--sims", type=int, default=None, help="S for every row (overrides the plan)")
  ap.add_argument("--ps", default="0.01,0.1")
  ap.add_argument("--methods", default="auto", help="comma list of auto, dense, frontier")
  ap.add_argument("--repeats", type=int, default=None, help="timed calls (GPU 3, quick 2)")
  ap.add_argument("--anchor-seconds", type=float, default=None, help="cynetdiff time per row")
  ap.add_argument("--anchor-cap", type=float, default=20.0,
                  help="skip cynetdiff where one run takes longer than this")
  ap.add_argument("--budget", type=float, default=None,
                  help="seconds; rows not started by then are recorded as skipped (GPU 300)")
  ap.add_argument("--ndlib", action="store_true", help="also ndlib (pure Python) up to 1e5 edges")
  ap.add_argument("--ndm-users", default="", help="NDM sampler vocabulary sizes (empty: none)")
  ap.add_argument("--ndm-runs", default="1024,16384", help="runs advanced together")
  ap.add_argument("--ndm-steps", type=int, default=32, help="steps per run")
  ap.add_argument("--ndm-recompute-max-runs", type=int, default=1024)
  mode.add_argument("--profile", action="store_true",
                    help="only the per-round profile of the frontier engine on the largest of "
                         "--edges (default 1e6), S of --profile-sims (kinds profile, profile_fit)")
  ap.add_argument("--profile-sims", default="16384,65536,262144,1048576")
  ap.add_argument("--out", default=str(ROOT / "benchmarks/results/ic_simulation.json"))
  ap.add_argument("--png", default=None, help="plot path (default: ic_scaling.png beside --out)")
  ap.add_argument("--run", default=None, help="name of this run in meta (for --merge)")
  ap.add_argument("--note", default="")
  args = ap.parse_args(argv)
  png = args.png or str(pathlib.Path(args.out).with_name("ic_scaling.png"))
  if args.merge:
    meta, rows = merge_results(args.merge)
    print(f"wrote {write_results(args.out, rows, meta)} ({len(rows)} rows)")
    print(f"wrote {plot(args.out, png)}")
    return
  if args.plot:
    print(f"wrote {plot(args.out, png)}")
    return
  plan = GPU_PLAN if args.gpu else QUICK_PLAN
  repeats = args.repeats or (3 if args.gpu else 2)
  anchor_s = args.anchor_seconds or (2.0 if args.gpu else 1.0)
  budget = args.budget or (300.0 if args.gpu else 1e9)
  if args.edges:
    plan = tuple((int(float(e)), args.sims or 4096, args.sims or 4096)
                 for e in args.edges.split(","))
  elif args.sims:
    plan = tuple((e, args.sims, args.sims) for e, _, _ in plan)
  ps = [float(x) for x in args.ps.split(",")]
  methods = args.methods.split(",")
  start = time.perf_counter()

  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", "") or ""
  device = f"{dev.platform}:{kind}"
  cpu_info = platform.processor() or platform.machine()
  seeds = np.arange(10)
  rows, ndm_rows = [], []
  meta = run_metadata("ic_simulation", packages=("cynetdiff", "networkx", "scipy"),
                      config=dict(vars(args), plan=plan, seeds=seeds.tolist(), graph_seed=0),
                      cpu=cpu_info, cpu_cores_visible=len(os.sched_getaffinity(0)),
                      device_constants=device_constants(kind),
                      **({"run": args.run} if args.run else {}), **({"note": args.note}
                                                                    if args.note else {}))

  def write(partial):
    return write_results(args.out, rows + ndm_rows, dict(meta, complete=not partial))

  if args.profile:
    e = max(int(float(x)) for x in (args.edges or "1000000").split(","))
    n = e // 10
    for p in ps:
      graph, _ = random_graph(n, e, p, seed=0)
      base = {"nodes": n, "edges": e, "seeds": 10, "device": device}
      prof, fit = profile_rounds(graph, seeds, [int(x) for x in args.profile_sims.split(",")],
                                 repeats, p, kind)
      rows.extend({**base, **r} for r in prof + [fit])
      write(partial=True)
      for r in prof:
        print(f"[{n}/{e} p={p}] S={r['sims']:>8}: {r['median_s'] * 1e3:9.2f} ms, "
              f"{r['rounds']} rounds, {r['s_per_round'] * 1e6:8.1f} us/round, "
              f"{r['tests_per_round']:.3g} tests/round, {r['edge_tests_per_s']:.3g} tests/s",
              flush=True)
      print(f"[{n}/{e} p={p}] fit: {fit['per_round_s'] * 1e6:.1f} us per round + "
            f"{fit['per_test_s']:.3g} s per test (marginal {fit['marginal_edge_tests_per_s'] or 0:.3g}"
            f" tests/s, bound {fit['bound_edge_tests_per_s'] or float('nan'):.3g}); fixed share "
            f"{fit['fixed_share']:.2f} at S={prof[-1]['sims']}; max residual "
            f"{fit['max_rel_residual']:.2f}", flush=True)
    meta["wall_s"] = time.perf_counter() - start
    print(f"wrote {write(partial=False)}")
    return

  targets = (100_000, 1_000_000)
  for e, s_low, s_high in plan:
    n = e // 10
    graph = edges = None
    for p in ps:
      s = s_low if p < 0.05 else s_high
      base = {"nodes": n, "edges": e, "seeds": 10, "p": p}
      kinds = ["scaling"] + (["ic"] if e in targets else [])
      if time.perf_counter() - start > budget:
        rows.append({**base, "kind": "scaling", "impl": "popdiff_jax", "skipped": "time budget"})
        write(partial=True)
        continue
      try:
        if graph is None:
          t0 = time.perf_counter()
          graph, edges = random_graph(n, e, p, seed=0)
          build_s = time.perf_counter() - t0
        else:  # same edges, new probability
          graph = graph._replace(probs=np.full_like(graph.probs, p), buckets=tuple(
              b._replace(prob=np.where(b.prob > 0, np.float32(p), np.float32(0)))
              for b in graph.buckets))
      except Exception as err:  # noqa: BLE001 - record and go on
        rows.append({**base, "kind": "scaling", "impl": "popdiff_jax", "error": repr(err)})
        write(partial=True)
        continue
      try:
        cyn_rate, cyn_spreads, note = bench_cynetdiff(edges, n, p, seeds, 200_000, anchor_s,
                                                      args.anchor_cap)
        cyn = {**base, "impl": "cynetdiff", "method": "cynetdiff",
               "device": f"cpu (1 core; {cpu_info})", "sims": int(cyn_spreads.size),
               "sims_per_s": cyn_rate, "mean_spread": float(cyn_spreads.mean()),
               "ratio_vs_cynetdiff": 1.0 if cyn_rate else None,
               "edge_tests_per_s": None if cyn_rate is None else
               cyn_rate * float(cyn_spreads.mean()) * e / n,
               "anchor_capped": note is not None, **({"note": note} if note else {})}
      except Exception as err:  # noqa: BLE001
        cyn_rate, cyn_spreads, cyn = None, None, {**base, "impl": "cynetdiff", "error": repr(err)}
      for k in kinds:
        rows.append({**cyn, "kind": k})
      print(f"[{n}/{e} p={p}] cynetdiff {cyn.get('sims_per_s') or 0:,.0f} sims/s "
            f"{cyn.get('note', '')}", flush=True)
      write(partial=True)
      if args.ndlib and e <= 100_000:
        try:
          nd_rate, nd_spreads = bench_ndlib(edges, n, p, seeds, 50, 4.0)
          rows.append({**base, "kind": "ic", "impl": "ndlib", "device": f"cpu (1 core; {cpu_info})",
                       "sims": int(nd_spreads.size), "sims_per_s": nd_rate,
                       "mean_spread": float(nd_spreads.mean()),
                       "ratio_vs_cynetdiff": nd_rate / cyn_rate if cyn_rate else None})
        except Exception as err:  # noqa: BLE001
          rows.append({**base, "kind": "ic", "impl": "ndlib", "error": repr(err)})
      for method in methods:
        used = resolve_method(graph, s, (1, len(seeds)), method)
        row = {**base, "impl": "popdiff_jax", "method": used, "requested_method": method,
               "device": device, "sims": s, "padded_edges": graph.padded_edges,
               "graph_build_s": build_s}
        try:
          rate, spreads, info = bench_popdiff(graph, seeds, s, repeats, method)
          b, which, mem, ints = bound(used, p, kind)
          try:
            test = two_sample(spreads, cyn_spreads) if cyn_spreads is not None and \
                cyn_spreads.size > 1 else {}
          except Exception as err:  # noqa: BLE001 - e.g. no scipy: keep the timing
            test = {"error": repr(err)}
          row.update(sims_per_s=rate, mean_spread=float(spreads.mean()),
                     ratio_vs_cynetdiff=rate / cyn_rate if cyn_rate else None,
                     bound_edge_tests_per_s=b, bound=which, memory_bound=mem, integer_bound=ints,
                     fraction_of_bound=info["edge_tests_per_s"] / b if b else None,
                     ks_p=test.get("ks_p"), chi2_p=test.get("chi2_p"), **info,
                     vs_cynetdiff=test)
        except Exception as err:  # noqa: BLE001 - an OOM or a failed compile: record, go on
          row.update(error=repr(err), traceback=traceback.format_exc(limit=3))
        for k in kinds:
          rows.append({**row, "kind": k})
        write(partial=True)
        if "error" in row:
          print(f"[{n}/{e} p={p}] popdiff_jax[{method}] S={s}: ERROR {row['error'][:200]}",
                flush=True)
        else:
          print(f"[{n}/{e} p={p}] popdiff_jax[{used}] S={s}: {row['sims_per_s']:,.0f} sims/s "
                f"({(row['ratio_vs_cynetdiff'] or float('nan')):.1f}x cynetdiff) "
                f"{row['edge_tests_per_s']:.3g} tests/s (bound {b or float('nan'):.3g}) "
                f"mean {row['mean_spread']:.1f} rounds {row['rounds']} "
                f"KS p={row['ks_p'] if row['ks_p'] is not None else float('nan'):.3g} "
                f"compile+first {row['compile_and_first_s']:.1f} s", flush=True)
  for users in [int(u) for u in args.ndm_users.split(",") if u]:
    for runs in [int(r) for r in args.ndm_runs.split(",")]:
      inc = bench_ndm_sampler(users, runs, args.ndm_steps, repeats, recompute=False)
      inc.update(kind="ndm_sampler", device=device)
      ndm_rows.append(inc)
      if runs <= args.ndm_recompute_max_runs:
        rec = bench_ndm_sampler(users, runs, args.ndm_steps, repeats, recompute=True)
        rec.update(kind="ndm_sampler", device=device)
        inc["ratio_vs_recompute"] = inc["runs_per_s"] / rec["runs_per_s"]
        ndm_rows.append(rec)
      write(partial=True)
  meta["wall_s"] = time.perf_counter() - start
  path = write(partial=False)
  print("\n| edges | p | impl | method | S | sims/s | x cynetdiff | edge tests/s | bound | KS p |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    if r.get("kind") != "scaling" or "sims_per_s" not in r:
      continue
    f = lambda k, fmt: format(r[k], fmt) if r.get(k) is not None else "-"  # noqa: E731
    print(f"| {r['edges']:.0e} | {r['p']} | {r['impl']} | {r.get('method', '-')} | "
          f"{r.get('sims', '-')} | {f('sims_per_s', ',.0f')} | {f('ratio_vs_cynetdiff', '.1f')} | "
          f"{f('edge_tests_per_s', '.3g')} | {f('bound_edge_tests_per_s', '.3g')} | "
          f"{f('ks_p', '.3g')} |")
  print(f"wrote {path} in {meta['wall_s']:.0f} s")
  try:
    print(f"wrote {plot(path, png)}")
  except Exception as err:  # noqa: BLE001 - e.g. no matplotlib here: --plot remakes it later
    print(f"no plot ({err!r}); python benchmarks/simulation.py --plot --out {path}")


if __name__ == "__main__":
  main()
