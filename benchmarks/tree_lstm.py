"""Speed of the level-wise JAX tree LSTM (Diffusion-LSTM cell, Eq. 1) against PyTorch anchors.

Three implementations of the same cell on the same trees with the same hidden size:

* ``torch_node_by_node``: the common tree-LSTM code: one node at a time in breadth-first order
  (batch size 1), the parent's (h, c) taken from a Python list. Its nodes/s do not depend on the
  batch, so it is timed on the first trees of the set (at least ``--node_min`` nodes; reported).
* ``torch_levelwise``: one step per depth over all nodes of that depth of all trees, parents
  gathered from the previous level's tensors (index_select), autograd through the levels.
* ``jax_levelwise[C=...,IMPL,unroll=U]``: the library's ``levelwise_tree_lstm`` on a ``TreeBatch``
  (one ``lax.scan`` step per chunk of C same-depth nodes; ``W x + b`` of all nodes in one product
  before the scan), jitted; with C = the widest level it is exactly one step per depth. IMPL
  ``vjp`` is the hand-written backward pass, ``scan`` autodiff through the scan (the first
  version), ``vjpx`` / ``scanx`` the same given x, W, b (``levelwise_tree_lstm_inputs``: W x + b
  chunk by chunk inside the scan), ``level`` one step per level of static width
  (``levelwise_tree_lstm_by_level``: no scan; U ignored), ``levelx`` the same with one
  ``[x, h_parent] @ [W; U] + b`` product per level (``levelwise_tree_lstm_inputs_by_level``); U the
  scan's unroll factor (``full``: no loop). For ``level``/``levelx`` C only sets the padding (each
  level is rounded up to a multiple of C): a small C wastes nothing.
  ``--variants scan:1,vjp:1,vjp:8`` times several in one run; each row also counts the copies of
  (B + N)-row buffers in the optimized HLO (``hlo_buffer_copies_*``; ``--hlo_dir`` keeps the HLO).

fwd = all node states (torch: the per-level state tensors, no loss); fwd+bwd = gradient of
Σ h·r (r random) w.r.t. W, U, b, the root memory and the inputs. Full float32 matmuls on both
sides (JAX precision "highest", TF32 off in torch);
``--precision tf32`` runs both with TF32 products instead (JAX "tensorfloat32", torch
``allow_tf32``; rows then carry ``precision: "tf32"`` and ``-tf32`` in the impl name).
Timings are medians of ``--repeats`` runs after warm-up, with block_until_ready / synchronize.
On a GPU each scan step costs a fixed latency (~10 µs measured on an H100); the JSON reports the
µs per step and the floor ``steps × 10 µs``.

Usage: ``python benchmarks/tree_lstm.py [--trees 64 256 0] [--chunks 4096 8192]
[--variants scan:1,vjp:1,vjp:8] [--tar PATH] [--out benchmarks/results/tree_lstm_speed.json]``
(``--trees 0``: all 1,490 Twitter15 trees). On a GPU: ``bash benchmarks/tree_lstm_device.sh``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from popdiff_jax.data import trees as T  # noqa: E402
from popdiff_jax.utils import report  # noqa: E402
from popdiff_jax.nn import tree_lstm as M  # noqa: E402

LEVEL_FLOOR_US = 10.0
JAX_PRECISION = {"fp32": "highest", "tf32": "tensorfloat32"}


def load_trees(tar: str | None, n: int, seed: int):
  """The first n Twitter15 trees (sorted by name), or random trees of Twitter15-like size."""
  if tar and os.path.exists(tar):
    trees, _ = T.read_twitter15(tar, max_trees=n or None)
    return [t.parent for t in trees], "twitter15"
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n or 1490):
    size = int(np.clip(rng.lognormal(5.5, 0.8), 2, 3000))
    par = [-1] + [0 if rng.random() < 0.6 else int(rng.integers(0, i)) for i in range(1, size)]
    out.append(T.tree_from_parents(par, name="r").parent)
  return out, "random(twitter15-like)"


def timeit(fn, repeats: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    fn()
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def _count_buffer_copies(hlo: str, rows: int) -> dict:
  """Copies of (rows, *) f32 buffers in an optimized HLO module: all, and inside while bodies.

  A ``copy`` of the (B + N)-row state or cotangent buffer inside a while body means a scan step
  costs O(N·H) instead of O(C·H).
  """
  pat = re.compile(r"= f(?:32|64)\[%d,\d+\]\{[^}]*\} copy\(" % rows)
  bodies = set()
  for m in re.finditer(r"while\([^)]*\)[^\n]*body=%?([\w.\-]+)", hlo):
    bodies.add(m.group(1))
  total = in_body = 0
  current = None
  for line in hlo.splitlines():
    head = re.match(r"^%?([\w.\-]+) .*\{$", line) or re.match(r"^ENTRY %?([\w.\-]+)", line)
    if head and not line.startswith(" "):
      current = head.group(1)
    if pat.search(line):
      total += 1
      in_body += current in bodies
  return {"total": total, "in_while_body": in_body}


def run_jax_variant(args, base, hid, jp, jb, k, chunk, impl, unroll, unroll_req, n_nodes, slot_of,
                    h_torch, node_f, node_fb, lvl_f, lvl_fb, log, runs=None):
  """Compiles (AOT), checks against torch and times one JAX variant; returns its result row."""

  def states(p, bb):
    with jax.default_matmul_precision(JAX_PRECISION[args.precision]):
      h0 = jnp.zeros_like(bb["c0"])
      if impl == "level":  # one step per level, static level widths
        xw = bb["x"] @ p["w"] + p["b"][None, :]
        h, _ = M.levelwise_tree_lstm_by_level(xw, bb["parent"], h0, bb["c0"], p["u"], runs)
        return h
      if impl == "levelx":  # the same, [x, h_parent] @ [W; U] + b per level
        h, _ = M.levelwise_tree_lstm_inputs_by_level(bb["x"], p["w"], p["b"], bb["parent"], h0,
                                                     bb["c0"], p["u"], runs)
        return h
      if impl.endswith("x"):  # W x + b inside the scan, chunk by chunk
        h, _ = M.levelwise_tree_lstm_inputs(bb["x"], p["w"], p["b"], bb["parent"], h0, bb["c0"],
                                            p["u"], k, impl=impl[:-1], unroll=unroll)
        return h
      xw = bb["x"] @ p["w"] + p["b"][None, :]
      h, _ = M.levelwise_tree_lstm(xw, bb["parent"], h0, bb["c0"], p["u"], k, impl=impl,
                                   unroll=unroll)
      return h

  def loss(p, x, c0, bb):
    return jnp.sum(states(p, dict(bb, x=x, c0=c0)) * bb["r"])

  by_level = impl in ("level", "levelx")
  name = (f"jax_levelwise[C={chunk},{impl}]" if by_level
          else f"jax_levelwise[C={chunk},{impl},unroll={unroll_req}]")
  log(f"{name}: {k} steps, compiling")
  t0 = time.perf_counter()
  c_fwd = jax.jit(states).lower(jp, jb).compile()
  c_grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(jp, jb["x"], jb["c0"], jb).compile()
  compile_s = time.perf_counter() - t0
  rows = jb["c0"].shape[0] + jb["x"].shape[0]
  copies_f = _count_buffer_copies(c_fwd.as_text(), rows)
  copies_b = _count_buffer_copies(c_grad.as_text(), rows)
  if args.hlo_dir:
    d = pathlib.Path(args.hlo_dir)
    d.mkdir(parents=True, exist_ok=True)
    tag = f"t{base['trees']}_C{chunk}_{impl}_u{unroll_req}"
    (d / f"{tag}_fwd.hlo.txt").write_text(c_fwd.as_text())
    (d / f"{tag}_grad.hlo.txt").write_text(c_grad.as_text())
  h_jax = np.asarray(c_fwd(jp, jb))[slot_of]
  err = float(np.max(np.abs(h_jax - h_torch)))
  t_f = timeit(lambda: jax.block_until_ready(c_fwd(jp, jb)), args.repeats)
  t_fb = timeit(lambda: jax.block_until_ready(c_grad(jp, jb["x"], jb["c0"], jb)), args.repeats)
  jf, jfb = n_nodes / t_f, n_nodes / t_fb
  steps = len(runs) if by_level else k
  return dict(base, impl=name, jax_impl=impl, unroll=unroll_req, chunk=chunk, steps=steps,
              padded_slots=k * chunk, nodes_per_s_fwd=jf, nodes_per_s_fwd_bwd=jfb,
              fwd_ms=t_f * 1e3, fwd_bwd_ms=t_fb * 1e3,
              ratio_fwd_vs_node_by_node=jf / node_f,
              ratio_fwd_bwd_vs_node_by_node=jfb / node_fb,
              ratio_fwd_vs_torch_levelwise=jf / lvl_f,
              ratio_fwd_bwd_vs_torch_levelwise=jfb / lvl_fb,
              us_per_step_fwd=t_f * 1e6 / steps, us_per_step_fwd_bwd=t_fb * 1e6 / steps,
              level_floor_fwd_ms=steps * LEVEL_FLOOR_US / 1e3,
              fwd_over_floor=t_f * 1e6 / (steps * LEVEL_FLOOR_US),
              compile_s=compile_s, hlo_buffer_copies_fwd=copies_f,
              hlo_buffer_copies_fwd_bwd=copies_b, max_abs_diff_vs_torch=err)


def best_variants(rows: list[dict]) -> list[dict]:
  """Per (device, trees): the JAX row with the most nodes/s, forward and forward+backward."""
  out = []
  keys = sorted({(r["device"], r["trees"], r.get("precision", "fp32"))
                 for r in rows if "jax_impl" in r})
  for dev, n, prec in keys:
    js = [r for r in rows if "jax_impl" in r and r["device"] == dev and r["trees"] == n
          and r.get("precision", "fp32") == prec]
    bf = max(js, key=lambda r: r["nodes_per_s_fwd"])
    bfb = max(js, key=lambda r: r["nodes_per_s_fwd_bwd"])
    out.append(dict(device=dev, trees=n, precision=prec, fwd_impl=bf["impl"],
                    ratio_fwd_vs_torch_levelwise=bf["ratio_fwd_vs_torch_levelwise"],
                    ratio_fwd_vs_node_by_node=bf["ratio_fwd_vs_node_by_node"],
                    fwd_bwd_impl=bfb["impl"],
                    ratio_fwd_bwd_vs_torch_levelwise=bfb["ratio_fwd_bwd_vs_torch_levelwise"],
                    ratio_fwd_bwd_vs_node_by_node=bfb["ratio_fwd_bwd_vs_node_by_node"]))
  return out


def parse_variants(spec: str) -> list[tuple[str, str]]:
  """``"scan:1,vjp:1,vjp:8,vjp:full"`` -> [(impl, unroll), ...]."""
  out = []
  for item in spec.split(","):
    impl, _, unroll = item.strip().partition(":")
    unroll = unroll or "1"
    ok_unroll = unroll == "full" or unroll.isdigit()
    if (impl not in ("level", "levelx") and impl.removesuffix("x") not in M.LEVELWISE_IMPLS
        or not ok_unroll):
      raise SystemExit(f"bad variant {item!r}: want IMPL:UNROLL, IMPL in {M.LEVELWISE_IMPLS} "
                       "(+ 'x': levelwise_tree_lstm_inputs), UNROLL an integer or 'full'")
    out.append((impl, unroll))
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--trees", type=int, nargs="+", default=[64],
                  help="numbers of trees (the first ones by name); 0 = all (1,490 for Twitter15)")
  ap.add_argument("--tar", default=os.environ.get(
      "TWITTER15_TAR", str(ROOT.parent / "shared" / "data" / "twitter15_16_trees" /
                          "twitter15_tree.tar.gz")))
  ap.add_argument("--hidden", type=int, default=128)
  ap.add_argument("--precision", choices=tuple(JAX_PRECISION), default="fp32",
                  help="matmul precision on both sides: full float32 (default) or TF32")
  ap.add_argument("--input_dim", type=int, default=42)
  ap.add_argument("--chunks", type=int, nargs="+", default=[0, 1024],
                  help="JAX chunk widths; 0 = the widest level (one step per depth)")
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--node_min", type=int, default=1000)
  ap.add_argument("--max_pad_ratio", type=float, default=12.0,
                  help="skip a JAX chunk width whose padded slots exceed this many times the nodes")
  ap.add_argument("--variants", default="scan:1,vjp:1,vjp:8,vjp:full",
                  help="JAX variants IMPL:UNROLL, comma-separated (impl of levelwise_tree_lstm, "
                       "lax.scan unroll factor or 'full')")
  ap.add_argument("--max_full_unroll", type=int, default=160,
                  help="skip unroll=full for a batch of more steps (compile time)")
  ap.add_argument("--budget_s", type=float, default=1e9,
                  help="skip the JAX variants left once this many seconds have passed")
  ap.add_argument("--hlo_dir", default=None, help="write each variant's optimized HLO here")
  ap.add_argument("--append", action="store_true",
                  help="keep the rows already in --out (several runs into one result file)")
  ap.add_argument("--out", default=str(ROOT / "benchmarks/results/tree_lstm_speed.json"))
  args = ap.parse_args()
  variants = parse_variants(args.variants)

  import torch
  torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
  torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
  tdev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  jdev = jax.devices()[0]
  device = f"{jdev.platform}:{getattr(jdev, 'device_kind', '')}"

  def sync():
    if tdev.type == "cuda":
      torch.cuda.synchronize()

  hid, dim = args.hidden, args.input_dim
  rng = np.random.default_rng(0)
  w = (rng.normal(size=(dim, 4 * hid)) / np.sqrt(dim)).astype(np.float32)
  u = (rng.normal(size=(hid, 4 * hid)) / np.sqrt(hid)).astype(np.float32)
  b = (rng.normal(size=4 * hid) * 0.1).astype(np.float32)
  from popdiff_jax.results import merge_runs, read_results, run_metadata, write_results
  meta = run_metadata("tree_lstm_speed", config=vars(args), packages=("torch",),
                      level_floor_us_assumed=LEVEL_FLOOR_US)
  rows = []  # this run's timing rows
  kept = None  # with --append: the file's runs, whose timing rows are kept beside this run's
  if args.append and os.path.exists(args.out):
    old_meta, old_rows = read_results(args.out)
    kept = (old_meta, [r for r in old_rows if r.get("kind", "timing") == "timing"])
  t_start = time.perf_counter()

  def log(msg):
    print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

  def emit(row):
    if args.precision != "fp32":
      row = dict(row, precision=args.precision, impl=f"{row['impl']}-{args.precision}")
    rows.append(dict(row, kind="timing"))
    log(f"{row['impl']:44s} trees {row['trees']:5d} nodes {row.get('nodes_timed', row['nodes']):7d} "
        f"steps {row.get('steps', 0):4d} fwd {row['nodes_per_s_fwd']:12.0f} n/s  f+b "
        f"{row['nodes_per_s_fwd_bwd']:12.0f} n/s  x node {row['ratio_fwd_vs_node_by_node']:8.1f} / "
        f"{row['ratio_fwd_bwd_vs_node_by_node']:8.1f}  x lvl "
        f"{row.get('ratio_fwd_vs_torch_levelwise', float('nan')):6.2f} / "
        f"{row.get('ratio_fwd_bwd_vs_torch_levelwise', float('nan')):6.2f}")
    write()

  def merged():
    """The file's (meta, timing rows): this run's, after those kept with --append."""
    return (meta, rows) if kept is None else merge_runs([kept, (meta, rows)])

  def write():
    """Timing rows (kind "timing") and the best JAX variant per device and size (kind "best")."""
    out_meta, timing = merged()
    best = [dict(b, kind="best") for b in best_variants(timing)]
    write_results(args.out, timing + best, out_meta)

  max_trees = 0 if 0 in args.trees else max(args.trees)
  parents_all, source = load_trees(args.tar, max_trees, 0)

  seen_sizes = set()
  for n_req in args.trees:
    parents = parents_all[:n_req] if n_req > 0 else parents_all
    n_trees = len(parents)
    if n_trees in seen_sizes:
      continue
    seen_sizes.add(n_trees)
    sizes = [p.shape[0] for p in parents]
    n_nodes = int(sum(sizes))
    depths = []
    for p in parents:
      d = np.zeros(p.shape[0], np.int64)
      for i in range(1, p.shape[0]):
        d[i] = d[p[i]] + 1
      depths.append(d)
    x_all = rng.normal(size=(n_nodes, dim)).astype(np.float32)
    c_root = rng.normal(size=(n_trees, hid)).astype(np.float32)
    r_all = rng.normal(size=(n_nodes, hid)).astype(np.float32)
    offs = np.concatenate([[0], np.cumsum(sizes)])
    n_levels = int(max(d.max() for d in depths)) + 1

    # ---- torch level-wise: per level, global node ids, parent's local index in previous level.
    all_depth = np.concatenate(depths)
    all_tree = np.repeat(np.arange(n_trees), sizes)
    all_par = np.concatenate([np.where(p >= 0, p + o, -1) for p, o in zip(parents, offs[:-1])])
    lvl_nodes = [np.flatnonzero(all_depth == l) for l in range(n_levels)]
    local = np.empty(n_nodes, np.int64)
    for nodes in lvl_nodes:
      local[nodes] = np.arange(nodes.size)
    tt = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=tdev)
    tw, tu, tb = (tt(a).requires_grad_() for a in (w, u, b))
    tx = tt(x_all).requires_grad_()
    tc0 = tt(c_root).requires_grad_()
    tr_ = tt(r_all)
    lvl_idx = [tt(nodes, torch.long) for nodes in lvl_nodes]
    lvl_par = [tt(all_tree[lvl_nodes[0]], torch.long)] + \
        [tt(local[all_par[nodes]], torch.long) for nodes in lvl_nodes[1:]]

    def finish(loss, grad: bool):
      """Backward (when timing it), drop the gradients, wait for the device."""
      if grad:
        loss.backward()
        for t in (tw, tu, tb, tx, tc0):
          t.grad = None
      sync()
      return loss

    def torch_level(grad: bool):
      with torch.set_grad_enabled(grad):
        hp = torch.zeros(n_trees, hid, device=tdev)
        cp = tc0
        loss, hs = 0.0, []
        for l in range(n_levels):
          xi = tx.index_select(0, lvl_idx[l])
          h_par = hp.index_select(0, lvl_par[l])
          c_par = cp.index_select(0, lvl_par[l])
          z = xi @ tw + h_par @ tu + tb
          i, f, g, o = z.chunk(4, dim=1)  # nn.lstm_cell's gate order
          c = torch.sigmoid(f) * c_par + torch.sigmoid(i) * torch.tanh(g)
          h = torch.sigmoid(o) * torch.tanh(c)
          if grad:  # the forward alone keeps the states only (as the JAX forward)
            loss = loss + (h * tr_.index_select(0, lvl_idx[l])).sum()
          hs.append(h)
          hp, cp = h, c
      return finish(loss, grad)

    # ---- torch node-by-node on the first trees (>= node_min nodes).
    k_sub = int(np.searchsorted(np.cumsum(sizes), args.node_min) + 1)
    k_sub = min(k_sub, n_trees)
    n_sub = int(offs[k_sub])

    def torch_node(grad: bool):
      with torch.set_grad_enabled(grad):
        loss = 0.0
        zero = torch.zeros(hid, device=tdev)
        # Per-node views made once (unbind): indexing tx per node would make every node's
        # backward allocate a gradient of the whole input (quadratic), which is not the cell's cost.
        xs = tx[:n_sub].unbind(0)
        rs = tr_[:n_sub].unbind(0)
        c0s = tc0[:k_sub].unbind(0)
        for j in range(k_sub):
          hs, cs = [], []
          par = parents[j]
          for i in range(par.shape[0]):
            q = int(par[i])
            hp_, cp_ = (zero, c0s[j]) if q < 0 else (hs[q], cs[q])
            z = xs[offs[j] + i] @ tw + hp_ @ tu + tb
            ii, f, g, o = z.chunk(4)
            c = torch.sigmoid(f) * cp_ + torch.sigmoid(ii) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
            loss = loss + (h * rs[offs[j] + i]).sum()
      return finish(loss, grad)

    log(f"{n_trees} trees, {n_nodes} nodes, {n_levels} levels: timing torch node-by-node")
    reps_node = max(2, args.repeats // 4)
    t_node_f = timeit(lambda: torch_node(False), reps_node, 1)
    t_node_fb = timeit(lambda: torch_node(True), reps_node, 1)
    node_f = n_sub / t_node_f
    node_fb = n_sub / t_node_fb
    t_lvl_f = timeit(lambda: torch_level(False), args.repeats)
    t_lvl_fb = timeit(lambda: torch_level(True), args.repeats)
    base = dict(device=device, trees=n_trees, nodes=n_nodes, levels=n_levels, hidden=hid,
                input_dim=dim, tree_source=source)
    emit(dict(base, impl="torch_node_by_node", torch_device=str(tdev), nodes_timed=n_sub,
                     trees_timed=k_sub, nodes_per_s_fwd=node_f, nodes_per_s_fwd_bwd=node_fb,
                     fwd_ms=t_node_f * 1e3, fwd_bwd_ms=t_node_fb * 1e3,
                     ratio_fwd_vs_node_by_node=1.0, ratio_fwd_bwd_vs_node_by_node=1.0))
    lvl_f, lvl_fb = n_nodes / t_lvl_f, n_nodes / t_lvl_fb
    emit(dict(base, impl="torch_levelwise", torch_device=str(tdev), steps=n_levels,
                     nodes_per_s_fwd=lvl_f, nodes_per_s_fwd_bwd=lvl_fb,
                     fwd_ms=t_lvl_f * 1e3, fwd_bwd_ms=t_lvl_fb * 1e3,
                     ratio_fwd_vs_node_by_node=lvl_f / node_f,
                     ratio_fwd_bwd_vs_node_by_node=lvl_fb / node_fb))
    with torch.no_grad():
      hp = torch.zeros(n_trees, hid, device=tdev)
      cp = tc0
      h_torch = np.zeros((n_nodes, hid), np.float32)
      for l in range(n_levels):
        z = tx[lvl_idx[l]] @ tw + hp[lvl_par[l]] @ tu + tb
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * cp[lvl_par[l]] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        h_torch[lvl_nodes[l]] = h.cpu().numpy()
        hp, cp = h, c

    # ---- JAX level-wise (the library code), every (chunk width, impl, unroll) variant.
    if tdev.type == "cuda":
      torch.cuda.empty_cache()
    widest = int(max(np.bincount(all_depth)))
    done = set()
    exs = [T.TreeExample("t", p, d.astype(np.int32), x_all[o:o + p.shape[0]],
                         np.zeros(p.shape[0], np.int32), np.zeros(1, np.float32))
           for p, d, o in zip(parents, depths, offs[:-1])]
    for chunk_req in args.chunks:
      chunk = widest if chunk_req == 0 else min(chunk_req, widest)
      if chunk in done:
        continue
      done.add(chunk)
      k = T.num_chunks_needed([e.depth for e in exs], chunk)
      if k * chunk > args.max_pad_ratio * n_nodes:
        log(f"skip C={chunk}: {k * chunk} padded slots for {n_nodes} nodes")
        continue
      batch = T.make_tree_batch(exs, num_protos=1, chunk=chunk, num_chunks=k, batch_trees=n_trees)
      slot_of = np.empty(n_nodes, np.int64)
      # make_tree_batch places node (tree j, index i) at the slot where tree==j and BFS order.
      order = np.lexsort((np.arange(n_nodes), all_depth))  # by depth, then global id
      slot_of[order] = np.flatnonzero(batch.node_mask)
      r_slots = np.zeros((batch.x.shape[0], hid), np.float32)
      r_slots[slot_of] = r_all
      jb = jax.device_put(dict(x=batch.x, parent=batch.parent, r=r_slots, c0=c_root))
      jp = jax.device_put(dict(w=w, u=u, b=b))
      runs = M.chunk_runs(batch.chunk_depth)
      for impl, unroll_req in variants:
        if time.perf_counter() - t_start > args.budget_s:
          log(f"time budget {args.budget_s:.0f} s spent: skip C={chunk} {impl} unroll={unroll_req}")
          continue
        if unroll_req == "full" and k > args.max_full_unroll:
          log(f"skip C={chunk} {impl} unroll=full: {k} steps > --max_full_unroll")
          continue
        unroll = True if unroll_req == "full" else int(unroll_req)
        row = run_jax_variant(args, base, hid, jp, jb, k, chunk, impl, unroll, unroll_req,
                              n_nodes, slot_of, h_torch, node_f, node_fb, lvl_f, lvl_fb, log,
                              runs=runs)
        emit(row)

  write()
  out = args.out
  _, all_rows = merged()
  hdr = f"{'impl':44s} {'trees':>5s} {'nodes':>7s} {'steps':>5s} {'fwd n/s':>11s} {'f+b n/s':>11s} " \
        f"{'x node':>8s} {'x node fb':>9s} {'x lvl':>6s} {'x lvl fb':>8s} {'us/step':>8s}"
  print(hdr)
  for r in all_rows:
    print(f"{r['impl']:44s} {r['trees']:5d} {r.get('nodes_timed', r['nodes']):7d} "
          f"{r.get('steps', 0):5d} {r['nodes_per_s_fwd']:11.0f} {r['nodes_per_s_fwd_bwd']:11.0f} "
          f"{r['ratio_fwd_vs_node_by_node']:8.1f} {r['ratio_fwd_bwd_vs_node_by_node']:9.1f} "
          f"{r.get('ratio_fwd_vs_torch_levelwise', float('nan')):6.2f} "
          f"{r.get('ratio_fwd_bwd_vs_torch_levelwise', float('nan')):8.2f} "
          f"{r.get('us_per_step_fwd', float('nan')):8.1f}")
  for b in best_variants(all_rows):
    print(f"best of {b['trees']} trees ({b['device']}): fwd {b['fwd_impl']} "
          f"{b['ratio_fwd_vs_torch_levelwise']:.2f}x torch level-wise; fwd+bwd {b['fwd_bwd_impl']} "
          f"{b['ratio_fwd_bwd_vs_torch_levelwise']:.2f}x (goal >= 3x)")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
