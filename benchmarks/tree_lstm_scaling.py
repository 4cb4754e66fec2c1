"""Cost of one scan step of ``levelwise_tree_lstm`` as the batch grows, at a fixed chunk width.

With C fixed and K steps, N = K * C node slots. If a step does O(C·H) work, the time per step is
flat in K; if it copies the (B + N, H) state or cotangent buffers, it grows linearly with K. For
each impl and K this times the forward and the gradient (of Σ h² w.r.t. xw, c_root, U), counts the
copies of (B + N)-row buffers in the optimized HLO (all / inside while bodies), and writes JSON.
Random parents in the previous chunk (a chain of full levels), float32, jitted, medians.

Usage: ``python benchmarks/tree_lstm_scaling.py [--chunk 256] [--ks 8 32 128 512]
[--impls scan vjp] [--out benchmarks/results/tree_lstm_step_scaling_cpu.json]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from popdiff_jax.nn import tree_lstm as M  # noqa: E402
from popdiff_jax.utils import report  # noqa: E402
from tree_lstm import _count_buffer_copies  # noqa: E402


def timeit(fn, repeats):
  jax.block_until_ready(fn())
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--chunk", type=int, default=256)
  ap.add_argument("--ks", type=int, nargs="+", default=[8, 32, 128, 512])
  ap.add_argument("--impls", nargs="+", default=list(M.LEVELWISE_IMPLS))
  ap.add_argument("--unroll", type=int, default=1)
  ap.add_argument("--hidden", type=int, default=128)
  ap.add_argument("--roots", type=int, default=16)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--budget_s", type=float, default=1e9)
  ap.add_argument("--out", default=str(ROOT / "benchmarks/results/tree_lstm_step_scaling_cpu.json"))
  args = ap.parse_args()
  c_w, hid, b = args.chunk, args.hidden, args.roots
  rows = []
  t_start = time.perf_counter()

  from popdiff_jax.results import run_metadata, write_results
  meta = run_metadata("tree_lstm_step_scaling", config=vars(args))

  def write():
    write_results(args.out, rows, meta)

  for k in args.ks:
    n = k * c_w
    rng = np.random.default_rng(0)
    xw = jnp.asarray(rng.normal(size=(n, 4 * hid)), jnp.float32)
    par = jnp.asarray(np.concatenate(
        [rng.integers(0, b, c_w)] + [b + (j - 1) * c_w + rng.integers(0, c_w, c_w)
                                     for j in range(1, k)]), jnp.int32)
    c0 = jnp.asarray(rng.normal(size=(b, hid)), jnp.float32)
    u = jnp.asarray(rng.normal(size=(hid, 4 * hid)) / np.sqrt(hid), jnp.float32)
    for impl in args.impls:
      if time.perf_counter() - t_start > args.budget_s:
        print(f"budget spent: skip K={k} {impl}", flush=True)
        continue

      def states(xw, c0, u, impl=impl, k=k):
        with jax.default_matmul_precision("highest"):
          return M.levelwise_tree_lstm(xw, par, jnp.zeros_like(c0), c0, u, k, impl=impl,
                                       unroll=args.unroll)[0]

      f = jax.jit(states).lower(xw, c0, u).compile()
      g = jax.jit(jax.grad(lambda xw, c0, u: jnp.sum(states(xw, c0, u) ** 2),
                           argnums=(0, 1, 2))).lower(xw, c0, u).compile()
      tf = timeit(lambda: f(xw, c0, u), args.repeats)
      tg = timeit(lambda: g(xw, c0, u), args.repeats)
      row = dict(impl=impl, unroll=args.unroll, chunk=c_w, steps=k, node_slots=n, hidden=hid,
                 us_per_step_fwd=tf * 1e6 / k, us_per_step_grad=tg * 1e6 / k,
                 hlo_buffer_copies_fwd=_count_buffer_copies(f.as_text(), b + n),
                 hlo_buffer_copies_grad=_count_buffer_copies(g.as_text(), b + n))
      rows.append(row)
      print(f"{impl:5s} C={c_w} K={k:5d} N={n:8d}  fwd {row['us_per_step_fwd']:9.1f} us/step  "
            f"grad {row['us_per_step_grad']:9.1f} us/step  copies in loop fwd "
            f"{row['hlo_buffer_copies_fwd']['in_while_body']} grad "
            f"{row['hlo_buffer_copies_grad']['in_while_body']}", flush=True)
      write()
  write()


if __name__ == "__main__":
  main()
