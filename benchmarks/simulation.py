"""Independent Cascade simulation throughput: popdiff_jax against cynetdiff and ndlib (issue 3, item 5).

Graphs: seeded random directed graphs (distinct loop-free edges drawn uniformly) of 10k nodes and
100k edges, and 100k nodes and 1M edges, every edge with probability p in {0.01, 0.1}; 10 seeds
(nodes 0..9); S in {1k, 10k, 100k} runs. The anchors run on this machine's CPU in the same run:
cynetdiff (Cython, one core) and ndlib (pure Python; a few runs only). The spread distribution of
popdiff_jax is compared with cynetdiff's by a two-sample Kolmogorov-Smirnov test and a chi-square
test on a shared histogram.

NDM sampler (``--ndm-users``): Monte Carlo continuations per second of the incremental sampler
(``popdiff_jax.simulate.sampler.simulate``: one attention row and one projection per step) against
the same loop that recomputes NDM's forward pass over the whole sequence at every step (what a
sampler built on the training forward does), same model, same runs, same steps, in the same run.
The model has random weights (throughput does not depend on training); each run starts from a
one-user prefix with a budget of ``--ndm-steps`` new users. The anchor masks Terminate and runs
every step; the library's loop stops when all runs have stopped, which with random weights is after
all steps too (a few runs sample Terminate early, ``mean_new_users`` shows it, but the batch runs
until its last run ends), so both do the same number of steps. These rows have ``kind``
"ndm_sampler" (the IC rows ``kind`` "ic").

Usage:
  python benchmarks/simulation.py                      # full run, writes benchmarks/results/ic_simulation.json
  python benchmarks/simulation.py --sims 1000,10000 --no-big --out benchmarks/results/ic_simulation_cpu.json
"""

from __future__ import annotations

import argparse
import array
import os
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from popdiff_jax.results import run_metadata, write_results  # noqa: E402
from popdiff_jax.simulate import random_graph, simulate_ic  # noqa: E402


def _csr(edges, n):
  order = np.lexsort((edges[:, 1], edges[:, 0]))
  e = edges[order]
  starts = np.searchsorted(e[:, 0], np.arange(n)).astype(np.uint32)
  return starts, e[:, 1].astype(np.uint32)


def bench_cynetdiff(edges, n, p, seeds, max_sims, max_seconds):
  """Runs cynetdiff's IC model one run at a time, as its documentation does. Returns (sims/s, spreads)."""
  from cynetdiff.models import IndependentCascadeModel
  starts, targets = _csr(edges, n)
  model = IndependentCascadeModel(array.array("I", starts.tolist()), array.array("I", targets.tolist()),
                                  activation_prob=float(p), rng=12345)
  model.set_seeds([int(s) for s in seeds])
  for _ in range(20):  # warm-up
    model.reset_model()
    model.advance_until_completion()
  spreads = []
  t0 = time.perf_counter()
  while len(spreads) < max_sims and (len(spreads) < 100 or time.perf_counter() - t0 < max_seconds):
    model.reset_model()
    model.advance_until_completion()
    spreads.append(model.get_num_activated_nodes())
  dt = time.perf_counter() - t0
  return len(spreads) / dt, np.asarray(spreads)


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


def bench_popdiff(graph, seeds, sims, repeats, words_per_chunk, prob_bits, method="dense"):
  """Median wall time of one jitted call of simulate_ic. Returns (sims/s, spreads, info)."""
  times, spread, rounds = [], None, 0
  kw = {"method": method, "prob_bits": prob_bits}
  if method == "dense":
    kw["words_per_chunk"] = words_per_chunk
  else:
    kw.update(frontier_cap=max(8192, 2 * sims), item_cap=max(8192, 2 * sims))
  t0 = time.perf_counter()
  res = simulate_ic(graph, seeds, jax.random.key(0), sims, **kw)
  jax.block_until_ready(res)
  compile_s = time.perf_counter() - t0
  for r in range(repeats):
    t0 = time.perf_counter()
    res = simulate_ic(graph, seeds, jax.random.key(r + 1), sims, **kw)
    jax.block_until_ready(res)
    times.append(time.perf_counter() - t0)
    spread, rounds = res.spread, int(res.rounds)
  med = float(np.median(times))
  return sims / med, np.asarray(spread[0]), {"median_s": med, "compile_and_first_s": compile_s,
                                             "rounds": rounds, "times_s": times}


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
  if table.shape[1] < 2:
    chi_p = 1.0
  else:
    chi_p = float(stats.chi2_contingency(table)[1])
  return {"ks_stat": float(ks.statistic), "ks_pvalue": float(ks.pvalue), "chi2_pvalue": chi_p,
          "n_popdiff": int(a.size), "n_anchor": int(b.size)}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--sims", default="1000,10000,100000")
  ap.add_argument("--ps", default="0.01,0.1")
  ap.add_argument("--nodes", type=int, default=10_000)
  ap.add_argument("--edges", type=int, default=100_000)
  ap.add_argument("--big-nodes", type=int, default=100_000)
  ap.add_argument("--big-edges", type=int, default=1_000_000)
  ap.add_argument("--no-big", action="store_true")
  ap.add_argument("--big-sims", default=None, help="S values for the big graph (default: --sims)")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--words-per-chunk", type=int, default=4096)
  ap.add_argument("--prob-bits", type=int, default=16)
  ap.add_argument("--anchor-seconds", type=float, default=3.0)
  ap.add_argument("--ndlib-seconds", type=float, default=4.0)
  ap.add_argument("--no-ndlib", action="store_true")
  ap.add_argument("--methods", default="dense,frontier")
  ap.add_argument("--frontier-max-p", type=float, default=0.05,
                  help="run the frontier engine only for p up to this (it is slow at high p)")
  ap.add_argument("--ndm-users", default="1000,10000",
                  help="NDM sampler vocabulary sizes (empty: skip the NDM sampler rows)")
  ap.add_argument("--ndm-runs", default="1024,16384", help="runs advanced together")
  ap.add_argument("--ndm-steps", type=int, default=32, help="steps per run")
  ap.add_argument("--ndm-recompute-max-runs", type=int, default=1024,
                  help="largest run count for the recompute anchor ([runs, steps, users] logits)")
  ap.add_argument("--skip-ic", action="store_true", help="only the NDM sampler rows")
  ap.add_argument("--out", default=str(ROOT / "benchmarks/results/ic_simulation.json"))
  ap.add_argument("--note", default="")
  args = ap.parse_args(argv)

  dev = jax.devices()[0]
  device = f"{dev.platform}:{getattr(dev, 'device_kind', '')}"
  cpu_info = platform.processor() or platform.machine()
  try:
    cpu_count = len(os.sched_getaffinity(0))
  except AttributeError:
    cpu_count = os.cpu_count()
  seeds = np.arange(10)
  sims_list = [int(s) for s in args.sims.split(",")]
  graphs = [(args.nodes, args.edges, sims_list)]
  if not args.no_big:
    big_sims = sims_list if args.big_sims is None else [int(s) for s in args.big_sims.split(",")]
    graphs.append((args.big_nodes, args.big_edges, big_sims))
  rows = []
  ndm_rows = []
  meta = run_metadata(
      "ic_simulation", packages=("cynetdiff", "ndlib", "networkx", "scipy"),
      config=dict(vars(args), seeds=seeds.tolist(), graph_seed=0),
      cpu=cpu_info, cpu_cores_visible=cpu_count)

  def write(partial):
    """IC rows (kind "ic") and NDM sampler rows (kind "ndm_sampler"); ``complete`` in meta."""
    return write_results(args.out, rows + ndm_rows, dict(meta, complete=not partial))

  for n, e, sims_here in ([] if args.skip_ic else graphs):
    for p in [float(x) for x in args.ps.split(",")]:
      graph, edges = random_graph(n, e, p, seed=0)
      cyn_rate, cyn_spreads = bench_cynetdiff(edges, n, p, seeds, 200_000, args.anchor_seconds)
      base = {"nodes": n, "edges": e, "seeds": 10, "p": p}
      rows.append({**base, "kind": "ic", "impl": "cynetdiff", "device": f"cpu (1 core; {cpu_info})",
                   "sims": int(cyn_spreads.size), "sims_per_s": cyn_rate,
                   "mean_spread": float(cyn_spreads.mean()), "ratio_vs_cynetdiff": 1.0})
      print(f"[{n}/{e} p={p}] cynetdiff {cyn_rate:,.0f} sims/s mean {cyn_spreads.mean():.2f}", flush=True)
      if not args.no_ndlib and e <= 100_000:
        try:
          nd_rate, nd_spreads = bench_ndlib(edges, n, p, seeds, 50, args.ndlib_seconds)
        except ImportError as err:  # ndlib missing on this machine: say so, keep the rest
          print(f"ndlib not importable here ({err}); no ndlib row", flush=True)
          args.no_ndlib = True
          nd_rate = None
      if not args.no_ndlib and e <= 100_000 and nd_rate is not None:
        rows.append({**base, "kind": "ic", "impl": "ndlib",
                     "device": f"cpu (1 core; {cpu_info})", "sims": int(nd_spreads.size),
                     "sims_per_s": nd_rate,
                     "mean_spread": float(nd_spreads.mean()), "ratio_vs_cynetdiff": nd_rate / cyn_rate})
        print(f"[{n}/{e} p={p}] ndlib {nd_rate:,.1f} sims/s mean {nd_spreads.mean():.2f}", flush=True)
      for method in args.methods.split(","):
        if method == "frontier" and p > args.frontier_max_p:
          continue
        for s in sims_here:
          rate, spreads, info = bench_popdiff(graph, seeds, s, args.repeats, args.words_per_chunk,
                                              args.prob_bits, method)
          test = two_sample(spreads, cyn_spreads)
          rows.append({**base, "kind": "ic", "impl": f"popdiff_jax[{method}]", "method": method,
                       "device": device, "sims": s, "sims_per_s": rate,
                       "mean_spread": float(spreads.mean()), "ratio_vs_cynetdiff": rate / cyn_rate,
                       "padded_edges": graph.padded_edges, **info, "vs_cynetdiff": test})
          print(f"[{n}/{e} p={p}] popdiff_jax[{method}] S={s}: {rate:,.0f} sims/s ({rate / cyn_rate:.2f}x cynetdiff) "
                f"mean {spreads.mean():.2f} rounds {info['rounds']} KS p={test['ks_pvalue']:.3g} "
                f"chi2 p={test['chi2_pvalue']:.3g}", flush=True)
          write(partial=True)  # a run cut short still leaves its rows
  for users in [int(u) for u in args.ndm_users.split(",") if u]:
    for runs in [int(r) for r in args.ndm_runs.split(",")]:
      inc = bench_ndm_sampler(users, runs, args.ndm_steps, args.repeats, recompute=False)
      inc.update(kind="ndm_sampler", device=device)
      ndm_rows.append(inc)
      if runs <= args.ndm_recompute_max_runs:
        rec = bench_ndm_sampler(users, runs, args.ndm_steps, args.repeats, recompute=True)
        rec.update(kind="ndm_sampler", device=device)
        inc["ratio_vs_recompute"] = inc["runs_per_s"] / rec["runs_per_s"]
        ndm_rows.append(rec)
      print(f"[ndm U={users} runs={runs}] incremental {inc['runs_per_s']:,.0f} runs/s"
            + (f", recompute {rec['runs_per_s']:,.0f} ({inc['ratio_vs_recompute']:.1f}x)"
               if runs <= args.ndm_recompute_max_runs else ""), flush=True)
      write(partial=True)
  path = write(partial=False)
  if ndm_rows:
    print("\n| NDM sampler | users | runs | steps | runs/s | x recompute |")
    print("|---|---|---|---|---|---|")
    for r in ndm_rows:
      print(f"| {r['impl']} | {r['users']} | {r['runs']} | {r['steps']} | {r['runs_per_s']:,.0f} | "
            f"{r.get('ratio_vs_recompute', float('nan')):.1f} |")
  print("\n| graph | p | impl | device | S | sims/s | mean spread | x cynetdiff |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['nodes']}/{r['edges']} | {r['p']} | {r['impl']} | {r['device']} | {r['sims']} | "
          f"{r['sims_per_s']:,.0f} | {r['mean_spread']:.2f} | {r['ratio_vs_cynetdiff']:.2f} |")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
